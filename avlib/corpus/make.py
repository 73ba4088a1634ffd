"""Generate the embedded corpus: speakers, clips in real dataset layouts, ground truth, manifest.

Layout of a corpus folder (the same file formats as the real datasets)::

    manifest.json                       sizes, hours, speakers, words, splits, every clip
    speakers.json                       voice and face identity of every speaker
    grid/s<N>/video/<id>.mp4            GRID layout: H.264 yuv420p 25 fps + 16 kHz AAC
    grid/s<N>/align/<id>.align          GRID word alignment (units of 1/25000 s)
    grid/s<N>/truth/<id>.json           ground-truth sidecar (see below)
    grid/splits/{train,val,test,test_unseen}.txt     one ``s<N>/<id>`` per line
    lrw/<WORD>/<split>/<WORD>_<00001>.{mp4,txt,json} LRW layout (+ sidecar); split in
                                        train, val, test (seen speakers) and test_unseen
    sync/<split>/<id>_<shift>.{mp4,json} GRID test clips with audio shifted by a known number of
                                        frames (split test or test_unseen)

The sidecar of a clip holds its ground truth: phoneme and word timings (seconds), per-frame mouth
parameters, face boxes and rendered lip landmarks (pixels), the audio-visual offset, the speaker,
the render seed, and for sync clips the shift and the source clip.

Generation is deterministic (every clip's randomness derives from the corpus seed and the clip
id), parallel (one espeak-ng engine per worker process) and resumable: a clip is finished when its
sidecar exists, every file is written atomically, and a rerun skips finished clips.

One run per folder: :func:`make_corpus` holds an exclusive lock on ``<out>/.corpus.lock`` while
it runs, and a second run into the same folder stops at once with :class:`avlib.artifacts.Busy`
(exit code 7) instead of deleting the first run's temporaries. The stale-temporary sweep removes
only temporaries whose owner is dead (or, from another machine, older than an hour).
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avlib.artifacts import (atomic_write_json, find_current, folder_lock, is_stale_temp, record_current,
                             temp_owner)
from avlib.audio import FPS, SAMPLES_PER_FRAME, SR
from avlib.corpus import text as text_mod
from avlib.corpus.mouth import MOUTH_PARAMS

GRID_FRAMES = 75  # GRID sentences are 3 s at 25 fps
LRW_FRAMES = 29  # LRW clips are 1.16 s, centred on the word
SPLITS = ("train", "val", "test", "test_unseen")
MANIFEST = "manifest.json"


@dataclass
class CorpusConfig:
    """Everything that determines a corpus. Profiles set these (``chapters.00_corpus``)."""

    seed: int = 0
    n_seen_speakers: int = 14  # speakers of train/val/test
    n_unseen_speakers: int = 3  # speakers only in test_unseen
    grid_per_speaker: int = 18  # GRID sentences per seen speaker (80/10/10 train/val/test)
    grid_per_unseen_speaker: int = 10
    lrw_words: int = 50  # words of the LRW-like vocabulary (homophene groups always included)
    lrw_train_per_word: int = 4
    lrw_val_per_word: int = 1
    lrw_test_per_word: int = 1
    lrw_unseen_per_word: int = 1
    sync_per_split: int = 20  # shifted clips made from GRID test and from test_unseen clips
    max_shift: int = 15  # sync shifts are drawn from -max_shift..max_shift frames
    size: int = 160  # frame size in pixels (square)
    lead_frames: float = 1.0  # natural visual lead of the mouth over the audio
    crf: int = 18

    def key_fields(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "CorpusConfig":
        from avlib.artifacts import settings_from_dict

        return settings_from_dict(cls, values, "corpus settings")


# --------------------------------------------------------------------------------------------
# Speakers and jobs
# --------------------------------------------------------------------------------------------
def _seed_for(*parts) -> int:
    """A stable 32-bit seed from any parts (clip ids, corpus seed), independent of scheduling."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little")


