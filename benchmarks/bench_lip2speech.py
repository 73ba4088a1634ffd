"""Benchmark: ``avlib lip2speech`` speed and memory on a long video (VCA-GAN inference).

Each run is :func:`avlib.lip2speech.infer.lip2speech` (what the command runs, minus loading
the weights file) in a fresh child process on a rendered talking face (the corpus renderer
saying GRID sentences, ``--size`` pixels square, 25 fps) of ``--seconds`` (a comma list;
default 60 s). The video is built cheaply by looping one rendered base clip of at most 10 s back
and forth (streamed into the encoder, never held). The synthesizer has **random weights**
(speed and memory do not depend on them): ``--sizes`` (default ``official``, the 51.8 M-parameter
network, and ``cpu``, chapter 05's cpu size: width 1/8, 32-px mouths;
:meth:`avlib.models.vcagan.VCAGANConfig.named`),
run with the command's defaults (chunks of 75 frames overlapping by 15, Griffin-Lim 60
iterations; ``--chunk``, ``--overlap``, ``--gl-iters`` change them).

Every run reports:

* **seconds of speech per second of compute** for the whole run (``speed``; above 1 is faster
  than real time), and the seconds of each stage of
  :class:`avlib.lip2speech.infer.Lip2SpeechReport`: ``crops`` (decoding, face detection and
  tracking, face mesh, the 112 x 112 mouth crops), ``network`` (the synthesizer over the chunks,
  and the cross-fade), ``griffin_lim`` and ``write`` (the WAV);
* the synthesizer's achieved GFLOP/s: FLOPs of one chunk's forward pass counted by
  ``torch.utils.flop_counter.FlopCounterMode`` x chunks / network seconds;
* peak resident memory in MiB (``VmHWM``, reset after the imports, the model build and a warm-up
  run of the whole chain on a 1-s clip, which loads the face models and librosa) and that above
  the baseline; on CUDA also the peak allocated GPU memory. The memory grows with the video by
  its mouth crops (12.5 kB a frame) and spectrogram (321 x 4 float32 a frame): 24 MB a minute.

Run: ``.venv/bin/python benchmarks/bench_lip2speech.py [--seconds 60 --sizes official,cpu --size
160 --device cpu --threads 0]``; ``--seconds 6`` for a quick check that it works.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _memory import reset_peak, rss_kib  # benchmarks/_memory.py, beside this file

BASE_SECONDS = 10.0  #: longest base clip rendered; longer videos loop it back and forth


# ============================================================================ input
def render_base(seconds: float, size: int, seed: int = 0) -> np.ndarray:
    """RGB frames of a talking face saying GRID sentences for ``seconds``."""
    from avlib.corpus.articulation import mouth_trajectory
    from avlib.corpus.render import FaceIdentity, render_clip
    from avlib.corpus.speech import Segment, Voice, synthesize
    from avlib.corpus.text import grid_sentence, grid_spoken_text

    rng = np.random.default_rng(seed)
    voice = Voice(variant="m3")
    phonemes, offset = [], 0.0
    while offset < seconds:
        utt = synthesize(grid_spoken_text(grid_sentence(rng).words), voice)
        phonemes += [Segment(p.label, p.start + offset, p.end + offset) for p in utt.phonemes]
        offset += len(utt.wav) / utt.sr
    n_frames = max(1, int(round(seconds * 25)))
    mouth = mouth_trajectory(phonemes, n_frames)
    return render_clip(FaceIdentity.sample(rng), mouth, seed=seed, size=size).frames


def ensure_video(workdir: Path, seconds: float, size: int) -> tuple[Path, Path]:
    """(the video of ``seconds``, a 1-s warm-up clip), built once per workdir."""
    from avlib import media
    from avlib.lipsync.infer import pingpong_index

    path = workdir / f"face_{seconds:g}s_{size}px.mp4"
    warm = workdir / f"warmup_{size}px.mp4"
    if path.exists() and warm.exists():
        return path, warm
    t0 = time.perf_counter()
    frames = render_base(min(seconds, BASE_SECONDS), size)
    n = int(round(seconds * 25))
    media.write_video(path, (frames[pingpong_index(i, len(frames))] for i in range(n)))
    media.write_video(warm, frames[:25])
    print(f"input: {path.name} ({n} frames, {seconds:g} s) built in "
          f"{time.perf_counter() - t0:.1f} s")
    return path, warm


# ============================================================================ measurements
def chunk_flops(model, chunk: int, device) -> float:
    """FLOPs of the synthesizer's forward pass over one chunk of ``chunk`` frames."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    side = model.cfg.input_size
    video = torch.zeros(1, 1, chunk, side, side, device=device)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(video)
    return float(counter.get_total_flops())


