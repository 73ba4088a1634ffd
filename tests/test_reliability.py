"""Reliability (issue 17): transient errors, concurrent writers and overwrites never lose data or
report success on failure. Faults are injected with monkeypatched writers and widened timing
windows; the tests that need a really full or read-only disk mount a tiny tmpfs and are skipped
where mounting is not allowed.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import pickle
import re
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from avlib import artifacts, cli, media
from avlib.artifacts import atomic_path, atomic_write_bytes, atomic_write_json, atomic_write_text
from avlib.checkpoints import (CorruptCheckpointError, UnsafeCheckpointError, read_checkpoint_info,
                               read_official, save_checkpoint)
from avlib.corpus import make
from avlib.corpus.render import FaceIdentity, render_clip
from avlib.data import datasets
from avlib.data import preprocess as pp
from avlib.data import store
from avlib.data.datasets import ClipItem
from avlib.data.store import ClipStore, StoreError, StoreWriter
from avlib.media import MediaError
from avlib.sync import tool as synctool

SR = 16000
T = 12


# ============================================================================ helpers


def speechlike(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    x = 0.3 * np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 0.02 * rng.standard_normal(n)
    return x.astype(np.float32)


def face_clip(path: Path, n: int = 10, seed: int = 0) -> Path:
    """A rendered talking face with audio: preprocessing finds its face."""
    mouth = np.full((n, 7), 0.3, np.float32)
    mouth[:, 0] = 0.5 + 0.4 * np.sin(np.arange(n) / 2.0)
    frames = render_clip(FaceIdentity.sample(np.random.default_rng(seed)), mouth, seed=seed, size=160).frames
    path.parent.mkdir(parents=True, exist_ok=True)
    return media.write_video(path, frames, audio=speechlike(640 * n, seed))


def item_for(path: Path, clip_id: str | None = None) -> ClipItem:
    return ClipItem(clip_id or path.stem, "test", path, "train", None, None, [])


def clip_arrays(seed: int = 0, n: int = T) -> dict:
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)
    return {"streams": {"face": frames}, "audio": speechlike(640 * n, seed),
            "features": {"mel": rng.normal(size=(80, 1 + 640 * n // 200)).astype(np.float32)}}


def write(writer: StoreWriter, clip_id: str, seed: int = 0, **kw):
    data = clip_arrays(seed)
    return writer.write_clip(clip_id, {"split": "train"}, data["streams"], data["audio"],
                             features=data["features"], **kw)


def small_video(path: Path, n: int = 20, seed: int = 0) -> Path:
    frames = np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    return media.write_video(path, frames, audio=speechlike(640 * n, seed))


def one_line(err: str) -> str:
    """The CLI's error output: exactly one line, no traceback, no hidden temporary."""
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err and "/." not in lines[0].replace("/./", "/"), err
    return lines[0]


PREPROCESS_ARGS = ("--dataset", "lrs2", "--crops", "face96", "--features", "--syncnet-size", "112",
                   "--no-progress")


def preprocess_cli(root: Path, out: Path, *extra: str) -> int:
    return cli.main(["preprocess", "--root", str(root), "--out", str(out), *PREPROCESS_ARGS, *extra])


@pytest.fixture
def three_clips(tmp_path, monkeypatch):
    """Three face clips that `avlib preprocess` lists (the dataset listing is stubbed)."""
    items = [item_for(face_clip(tmp_path / "data" / f"clip{i}.mp4", seed=i)) for i in range(3)]
    monkeypatch.setattr(datasets, "list_clips", lambda *a, **k: list(items))
    return tmp_path / "data", items


@contextlib.contextmanager
def tiny_tmpfs(where: Path, size: str = "64k"):
    """A real small file system (root and a working `mount` only; else the test is skipped)."""
    where.mkdir(parents=True, exist_ok=True)
    if os.name != "posix" or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(folder: Path) -> Path:
    """Fill the file system of ``folder`` up to the last byte; returns the filler file."""
    filler = folder / "filler.bin"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for chunk in (65536, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * chunk)
    finally:
        os.close(fd)
    return filler


