"""Benchmark: ``avlib lipsync`` speed and memory on long inputs (Wav2Lip inference).

Each run is :func:`avlib.lipsync.infer.lipsync` in a fresh child process on a rendered talking
face (the corpus renderer saying GRID sentences, ``--size`` pixels square, 25 fps) dubbed with
speech of ``--seconds`` (a comma list; default 60 s and 10 min). The inputs are built cheaply by
looping one rendered base clip of at most 10 s: the face video plays the base clip back and
forth for the whole duration (streamed into the encoder, never held), the audio tiles its
speech. ``--face still`` uses a PNG of the first frame instead (no video decoding, one face
detection: the network and the encoder alone). The generator has **random weights** (speed and
memory do not depend on them): ``--widths`` (default 1 = the official 36.3 M-parameter network,
and 0.125, the book's CPU size) x ``--precisions`` (fp32 and bf16 autocast).

Every run reports:

* wall time and frames/s of the whole command (decoding, face detection, network, pasting,
  H.264 + AAC encoding by ffmpeg in a separate process, which runs beside the network);
* the stage times of :class:`avlib.lipsync.infer.LipsyncReport` (``faces`` = pass 1; ``decode``,
  ``crop``, ``network``, ``paste`` of pass 2);
* the generator's achieved GFLOP/s: FLOPs of one frame's forward pass counted by
  ``torch.utils.flop_counter.FlopCounterMode`` (2 per multiply-add of every convolution,
  transposed convolution included) x frames generated / network seconds, and that as a share of
  this machine's **measured conv throughput**: the best of a few timed passes of one big 3x3
  Conv2d (256 -> 256 channels on 48x48 maps) in the same precision;
* peak resident memory in MiB (``VmHWM``, reset after the imports, the model build, the face
  detector's start and librosa's first call) and that above the baseline; on CUDA also the
  peak allocated GPU memory. ffmpeg's own memory (the encoder, a separate process) is not
  included. The memory of a 10-minute run should be that of a 60-second one plus its audio
  (38 MB per 10 minutes as float32) and mel (15 MB): nothing proportional to the video is held.

Run: ``.venv/bin/python benchmarks/bench_lipsync.py [--seconds 60,600 --widths 1,0.125
--precisions fp32,bf16 --size 256 --face video|still --device cpu]``; ``--seconds 2 --widths
0.125 --precisions fp32`` for a quick check that it works. The full default set runs the
official width over 10 minutes of video on the CPU: expect tens of minutes.
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

BASE_SECONDS = 10.0  #: longest base clip rendered; longer inputs loop it
CONV = {"channels": 256, "side": 48, "batch": {"cpu": 8, "cuda": 64}}


# ============================================================================ inputs
def render_base(seconds: float, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """RGB frames and 16 kHz speech of a talking face saying GRID sentences for ``seconds``."""
    from avlib.corpus.articulation import mouth_trajectory
    from avlib.corpus.render import FaceIdentity, render_clip
    from avlib.corpus.speech import Segment, Voice, synthesize
    from avlib.corpus.text import grid_sentence, grid_spoken_text

    rng = np.random.default_rng(seed)
    voice = Voice(variant="m3")
    pieces, phonemes, offset = [], [], 0.0
    while offset < seconds:
        utt = synthesize(grid_spoken_text(grid_sentence(rng).words), voice)
        pieces.append(utt.wav)
        phonemes += [Segment(p.label, p.start + offset, p.end + offset) for p in utt.phonemes]
        offset += len(utt.wav) / utt.sr
    n_frames = max(1, int(round(seconds * 25)))
    wav = np.concatenate(pieces)[: n_frames * 640]
    mouth = mouth_trajectory(phonemes, n_frames)
    clip = render_clip(FaceIdentity.sample(rng), mouth, seed=seed, size=size)
    return clip.frames, wav


def ensure_inputs(workdir: Path, seconds: float, size: int, face: str) -> tuple[Path, Path]:
    """(face video or image, speech wav) of ``seconds``, built once per workdir."""
    from avlib import media
    from avlib.lipsync.infer import pingpong_index

    face_path = workdir / (f"face_{size}px.png" if face == "still"
                           else f"face_{seconds:g}s_{size}px.mp4")
    audio_path = workdir / f"speech_{seconds:g}s.wav"
    if face_path.exists() and audio_path.exists():
        return face_path, audio_path
    t0 = time.perf_counter()
    frames, wav = render_base(min(seconds, BASE_SECONDS), size)
    n_out = int(round(seconds * 25))
    reps = -(-n_out * 640 // len(wav))
    media.write_wav(audio_path, np.tile(wav, reps)[: n_out * 640], 16000)
    if face == "still":
        import cv2

        cv2.imwrite(str(face_path), frames[0][..., ::-1])
    else:
        looped = (frames[pingpong_index(i, len(frames))] for i in range(n_out))
        media.write_video(face_path, looped)
    print(f"input: {face_path.name} + {audio_path.name} ({n_out} frames, {seconds:g} s) built in "
          f"{time.perf_counter() - t0:.1f} s")
    return face_path, audio_path


# ============================================================================ measurements
def forward_flops(model, device) -> float:
    """FLOPs of the generator's forward pass for one frame (FlopCounterMode)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    audio = torch.zeros(1, 1, 80, 16, device=device)
    face = torch.zeros(1, 6, 96, 96, device=device)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(audio, face)
    return float(counter.get_total_flops())