def child(args) -> None:
    """One measured run in this (fresh) process; writes a JSON record to ``args.record``."""
    from dataclasses import asdict

    import torch

    from avlib.lip2speech.infer import lip2speech
    from avlib.models.vcagan import VCAGAN, VCAGANConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = VCAGAN(**asdict(VCAGANConfig.named(args.model_size))).eval().to(device)
    n_params = sum(p.numel() for p in model.parameters())
    work = Path(args.workdir)
    out = work / f"out_{os.getpid()}.wav"
    options = {"chunk": args.chunk, "overlap": args.overlap, "gl_iters": args.gl_iters,
               "device": args.device, "progress": False, "overwrite": True}
    try:
        # warm-up: the face detector and mesh graphs, librosa, torch's kernels
        lip2speech(args.warmup, out, model, **options)
        flops = chunk_flops(model, args.chunk, device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        peak_ok = reset_peak()
        baseline = rss_kib("VmRSS")
        t0 = time.perf_counter()
        report = lip2speech(args.video, out, model, **options)
        wall = time.perf_counter() - t0
    finally:
        out.unlink(missing_ok=True)
    network = report.stages["network"]
    record = {
        "size": args.model_size, "params": n_params, "torch_threads": torch.get_num_threads(),
        "wall_s": wall, "frames": report.frames, "speech_s": report.duration_s,
        "chunks": report.chunks, "speed": report.duration_s / wall, "stages": report.stages,
        "gflop_per_chunk": flops / 1e9,
        "gflops": flops * report.chunks / network / 1e9 if network > 0 else float("nan"),
        "peak_rss_mib": rss_kib("VmHWM") / 1024, "baseline_rss_mib": baseline / 1024,
        "peak_reset": peak_ok,
        "gpu_peak_mib": (torch.cuda.max_memory_allocated(device) / 2**20
                         if device.type == "cuda" else None),
    }
    Path(args.record).write_text(json.dumps(record))


def measure(args, video: Path, warm: Path, size: str, workdir: Path) -> dict:
    record = workdir / f"record_{size}.json"
    cmd = [sys.executable, __file__, "--child", "--video", str(video), "--warmup", str(warm),
           "--model-size", size, "--device", args.device, "--chunk", str(args.chunk),
           "--overlap", str(args.overlap), "--gl-iters", str(args.gl_iters),
           "--threads", str(args.threads or 0), "--workdir", str(workdir),
           "--record", str(record)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"size {size} run failed:\n{proc.stderr[-3000:]}")
    return json.loads(record.read_text())


def print_runs(seconds: float, runs: list[dict], args) -> None:
    first = runs[0]
    print(f"\n=== {seconds:g} s video -> {first['frames']} frames, {first['chunks']} chunks of "
          f"{args.chunk} (overlap {args.overlap}), Griffin-Lim {args.gl_iters} iterations, "
          f"{args.size}x{args.size}, device {args.device}, torch threads "
          f"{first['torch_threads']} ===")
    print(f"{'size':>9} {'params':>11} {'GFLOP/ch':>9} {'wall s':>8} {'speech/s':>9}"
          f" {'crops s':>8} {'network s':>10} {'GL s':>7} {'write s':>8} {'GFLOP/s':>8}"
          f" {'peak RSS':>9} {'above':>7}" + (f" {'GPU MiB':>8}" if args.device != "cpu" else ""))
    for r in runs:
        s = r["stages"]
        line = (f"{r['size']:>9} {r['params']:>11,} {r['gflop_per_chunk']:>9.1f} "
                f"{r['wall_s']:>8.1f} {r['speed']:>9.2f} {s['crops']:>8.1f} "
                f"{s['network']:>10.1f} {s['griffin_lim']:>7.1f} {s['write']:>8.2f} "
                f"{r['gflops']:>8.1f} {r['peak_rss_mib']:>9.0f} "
                f"{r['peak_rss_mib'] - r['baseline_rss_mib']:>7.0f}")
        if r["gpu_peak_mib"] is not None:
            line += f" {r['gpu_peak_mib']:>8.0f}"
        print(line)
    print("  share of wall time per stage, and each stage's speed (seconds of speech per s):")
    for r in runs:
        parts = "  ".join(f"{k} {100 * v / r['wall_s']:4.1f} % ({r['speech_s'] / v:6.1f}x)"
                          if v > 0 else f"{k} 0 %" for k, v in r["stages"].items())
        print(f"  {r['size']:>9}  {parts}")


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", default="60",
                        help="comma list of video durations in seconds (default 60)")
    parser.add_argument("--sizes", default="official,cpu",
                        help="comma list of VCA-GAN sizes: official, cpu (default both)")
    parser.add_argument("--size", type=int, default=160, help="video side (pixels; default 160)")
    parser.add_argument("--chunk", type=int, default=75, help="frames per chunk (default 75)")
    parser.add_argument("--overlap", type=int, default=15, help="chunk overlap (default 15)")
    parser.add_argument("--gl-iters", type=int, default=60,
                        help="Griffin-Lim iterations (default 60)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads in each run (default: torch's default)")
    parser.add_argument("--workdir", default=None,
                        help="folder for the inputs (kept when given; reused by later runs)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--video", help=argparse.SUPPRESS)
    parser.add_argument("--warmup", help=argparse.SUPPRESS)
    parser.add_argument("--model-size", help=argparse.SUPPRESS)
    parser.add_argument("--record", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    from avlib import envinfo
    from avlib.models.vcagan import VCAGAN_SIZES

    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in VCAGAN_SIZES]
    if unknown:
        parser.error(f"unknown sizes {unknown}; known: {sorted(VCAGAN_SIZES)}")
    print("machine:", json.dumps(envinfo.machine()))
    print("load average before: %.2f %.2f %.2f (other processes share these cores)"
          % os.getloadavg())
    own_dir = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="bench_lip2speech_")) if own_dir else Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        for seconds in _floats(args.seconds):
            video, warm = ensure_video(workdir, seconds, args.size)
            runs = [measure(args, video, warm, size, workdir) for size in sizes]
            print_runs(seconds, runs, args)
        print("\nload average after: %.2f %.2f %.2f" % os.getloadavg())
    finally:
        if own_dir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