VARIANTS_M = ("m1", "m2", "m3", "m4", "m5", "m6", "m7")
VARIANTS_F = ("f1", "f2", "f3", "f4", "f5")


def make_speakers(cfg: CorpusConfig) -> list[dict]:
    """Speakers ``s1..sN``: seen ones first. Each has an espeak-ng voice and a face identity."""
    from avlib.corpus.render import FaceIdentity

    speakers = []
    for i in range(cfg.n_seen_speakers + cfg.n_unseen_speakers):
        sid = f"s{i + 1}"
        rng = np.random.default_rng(_seed_for(cfg.seed, "speaker", sid))
        female = bool(rng.random() < 0.5)
        voice = {
            "language": "en-us" if rng.random() < 0.7 else "en",
            "variant": str(rng.choice(VARIANTS_F if female else VARIANTS_M)),
            "pitch": int(rng.integers(30, 71)),
            "pitch_range": int(rng.integers(30, 81)),
            "rate": int(rng.integers(140, 191)),
        }
        identity = FaceIdentity.sample(rng)
        speakers.append({"id": sid, "seen": i < cfg.n_seen_speakers, "voice": voice,
                         "identity": identity.to_dict()})
    return speakers


def _split_counts(n: int) -> dict[str, int]:
    """Train/val/test counts for n sentences of a seen speaker (about 80/10/10, val and test >= 1)."""
    if n < 3:
        return {"train": n, "val": 0, "test": 0}
    val = max(1, round(0.1 * n))
    test = max(1, round(0.1 * n))
    return {"train": n - val - test, "val": val, "test": test}


def plan_jobs(cfg: CorpusConfig, speakers: list[dict]) -> list[dict]:
    """Every clip to make, as small JSON-able job dicts (deterministic for a config)."""
    jobs = []
    seen = [s for s in speakers if s["seen"]]
    unseen = [s for s in speakers if not s["seen"]]
    for spk in speakers:
        rng = np.random.default_rng(_seed_for(cfg.seed, "grid", spk["id"]))
        n = cfg.grid_per_speaker if spk["seen"] else cfg.grid_per_unseen_speaker
        ids = set()
        while len(ids) < n:
            ids.add(text_mod.grid_sentence(rng).id)
        ids = sorted(ids)
        rng.shuffle(ids)
        if spk["seen"]:
            counts = _split_counts(n)
            splits = ["train"] * counts["train"] + ["val"] * counts["val"] + ["test"] * counts["test"]
        else:
            splits = ["test_unseen"] * n
        for sid, split in zip(ids, splits):
            jobs.append({"kind": "grid", "id": sid, "speaker": spk["id"], "split": split,
                         "rel": f"grid/{spk['id']}/video/{sid}.mp4"})

    words = _choose_words(cfg.lrw_words)
    per_split = {"train": cfg.lrw_train_per_word, "val": cfg.lrw_val_per_word,
                 "test": cfg.lrw_test_per_word, "test_unseen": cfg.lrw_unseen_per_word}
    for word in words:
        rng = np.random.default_rng(_seed_for(cfg.seed, "lrw", word))
        n = 0
        for split, count in per_split.items():
            pool = unseen if split == "test_unseen" else seen
            if not pool:
                continue
            for _ in range(count):
                n += 1
                spk = pool[int(rng.integers(len(pool)))]
                cid = f"{word}_{n:05d}"
                jobs.append({"kind": "lrw", "id": cid, "word": word, "speaker": spk["id"],
                             "split": split, "rel": f"lrw/{word}/{split}/{cid}.mp4"})

    for split in ("test", "test_unseen"):
        sources = [j for j in jobs if j["kind"] == "grid" and j["split"] == split]
        rng = np.random.default_rng(_seed_for(cfg.seed, "sync", split))
        for k in range(min(cfg.sync_per_split, len(sources)) if sources else 0):
            src = sources[k % len(sources)]
            shift = int(rng.integers(-cfg.max_shift, cfg.max_shift + 1))
            cid = f"{src['speaker']}_{src['id']}_{'p' if shift >= 0 else 'm'}{abs(shift):02d}"
            jobs.append({"kind": "sync", "id": cid, "speaker": src["speaker"], "split": split,
                         "source": src["rel"], "shift": shift, "rel": f"sync/{split}/{cid}.mp4"})
    return jobs