def conv_throughput(device: str, precision: str, repeats: int = 3) -> float:
    """GFLOP/s of one big 3x3 Conv2d on this machine (the best of ``repeats`` timed passes)."""
    import contextlib

    import torch

    dev = torch.device(device)
    c, side = CONV["channels"], CONV["side"]
    batch = CONV["batch"]["cuda" if dev.type == "cuda" else "cpu"]
    conv = torch.nn.Conv2d(c, c, 3, padding=1).to(dev).eval()
    x = torch.randn(batch, c, side, side, device=dev)
    flops = 2.0 * batch * c * c * 9 * side * side
    cast = (torch.autocast(dev.type, dtype=torch.bfloat16) if precision == "bf16"
            else contextlib.nullcontext())
    best = float("inf")
    with torch.inference_mode(), cast:
        conv(x)  # warm-up (kernel choice, allocations)
        for _ in range(repeats):
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            conv(x)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t0)
    return flops / best / 1e9


def child(args) -> None:
    """One measured run in this (fresh) process; writes a JSON record to ``args.record``."""
    import torch

    from avlib.audio import wav2lip_mel
    from avlib.faces import FaceDetector
    from avlib.lipsync.infer import lipsync
    from avlib.models import Wav2Lip

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = Wav2Lip(width=args.width).eval().to(device)
    flops = forward_flops(model, device)
    n_params = sum(p.numel() for p in model.parameters())
    detector = FaceDetector()  # its graph (~100 MB) is built before the baseline, and
    wav2lip_mel(np.zeros(16000, np.float32))  # librosa's one-off start-up (~130 MB) is paid
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    peak_ok = reset_peak()
    baseline = rss_kib("VmRSS")
    out = Path(args.workdir) / f"out_{os.getpid()}.mp4"
    try:
        t0 = time.perf_counter()
        report = lipsync(args.face_file, args.audio, out, model, overwrite=True, progress=False,
                         batch_size=args.batch_size, device=args.device,
                         precision=args.precision, detector=detector)
        wall = time.perf_counter() - t0
    finally:
        out.unlink(missing_ok=True)
        detector.close()
    generated = report.frames - report.no_face_frames
    network = report.stages["network"]
    record = {
        "width": args.width, "precision": args.precision, "params": n_params,
        "torch_threads": torch.get_num_threads(), "wall_s": wall, "frames": report.frames,
        "generated": generated, "fps": report.frames / wall, "stages": report.stages,
        "gflop_per_frame": flops / 1e9,
        "gflops": flops * generated / network / 1e9 if network > 0 else float("nan"),
        "peak_rss_mib": rss_kib("VmHWM") / 1024, "baseline_rss_mib": baseline / 1024,
        "peak_reset": peak_ok,
        "gpu_peak_mib": (torch.cuda.max_memory_allocated(device) / 2**20
                         if device.type == "cuda" else None),
    }
    Path(args.record).write_text(json.dumps(record))


