"""Benchmark: the clip store versus the per-frame-JPEG layout of Wav2Lip / VocaLiST.

Makes synthetic talking-face clips (rendered 96x96 faces, speech-like audio), writes them into a
:class:`avlib.data.store.ClipStore` and exports the same clips to the upstream layout
(``<id>/<n>.jpg`` + ``audio.wav``, identical JPEG bytes), then measures

* storage: bytes of the images + audio in each layout (same JPEG quality), both the file sizes
  and the disk space allocated (small files waste the tail of a file-system block each);
* random window reads/s of a 5-frame window plus its 16-column mel window, done
  - the store way: ``frames(clip, stream, f, 5)`` + a slice of the precomputed mel (memory map);
  - the upstream way (``color_syncnet_train.py``'s dataset): ``cv2.imread`` of 5 JPEG files, resize
    to 96x96, read ``audio.wav`` with soundfile, compute the Wav2Lip mel of the whole wav, slice.

Both layouts are read from a warm page cache (just written), so the timings compare the work
per sample, not the disk. Targets: storage <= 1.2x the JPEG layout; window reads >= 10x faster.

Run: ``.venv/bin/python benchmarks/bench_store.py [--clips 20 --frames 75 ...]``.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import soundfile as sf

from avlib import envinfo
from avlib.audio import SAMPLES_PER_FRAME, SR, mel_window, wav2lip_mel
from avlib.data.store import ClipStore, StoreWriter

STREAM = "face96"
WINDOW = 5  # frames per sample: the Wav2Lip expert / VocaLiST window


def synthetic_frames(rng: np.random.Generator, n: int, size: int, seed: int) -> np.ndarray:
    """(n, size, size, 3) uint8 RGB face crops: the book's face renderer when available (its
    natural-image-like content matters for JPEG sizes), else smooth moving blobs plus noise."""
    try:
        from avlib.corpus.render import FaceIdentity, render_clip
    except ImportError:
        y, x = np.mgrid[0:size, 0:size] / size
        frames = np.empty((n, size, size, 3), np.uint8)
        colour = rng.uniform(60, 200, 3)
        for t in range(n):
            blob = np.exp(-(((x - 0.5 - 0.05 * np.sin(t / 7)) ** 2 + (y - 0.5) ** 2) / 0.05))
            image = colour * (0.5 + 0.5 * blob[..., None]) + 20 * np.sin(8 * x + t / 5)[..., None]
            frames[t] = np.clip(image + rng.normal(0, 3, image.shape), 0, 255)
        return frames
    # A random but smooth mouth trajectory: each of the 7 parameters a slow walk in [0, 1].
    steps = rng.normal(0, 0.15, (n, 7))
    mouth = np.clip(0.35 + np.cumsum(steps, axis=0) * 0.35, 0, 1).astype(np.float32)
    return render_clip(FaceIdentity.sample(rng), mouth, seed=seed, size=size).frames


def synthetic_speech(rng: np.random.Generator, n_samples: int) -> np.ndarray:
    """Speech-like float32 audio: a gliding harmonic voice with syllable-rate amplitude bursts."""
    t = np.arange(n_samples) / SR
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    voice = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = np.clip(np.sin(2 * np.pi * 4 * t + rng.uniform(0, 6)), 0, None) ** 2
    audio = 0.15 * envelope * voice + rng.normal(0, 0.01, n_samples)
    return np.clip(audio, -1, 1).astype(np.float32)


def tree_bytes(folder: Path, names=None) -> tuple[int, int]:
    """(file bytes, allocated bytes) of every file under folder whose name passes ``names``."""
    size = allocated = 0
    for dirpath, _, files in os.walk(folder):
        for name in files:
            if names is None or names(name):
                st = os.stat(os.path.join(dirpath, name))
                size += st.st_size
                allocated += st.st_blocks * 512
    return size, allocated


def upstream_frames(folder: Path, start: int, size: int) -> np.ndarray:
    """The 5 frames of a window from per-frame files: cv2.imread each, resize to size x size."""
    return np.stack([cv2.resize(cv2.imread(str(folder / f"{n}.jpg")), (size, size))
                     for n in range(start, start + WINDOW)])


def upstream_sample(folder: Path, start: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One training sample the way Wav2Lip's ``color_syncnet_train.py`` makes it."""
    frames = upstream_frames(folder, start, size)
    wav, _ = sf.read(folder / "audio.wav", dtype="float32")
    mel = wav2lip_mel(wav)
    return frames, mel_window(mel, start).copy()


def store_sample(st: ClipStore, clip_id: str, start: int) -> tuple[np.ndarray, np.ndarray]:
    frames = st.frames(clip_id, STREAM, start, WINDOW)
    return frames, mel_window(st.feature(clip_id, "wav2lip_mel"), start).copy()