# ============================================================================ 1. transient write errors


def test_disk_full_stops_the_run_records_no_rejection_and_the_resume_finishes(three_clips, tmp_path,
                                                                             monkeypatch, capsys):
    root, items = three_clips
    out = tmp_path / "store"
    real = StoreWriter.write_clip
    calls = []

    def disk_full_after_one(self, clip_id, *args, **kwargs):
        calls.append(clip_id)
        if len(calls) >= 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.clips_dir / ".tmp.h.1.x.y"))
        return real(self, clip_id, *args, **kwargs)

    monkeypatch.setattr(StoreWriter, "write_clip", disk_full_after_one)
    assert preprocess_cli(root, out) == cli.EXIT_OUTPUT
    line = one_line(capsys.readouterr().err)
    assert str(out) in line and "rerun the same command" in line and "No space left" in line
    # Nothing was recorded as a content rejection; the first clip is finished, two are pending.
    assert not list((out / "rejected").glob("*.json"))
    assert len(calls) == 2  # stopped at the first full-disk clip instead of failing every other one
    assert len(StoreWriter(out).pending([it.id for it in items])) == 2

    monkeypatch.setattr(StoreWriter, "write_clip", real)  # space was freed
    assert preprocess_cli(root, out) == cli.EXIT_OK
    summary = json.loads(capsys.readouterr().out)
    assert (summary["processed"], summary["skipped"], summary["failed"]) == (2, 1, {})
    assert summary["store"]["n_clips"] == 3 and summary["store"]["n_rejected"] == 0


def test_an_io_error_on_one_clip_is_retried_and_the_exit_code_says_so(three_clips, tmp_path, monkeypatch,
                                                                     capsys):
    root, items = three_clips
    out = tmp_path / "store"
    real = StoreWriter.write_clip

    def eio_on_clip1(self, clip_id, *args, **kwargs):
        if clip_id == "clip1":
            raise OSError(errno.EIO, "Input/output error", str(self.clips_dir / "clip1"))
        return real(self, clip_id, *args, **kwargs)

    monkeypatch.setattr(StoreWriter, "write_clip", eio_on_clip1)
    assert preprocess_cli(root, out) == cli.EXIT_INCOMPLETE
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert list(summary["failed"]) == ["clip1"] and "EIO" in summary["failed"]["clip1"]
    assert summary["processed"] == 2 and summary["rejected"] == {}
    assert "rerun the same command" in captured.err
    assert StoreWriter(out).pending([it.id for it in items]) == ["clip1"]

    # The same through the Python API: the clip is "failed", not rejected, and not done.
    result = pp.preprocess_clip(items[1], StoreWriter(out), pp.PreprocessConfig(crops=("face96",), features=()))
    assert result["status"] == "failed" and not result["fatal"]

    monkeypatch.setattr(StoreWriter, "write_clip", real)
    assert preprocess_cli(root, out) == cli.EXIT_OK
    summary = json.loads(capsys.readouterr().out)
    assert summary["processed"] == 1 and summary["store"]["n_clips"] == 3


def test_a_real_full_disk_then_freed_space(three_clips, tmp_path, capsys):
    root, items = three_clips
    with tiny_tmpfs(tmp_path / "small", "2m") as small:
        out = small / "store"
        # the store exists (same settings as the command line's); then the disk fills up
        StoreWriter(out, pp.PreprocessConfig(crops=("face96",), features=(), syncnet_size=112).to_dict())
        filler = fill(small)
        assert preprocess_cli(root, out) == cli.EXIT_OUTPUT
        line = one_line(capsys.readouterr().err)
        assert str(out) in line and "No space left" in line
        assert not list((out / "rejected").iterdir())
        assert not [p for p in (out / "clips").iterdir()]  # no half clip, no temporary
        filler.unlink()
        assert preprocess_cli(root, out) == cli.EXIT_OK
        summary = json.loads(capsys.readouterr().out)
        assert summary["store"]["n_clips"] == 3 and summary["store"]["n_rejected"] == 0