def measure(args, face: Path, audio: Path, width: float, precision: str, workdir: Path) -> dict:
    record = workdir / f"record_{width:g}_{precision}.json"
    cmd = [sys.executable, __file__, "--child", "--face-file", str(face), "--audio", str(audio),
           "--width", str(width), "--precision", precision, "--device", args.device,
           "--batch-size", str(args.batch_size), "--threads", str(args.threads or 0),
           "--workdir", str(workdir), "--record", str(record)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"width {width:g} {precision} run failed:\n{proc.stderr[-3000:]}")
    return json.loads(record.read_text())


def print_runs(seconds: float, runs: list[dict], conv: dict[str, float], args) -> None:
    first = runs[0]
    print(f"\n=== {seconds:g} s of speech -> {first['frames']} frames, face {args.face} "
          f"{args.size}x{args.size}, device {args.device}, torch threads "
          f"{first['torch_threads']}, batch {args.batch_size} ===")
    print(f"{'width':>6} {'prec':>5} {'params':>11} {'GFLOP/fr':>9} {'wall s':>8} {'frames/s':>9}"
          f" {'network s':>10} {'GFLOP/s':>8} {'% conv':>7} {'peak RSS':>9} {'above':>7}"
          + (f" {'GPU MiB':>8}" if args.device != "cpu" else ""))
    for r in runs:
        share = 100 * r["gflops"] / conv[r["precision"]]
        line = (f"{r['width']:>6g} {r['precision']:>5} {r['params']:>11,} "
                f"{r['gflop_per_frame']:>9.3f} {r['wall_s']:>8.1f} {r['fps']:>9.1f} "
                f"{r['stages']['network']:>10.1f} {r['gflops']:>8.1f} {share:>6.0f}% "
                f"{r['peak_rss_mib']:>9.0f} {r['peak_rss_mib'] - r['baseline_rss_mib']:>7.0f}")
        if r["gpu_peak_mib"] is not None:
            line += f" {r['gpu_peak_mib']:>8.0f}"
        print(line)
    print("  share of wall time per stage (faces = pass 1; the encoder runs beside pass 2):")
    for r in runs:
        stages = {k: v for k, v in r["stages"].items() if isinstance(v, (int, float))}
        shares = "  ".join(f"{k} {100 * v / r['wall_s']:4.1f} %" for k, v in stages.items())
        print(f"  {r['width']:>6g} {r['precision']:>5}  {shares}")


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", default="60,600",
                        help="comma list of speech durations in seconds (default 60,600)")
    parser.add_argument("--widths", default="1,0.125",
                        help="comma list of generator widths (1 = official; default 1,0.125)")
    parser.add_argument("--precisions", default="fp32,bf16", help="comma list of fp32, bf16")
    parser.add_argument("--face", choices=("video", "still"), default="video",
                        help="face source: a looped video of the whole duration (default) or a "
                             "still image")
    parser.add_argument("--size", type=int, default=256, help="face video side (pixels)")
    parser.add_argument("--batch-size", type=int, default=16, help="frames per generator pass")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads in each run (default: torch's default)")
    parser.add_argument("--workdir", default=None,
                        help="folder for the inputs (kept when given; reused by later runs)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--face-file", help=argparse.SUPPRESS)
    parser.add_argument("--audio", help=argparse.SUPPRESS)
    parser.add_argument("--width", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--precision", help=argparse.SUPPRESS)
    parser.add_argument("--record", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    import torch

    from avlib import envinfo

    if args.threads:
        torch.set_num_threads(args.threads)
    print("machine:", json.dumps(envinfo.machine()))
    print("load average before: %.2f %.2f %.2f (other processes share these cores)"
          % os.getloadavg())
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    conv = {p: conv_throughput(args.device, p) for p in precisions}
    c, side = CONV["channels"], CONV["side"]
    print("measured conv throughput (3x3 Conv2d %d->%d on %dx%d maps): %s" % (
        c, c, side, side, ", ".join(f"{p} {g:.1f} GFLOP/s" for p, g in conv.items())))
    own_dir = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="bench_lipsync_")) if own_dir else Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        for seconds in _floats(args.seconds):
            face, audio = ensure_inputs(workdir, seconds, args.size, args.face)
            runs = [measure(args, face, audio, width, precision, workdir)
                    for width in _floats(args.widths) for precision in precisions]
            print_runs(seconds, runs, conv, args)
        print("\nload average after: %.2f %.2f %.2f" % os.getloadavg())
    finally:
        if own_dir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