def _choose_words(n: int) -> list[str]:
    """``n`` words of the vocabulary: all homophene groups first, then the rest alphabetically."""
    homophenes = [w for g in text_mod.HOMOPHENE_GROUPS for w in g]
    rest = [w for w in text_mod.LRW_WORDS if w not in homophenes]
    words = homophenes + rest
    if n > len(words):
        raise ValueError(f"lrw_words={n} but the vocabulary has {len(words)} words")
    return sorted(words[:max(n, 0)])


# --------------------------------------------------------------------------------------------
# Making one clip (runs in a worker process)
# --------------------------------------------------------------------------------------------
def _sidecar_path(root: Path, rel: str) -> Path:
    rel_path = Path(rel)
    if rel.startswith("grid/"):
        spk = rel_path.parts[1]
        return root / "grid" / spk / "truth" / (rel_path.stem + ".json")
    return root / rel_path.with_suffix(".json")


def _segments(segs, offset: float = 0.0, lo: float = -math.inf, hi: float = math.inf) -> list[dict]:
    """Segments shifted by ``offset`` seconds and clipped to [lo, hi] (dropping empty ones)."""
    out = []
    for s in segs:
        start, end = max(s.start + offset, lo), min(s.end + offset, hi)
        if end > start:
            out.append({"label": s.label, "start": round(start, 5), "end": round(end, 5)})
    return out


def _as_segments(dicts):
    from avlib.corpus.speech import Segment

    return [Segment(d["label"], d["start"], d["end"]) for d in dicts]


def _render_and_write(job: dict, root: Path, cfg: CorpusConfig, speaker: dict, wav: np.ndarray,
                      phonemes: list[dict], words: list[dict], n_frames: int, extra: dict) -> dict:
    from avlib import media
    from avlib.corpus.articulation import mouth_trajectory
    from avlib.corpus.render import FaceIdentity, render_clip

    seed = _seed_for(cfg.seed, "render", job["rel"])
    mouth = mouth_trajectory(_as_segments(phonemes), n_frames, fps=FPS, lead_frames=cfg.lead_frames)
    clip = render_clip(FaceIdentity.from_dict(speaker["identity"]), mouth, seed=seed, size=cfg.size)
    video = root / job["rel"]
    video.parent.mkdir(parents=True, exist_ok=True)
    media.write_video(video, clip.frames, fps=FPS, audio=wav, sr=SR, crf=cfg.crf)
    truth = {
        "id": job["id"], "kind": job["kind"], "speaker": job["speaker"], "split": job["split"],
        "video": job["rel"], "fps": FPS, "sr": SR, "n_frames": n_frames, "n_samples": int(len(wav)),
        "size": cfg.size, "phonemes": phonemes, "words": words,
        "visual_lead_frames": cfg.lead_frames, "av_offset_frames": cfg.lead_frames,
        "shift_frames": 0, "render_seed": seed,
        "mouth_params": list(MOUTH_PARAMS),
        "mouth": np.round(mouth, 4).tolist(),
        "face_boxes": np.round(clip.face_boxes, 2).tolist(),
        "lip_landmarks": np.round(clip.lip_landmarks, 2).tolist(),
        "life": clip.life.to_dict(),
        **extra,
    }
    return truth


