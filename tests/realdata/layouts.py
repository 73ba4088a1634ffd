"""Small dataset trees in the real layouts, made of clips rendered by the corpus renderer.

:func:`render_pool` renders a few GRID-style sentences (75 frames, three speakers) and LRW-style
word clips (29 frames, words of the real LRW vocabulary) with
:func:`avlib.corpus.make.make_clip`; the ``make_*`` functions copy them into the layouts that
:mod:`avlib.data.datasets` documents, with the datasets' own text files (written by
:mod:`avlib.data.formats`) and none of the corpus's ground-truth sidecars, so that a chapter
reading these trees can only use what a real dataset offers.

Every tree holds the same six sentences: speakers ``s1`` (3) and ``s2`` (2) in the training,
validation and seen-test splits, ``s3`` (1) only in a test split (LRS2's test programmes and
LRS3's test videos are unseen in training too; LRS2's is cut short, as real clips vary in
length). Each ``make_*`` returns the folder to pass as ``data_root`` and a ``{split: [clip
id, ...]}`` of what :func:`avlib.data.datasets.list_clips` should list.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import cv2
import numpy as np

from avlib import media
from avlib.corpus.make import CorpusConfig, make_clip, make_speakers
from avlib.corpus.speech import Segment
from avlib.data import formats
from test_datasets import place

#: The six sentences of every tree: (speaker, GRID id, role), role one of train, val, test, unseen.
SENTENCES = (("s1", "bbaf2n", "train"), ("s1", "lgaz8p", "train"), ("s1", "pric5s", "val"),
             ("s2", "swwv9a", "train"), ("s2", "bwbg1n", "test"), ("s3", "sgip4s", "unseen"))
#: LRW words (all in the real LRW vocabulary and in the corpus's) and clips per split.
LRW_WORDS = ("ABOUT", "PEOPLE", "WORLD")
LRW_PER_SPLIT = {"train": 2, "val": 1, "test": 1}
#: LRS2 programme ids and LRS3 / Acappella YouTube ids of the three speakers.
PROGRAMMES = {"s1": "6330311066473698535", "s2": "6331559613336179781",
              "s3": "6334227282735498539"}
YOUTUBE = {"s1": "0Fi83BHQsMA", "s2": "-aBcD_EfG12", "s3": "zz_9Kq1LmNo"}


def render_pool(out: Path) -> Path:
    """Render the sentences and word clips into a corpus-layout folder ``out`` (once)."""
    cfg = CorpusConfig(n_seen_speakers=2, n_unseen_speakers=1)
    speakers = {s["id"]: s for s in make_speakers(cfg)}
    jobs = [{"kind": "grid", "id": sid, "speaker": spk, "split": "train",
             "rel": f"grid/{spk}/video/{sid}.mp4"} for spk, sid, _ in SENTENCES]
    n = 0
    for word in LRW_WORDS:
        for split, count in LRW_PER_SPLIT.items():
            for _ in range(count):
                n += 1
                cid = f"{word}_{n:05d}"
                jobs.append({"kind": "lrw", "id": cid, "word": word, "split": split,
                             "speaker": ("s1", "s2")[n % 2],
                             "rel": f"lrw/{word}/{split}/{cid}.mp4"})
    for job in jobs:
        make_clip(job, out, cfg, speakers)
    return out


def _truth(pool: Path, spk: str, sid: str) -> dict:
    return json.loads((pool / "grid" / spk / "truth" / f"{sid}.json").read_text())


def _words(truth: dict, upper: bool = False) -> list[Segment]:
    return [Segment(w["label"].upper() if upper else w["label"], w["start"], w["end"])
            for w in truth["words"]]


def _video(pool: Path, spk: str, sid: str) -> Path:
    return pool / "grid" / spk / "video" / f"{sid}.mp4"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _trimmed(src: Path, dst: Path, n_frames: int) -> Path:
    """The first ``n_frames`` of ``src`` (and their audio), re-encoded into ``dst``."""
    frames, _ = media.read_video(src)
    wav = media.read_audio(src)[: n_frames * 640]
    dst.parent.mkdir(parents=True, exist_ok=True)
    return media.write_video(dst, frames[:n_frames], audio=wav)


#: LRS2 clips vary in length: its unseen-speaker test clip is cut to this many frames.
LRS2_SHORT = 45


def make_lrs2(pool: Path, out: Path) -> tuple[Path, dict]:
    """``mvlrs_v1/main/<programme>/<clip>.{mp4,txt}`` with the official train/val/test lists."""
    root = out / "mvlrs_v1"
    lists: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    counts: dict[str, int] = {}
    for spk, sid, role in SENTENCES:
        pid = PROGRAMMES[spk]
        counts[pid] = counts.get(pid, 0) + 1
        clip = f"{pid}/{counts[pid]:05d}"
        truth = _truth(pool, spk, sid)
        if role == "unseen":
            _trimmed(_video(pool, spk, sid), root / "main" / f"{clip}.mp4", LRS2_SHORT)
            truth["words"] = [w for w in truth["words"] if w["end"] <= LRS2_SHORT / 25]
        else:
            place(_video(pool, spk, sid), root / "main" / f"{clip}.mp4")
        text = " ".join(w.label for w in _words(truth, upper=True))
        formats.write_lrs_txt(root / "main" / f"{clip}.txt", text, conf=4)
        lists["test" if role == "unseen" else role].append(clip)
    for split, clips in lists.items():
        # test.txt lines carry tags after the clip, as in the official list
        tag = " NF" if split == "test" else ""
        _write(root / f"{split}.txt", "".join(f"{c}{tag}\n" for c in clips))
    return root, lists


def make_lrs3(pool: Path, out: Path) -> tuple[Path, dict]:
    """``{trainval,test}/<YouTube id>/<clip>.{mp4,txt}``, the .txt with LRS3's word table."""
    root = out / "lrs3"
    ids: dict[str, list[str]] = {"trainval": [], "test": []}
    counts: dict[str, int] = {}
    for spk, sid, role in SENTENCES:
        folder = "trainval" if role in ("train", "val") else "test"
        ytid = YOUTUBE[spk]
        counts[(folder, ytid)] = n = counts.get((folder, ytid), 0) + 1
        base = root / folder / ytid / f"{n:05d}"
        place(_video(pool, spk, sid), base.with_suffix(".mp4"))
        words = _words(_truth(pool, spk, sid), upper=True)
        formats.write_lrs_txt(base.with_suffix(".txt"), " ".join(w.label for w in words),
                              conf=4, words=words)
        ids[folder].append(f"{folder}/{ytid}/{n:05d}")
    return root, ids