# ============================================================================ 2. sharded finalize


def test_a_slow_finalize_cannot_replace_a_newer_manifest(tmp_path, monkeypatch):
    a, b = StoreWriter(tmp_path), StoreWriter(tmp_path)
    write(a, "shard_a/1", seed=1)
    real_scan = StoreWriter._scan
    scanned = threading.Event()

    def slow_scan(self):
        found = real_scan(self)
        if self is a:  # widen shard a's scan-to-write gap
            scanned.set()
            time.sleep(0.6)
        return found

    monkeypatch.setattr(StoreWriter, "_scan", slow_scan)
    thread = threading.Thread(target=a.finalize)
    thread.start()
    assert scanned.wait(10)
    write(b, "shard_b/1", seed=2)  # finished after a scanned ...
    b.finalize()                  # ... and finalized while a is still between scan and write
    thread.join(10)
    manifest = json.loads((tmp_path / "store.json").read_text())
    assert [r["id"] for r in manifest["clips"]] == ["shard_a/1", "shard_b/1"]
    assert ClipStore(tmp_path).ids == ["shard_a/1", "shard_b/1"]


def test_readers_see_clips_missing_from_the_manifest(tmp_path):
    writer = StoreWriter(tmp_path)
    write(writer, "early")
    writer.finalize()
    write(writer, "late/1", seed=3)
    with pytest.warns(UserWarning, match=r"1 finished clips .* not in store.json .*'late/1'.*finalize"):
        st = ClipStore(tmp_path)
    assert st.unlisted() == ["late/1"] and st.ids == ["early"]
    writer.finalize()
    with warnings_as_errors():
        assert ClipStore(tmp_path).unlisted() == []


@contextlib.contextmanager
def warnings_as_errors():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# ============================================================================ 3. two unsharded writers


def test_a_second_writer_never_replaces_a_clip_the_first_finished(tmp_path, monkeypatch):
    first, second = StoreWriter(tmp_path), StoreWriter(tmp_path)
    real_encode = store._encode_stream
    state = {"raced": False}

    def encode_while_the_other_finishes(*args):
        if not state["raced"]:  # widen the window: the first writer finishes the clip now
            state["raced"] = True
            monkeypatch.setattr(store, "_encode_stream", real_encode)
            write(first, "same/clip", seed=1)
        return real_encode(*args)

    monkeypatch.setattr(store, "_encode_stream", encode_while_the_other_finishes)
    meta = tmp_path / "clips" / "same%2Fclip" / "meta.json"
    placed = write(second, "same/clip", seed=2, overwrite=False)  # what the preprocessing uses
    assert placed is False
    kept = json.loads(meta.read_text())
    assert kept["id"] == "same/clip"
    np.testing.assert_array_equal(np.load(meta.parent / "audio.npy"),  # the first writer's audio
                                  store._audio_to_int16(clip_arrays(1)["audio"], T))
    assert not [p for p in (tmp_path / "clips").iterdir() if p.name.startswith(".")]


def test_a_failing_writer_never_moves_the_winners_clip_aside(tmp_path):
    winner, loser = StoreWriter(tmp_path), StoreWriter(tmp_path)
    write(winner, "clip")
    # The loser's attempt at the same clip fails (here: its input vanished) after the winner
    # finished it: its rejection must not destroy the finished clip.
    result = pp.preprocess_clip(item_for(tmp_path / "gone.mp4", "clip"), loser)
    assert result["status"] == "skipped"
    assert (tmp_path / "clips" / "clip" / "meta.json").is_file()
    assert not (tmp_path / "rejected" / "clip.json").exists()
    assert loser.finalize()["summary"]["n_clips"] == 1