def make_clip(job: dict, root: str | os.PathLike, cfg: CorpusConfig, speakers: dict) -> dict:
    """Make one clip (video, dataset text file, sidecar); returns its manifest entry."""
    from avlib.data import formats
    from avlib.corpus.speech import Voice, synthesize

    root = Path(root)
    sidecar = _sidecar_path(root, job["rel"])
    if sidecar.is_file():
        return _entry(json.loads(sidecar.read_text()), job, root)
    speaker = speakers[job["speaker"]]
    rng = np.random.default_rng(_seed_for(cfg.seed, "clip", job["rel"]))

    if job["kind"] == "sync":
        return _make_sync_clip(job, root, cfg, sidecar)

    voice = Voice(**speaker["voice"])
    if job["kind"] == "grid":
        words = text_mod.grid_words_from_id(job["id"])
        utt = synthesize(text_mod.grid_spoken_text(words), voice)
        lead_in = float(rng.uniform(0.25, 0.5))
        n_frames = max(GRID_FRAMES, math.ceil((lead_in + utt.duration + 0.1) * FPS))
        n_samples = n_frames * SAMPLES_PER_FRAME
        start = int(round(lead_in * SR))
        wav = np.zeros(n_samples, np.float32)
        wav[start:start + len(utt.wav)] = utt.wav[: n_samples - start]
        offset = start / SR
        phonemes = _segments(utt.phonemes, offset, 0.0, n_samples / SR)
        word_segs = [dict(d, label=w) for d, w in
                     zip(_segments(utt.words, offset, 0.0, n_samples / SR), words)]
        truth = _render_and_write(job, root, cfg, speaker, wav, phonemes, word_segs, n_frames,
                                  {"text": " ".join(words)})
        align = root / "grid" / job["speaker"] / "align" / f"{job['id']}.align"
        align.parent.mkdir(parents=True, exist_ok=True)
        formats.write_grid_align(align, _as_segments(word_segs), duration_s=n_frames / FPS)
    else:  # lrw
        prompt, index = text_mod.lrw_prompt(job["word"], rng)
        utt = synthesize(prompt, voice)
        target = utt.words[index]
        # The clip is 29 frames centred on the word, as in LRW; context speech fills the rest.
        n_samples = LRW_FRAMES * SAMPLES_PER_FRAME
        start = int(round(target.centre * SR)) - n_samples // 2
        padded = np.zeros(n_samples, np.float32)
        lo, hi = max(start, 0), min(start + n_samples, len(utt.wav))
        padded[lo - start:hi - start] = utt.wav[lo:hi]
        offset = -start / SR
        phonemes = _segments(utt.phonemes, offset, 0.0, n_samples / SR)
        word_segs = _segments(utt.words, offset, 0.0, n_samples / SR)
        duration = round(target.end - target.start, 3)
        truth = _render_and_write(job, root, cfg, speaker, padded, phonemes, word_segs,
                                  LRW_FRAMES, {"text": job["word"], "prompt": prompt,
                                               "target_index": index,
                                               "word_duration": duration})
        formats.write_lrw_txt((root / job["rel"]).with_suffix(".txt"), job["word"], duration)
    atomic_write_json(sidecar, truth)
    return _entry(truth, job, root)


def _make_sync_clip(job: dict, root: Path, cfg: CorpusConfig, sidecar: Path) -> dict:
    from avlib import media

    src_truth = json.loads(_sidecar_path(root, job["source"]).read_text())
    dst = root / job["rel"]
    dst.parent.mkdir(parents=True, exist_ok=True)
    media.remux_with_shifted_audio(root / job["source"], dst, job["shift"], fps=FPS)
    truth = {k: v for k, v in src_truth.items() if k not in ("mouth", "lip_landmarks", "face_boxes")}
    truth.update({
        "id": job["id"], "kind": "sync", "split": job["split"], "video": job["rel"],
        "source": job["source"], "source_id": src_truth["id"], "shift_frames": job["shift"],
        # positive shift: the audio comes later than the picture, on top of the natural lead
        "av_offset_frames": src_truth["visual_lead_frames"] + job["shift"],
    })
    atomic_write_json(sidecar, truth)
    return _entry(truth, job, root)