ACAPPELLA_SPLITS = {"train": "train", "val": "val_seen", "test": "test_seen",
                    "unseen": "test_unseen"}


def make_acappella(pool: Path, out: Path) -> tuple[Path, dict]:
    """``jpgs/<split>/<lang>/<gender>/<sample>/<n>.jpg`` and the 16-kHz wav of each sample."""
    root = out / "acappella"
    ids: dict[str, list[str]] = {}
    for k, (spk, sid, role) in enumerate(SENTENCES):
        split = ACAPPELLA_SPLITS[role]
        lang, gender = ("English", "F") if spk != "s2" else ("Hindi", "M")
        sample = f"{YOUTUBE[spk]}_0_{10 * k:02d}_to_0_{10 * k + 3:02d}"
        frames_dir = root / "jpgs" / split / lang / gender / sample
        frames_dir.mkdir(parents=True)
        frames, _ = media.read_video(_video(pool, spk, sid))
        for i, rgb in enumerate(frames):
            assert cv2.imwrite(str(frames_dir / f"{i}.jpg"),
                               cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        wav = root / "splits_16k" / split / "audio" / lang / gender / f"{sample}.wav"
        wav.parent.mkdir(parents=True, exist_ok=True)
        media.write_wav(wav, media.read_audio(_video(pool, spk, sid)), 16000)
        ids.setdefault(split, []).append(f"{split}/{lang}/{gender}/{sample}")
    return root, ids


GRID_SPLITS = {"train": "train", "val": "val", "test": "test", "unseen": "test_unseen"}


def make_grid(pool: Path, out: Path) -> tuple[Path, dict]:
    """``s<N>/align/<id>.align`` with both video layouts: ``s1``, ``s3`` VCA-GAN's processed
    ``video/<id>.mp4`` with 16-kHz audio in ``audio/<id>.wav``; ``s2`` the original
    ``video/mpg_6000/<id>.mpg`` (MPEG-1 with 44.1-kHz MP2 audio). GRID has no official split:
    ``splits/<split>.txt`` lists (VCA-GAN-style, one ``s<N>/<id>`` a line) name them."""
    root = out / "grid"
    ids: dict[str, list[str]] = {}
    for spk, sid, role in SENTENCES:
        src = _video(pool, spk, sid)
        if spk == "s2":
            mpg = root / spk / "video" / "mpg_6000" / f"{sid}.mpg"
            mpg.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([media.ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
                            "-i", str(src), "-c:v", "mpeg1video", "-q:v", "3",
                            "-c:a", "mp2", "-ar", "44100", str(mpg)], check=True)
        else:
            place(src, root / spk / "video" / f"{sid}.mp4")
            wav = root / spk / "audio" / f"{sid}.wav"
            wav.parent.mkdir(parents=True, exist_ok=True)
            media.write_wav(wav, media.read_audio(src), 16000)
        truth = _truth(pool, spk, sid)
        align = root / spk / "align" / f"{sid}.align"
        align.parent.mkdir(parents=True, exist_ok=True)
        formats.write_grid_align(align, _words(truth), duration_s=truth["n_frames"] / 25)
        ids.setdefault(GRID_SPLITS[role], []).append(f"{spk}/{sid}")
    for split, clips in ids.items():
        _write(root / "splits" / f"{split}.txt", "".join(f"{c}\n" for c in clips))
    return root, ids


def make_lrw(pool: Path, out: Path) -> tuple[Path, dict]:
    """``lipread_mp4/<WORD>/<split>/<WORD>_<n>.{mp4,txt}`` (LRW has no unseen-speaker split)."""
    root = out / "lipread_mp4"
    ids: dict[str, list[str]] = {}
    for mp4 in sorted((pool / "lrw").glob("*/*/*.mp4")):
        word, split = mp4.parent.parent.name, mp4.parent.name
        dst = root / word / split / mp4.name
        place(mp4, dst)
        place(mp4.with_suffix(".txt"), dst.with_suffix(".txt"))  # Text, Duration (LRW's)
        ids.setdefault(split, []).append(f"{word}/{split}/{mp4.stem}")
    return root, ids


LAYOUTS = {"lrs2": make_lrs2, "lrs3": make_lrs3, "acappella": make_acappella,
           "grid": make_grid, "lrw": make_lrw}