def reads_per_second(read, picks, min_seconds: float) -> tuple[float, int]:
    """Run ``read`` over ``picks`` (repeating them) for at least min_seconds."""
    read(*picks[0])  # warm-up (imports, caches of code paths)
    count, t0 = 0, time.perf_counter()
    while True:
        for pick in picks:
            read(*pick)
            count += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= min_seconds:
            return count / elapsed, count


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--frames", type=int, default=75, help="frames per clip (75 = 3 s)")
    parser.add_argument("--size", type=int, default=96, help="face crop side in pixels")
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality of both layouts")
    parser.add_argument("--reads", type=int, default=200, help="random windows to draw")
    parser.add_argument("--seconds", type=float, default=2.0, help="minimum time per read benchmark")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", help="folder for the two layouts (default: a temporary folder, removed)")
    args = parser.parse_args(argv)
    if args.frames < WINDOW + 1:
        parser.error(f"--frames must be > {WINDOW}")

    rng = np.random.default_rng(args.seed)
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench_store_"))
    store_root, jpeg_root = work / "store", work / "jpeg_layout"
    try:
        t0 = time.perf_counter()
        writer = StoreWriter(store_root, config={"benchmark": "bench_store"}, jpeg_quality=args.quality)
        ids = [f"{1000000 + i:019d}/{i:05d}" for i in range(args.clips)]  # LRS2-shaped ids
        for i, clip_id in enumerate(ids):
            frames = synthetic_frames(rng, args.frames, args.size, seed=args.seed * 1000 + i)
            audio = synthetic_speech(rng, args.frames * SAMPLES_PER_FRAME)
            writer.write_clip(clip_id, {"dataset": "synthetic", "split": "train", "speaker": f"s{i % 4}"},
                              {STREAM: frames}, audio, features={"wav2lip_mel": wav2lip_mel(audio)})
        writer.finalize()
        write_s = time.perf_counter() - t0
        st = ClipStore(store_root)
        st.export_jpeg_layout(jpeg_root, stream=STREAM)

        # (a) storage: like for like (images + audio); the store's index/meta and its precomputed
        # features (which the per-frame layout recomputes every time) are shown separately.
        store_media = tree_bytes(store_root / "clips", lambda n: n.endswith(".jpg.bin") or n == "audio.npy")
        store_extra = tree_bytes(store_root / "clips", lambda n: n.endswith((".idx.npy", "meta.json")))
        store_feats = tree_bytes(store_root / "clips", lambda n: n.startswith("wav2lip_mel"))
        jpeg_media = tree_bytes(jpeg_root)

        # (b) random windows: the same (clip, start) picks for both layouts
        picks = [(ids[int(rng.integers(len(ids)))], int(rng.integers(0, args.frames - WINDOW + 1)))
                 for _ in range(args.reads)]
        a_frames, a_mel = store_sample(st, *picks[0])
        b_frames, b_mel = upstream_sample(jpeg_root / picks[0][0], picks[0][1], args.size)
        # Same sample from both paths (the store returns RGB, cv2.imread BGR; mels match to fp noise).
        assert np.array_equal(a_frames[..., ::-1], b_frames) and np.allclose(a_mel, b_mel, atol=0.05)
        store_rate, store_n = reads_per_second(lambda c, f: store_sample(st, c, f), picks, args.seconds)
        up_rate, up_n = reads_per_second(lambda c, f: upstream_sample(jpeg_root / c, f, args.size),
                                         picks, args.seconds)
        # Where the time goes: the frames alone (no audio) in each layout.
        store_img, _ = reads_per_second(lambda c, f: st.frames(c, STREAM, f, WINDOW), picks, args.seconds / 2)
        up_img, _ = reads_per_second(lambda c, f: upstream_frames(jpeg_root / c, f, args.size), picks,
                                     args.seconds / 2)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)

    mach = envinfo.machine()
    mib = lambda b: f"{b / 2**20:8.2f} MiB"  # noqa: E731
    print(f"machine: {mach['cpu']} | {mach['cores']} cores | {mach['memory_gib']} GiB | "
          f"gpu: {mach['gpu']} | Python {mach['python']} | {mach['platform']}")
    print(f"data: {args.clips} clips x {args.frames} frames of {args.size}x{args.size} RGB, JPEG quality "
          f"{args.quality}, 16 kHz audio; store written in {write_s:.1f} s (incl. rendering and mel)")
    print()
    print(f"{'storage (images + audio)':34s} {'file bytes':>13s} {'allocated':>13s}")
    print(f"{'per-frame JPEG layout':34s} {mib(jpeg_media[0])} {mib(jpeg_media[1])}")
    print(f"{'clip store':34s} {mib(store_media[0])} {mib(store_media[1])}")
    print(f"{'  + store index and meta.json':34s} {mib(store_extra[0])} {mib(store_extra[1])}")
    print(f"{'  + precomputed wav2lip_mel':34s} {mib(store_feats[0])} {mib(store_feats[1])}")
    ratio_media = (store_media[0] + store_extra[0]) / jpeg_media[0]
    ratio_all = (store_media[0] + store_extra[0] + store_feats[0]) / jpeg_media[0]
    ratio_alloc = (store_media[1] + store_extra[1]) / jpeg_media[1]
    print(f"store / JPEG layout: {ratio_media:.3f}x file bytes (images+audio+index), "
          f"{ratio_alloc:.3f}x allocated; {ratio_all:.3f}x with the precomputed mel  (target <= 1.2x)")
    print()
    print(f"{'random 5-frame window + mel':34s} {'reads/s':>10s} {'ms/read':>9s} {'reads':>7s}")
    print(f"{'per-frame JPEG layout (upstream)':34s} {up_rate:10.1f} {1000 / up_rate:9.3f} {up_n:7d}")
    print(f"{'clip store':34s} {store_rate:10.1f} {1000 / store_rate:9.3f} {store_n:7d}")
    print(f"{'  frames only, JPEG layout':34s} {up_img:10.1f} {1000 / up_img:9.3f}")
    print(f"{'  frames only, clip store':34s} {store_img:10.1f} {1000 / store_img:9.3f}")
    speedup = store_rate / up_rate
    print(f"speed-up: {speedup:.1f}x  (target >= 10x)")
    ok = ratio_media <= 1.2 and speedup >= 10
    print("targets met" if ok else "TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