def _entry(truth: dict, job: dict, root: Path) -> dict:
    sidecar = _sidecar_path(root, job["rel"])
    return {"id": truth["id"], "kind": truth["kind"], "speaker": truth["speaker"],
            "split": truth["split"], "video": job["rel"],
            "sidecar": sidecar.relative_to(root).as_posix(), "n_frames": truth["n_frames"],
            "duration": round(truth["n_frames"] / FPS, 3), "text": truth.get("text"),
            "shift_frames": truth.get("shift_frames", 0),
            "bytes": (root / job["rel"]).stat().st_size}


# --------------------------------------------------------------------------------------------
# The whole corpus
# --------------------------------------------------------------------------------------------
_WORKER: dict = {}


def _init_worker(root: str, cfg_dict: dict, speakers: dict) -> None:
    import cv2

    cv2.setNumThreads(1)
    _WORKER.update(root=root, cfg=CorpusConfig(**cfg_dict), speakers=speakers)


def _run_job(job: dict) -> dict:
    return make_clip(job, _WORKER["root"], _WORKER["cfg"], _WORKER["speakers"])


LOCK = ".corpus.lock"


def _remove_stale_temporaries(root: Path) -> int:
    """Delete temporary files a killed run left behind (hidden ``.*.tmp*`` names).

    Runs under the folder's lock, so no other corpus run on this machine is writing here. An
    owner-tagged temporary (:func:`avlib.artifacts.temp_path`) is removed only when its owner is
    dead, or, from another machine (a shared folder whose lock may not reach across machines),
    older than an hour; untagged ones (older versions, foreign tools) are removed."""
    n = 0
    for path in root.rglob(".*.tmp*"):
        if not path.is_file() or (temp_owner(path) is not None and not is_stale_temp(path)):
            continue
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        n += 1
    return n