# ============================================================================ 4. concurrent corpus runs


def test_a_second_corpus_run_into_the_same_folder_is_refused(tmp_path, capsys):
    out = tmp_path / "corpus"
    out.mkdir()
    with artifacts.folder_lock(out / make.LOCK):  # a first run holds the folder
        with pytest.raises(artifacts.Busy, match="in use by another process.*pid"):
            make.make_corpus(make.CorpusConfig(n_seen_speakers=1, n_unseen_speakers=0), out, workers=1,
                             progress=False)
        code = cli.main(["corpus", "make", "--out", str(out), "--workers", "1", "--no-progress"])
    assert code == cli.EXIT_BUSY
    assert "in use by another process" in one_line(capsys.readouterr().err)
    assert [p.name for p in out.iterdir()] == [make.LOCK]  # the second run wrote nothing


def test_the_stale_temporary_sweep_spares_live_runs(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        folder = tmp_path / "grid" / "s1" / "video"
        folder.mkdir(parents=True)
        final = folder / "bbaf2n.mp4"
        live = artifacts.temp_path(final).with_name(
            artifacts.temp_path(final).name.replace(f".{os.getpid()}.", f".{sleeper.pid}."))
        live.write_bytes(b"a live encoder's output")
        dead = folder / f".x.mp4.{artifacts.HOST}.999999999.abcdef0123.tmp.mp4"
        dead.write_bytes(b"left by a killed run")
        assert artifacts.temp_owner(live) == (artifacts.HOST, sleeper.pid)
        assert make._remove_stale_temporaries(tmp_path) == 1
        assert live.exists() and not dead.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


# ============================================================================ 5. sync fix -o EXISTING


def test_sync_fix_refuses_to_replace_a_file_without_force(tmp_path, capsys):
    video = small_video(tmp_path / "in.mp4")
    other = tmp_path / "notes.mp4"
    other.write_bytes(b"an unrelated file")
    args = ["sync", "fix", str(video), "-o", str(other), "--offset", "1", "--quiet"]
    assert cli.main(args) == cli.EXIT_OUTPUT
    line = one_line(capsys.readouterr().err)
    assert str(other) in line and "--force" in line
    assert other.read_bytes() == b"an unrelated file"
    assert cli.main(args + ["--force"]) == cli.EXIT_OK
    assert media.probe(other).has_audio


@pytest.mark.parametrize("case", ["folder", "suffix", "input", "no_folder", "exists"])
def test_sync_fix_checks_the_output_before_measuring(tmp_path, monkeypatch, capsys, case):
    video = small_video(tmp_path / "in.mp4")
    (tmp_path / "existing.mp4").write_bytes(b"x")
    out = {"folder": tmp_path, "suffix": tmp_path / "out.txt", "input": video,
           "no_folder": tmp_path / "missing" / "out.mp4", "exists": tmp_path / "existing.mp4"}[case]

    def measured(*args, **kwargs):
        raise AssertionError("the output must be checked before the measurement")

    monkeypatch.setattr(synctool, "_analyse", measured)
    monkeypatch.setattr(synctool, "_load_syncnet", measured)
    with pytest.raises((synctool.SyncToolError, OSError)):
        synctool.fix_video(video, out, model=object())
    # The command line: one line, before any weights are asked for.
    code = cli.main(["sync", "fix", str(video), "-o", str(out), "--quiet"])
    expected = {"folder": cli.EXIT_OUTPUT, "suffix": cli.EXIT_USAGE, "input": cli.EXIT_USAGE,
                "no_folder": cli.EXIT_OUTPUT, "exists": cli.EXIT_OUTPUT}[case]
    assert code == expected
    assert "weights" not in one_line(capsys.readouterr().err)


# ============================================================================ 6. truncated containers


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_a_cut_file_is_truncated_in_any_container(tmp_path, suffix):
    full = small_video(tmp_path / f"full{suffix}", n=50)
    data = full.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) * 6 // 10])
    for reader in (media.probe, media.read_video, media.read_audio, media.read_av):
        with pytest.raises(MediaError) as err:
            reader(cut)
        assert err.value.reason == "truncated", (reader.__name__, str(err.value))
    summary = pp.preprocess_dataset([item_for(cut)], tmp_path / "store", progress=False)
    assert summary["rejected"] == {"truncated": 1}


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_damage_inside_a_file_is_corrupt_not_truncated(tmp_path, suffix):
    full = small_video(tmp_path / f"full{suffix}", n=50)
    data = bytearray(full.read_bytes())
    pos = len(data) // 2
    data[pos:pos + 3000] = np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    bad = tmp_path / f"bad{suffix}"
    bad.write_bytes(bytes(data))
    reasons = set()
    for reader in (media.read_video, media.read_audio):
        try:
            reader(bad)
        except MediaError as err:
            reasons.add(err.reason)
    assert reasons == {"corrupt"}


