"""Many videos at once: ``avlib sync check ... --csv``, worker processes, ``avlib sync filter``."""
from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from avlib import cli, media
from avlib.artifacts import Busy
from avlib.audio import SR
from avlib.checkpoints import save_checkpoint
from avlib.models import SyncNet
from avlib.sync import batch
from avlib.sync import tool as synctool
from avlib.sync.tool import SyncToolError
from test_synctool import DELAY, MouthEnergyOracle, talking_face

SETTINGS = {"protocol": "avlib", "precision": "fp32", "cropped": False, "vshift": 15,
            "weights": "w"}


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """In sync, audio 4 frames late (in a subfolder), and a damaged .mp4 (its tail cut off)."""
    root = tmp_path_factory.mktemp("dataset")
    (root / "late").mkdir()
    frames, wav = talking_face()
    good = media.write_video(root / "talk.mp4", frames, audio=wav, sr=SR)
    late = media.remux_with_shifted_audio(good, root / "late" / "talk_late.MP4", DELAY)
    data = good.read_bytes()
    broken = root / "broken.mp4"
    broken.write_bytes(data[: len(data) // 2])
    (root / "notes.txt").write_text("not a video")
    return {"root": root, "good": good, "late": late, "broken": broken}


@pytest.fixture(scope="module")
def oracle():
    return MouthEnergyOracle()


def read_rows(path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_batch_records_errors_goes_on_and_resumes(videos, oracle, tmp_path, monkeypatch):
    out = tmp_path / "scores.csv"
    paths = [videos["good"], videos["broken"], videos["late"]]
    summary = batch.score_videos(paths, oracle, out, progress=False, weights="oracle")
    assert (summary["scored"], summary["ok"], summary["errors"], summary["skipped"]) == (3, 2, 1, 0)
    rows = {r["path"]: r for r in read_rows(out)}
    assert list(read_rows(out)[0]) == list(batch.CSV_COLUMNS)
    bad = rows[str(videos["broken"])]
    assert bad["status"] == "error" and bad["offset"] == "" and "truncated" in bad["reason"]
    good, late = rows[str(videos["good"])], rows[str(videos["late"])]
    assert good["status"] == late["status"] == "ok" and good["reason"] == ""
    assert abs(int(good["offset"])) <= 1 and abs(int(late["offset"]) + DELAY) <= 1
    assert float(good["lse_c"]) > 0.1 and float(late["lse_d"]) > 0
    assert good["protocol"] == "avlib" and good["weights"] == "oracle" and good["vshift"] == "15"
    assert out.read_text().endswith("\n") and len(out.read_text().splitlines()) == 4

    # A rerun skips every recorded video, errors included ...
    def must_not_run(path, state):
        raise AssertionError(f"{path} was scored again")

    monkeypatch.setattr(batch, "_score_one", must_not_run)
    again = batch.score_videos(paths, oracle, out, progress=False, weights="oracle")
    assert (again["scored"], again["skipped"]) == (0, 3) and again["rows"].keys() == rows.keys()
    monkeypatch.undo()
    # ... unless asked to retry the errors; the newest row of a path counts.
    retried = batch.score_videos(paths, oracle, out, progress=False, weights="oracle",
                                 retry_errors=True)
    assert (retried["scored"], retried["errors"], retried["skipped"]) == (1, 1, 2)
    assert len(read_rows(out)) == 4
    # Other settings are refused instead of mixed into the same CSV.
    with pytest.raises(SyncToolError, match="vshift=15 .* this run uses vshift=10") as err:
        batch.score_videos(paths, oracle, out, progress=False, weights="oracle", vshift=10)
    assert err.value.exit_code == cli.EXIT_USAGE


def test_a_cut_last_line_is_removed_and_a_second_writer_is_refused(tmp_path):
    out = tmp_path / "scores.csv"
    with batch.ScoreTable(out, SETTINGS) as table:
        table.append({"path": "/a.mp4", "status": "ok", "offset": 2, "lse_d": 7.5, "lse_c": 3.25,
                      "windows": 90, "reason": ""})
        with pytest.raises(Busy, match="another sync run") as err:
            batch.ScoreTable(out, SETTINGS).__enter__()
        assert err.value.exit_code == cli.EXIT_BUSY
    whole = out.read_text()
    assert whole.splitlines()[1] == ("/a.mp4,ok,2,7.500000,3.250000,90,,avlib,fp32,false,15,w")
    with open(out, "a") as handle:  # what a crash of the machine mid-write could leave
        handle.write("/b.mp4,ok,1,7.1")
    with batch.ScoreTable(out, SETTINGS) as table:
        assert set(table.rows) == {"/a.mp4"} and table.done("/a.mp4")
        assert not table.done("/b.mp4")
        table.append({"path": "/c.mp4", "status": "error", "reason": "no face\nfound, sorry"})
    last = '/c.mp4,error,,,,,"no face found, sorry",avlib,fp32,false,15,w\n'
    assert out.read_text() == whole + last
    # One row = one write() of a whole line; a short write (disk full) is cut back.
    calls, real_write = [], os.write

    def half_write(fd, data):
        calls.append(data)
        return real_write(fd, data[: len(data) // 2])

    before = out.read_bytes()
    with batch.ScoreTable(out, SETTINGS) as table, pytest.MonkeyPatch.context() as mp:
        mp.setattr(batch.os, "write", half_write)
        with pytest.raises(OSError, match="No space left") as err:
            table.append({"path": "/d.mp4", "status": "ok", "offset": 0})
    assert len(calls) == 1 and calls[0].endswith(b"\n") and calls[0].count(b"\n") == 1
    assert err.value.filename == str(out) and out.read_bytes() == before
    (tmp_path / "other.csv").write_text("name,value\nx,1\n")
    with pytest.raises(SyncToolError, match="not a sync scores CSV"):
        batch.ScoreTable(tmp_path / "other.csv", SETTINGS).__enter__()
    assert (tmp_path / "other.csv").read_text() == "name,value\nx,1\n"


def test_cli_check_many_videos_with_csv(videos, tmp_path, capsys):
    torch.manual_seed(0)
    weights = save_checkpoint(tmp_path / "syncnet_small", SyncNet(width=0.125, img_size=96,
                                                                   emb_dim=32))[1]
    out = tmp_path / "scores.csv"
    args = ["sync", "check", str(videos["good"]), str(videos["broken"]), "--csv", str(out),
            "--weights", str(weights), "--vshift", "6", "--quiet"]
    assert cli.main(args) == cli.EXIT_OK
    printed = capsys.readouterr().out
    assert f"error  {videos['broken']}: " in printed
    assert "scored     2 videos (1 ok, 1 errors)" in printed and "0 already recorded" in printed
    rows = read_rows(out)
    assert sorted(r["status"] for r in rows) == ["error", "ok"]
    assert all(r["weights"] == os.path.abspath(weights) and r["vshift"] == "6" for r in rows)
    assert cli.main(args) == cli.EXIT_OK
    assert "scored     0 videos" in capsys.readouterr().out
    assert len(read_rows(out)) == 2


def test_workers_give_the_single_process_rows(videos, tmp_path):
    torch.manual_seed(0)
    model = SyncNet(width=0.125, img_size=96, emb_dim=32).eval()
    paths = [videos["good"], videos["late"], videos["broken"]]
    one = batch.score_videos(paths, model, tmp_path / "one.csv", progress=False, vshift=6)
    two = batch.score_videos(paths, model, tmp_path / "two.csv", progress=False, vshift=6,
                             workers=2)
    assert two["workers"] == 2 and (two["ok"], two["errors"]) == (2, 1)
    for path, row in one["rows"].items():
        other = two["rows"][path]
        assert other["status"] == row["status"]
        if row["status"] == "ok":
            assert other["offset"] == row["offset"]
            assert float(other["lse_d"]) == pytest.approx(float(row["lse_d"]), rel=1e-4)
            assert float(other["lse_c"]) == pytest.approx(float(row["lse_c"]), rel=1e-2, abs=1e-4)
        else:
            assert other["reason"] == row["reason"]


def test_list_videos_of_a_folder_and_of_a_list(videos, tmp_path):
    found, base = batch.list_videos(videos["root"])
    assert found == sorted([videos["broken"], videos["late"], videos["good"]])
    assert base == videos["root"]
    listing = tmp_path / "list.txt"
    rel = os.path.relpath(videos["late"], tmp_path)
    listing.write_text(f"# my clips\n{videos['good']}\n\n{rel}\n{videos['good']}\n")
    found, base = batch.list_videos(listing)
    assert found == [videos["good"], videos["late"]] and base == videos["root"]
    with pytest.raises(SyncToolError, match="dataset not found"):
        batch.list_videos(tmp_path / "nothing")
    with pytest.raises(SyncToolError, match="is a video"):
        batch.list_videos(videos["good"])


def test_filter_keeps_drops_and_corrects(videos, oracle, tmp_path):
    scores = tmp_path / "scores.csv"
    corrected = tmp_path / "fixed"
    done = batch.filter_dataset(videos["root"], oracle, min_conf=0.1, max_offset=DELAY + 1,
                                csv_path=scores, corrected_dir=corrected, progress=False)
    keep = (tmp_path / "scores_keep.txt").read_text().splitlines()
    assert keep == done["kept"] == [str(corrected / "late" / "talk_late.MP4"),
                                    str(corrected / "talk.mp4")]
    report = read_rows(tmp_path / "scores_dropped.csv")
    assert [(r["path"], r["reason"]) for r in report] == [(str(videos["broken"]), "error")]
    assert "truncated" in report[0]["detail"] and done["counts"] == {"error": 1}
    # The in-sync clip is copied as it is; the late one has its audio moved back.
    assert (corrected / "talk.mp4").read_bytes() == videos["good"].read_bytes()
    assert done["corrected"] == {"shifted": 1, "copied": 1, "present": 0}
    fixed = synctool.check_video(corrected / "late" / "talk_late.MP4", oracle, progress=False)
    assert abs(fixed.offset) <= 1

    # Stricter thresholds on the same CSV: nothing is scored again, more is dropped.
    strict = batch.filter_dataset(videos["root"], oracle, min_conf=1e6, max_offset=1,
                                  csv_path=scores, keep_list=tmp_path / "k.txt",
                                  report=tmp_path / "r.csv", progress=False)
    assert strict["scores"]["skipped"] == 3 and strict["kept"] == []
    reasons = {r["path"]: r["reason"] for r in read_rows(tmp_path / "r.csv")}
    assert reasons[str(videos["late"])] == "low_confidence;offset_too_large"
    assert reasons[str(videos["good"])] == "low_confidence"
    assert (tmp_path / "k.txt").read_text() == ""


def test_filter_refuses_bad_outputs_before_scoring(videos, oracle, tmp_path, capsys):
    with pytest.raises(SyncToolError, match="inside the dataset"):
        batch.filter_dataset(videos["root"], oracle, csv_path=tmp_path / "s.csv",
                             corrected_dir=videos["root"] / "fixed", progress=False)
    with pytest.raises(SyncToolError, match="folder .* does not exist"):
        batch.filter_dataset(videos["root"], oracle, csv_path=tmp_path / "s.csv",
                             keep_list=tmp_path / "no" / "keep.txt", progress=False)
    assert not (tmp_path / "s.csv").exists()
    assert cli.main(["sync", "filter", str(tmp_path / "missing"), "--weights",
                     str(tmp_path / "none.json"), "--quiet"]) == cli.EXIT_INPUT
    assert "checkpoint file not found" in capsys.readouterr().err


def test_cli_filter_prints_what_it_kept(videos, tmp_path, capsys):
    torch.manual_seed(0)
    weights = save_checkpoint(tmp_path / "syncnet_small", SyncNet(width=0.125, img_size=96,
                                                                   emb_dim=32))[1]
    listing = tmp_path / "clips.txt"
    listing.write_text(f"{videos['good']}\n{videos['broken']}\n")
    code = cli.main(["sync", "filter", str(listing), "--min-conf", "0", "--max-offset", "15",
                     "--csv", str(tmp_path / "s.csv"), "--weights", str(weights), "--vshift", "6",
                     "--quiet"])
    assert code == cli.EXIT_OK
    out = capsys.readouterr().out
    assert f"kept       1 of 2 clips -> {tmp_path / 's_keep.txt'}" in out
    assert "dropped    1: 1 could not be measured" in out
    assert (tmp_path / "s_keep.txt").read_text() == f"{videos['good']}\n"
    rows = {r["path"]: r for r in read_rows(tmp_path / "s.csv")}
    assert np.isfinite(float(rows[str(videos["good"])]["lse_d"]))


def test_a_killed_batch_leaves_whole_rows_and_resumes(videos, tmp_path):
    """SIGKILL in the middle of a batch: every line of the CSV is a whole row; the rerun
    scores only what is missing."""
    torch.manual_seed(0)
    weights = save_checkpoint(tmp_path / "syncnet_small", SyncNet(width=0.125, img_size=96,
                                                                   emb_dim=32))[1]
    clips = []
    for i in range(4):
        clips.append(tmp_path / f"clip{i}.mp4")
        shutil.copyfile(videos["good"], clips[-1])
    out = tmp_path / "scores.csv"
    args = ["check", *map(str, clips), "--csv", str(out), "--weights", str(weights), "--vshift",
            "6", "--quiet"]
    proc = subprocess.Popen([sys.executable, "-m", "avlib", "sync", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if out.exists() and len(out.read_bytes().splitlines()) >= 2:  # header + a row
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    text = out.read_text()
    assert text.endswith("\n")
    rows = read_rows(out)
    assert 1 <= len(rows) <= 4 and all(r["status"] == "ok" and r["lse_c"] for r in rows)
    assert cli.main(["sync", *args]) == cli.EXIT_OK
    final = read_rows(out)
    assert sorted(r["path"] for r in final) == sorted(str(c) for c in clips)
    assert final[: len(rows)] == rows  # the rerun only appended