def make_corpus(cfg: CorpusConfig, out: str | os.PathLike, workers: int | None = None,
                progress: bool = True) -> dict:
    """Generate (or finish) the corpus of ``cfg`` in folder ``out``; returns the manifest.

    Raises :class:`avlib.artifacts.Busy` when another process is making a corpus in ``out``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with folder_lock(out / LOCK, blocking=False, what=f"the corpus folder {out} (another `avlib corpus "
                     "make` or chapter 00_corpus is writing it)"):
        return _make_corpus_locked(cfg, out, workers, progress)


def _make_corpus_locked(cfg: CorpusConfig, out: Path, workers: int | None, progress: bool) -> dict:
    from avlib.progress import progress_bar

    config_path = out / "corpus_config.json"
    if config_path.is_file():
        previous = json.loads(config_path.read_text())
        if previous != cfg.key_fields():
            raise ValueError(f"{out} holds a corpus made with other settings ({config_path}); "
                             "choose another folder or delete it")
    else:
        atomic_write_json(config_path, cfg.key_fields())
    stale = _remove_stale_temporaries(out)
    speakers = make_speakers(cfg)
    atomic_write_json(out / "speakers.json", speakers)
    by_id = {s["id"]: s for s in speakers}
    jobs = plan_jobs(cfg, speakers)
    workers = max(1, workers or os.cpu_count() or 1)
    t0 = time.perf_counter()
    entries: dict[str, dict] = {}
    todo = [j for j in jobs if not _sidecar_path(out, j["rel"]).is_file()]
    done_before = len(jobs) - len(todo)
    # Sync clips are remuxed from finished GRID test clips: make them in a second phase.
    phases = [[j for j in todo if j["kind"] != "sync"], [j for j in todo if j["kind"] == "sync"]]
    bar = progress_bar(len(jobs), "corpus clips", "clip", initial=done_before, disable=not progress)
    if workers == 1:
        _init_worker(str(out), cfg.key_fields(), by_id)
        for phase in phases:
            for job in phase:
                entries[job["rel"]] = _run_job(job)
                bar.update()
    else:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        with ctx.Pool(workers, initializer=_init_worker,
                      initargs=(str(out), cfg.key_fields(), by_id)) as pool:
            for phase in phases:
                for entry in pool.imap_unordered(_run_job, phase, chunksize=2):
                    entries[entry["video"]] = entry
                    bar.update()
    bar.close()
    for job in jobs:  # clips finished by an earlier run
        if job["rel"] not in entries:
            entries[job["rel"]] = make_clip(job, out, cfg, by_id)
    seconds = time.perf_counter() - t0
    manifest = build_manifest(cfg, speakers, [entries[j["rel"]] for j in jobs])
    manifest["generation"] = {"seconds": round(seconds, 2), "workers": workers,
                              "clips_made": len(todo), "clips_reused": done_before,
                              "stale_temporaries_removed": stale}
    _write_split_lists(out, manifest["clips"])
    atomic_write_json(out / MANIFEST, manifest)
    return manifest


def build_manifest(cfg: CorpusConfig, speakers: list[dict], entries: list[dict]) -> dict:
    """Sizes, hours, speakers, words and splits of a corpus, plus the list of its clips."""
    summary: dict = {}
    for e in entries:
        s = summary.setdefault(e["kind"], {}).setdefault(e["split"], {"clips": 0, "frames": 0,
                                                                       "seconds": 0.0, "bytes": 0})
        s["clips"] += 1
        s["frames"] += e["n_frames"]
        s["seconds"] = round(s["seconds"] + e["duration"], 3)
        s["bytes"] += e["bytes"]
    total_seconds = sum(e["duration"] for e in entries)
    return {
        "format": "avlib-corpus/1",
        "config": cfg.key_fields(),
        "fps": FPS, "sr": SR, "frame_size": cfg.size,
        "n_clips": len(entries),
        "n_frames": int(sum(e["n_frames"] for e in entries)),
        "hours": round(total_seconds / 3600, 4),
        "bytes": int(sum(e["bytes"] for e in entries)),
        "summary": summary,
        "speakers": [{"id": s["id"], "seen": s["seen"], "voice": s["voice"],
                      "clips": sum(e["speaker"] == s["id"] for e in entries)} for s in speakers],
        "words": _choose_words(cfg.lrw_words),
        "homophene_groups": [list(g) for g in text_mod.HOMOPHENE_GROUPS],
        "clips": entries,
    }


def _write_split_lists(out: Path, entries: list[dict]) -> None:
    from avlib.artifacts import atomic_write_text

    for split in SPLITS:
        lines = [f"{e['speaker']}/{e['id']}" for e in entries if e["kind"] == "grid" and e["split"] == split]
        atomic_write_text(out / "grid" / "splits" / f"{split}.txt", "\n".join(lines) + ("\n" if lines else ""))


def load_manifest(root: str | os.PathLike) -> dict:
    """Read a finished corpus's manifest; a clear error when the folder is not a finished corpus."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{root} is not a finished avlib corpus (no {MANIFEST}); make one "
                                "with `avlib corpus make --out DIR` or chapter 00_corpus")
    return json.loads(path.read_text())


def read_truth(root: str | os.PathLike, entry: dict) -> dict:
    """The ground-truth sidecar of a manifest entry."""
    return json.loads((Path(root) / entry["sidecar"]).read_text())


# --------------------------------------------------------------------------------------------
# Command line: avlib corpus make
# --------------------------------------------------------------------------------------------
def profile_config(profile: str) -> CorpusConfig:
    """The corpus settings of a profile (``profiles/<profile>.yml``, chapter ``00_corpus``)."""
    from avlib.profiles import load_profile

    prof = load_profile(profile)
    section = dict(prof["chapters"].get("00_corpus", {}) or {})
    names = {f.name for f in dataclasses.fields(CorpusConfig)}
    values = {k: v for k, v in {**prof["shared"], **section}.items() if k in names}
    return CorpusConfig(**values)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="corpus_command", required=True)
    m = sub.add_parser("make", help="generate a corpus folder (resumable)")
    m.add_argument("--out", required=True, help="folder to write (created; reruns resume)")
    m.add_argument("--profile", default="cpu", help="take default sizes from this profile")
    m.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    m.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                   help="override a setting, e.g. --set n_seen_speakers=4 (repeatable)")
    m.add_argument("--no-progress", action="store_true")


