"""Tests for avlib.data.datasets: small dataset trees in each real layout are built in tmp_path.

One real mp4 (10 frames 64x64 + 16-kHz audio) is written once per module and hard-linked into
every tree; transcripts, alignments and word tables are written with avlib.data.formats.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf

from avlib import media
from avlib.data import datasets
from avlib.data import formats
from avlib.corpus.speech import Segment
from avlib.data.datasets import ClipItem, DatasetError, list_clips, list_jpeg_frames, read_jpeg_folder

N_FRAMES = 10
SIZE = 64
SR = 16000
LRS2_A = "6330311066473698535"
LRS2_B = "6331559613336179781"
GRID_WORDS = [Segment("bin", 0.5, 0.8), Segment("blue", 0.8, 1.1), Segment("at", 1.1, 1.2),
              Segment("f", 1.3, 1.5), Segment("two", 1.5, 1.8), Segment("now", 1.8, 2.2)]


@pytest.fixture(scope="module")
def mp4(tmp_path_factory) -> Path:
    """A real tiny H.264 + AAC clip."""
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    frames = np.stack([np.stack([(x * 3 + 8 * t) % 256, y * 3 % 256, np.full_like(x, 128)], -1)
                       for t in range(N_FRAMES)]).astype(np.uint8)
    t = np.arange(N_FRAMES * 640) / SR
    audio = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    path = tmp_path_factory.mktemp("media") / "clip.mp4"
    return media.write_video(path, frames, fps=25, audio=audio, sr=SR)


def place(src: Path, dst: Path) -> Path:
    """Hard-link (or copy) ``src`` to ``dst``, creating folders."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
    return dst