# ============================================================================ 7. one line per OS condition


def _raising(error: BaseException):
    def func(args):
        raise error
    return func


def _args(**kw):
    import argparse

    return argparse.Namespace(**kw)


@pytest.mark.parametrize("error, code, words", [
    (OSError(errno.ENOSPC, "No space left on device"), cli.EXIT_OUTPUT, ["free disk space"]),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), cli.EXIT_OUTPUT, ["quota"]),
    (OSError(errno.EROFS, "Read-only file system"), cli.EXIT_OUTPUT, ["read-only", "writable"]),
    (PermissionError(errno.EACCES, "Permission denied"), cli.EXIT_OUTPUT, ["cannot write", "permission"]),
    (FileExistsError(errno.EEXIST, "File exists"), cli.EXIT_OUTPUT, ["--force"]),
    (IsADirectoryError(errno.EISDIR, "Is a directory"), cli.EXIT_OUTPUT, ["folder"]),
    (NotADirectoryError(errno.ENOTDIR, "Not a directory"), cli.EXIT_OUTPUT, ["not a folder"]),
    (KeyboardInterrupt(), cli.EXIT_INTERRUPTED, ["interrupted", "rerun"]),
])
def test_os_conditions_on_the_output_are_one_line_naming_the_users_path(tmp_path, capsys, error, code, words):
    out = tmp_path / "store"
    if isinstance(error, OSError):
        # as raised deep inside a writer: about a hidden temporary in the output folder
        error.filename = str(out / "clips" / ".tmp.host.1.abcdef0123.clip" / "audio.npy")
    assert cli.run_command("avlib preprocess", _raising(error), _args(out=str(out))) == code
    line = one_line(capsys.readouterr().err)
    assert line.startswith("avlib preprocess: ")
    if isinstance(error, OSError):
        assert str(out) in line and ".tmp." not in line
    for word in words:
        assert word in line


def test_os_conditions_on_inputs_and_other_classes(tmp_path, capsys):
    from avlib.profiles import ProfileError

    cases = [
        (PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "in.mp4")), cli.EXIT_INPUT, "cannot read"),
        (FileNotFoundError(errno.ENOENT, "No such file", str(tmp_path / "in.mp4")), cli.EXIT_INPUT, "not found"),
        (IsADirectoryError(errno.EISDIR, "Is a directory", str(tmp_path / "inputs")), cli.EXIT_INPUT, "folder"),
        (ProfileError("unknown profile 'nope'; profiles are: cpu"), cli.EXIT_USAGE, "unknown profile"),
        (MediaError("corrupt", "x.mp4 is damaged"), cli.EXIT_INPUT, "damaged"),
        (StoreError("the store is inconsistent"), cli.EXIT_OUTPUT, "inconsistent"),
        (ValueError("workers must be >= 1"), cli.EXIT_USAGE, "workers"),
    ]
    for error, code, word in cases:
        assert cli.run_command("avlib x", _raising(error), _args(out=str(tmp_path / "out"))) == code, error
        line = one_line(capsys.readouterr().err)
        assert word in line, (error, line)
    # A bug keeps its traceback (and exit code 1).
    assert cli.run_command("avlib x", _raising(ZeroDivisionError("boom")), _args()) == cli.EXIT_BUG
    assert "Traceback" in capsys.readouterr().err