def main_from_args(args: argparse.Namespace) -> int:
    """Run ``avlib corpus make``; errors are raised and turned into one line and an exit code by
    :func:`avlib.cli.run_command` (2 bad settings, 4 cannot write, 7 folder busy ...)."""
    from avlib.profiles import parse_overrides

    cfg = profile_config(args.profile)
    cfg = CorpusConfig.from_dict({**cfg.key_fields(), **parse_overrides(args.set)})
    if args.workers is not None and int(args.workers) < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    manifest = make_corpus(cfg, args.out, args.workers, progress=not args.no_progress)
    gen = manifest["generation"]
    rate = gen["clips_made"] / gen["seconds"] if gen["seconds"] else float("nan")
    print(f"corpus at {args.out}: {manifest['n_clips']} clips, {manifest['n_frames']} frames, "
          f"{manifest['hours'] * 60:.1f} min of speech, {manifest['bytes'] / 2**20:.1f} MiB; "
          f"made {gen['clips_made']} in {gen['seconds']:.1f} s ({rate:.2f} clips/s) "
          f"with {gen['workers']} workers, reused {gen['clips_reused']}")
    return 0


# --------------------------------------------------------------------------------------------
# The corpus as a book artifact
# --------------------------------------------------------------------------------------------
#: The code that determines a corpus: editing it makes chapter 00 generate a new one.
CORPUS_CODE = ("avlib.corpus", "avlib.media", "avlib.data.formats")


def corpus_artifact(cfg: CorpusConfig, artifacts_root: str | os.PathLike, policy: str = "auto",
                    workers: int | None = None, progress: bool = True, *, name: str = "corpus",
                    producer: str = "00_corpus") -> Path:
    """The corpus of ``cfg`` under ``<artifacts_root>/<name>/<key>/``, made when needed.

    Resumable: an interrupted generation continues in ``<key>.partial``. The folder of the last
    corpus made or loaded is recorded in ``<artifacts_root>/<name>/current.json`` so that later
    chapters find it with :func:`find_corpus`. Chapter 00 makes ``"corpus"``; a chapter that
    needs more clips of one kind makes its own product under another ``name`` (chapter 06's
    ``"words_corpus"``: LRW-layout clips only), which leaves chapter 00's pointer alone.
    """
    from avlib.artifacts import produce_or_load

    def produce(folder: Path) -> dict:
        manifest = make_corpus(cfg, folder, workers=workers, progress=progress)
        return manifest["generation"]

    folder = produce_or_load(name, cfg.key_fields(), produce, policy, artifacts_root,
                             producer=producer, resumable=True, code=CORPUS_CODE)
    record_current(artifacts_root, name, folder)
    return folder


def words_config(cfg: CorpusConfig, **changes) -> CorpusConfig:
    """The LRW-only corpus of ``cfg``'s speakers: no GRID or sync clips, word counts from
    ``changes`` (``lrw_words``, ``lrw_train_per_word`` ...). Same seed, so the same people."""
    return CorpusConfig.from_dict({**cfg.key_fields(), "grid_per_speaker": 0, "grid_per_unseen_speaker": 0,
                                   "sync_per_split": 0, **changes})


def find_corpus(artifacts_root: str | os.PathLike | None = None,
                data_root: str | os.PathLike | None = None) -> Path:
    """The corpus a chapter should use: ``data_root`` when given, else the one chapter 00 made."""
    if data_root:
        load_manifest(data_root)
        return Path(data_root)
    try:
        path = find_current(Path(artifacts_root), "corpus", producer="00_corpus")
    except FileNotFoundError as err:
        raise FileNotFoundError(f"no corpus under {artifacts_root} ({err}); or pass data_root") from None
    load_manifest(path)
    return path