def at(path: Path) -> Path:
    """``path`` after creating its folder (the formats writers need an existing folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data)
    return path


def by_id(items) -> dict[str, ClipItem]:
    return {item.id: item for item in items}


def reasons(listing) -> list[str]:
    return [s.reason for s in listing.skipped]


# ---------------------------------------------------------------------------- LRS2


@pytest.fixture()
def lrs2(tmp_path, mp4) -> Path:
    root = tmp_path / "mvlrs_v1"
    main = root / "main"
    place(mp4, main / LRS2_A / "00001.mp4")
    formats.write_lrs_txt(main / LRS2_A / "00001.txt", "THE FIRST CLIP", conf=3)
    place(mp4, main / LRS2_A / "00002.mp4")
    write(main / LRS2_A / "00002.txt", b"Text:  CAF\xe9 CLIP\nConf:  4\n")  # Latin-1 byte
    place(mp4, main / LRS2_B / "00001.mp4")  # no .txt
    place(mp4, main / LRS2_B / "00002.mp4")
    formats.write_lrs_txt(main / LRS2_B / "00002.txt", "TEST CLIP")
    place(mp4, root / "pretrain" / LRS2_A / "00001.mp4")
    formats.write_lrs_txt(root / "pretrain" / LRS2_A / "00001.txt", "HELLO WORLD",
                          words=[Segment("HELLO", 0.1, 0.4), Segment("WORLD", 0.5, 0.9)],
                          scores=[1.5, 2.5])
    write(root / "train.txt", f"{LRS2_A}/00001\n{LRS2_B}/00001\n")
    write(root / "val.txt", f"{LRS2_A}/00002\r\n")
    write(root / "test.txt", f"{LRS2_B}/00002 NF\n")
    write(root / "pretrain.txt", f"{LRS2_A}/00001\n")
    return root


def test_lrs2_official_lists(lrs2):
    items = list_clips("lrs2", lrs2)
    assert [(i.split, i.id) for i in items] == [
        ("pretrain", f"pretrain/{LRS2_A}/00001"),
        ("test", f"{LRS2_B}/00002"),
        ("train", f"{LRS2_A}/00001"),
        ("train", f"{LRS2_B}/00001"),
        ("val", f"{LRS2_A}/00002"),
    ]
    assert items.skipped == []
    clips = by_id(items)
    first = clips[f"{LRS2_A}/00001"]
    assert first.dataset == "lrs2" and first.speaker == LRS2_A
    assert first.video == lrs2 / "main" / LRS2_A / "00001.mp4" and first.video.is_file()
    assert first.transcript == "THE FIRST CLIP" and first.extra["conf"] == 3
    assert first.words == [] and first.problems == [] and first.audio is None
    pre = clips[f"pretrain/{LRS2_A}/00001"]
    assert pre.video == lrs2 / "pretrain" / LRS2_A / "00001.mp4"
    assert pre.words == [Segment("HELLO", 0.1, 0.4), Segment("WORLD", 0.5, 0.9)]
    assert pre.extra["word_scores"] == [1.5, 2.5]
    assert clips[f"{LRS2_B}/00002"].extra["tags"] == ["NF"]
    bad = clips[f"{LRS2_A}/00002"]
    assert bad.problems == ["transcript_not_utf8"] and bad.transcript == "CAF\ufffd CLIP"
    missing = clips[f"{LRS2_B}/00001"]
    assert missing.transcript is None and missing.problems == ["transcript_missing"]


def test_lrs2_split_choice_and_split_file(lrs2, tmp_path):
    assert [i.id for i in list_clips("lrs2", lrs2, split="train")] == [f"{LRS2_A}/00001", f"{LRS2_B}/00001"]
    own = write(tmp_path / "mine.txt", f"main/{LRS2_B}/00002.mp4\n{LRS2_A}/00002\n")
    items = list_clips("lrs2", lrs2, split_file=own)
    assert {i.split for i in items} == {"mine"} and len(items) == 2
    assert {i.split for i in list_clips("lrs2", lrs2, split="custom", split_file=own)} == {"custom"}
    with pytest.raises(DatasetError, match="unknown split"):
        list_clips("lrs2", lrs2, split="dev")


def test_lrs2_without_lists_uses_folders(lrs2):
    for name in ("train", "val", "test", "pretrain"):
        (lrs2 / f"{name}.txt").unlink()
    items = list_clips("lrs2", lrs2, read_text=False)
    assert sorted({i.split for i in items}) == ["main", "pretrain"]
    assert len(items) == 5 and all(i.transcript is None and i.problems == [] for i in items)
    with pytest.raises(DatasetError, match="train.txt"):
        list_clips("lrs2", lrs2, split="train")


# ---------------------------------------------------------------------------- LRS3


def test_lrs3_folders_are_splits(tmp_path, mp4):
    root = tmp_path / "lrs3"
    ytid = "-aBcD_EfG12"  # YouTube ids may start with '-'
    for folder in ("pretrain", "trainval", "test"):
        place(mp4, root / folder / ytid / "00001.mp4")
        write(root / folder / ytid / "00001.txt", f"Text:  {folder.upper()} TEXT\nConf:  4\nRef:  abc\n")
    items = list_clips("lrs3", root)
    assert [i.id for i in items] == [f"pretrain/{ytid}/00001", f"test/{ytid}/00001", f"trainval/{ytid}/00001"]
    assert all(i.speaker == ytid and i.split == i.extra["folder"] for i in items)
    assert by_id(items)[f"test/{ytid}/00001"].transcript == "TEST TEXT"
    assert by_id(items)[f"test/{ytid}/00001"].extra["ref"] == "abc"
    assert [i.split for i in list_clips("lrs3", root, split="test")] == ["test"]
    # an SVTS-style list without the folder: found by looking in each folder
    listed = list_clips("lrs3", root, split_file=write(tmp_path / "unseen_test.txt", f"{ytid}/00001\n"))
    assert [(i.id, i.split) for i in listed] == [(f"trainval/{ytid}/00001", "unseen_test")]


# ---------------------------------------------------------------------------- LRW


@pytest.fixture()
def lrw(tmp_path, mp4) -> Path:
    root = tmp_path / "lipread_mp4"
    for split in ("train", "val", "test"):
        place(mp4, root / "ABOUT" / split / "ABOUT_00001.mp4")
        formats.write_lrw_txt(root / "ABOUT" / split / "ABOUT_00001.txt", "ABOUT", 0.32, conf=1)
    place(mp4, root / "ACCESS" / "train" / "ACCESS_00001.mp4")
    formats.write_lrw_txt(root / "ACCESS" / "train" / "ACCESS_00001.txt", "ABOUT", 0.5)
    place(mp4, root / "ACCESS" / "train" / "ACCESS_00002.mp4")  # no .txt
    return root


def test_lrw_layout(lrw):
    items = list_clips("lrw", lrw)
    assert [i.id for i in items] == ["ABOUT/test/ABOUT_00001", "ABOUT/train/ABOUT_00001",
                                     "ACCESS/train/ACCESS_00001", "ACCESS/train/ACCESS_00002",
                                     "ABOUT/val/ABOUT_00001"]
    clip = by_id(items)["ABOUT/train/ABOUT_00001"]
    assert clip.transcript == "ABOUT" and clip.split == "train" and clip.speaker is None
    assert clip.extra["word_duration"] == pytest.approx(0.32)
    (word,) = clip.words
    assert word.label == "ABOUT" and word.centre == pytest.approx(0.58)
    assert word.duration == pytest.approx(0.32)
    mismatch = by_id(items)["ACCESS/train/ACCESS_00001"]
    assert mismatch.transcript == "ACCESS" and mismatch.problems == ["label_mismatch"]
    no_txt = by_id(items)["ACCESS/train/ACCESS_00002"]
    assert no_txt.problems == ["transcript_missing"] and no_txt.words == []


def test_lrw_options(lrw, tmp_path):
    assert [i.id for i in list_clips("lrw", lrw, split="val")] == ["ABOUT/val/ABOUT_00001"]
    assert {i.id.split("/")[0] for i in list_clips("lrw", lrw, words=["access"])} == {"ACCESS"}
    fast = list_clips("lrw", lrw, read_text=False)
    assert all(i.words == [] and i.problems == [] and i.transcript for i in fast)
    listed = list_clips("lrw", lrw, split_file=write(tmp_path / "test.txt", "ABOUT_00001\n"))
    assert [i.id for i in listed] == ["ABOUT/test/ABOUT_00001"]
    with pytest.raises(DatasetError, match="no folder"):
        list_clips("lrw", lrw, words=["ZEBRA"])
    with pytest.raises(DatasetError, match="lipread_mp4 inside"):
        list_clips("lrw", tmp_path)


# ---------------------------------------------------------------------------- GRID


@pytest.fixture()
def grid(tmp_path, mp4) -> Path:
    root = tmp_path / "grid"
    place(mp4, root / "s1" / "video" / "bbaf2n.mp4")  # VCA-GAN processed / corpus layout
    formats.write_grid_align(at(root / "s1" / "align" / "bbaf2n.align"), GRID_WORDS)
    (root / "s1" / "audio").mkdir(parents=True)
    sf.write(root / "s1" / "audio" / "bbaf2n.flac", np.zeros(1600, np.float32), SR)
    place(mp4, root / "s2" / "video" / "mpg_6000" / "bbaf3a.mpg")  # original layout
    formats.write_grid_align(at(root / "s2" / "align" / "bbaf3a.align"), GRID_WORDS)
    place(mp4, root / "s2" / "video" / "mpg_6000" / "lgaz8p.mpg")  # no alignment
    formats.write_grid_align(at(root / "s21" / "align" / "bbaf2n.align"), GRID_WORDS)  # no video
    return root


def test_grid_scan(grid):
    items = list_clips("grid", grid)
    assert [i.id for i in items] == ["s1/bbaf2n", "s2/bbaf3a", "s2/lgaz8p"]
    assert {i.split for i in items} == {"all"}
    first = by_id(items)["s1/bbaf2n"]
    assert first.speaker == "s1" and first.transcript == "bin blue at f two now"
    assert [w.label for w in first.words] == ["bin", "blue", "at", "f", "two", "now"]
    assert first.words[0].start == pytest.approx(0.5)
    assert first.audio == grid / "s1" / "audio" / "bbaf2n.flac"
    assert by_id(items)["s2/bbaf3a"].video.suffix == ".mpg" and by_id(items)["s2/bbaf3a"].audio is None
    assert by_id(items)["s2/lgaz8p"].problems == ["transcript_missing"]
    # s21 has alignments but no video, as in the real GRID: skipped and recorded
    assert [(s.entry, s.reason) for s in items.skipped] == [("s21/bbaf2n", "video_missing")]
    with pytest.raises(DatasetError, match="video_missing"):
        list_clips("grid", grid, strict=True)
    # the listed file is a real video
    frames, _times = media.read_video(first.video)
    assert frames.shape == (N_FRAMES, SIZE, SIZE, 3)


def test_grid_vca_gan_lists(grid, tmp_path):
    # the three line forms of VCA-GAN's data/ lists, plus the avlib corpus form
    lines = "s1/video/bbaf2n.mp4\ns2/video/mpg_6000/bbaf3a\ns21/bbaf2n\n"
    items = list_clips("grid", grid, split_file=write(tmp_path / "test_4.txt", lines))
    assert [(i.id, i.split) for i in items] == [("s1/bbaf2n", "test_4"), ("s2/bbaf3a", "test_4")]
    assert reasons(items) == ["video_missing"]
    unseen = write(tmp_path / "unseen_splits.txt", "val/s1/bbaf2n\ntest/s2/bbaf3a\ntest/s2/lgaz8p\n")
    both = list_clips("grid", grid, split_file=unseen)
    assert [(i.split, i.id) for i in both] == [("test", "s2/bbaf3a"), ("test", "s2/lgaz8p"), ("val", "s1/bbaf2n")]
    assert [i.id for i in list_clips("grid", grid, split="val", split_file=unseen)] == ["s1/bbaf2n"]
    with pytest.raises(DatasetError, match="split_file="):
        list_clips("grid", grid, split="train")


def test_grid_corpus_split_folder(grid):
    write(grid / "splits" / "train.txt", "s1/bbaf2n\n")
    write(grid / "splits" / "test.txt", "s2/bbaf3a\n")
    assert [(i.split, i.id) for i in list_clips("grid", grid)] == [("test", "s2/bbaf3a"), ("train", "s1/bbaf2n")]
    write(grid.parent / "manifest.json", "{}")  # the parent is now an avlib corpus folder
    assert [i.id for i in list_clips("grid", grid.parent, split="test")] == ["s2/bbaf3a"]


def test_grid_non_utf8_alignment_is_a_problem(grid):
    write(grid / "s1" / "align" / "bbaf2n.align", b"0 100 bin\xff\n")
    item = by_id(list_clips("grid", grid))["s1/bbaf2n"]
    assert item.problems == ["transcript_unreadable"] and item.transcript is None
    assert "UTF-8" in item.extra["transcript_error"]


# ---------------------------------------------------------------------------- Acappella


def write_jpegs(folder: Path, numbers, size=(24, 32)) -> None:
    """Frame n: red = 10 * n, green = 200, blue = 30 (RGB), as JPEG."""
    folder.mkdir(parents=True, exist_ok=True)
    for n in numbers:
        rgb = np.zeros((*size, 3), np.uint8)
        rgb[...] = (10 * n, 200, 30)
        assert cv2.imwrite(str(folder / f"{n}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


@pytest.fixture()
def acappella(tmp_path) -> Path:
    root = tmp_path / "acappella"
    sample = "a_B-c1_2_05_to_2_30"  # YouTube id with '_' and '-'
    write_jpegs(root / "jpgs" / "train" / "English" / "F" / sample, range(12))
    wav = root / "splits_16k" / "train" / "audio" / "English" / "F" / f"{sample}.wav"
    wav.parent.mkdir(parents=True)
    sf.write(wav, np.zeros(1600, np.float32), SR)
    write_jpegs(root / "jpgs" / "test_unseen" / "Others" / "M" / "xyz_0_01_to_0_09", [0, 1, 3])
    (root / "jpgs" / "test_unseen" / "Others" / "M" / "empty_0_00_to_0_01").mkdir(parents=True)
    write(root / "splits_16k" / "val_seen" / "audio" / "Hindi" / "M" / "gone_0_00_to_0_05.wav", b"RIFF")
    return root


def test_acappella_layout(acappella):
    items = list_clips("acappella", acappella)
    assert [i.id for i in items] == ["test_unseen/Others/M/xyz_0_01_to_0_09", "train/English/F/a_B-c1_2_05_to_2_30"]
    train = items[1]
    assert train.extra["frames_dir"] is True and train.video.is_dir()
    assert train.speaker == "a_B-c1" and train.extra["youtube_id"] == "a_B-c1"
    assert (train.extra["start_s"], train.extra["end_s"]) == (125, 150)
    assert train.extra["language"] == "English" and train.extra["gender"] == "F"
    assert train.extra["n_frames"] == 12 and train.audio.suffix == ".wav" and train.problems == []
    assert train.transcript is None and train.words == []
    assert items[0].problems == ["frame_gaps", "audio_missing"] and items[0].audio is None
    assert sorted(reasons(items)) == ["no_frames", "video_missing"]
    assert [i.split for i in list_clips("acappella", acappella, split="train")] == ["train"]


def test_read_jpeg_folder_numeric_order_rgb(acappella):
    folder = acappella / "jpgs" / "train" / "English" / "F" / "a_B-c1_2_05_to_2_30"
    assert [n for n, _ in list_jpeg_frames(folder)] == list(range(12))  # 10 after 9, not after 1
    video = read_jpeg_folder(folder)
    assert video.shape == (12, 24, 32, 3) and video.dtype == np.uint8
    means = video.reshape(12, -1, 3).mean(axis=1)
    np.testing.assert_allclose(means[:, 0], 10 * np.arange(12), atol=4)  # red = 10 n, in order
    np.testing.assert_allclose(means[:, 1:], np.tile([200, 30], (12, 1)), atol=4)  # RGB, not BGR
    assert read_jpeg_folder(folder, max_frames=3).shape[0] == 3
    write(folder / "frame_x.jpg", b"")
    with pytest.raises(DatasetError, match="<number>.jpg"):
        read_jpeg_folder(folder)


# ---------------------------------------------------------------------------- avlib corpus


@pytest.fixture()
def corpus(tmp_path, mp4) -> Path:
    root = tmp_path / "corpus"
    words = [{"label": w.label, "start": w.start, "end": w.end} for w in GRID_WORDS]
    specs = [
        ("grid", "bbaf2n", "s1", "train", "grid/s1/video/bbaf2n.mp4", "grid/s1/truth/bbaf2n.json",
         {"text": "bin blue at f two now", "words": words}),
        ("lrw", "ABOUT_00001", "s2", "test", "lrw/ABOUT/test/ABOUT_00001.mp4",
         "lrw/ABOUT/test/ABOUT_00001.json",
         {"text": "ABOUT", "words": words[:1], "word_duration": 0.3}),
        ("sync", "s1_bbaf2n_m03", "s1", "test", "sync/test/s1_bbaf2n_m03.mp4",
         "sync/test/s1_bbaf2n_m03.json",
         {"text": "bin blue at f two now", "words": words, "shift_frames": -3,
          "av_offset_frames": -2.0, "source_id": "bbaf2n"}),
    ]
    clips = []
    for kind, cid, speaker, split, video, sidecar, truth in specs:
        place(mp4, root / video)
        write(root / sidecar, json.dumps({"id": cid, "kind": kind, "speaker": speaker,
                                          "split": split, **truth}))
        clips.append({"id": cid, "kind": kind, "speaker": speaker, "split": split, "video": video,
                      "sidecar": sidecar, "n_frames": N_FRAMES, "duration": 0.4,
                      "text": truth["text"], "shift_frames": truth.get("shift_frames", 0),
                      "bytes": (root / video).stat().st_size})
    write(root / "manifest.json", json.dumps({"format": "avlib-corpus/1", "clips": clips}))
    return root


def test_corpus_manifest(corpus):
    items = list_clips("corpus", corpus)
    assert [(i.split, i.id) for i in items] == [("test", "lrw/ABOUT/test/ABOUT_00001"),
                                                 ("test", "sync/test/s1_bbaf2n_m03"),
                                                 ("train", "grid/s1/bbaf2n")]
    grid_clip = by_id(items)["grid/s1/bbaf2n"]
    assert grid_clip.dataset == "corpus" and grid_clip.speaker == "s1"
    assert grid_clip.transcript == "bin blue at f two now" and len(grid_clip.words) == 6
    assert grid_clip.extra["kind"] == "grid" and grid_clip.extra["sidecar"].is_file()
    sync = by_id(items)["sync/test/s1_bbaf2n_m03"]
    assert sync.extra["shift_frames"] == -3 and sync.extra["source_id"] == "bbaf2n"
    assert by_id(items)["lrw/ABOUT/test/ABOUT_00001"].extra["word_duration"] == 0.3
    assert [i.id for i in list_clips("corpus", corpus, kind="sync")] == ["sync/test/s1_bbaf2n_m03"]
    assert [i.id for i in list_clips("corpus", corpus, split="train")] == ["grid/s1/bbaf2n"]
    fast = list_clips("corpus", corpus, read_text=False)  # manifest text only, no sidecar read
    assert all(i.words == [] and i.transcript and i.problems == [] for i in fast)
    with pytest.raises(DatasetError, match="unknown kind"):
        list_clips("corpus", corpus, kind="video")


def test_corpus_unsafe_and_missing_entries(corpus):
    manifest = json.loads((corpus / "manifest.json").read_text())
    manifest["clips"][0]["sidecar"] = "grid/s1/truth/absent.json"
    manifest["clips"].append(dict(manifest["clips"][1], id="evil", video="../../outside.mp4"))
    write(corpus / "manifest.json", json.dumps(manifest))
    items = list_clips("corpus", corpus)
    assert by_id(items)["grid/s1/bbaf2n"].problems == ["sidecar_missing"]
    assert len(items) == 3 and reasons(items) == ["unsafe_path"]


# ---------------------------------------------------------------------------- safety


def test_list_entries_outside_root_are_never_opened(lrs2, tmp_path, mp4, monkeypatch):
    outside = tmp_path / "outside"
    place(mp4, outside / "00001.mp4")
    formats.write_lrs_txt(outside / "00001.txt", "SECRET")
    (lrs2 / "main" / "7777777777777777777").symlink_to(outside, target_is_directory=True)
    opened = []
    real_reader = datasets.read_lrs_txt
    monkeypatch.setattr(datasets, "read_lrs_txt", lambda p: opened.append(Path(p)) or real_reader(p))
    bad = write(tmp_path / "evil.txt", "\n".join([
        "../../etc/passwd", "/etc/passwd", "main/../../outside/00001", "C:\\Windows\\x",
        "7777777777777777777/00001",  # a symlink escaping the root
        f"{LRS2_A}/99999",  # missing file
        "just-one-part",
        f"{LRS2_A}/00001", f"{LRS2_A}/00001",  # the one good entry, twice
    ]) + "\n")
    items = list_clips("lrs2", lrs2, split_file=bad)
    assert [i.id for i in items] == [f"{LRS2_A}/00001"]
    assert reasons(items) == ["unsafe_path", "unsafe_path", "unsafe_path", "unsafe_path",
                              "outside_root", "video_missing", "bad_entry", "duplicate"]
    assert all(str(p).startswith(str(lrs2)) for p in opened) and len(opened) == 1
    assert "evil.txt:1" in items.skipped[0].detail
    with pytest.raises(DatasetError, match="unsafe_path"):
        list_clips("lrs2", lrs2, split_file=bad, strict=True)


def test_scanned_symlink_escaping_root(lrw, tmp_path, mp4):
    outside = tmp_path / "elsewhere" / "ZEBRA"
    place(mp4, outside / "train" / "ZEBRA_00001.mp4")
    (lrw / "ZEBRA").symlink_to(outside, target_is_directory=True)
    items = list_clips("lrw", lrw)
    assert "ZEBRA/train/ZEBRA_00001" not in by_id(items)
    assert reasons(items) == ["outside_root"]
    linked = list_clips("lrw", lrw, allow_symlinks_outside=True)
    assert "ZEBRA/train/ZEBRA_00001" in by_id(linked)


def test_transcript_symlink_outside_root_is_not_read(lrs2, tmp_path):
    secret = write(tmp_path / "secret.txt", "Text:  SECRET\nConf:  1\n")
    txt = lrs2 / "main" / LRS2_A / "00001.txt"
    txt.unlink()
    txt.symlink_to(secret)
    item = by_id(list_clips("lrs2", lrs2, split="train"))[f"{LRS2_A}/00001"]
    assert item.transcript is None and item.problems == ["transcript_outside_root"]


# ---------------------------------------------------------------------------- errors, order


def test_wrong_root_and_bad_arguments(tmp_path, lrs2):
    with pytest.raises(DatasetError, match="main/"):
        list_clips("lrs2", tmp_path)  # the parent of mvlrs_v1
    with pytest.raises(DatasetError, match="mvlrs_v1 inside"):
        list_clips("lrs2", tmp_path)
    with pytest.raises(DatasetError, match="not a folder"):
        list_clips("grid", tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="s<N>"):
        list_clips("grid", lrs2)
    with pytest.raises(DatasetError, match="manifest.json"):
        list_clips("corpus", lrs2)
    with pytest.raises(DatasetError, match="jpgs"):
        list_clips("acappella", lrs2)
    with pytest.raises(DatasetError, match="choose one of"):
        list_clips("voxceleb", lrs2)
    with pytest.raises(DatasetError, match="unknown options"):
        list_clips("lrs2", lrs2, kind="grid")
    with pytest.raises(DatasetError, match="plain name"):
        list_clips("lrs2", lrs2, split="../train")
    with pytest.raises(DatasetError, match="does not exist"):
        list_clips("lrs2", lrs2, split_file=tmp_path / "absent.txt")
    assert issubclass(DatasetError, ValueError)


def test_empty_dataset_names_the_layout(tmp_path):
    root = tmp_path / "lrs3"
    (root / "trainval" / "abcdefghijk").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"no clips found.*\n.*trainval"):
        list_clips("lrs3", root)


def test_order_is_deterministic(tmp_path, mp4):
    root = tmp_path / "lipread_mp4"
    names = ["WORLD", "ABOUT", "MONEY"]
    for word in names:  # created out of order
        for n in (3, 1, 2):
            place(mp4, root / word / "test" / f"{word}_{n:05d}.mp4")
    first = [i.id for i in list_clips("lrw", root, read_text=False)]
    assert first == sorted(first) and len(first) == 9
    assert first == [i.id for i in list_clips("lrw", root, read_text=False)]
