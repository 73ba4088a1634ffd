"""Benchmark: preprocessing throughput (frames/s per core) on corpus-like clips.

Renders talking-face clips like the embedded corpus (160x160 faces at 25 fps with speech-like
audio), writes them as H.264/AAC mp4, then times on one core

* decoding (``avlib.media.read_av``),
* face detection (BlazeFace, every frame),
* face mesh (tracking mode, every frame),
* the whole :func:`avlib.data.preprocess.preprocess_clip` (decode, track, mesh, the four crops,
  audio features, JPEG store writes),

and, with ``--workers N > 1``, :func:`avlib.data.preprocess.preprocess_dataset` over N processes
(frames/s in total and per worker). Prints the machine it ran on; asserts nothing.

Run: ``.venv/bin/python benchmarks/bench_preprocess.py [--clips 4 --frames 75 --workers 2]``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from avlib import envinfo, media
from avlib.corpus.render import FaceIdentity, render_clip
from avlib.data.datasets import ClipItem
from avlib.faces import FaceDetector, FaceMesher
from avlib.data.preprocess import PreprocessConfig, preprocess_clip, preprocess_dataset
from avlib.data.store import StoreWriter

SR = 16000


def make_clips(folder: Path, n_clips: int, n_frames: int, size: int) -> list[Path]:
    """Corpus-like mp4 clips: a rendered face per clip, a smoothly moving mouth, noise-like speech."""
    paths = []
    for k in range(n_clips):
        rng = np.random.default_rng(k)
        steps = rng.normal(0, 0.15, (n_frames, 7))
        mouth = np.clip(0.35 + np.cumsum(steps, axis=0) * 0.35, 0, 1).astype(np.float32)
        clip = render_clip(FaceIdentity.sample(rng), mouth, seed=k, size=size)
        t = np.arange(n_frames * 640) / SR
        audio = (0.3 * np.sin(2 * np.pi * 150 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))
                 + 0.02 * rng.standard_normal(len(t))).astype(np.float32)
        paths.append(media.write_video(folder / f"clip{k:03d}.mp4", clip.frames, audio=audio, sr=SR))
    return paths


def rate(frames: int, seconds: float) -> float:
    return round(frames / seconds, 1) if seconds > 0 else float("inf")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=4, help="clips to render")
    parser.add_argument("--frames", type=int, default=75, help="frames per clip (75 = a GRID sentence)")
    parser.add_argument("--size", type=int, default=160, help="frame side in pixels (corpus: 160)")
    parser.add_argument("--syncnet-size", type=int, default=224)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                        help="processes for the parallel run (1 skips it)")
    args = parser.parse_args(argv)

    print("machine:", json.dumps(envinfo.machine()))
    cfg = PreprocessConfig(syncnet_size=args.syncnet_size)
    with tempfile.TemporaryDirectory(prefix="bench_preprocess_") as tmp:
        tmp_path = Path(tmp)
        t0 = time.perf_counter()
        paths = make_clips(tmp_path, args.clips, args.frames, args.size)
        print(f"rendered {args.clips} clips x {args.frames} frames of {args.size}x{args.size} "
              f"in {time.perf_counter() - t0:.1f} s")
        total = args.clips * args.frames

        t0 = time.perf_counter()
        clips = [media.read_av(p) for p in paths]
        decode_s = time.perf_counter() - t0

        with FaceDetector() as detector:
            detector.detect(clips[0].frames[0])  # graph warm-up
            t0 = time.perf_counter()
            for clip in clips:
                for frame in clip.frames:
                    detector.detect(frame)
            detect_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        for clip in clips:
            with FaceMesher(static_image_mode=False) as mesher:  # one tracker per clip
                for frame in clip.frames:
                    mesher.landmarks(frame)
        mesh_s = time.perf_counter() - t0

        items = [ClipItem(p.stem, "bench", p, "train", None, None, []) for p in paths]
        writer = StoreWriter(tmp_path / "store1", cfg.to_dict(), cfg.jpeg_quality)
        with FaceDetector() as detector:
            t0 = time.perf_counter()
            results = [preprocess_clip(item, writer, cfg, detector) for item in items]
            full_s = time.perf_counter() - t0
        bad = [r for r in results if r["status"] != "ok"]
        if bad:
            print("warning: rejected in the benchmark:", bad, file=sys.stderr)

        print(f"one core, {total} frames (frames/s):")
        print(f"  decode            {rate(total, decode_s):>9}")
        print(f"  face detection    {rate(total, detect_s):>9}  ({1000 * detect_s / total:.2f} ms/frame)")
        print(f"  face mesh         {rate(total, mesh_s):>9}  ({1000 * mesh_s / total:.2f} ms/frame)")
        print(f"  preprocess_clip   {rate(total, full_s):>9}  ({1000 * full_s / total:.2f} ms/frame, "
              f"{args.clips / full_s:.2f} clips/s; crops {', '.join(cfg.crops)}, syncnet {cfg.syncnet_size} px)")

        if args.workers > 1:
            summary = preprocess_dataset(items, tmp_path / "store_par", cfg, workers=args.workers,
                                         progress=False)
            # The wall time includes starting the spawned workers (imports, models).
            print(f"preprocess_dataset, {args.workers} workers: {summary['frames_per_s']} frames/s in total, "
                  f"{summary['frames_per_s'] / args.workers:.1f} per worker "
                  f"({summary['seconds']:.1f} s including worker start-up)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