def test_every_command_turns_ordinary_errors_into_one_line(tmp_path, monkeypatch, capsys):
    # unknown profile (corpus), a folder where a file belongs (sync), unreadable weights (sync),
    # a file where a folder belongs (preprocess), a missing dataset (preprocess), unknown
    # profile (book)
    afile = tmp_path / "afile"
    afile.write_text("x")
    data = tmp_path / "data"
    data.mkdir()
    video = small_video(tmp_path / "in.mp4")
    runs = [
        (["corpus", "make", "--out", str(tmp_path / "c"), "--profile", "no_such_profile"], cli.EXIT_USAGE,
         "no_such_profile"),
        (["sync", "fix", str(video), "-o", str(tmp_path), "--offset", "1"], cli.EXIT_OUTPUT, str(tmp_path)),
        (["sync", "check", str(video), "--weights", str(afile)], cli.EXIT_INPUT, str(afile)),
        (["preprocess", "--dataset", "lrs2", "--root", str(tmp_path / "none"), "--out", str(tmp_path / "s")],
         cli.EXIT_INPUT, "lrs2"),
        (["book", "run", "--profile", "no_such_profile"], None, "no_such_profile"),
    ]
    for argv, code, word in runs:
        got = cli.main(argv)
        err = capsys.readouterr().err
        assert (code is None and got != 0) or got == code, (argv, got, err)
        assert word in err and "Traceback" not in err, (argv, err)
    monkeypatch.setattr(datasets, "list_clips", lambda *a, **k: [])
    got = cli.main(["preprocess", "--dataset", "lrs2", "--root", str(data), "--out", str(afile / "store")])
    line = one_line(capsys.readouterr().err)
    assert got == cli.EXIT_OUTPUT and str(afile) in line and "not a folder" in line


def test_a_failed_cleanup_never_hides_ffmpegs_error(tmp_path, monkeypatch):
    video = small_video(tmp_path / "in.mp4")

    def ffmpeg_fails(args, what, stdin_chunks=None, output=None):
        Path(args[-1]).write_bytes(b"half")  # ffmpeg had started writing the temporary
        raise MediaError("encode_failed", f"ffmpeg failed while {what}: Invalid argument")

    def unlink_denied(self, *a, **k):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(media, "_run_ffmpeg", ffmpeg_fails)
    monkeypatch.setattr(Path, "unlink", unlink_denied)
    with pytest.raises(MediaError, match="Invalid argument") as err:
        synctool.fix_video(video, tmp_path / "out.mp4", offset=2)
    assert err.value.reason == "encode_failed"


def test_a_full_disk_is_an_os_error_naming_the_destination(tmp_path):
    with tiny_tmpfs(tmp_path / "small", "256k") as small:
        fill(small)
        for write in (lambda p: media.write_wav(p.with_suffix(".wav"), speechlike(SR * 4), SR),
                      lambda p: small_video(p.with_suffix(".mp4"), n=20),
                      lambda p: atomic_write_bytes(p.with_suffix(".bin"), b"x" * 100000)):
            with pytest.raises(OSError) as err:
                write(small / "out")
            assert err.value.errno == errno.ENOSPC, repr(err.value)
            assert ".tmp" not in str(err.value.filename) and "out" in str(err.value.filename)
        assert sorted(p.name for p in small.iterdir()) == ["filler.bin"]  # no temporaries left


