"""Benchmark: corpus generation speed (clips/s, frames/s) and where one clip's time goes.

    .venv/bin/python benchmarks/bench_corpus.py [--profile cpu] [--workers 2] [--keep DIR]

Generates the profile's corpus into a temporary folder (or --keep DIR), then times the stages of
one GRID clip on one core: speech synthesis, articulation, rendering, H.264/AAC encoding.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from avlib import envinfo, media
from avlib.corpus import articulation, make, render, speech, text


def stage_timings(cfg: make.CorpusConfig, repeats: int = 5) -> dict:
    rng = np.random.default_rng(0)
    spk = make.make_speakers(cfg)[0]
    voice = speech.Voice(**spk["voice"])
    identity = render.FaceIdentity.from_dict(spk["identity"])
    t = {"speech": 0.0, "articulation": 0.0, "render": 0.0, "encode": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            s = text.grid_sentence(rng)
            t0 = time.perf_counter()
            utt = speech.synthesize(text.grid_spoken_text(s.words), voice)
            t1 = time.perf_counter()
            mouth = articulation.mouth_trajectory(utt.phonemes, make.GRID_FRAMES, lead_frames=1.0)
            t2 = time.perf_counter()
            clip = render.render_clip(identity, mouth, seed=i, size=cfg.size)
            t3 = time.perf_counter()
            wav = np.zeros(make.GRID_FRAMES * 640, np.float32)
            wav[: len(utt.wav)] = utt.wav[: len(wav)]
            media.write_video(Path(tmp) / f"{i}.mp4", clip.frames, audio=wav, crf=cfg.crf)
            t4 = time.perf_counter()
            for k, dt in zip(t, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                t[k] += dt / repeats
    return {k: round(v * 1000, 1) for k, v in t.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep", help="write the corpus here instead of a temporary folder")
    args = ap.parse_args()
    cfg = make.profile_config(args.profile)
    out = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_corpus_"))
    try:
        t0 = time.perf_counter()
        manifest = make.make_corpus(cfg, out, workers=args.workers, progress=True)
        wall = time.perf_counter() - t0
        per_clip = stage_timings(cfg)
    finally:
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)
    gen = manifest["generation"]
    report = {
        "machine": envinfo.machine(),
        "profile": args.profile, "workers": args.workers,
        "clips": manifest["n_clips"], "frames": manifest["n_frames"],
        "minutes_of_video": round(manifest["hours"] * 60, 2),
        "MiB": round(manifest["bytes"] / 2**20, 1),
        "wall_seconds": round(wall, 1),
        "clips_per_s": round(gen["clips_made"] / gen["seconds"], 2),
        "frames_per_s": round(manifest["n_frames"] / gen["seconds"], 1),
        "one_grid_clip_ms_by_stage": per_clip,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