def test_a_read_only_file_system_is_reported_as_such(tmp_path, capsys):
    video = small_video(tmp_path / "in.mp4")
    with tiny_tmpfs(tmp_path / "ro", "256k") as ro:
        if subprocess.run(["mount", "-o", "remount,ro", str(ro)], capture_output=True).returncode:
            pytest.skip("cannot remount read-only")
        code = cli.main(["sync", "fix", str(video), "-o", str(ro / "out.mp4"), "--offset", "1"])
        line = one_line(capsys.readouterr().err)
        assert code == cli.EXIT_OUTPUT and "read-only" in line and str(ro / "out.mp4") in line


# ============================================================================ 8. file modes


def test_atomic_writes_give_plain_file_modes(tmp_path):
    old = os.umask(0o022)
    try:
        written = [atomic_write_text(tmp_path / "a.txt", "x"), atomic_write_json(tmp_path / "b.json", {}),
                   atomic_write_bytes(tmp_path / "c.bin", b"x")]
        with atomic_path(tmp_path / "d.npy") as tmp:
            np.save(tmp, np.zeros(3))
        written.append(tmp_path / "d.npy")
        tensors, desc = save_checkpoint(tmp_path / "ckpt", torch.nn.Linear(2, 2), config={"name": "x", "kwargs": {}})
        written += [tensors, desc]
        writer = StoreWriter(tmp_path / "store", {"crop": 96})
        write(writer, "clip")
        writer.finalize()
        written += [tmp_path / "store" / "store.json", tmp_path / "store" / "config.json"]
        written.append(media.write_wav(tmp_path / "e.wav", speechlike(1600), SR))
        written.append(small_video(tmp_path / "f.mp4", n=5))
        product = artifacts.produce_or_load("thing", {"n": 1}, lambda f: None, "auto", tmp_path / "art")
        for path in written:
            assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
        assert stat.S_IMODE(product.stat().st_mode) == 0o755
    finally:
        os.umask(old)


def test_one_atomic_writer(tmp_path):
    """No module of the data and signal layers makes its own temporaries for files."""
    root = Path(__file__).resolve().parent.parent / "avlib"
    for name in ("data/store.py", "data/preprocess.py", "data/datasets.py", "corpus/make.py", "sync/tool.py",
                 "media.py", "checkpoints.py", "cli.py"):
        text = (root / name).read_text()
        assert "mkstemp" not in text and "NamedTemporaryFile" not in text, name


# ============================================================================ 9. smaller points


def test_a_malformed_checkpoint_description_names_the_file(tmp_path):
    _, desc = save_checkpoint(tmp_path / "net", torch.nn.Linear(2, 2), config={"name": "x", "kwargs": {}})
    desc.write_text('{"format": "avlib-checkpoint/1", "config": ')  # cut short
    with pytest.raises(CorruptCheckpointError, match=re.escape(str(desc))):
        read_checkpoint_info(desc)


def test_a_truncated_store_array_is_a_clear_store_error(tmp_path):
    writer = StoreWriter(tmp_path)
    write(writer, "spk/clip")
    writer.finalize()
    clip = tmp_path / "clips" / "spk%2Fclip"
    for name in ("audio.npy", "face.idx.npy", "features/mel.npy"):
        path = clip / name
        good = path.read_bytes()
        path.write_bytes(good[: len(good) // 2])
        st = ClipStore(tmp_path)
        with pytest.raises(StoreError) as err:
            {"audio.npy": lambda: st.audio("spk/clip"), "face.idx.npy": lambda: st.frames("spk/clip", "face"),
             "features/mel.npy": lambda: st.feature("spk/clip", "mel")}[name]()
        message = str(err.value)
        assert "'spk/clip'" in message and name.split("/")[-1] in message and "rerun" in message
        assert "mmap length" not in message.split("numpy:")[0]
        path.write_bytes(good)


def test_max_side_zero_means_never_downscale_in_both_commands(tmp_path, monkeypatch):
    assert pp.max_side_option(0) is None and pp.max_side_option(None) is None
    assert pp.max_side_option(640) == 640
    with pytest.raises(ValueError, match="never downscale"):
        pp.max_side_option(-1)
    video = small_video(tmp_path / "in.mp4", n=25)
    seen = {}

    class Done(Exception):
        pass

    def face_track(path, usable, cfg, detector, progress):
        seen["max_side"] = cfg.max_side
        raise Done

    monkeypatch.setattr(synctool, "_face_track", face_track)

    class Model(torch.nn.Module):
        img_size = 48

    with pytest.raises(Done):
        synctool.check_video(video, Model(), vshift=2, max_side=0, progress=False)
    assert seen["max_side"] is None
    # The command lines read 0 the same way, and say so.
    import argparse

    helps = []
    for module in (pp, synctool):
        parser = argparse.ArgumentParser()
        module.add_arguments(parser)
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        helps.append(subs[0].choices["check"].format_help() if subs else parser.format_help())
    assert all("0 = never downscale" in " ".join(h.split()) for h in helps)


def test_preprocess_refuses_an_output_inside_the_dataset(tmp_path, capsys):
    data = tmp_path / "lrs2"
    data.mkdir()
    for out in (data, data / "store"):
        code = cli.main(["preprocess", "--dataset", "lrs2", "--root", str(data), "--out", str(out)])
        assert code == cli.EXIT_USAGE
        assert "outside the dataset" in one_line(capsys.readouterr().err)
    assert list(data.iterdir()) == []


def test_the_unsafe_checkpoint_message_names_the_refused_global(tmp_path, monkeypatch):
    from fractions import Fraction

    path = tmp_path / "unsafe.pth"
    torch.save({"w": torch.zeros(2), "meta": Fraction(1, 2)}, path)
    with pytest.raises(UnsafeCheckpointError) as err:
        read_official(path)
    message = str(err.value)
    assert "fractions.Fraction" in message and str(path) in message
    assert "weights_only" not in message and "Re-running" not in message and "\x1b" not in message
    # Other wordings of the refusal.
    for text, name in (("Weights only load failed. Re-running `torch.load` with `weights_only` set to "
                        "`False` will likely succeed.\n WeightsUnpickler error: Trying to call reduce for "
                        "unrecognized function os.system", "os.system"),
                       ("Unsupported global: GLOBAL builtins.eval was not an allowed global", "builtins.eval")):
        monkeypatch.setattr(torch, "load", _raising_load(pickle.UnpicklingError(text)))
        with pytest.raises(UnsafeCheckpointError) as err:
            read_official(path)
        assert name in str(err.value) and "weights_only" not in str(err.value)


def _raising_load(error):
    def load(*args, **kwargs):
        raise error
    return load


# ============================================================================ one constant, one place


def test_frame_rate_and_sample_rate_are_defined_once():
    from avlib import audio
    from avlib.corpus import speech

    assert (make.FPS, make.SR, make.SAMPLES_PER_FRAME) == (audio.FPS, audio.SR, audio.SAMPLES_PER_FRAME)
    assert (store.FPS, store.SR, store.SAMPLES_PER_FRAME) == (audio.FPS, audio.SR, audio.SAMPLES_PER_FRAME)
    assert speech.SAMPLE_RATE == audio.SR
    root = Path(__file__).resolve().parent.parent / "avlib"
    pattern = re.compile(r"^\s*(FPS|SR|SAMPLES_PER_FRAME|SAMPLE_RATE)\s*=\s*\d", re.M)
    for name in ("data/store.py", "data/preprocess.py", "data/datasets.py", "corpus/make.py", "sync/tool.py",
                 "media.py", "checkpoints.py", "corpus/speech.py"):
        assert not pattern.search((root / name).read_text()), name
