"""Benchmark: the streaming sync tool versus syncnet_python's frames-on-disk approach.

On one rendered talking-face clip (default 60 s at 25 fps, 224x224, synthesized speech) and one
SyncNet, two ways of measuring the AV offset / LSE-D / LSE-C are timed:

(a) ``avlib sync check`` (:func:`avlib.sync.tool.check_video`): the mp4 is decoded twice with PyAV,
    one frame at a time (faces, then crops streamed into ``syncnet_offset_stream``).
(b) syncnet_python's approach (spec §1.2, §1.5): ffmpeg writes every frame to a JPEG file
    (``-qscale:v 2``) and the audio to a 16 kHz 16-bit wav; the JPEGs are read back with
    ``cv2.imread`` for face detection, then again for cropping; the crops of the whole video are
    stacked into one float32 tensor as ``SyncNetInstance.evaluate`` does, and the same model and
    protocol (``calc_pdist``, ``summarise_dists``, batches of 20 windows) run on it. Faces and crops
    use the same code as (a) (BlazeFace, :func:`avlib.data.tracking.track_faces`,
    :func:`avlib.data.crops.crop_syncnet`), so only the frame and audio handling differ.
    (syncnet_python also writes the crops to an XVID avi and extracts that to JPEGs again before
    scoring; that round trip is skipped here, which only makes (b) faster.)
(b') the same as (b) with lossless PNG frames and the audio read as (a) reads it: the inputs
    are then bit-identical to (a)'s, so the offset, LSE-D, LSE-C and the whole distance curve must
    be identical. (b) differs from (a) only by JPEG compression and 16-bit audio quantisation.

Each run is a fresh child process; peak memory is its peak resident set size (``VmHWM``, reset
with ``/proc/self/clear_refs`` after the imports and the model load), reported as a total and
above that baseline, and also as the peak reached before the distance step ("before dists"):
``avlib.sync.calc_pdist``, which both paths share, materialises (windows x 31, D) float32
tensors at the end (about 0.7 GB for 60 s with D = 1024), so the total peak mixes that step
with the frame handling this benchmark compares. The network time (``forward_lip`` + ``forward_aud``) is measured inside
both paths, so the speed-up of the frame/audio handling alone is printed too.

Models: the full-size SyncNet (syncnet_v2 architecture, 13.6 M parameters, 224x224 crops) and
the CPU profile's small SyncNet (width 0.25, 112x112 crops), both with **random weights** (no
trained weights can be had here): timings and memory do not depend on the weights, and (a) vs
(b') identity holds for any weights. The offsets random weights find mean nothing.

Run: ``.venv/bin/python benchmarks/bench_sync_tool.py [--seconds 60 --size 224 --models small,full]``.
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

MODELS = {
    # name -> SyncNet kwargs
    "small": {"width": 0.25, "img_size": 112},
    "full": {},
}
VARIANTS = {
    # name -> (frame format, audio source)
    "stream": None,
    "jpeg": ("jpg", "wav16"),
    "png": ("png", "tool"),
}
VSHIFT = 15
BATCH = 20
IO_A = "frame I/O (2 PyAV decodes)"
IO_B = "frame I/O (ffmpeg extraction + 2 imreads)"


# ============================================================================ the clip
def make_clip(path: Path, seconds: float, size: int, seed: int = 0) -> dict:
    """Render a talking face saying GRID sentences for ``seconds``; write it as mp4 + AAC."""
    from avlib import media
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
        # Concatenated sentences: their phoneme segments move to the clip's clock.
        phonemes += [Segment(p.label, p.start + offset, p.end + offset) for p in utt.phonemes]
        offset += len(utt.wav) / utt.sr
    n_frames = int(round(seconds * 25))
    wav = np.concatenate(pieces)[: n_frames * 640]
    mouth = mouth_trajectory(phonemes, n_frames)
    clip = render_clip(FaceIdentity.sample(rng), mouth, seed=seed, size=size)
    media.write_video(path, clip.frames, audio=wav)
    return {"frames": n_frames, "size": size, "seconds": n_frames / 25}


# ============================================================================ child processes
def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def _cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (ffmpeg), all threads."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _time_network(model) -> dict:
    """Wrap the model's two embedding calls with a stopwatch; returns the accumulator."""
    spent = {"s": 0.0}

    def timed(fn):
        def wrapper(x):
            t0 = time.perf_counter()
            out = fn(x)
            spent["s"] += time.perf_counter() - t0
            return out

        return wrapper

    model.forward_lip = timed(model.forward_lip)
    model.forward_aud = timed(model.forward_aud)
    return spent


def _ffmpeg(*args: str) -> None:
    from avlib import media

    subprocess.run([media.ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def run_stream(clip: Path, model) -> tuple[object, dict]:
    """(a) the sync tool; the time spent inside its frame decoder is measured on the side."""
    from avlib import media
    from avlib.sync import tool as synctool

    decoding = {"s": 0.0}
    real_iter = media.iter_video

    def timed_iter(*args, **kwargs):
        frames = real_iter(*args, **kwargs)
        try:
            while True:
                t0 = time.perf_counter()
                try:
                    item = next(frames)
                except StopIteration:
                    return
                finally:
                    decoding["s"] += time.perf_counter() - t0
                yield item
        finally:
            frames.close()

    media.iter_video = timed_iter
    try:
        result, facts = synctool._analyse(clip, model, VSHIFT, BATCH, "cpu", progress=False)
    finally:
        media.iter_video = real_iter
    return result, {"faces pass": facts["faces_s"], "sync pass": facts["sync_s"],
                    "frame I/O (2 PyAV decodes)": decoding["s"]}


def run_files(clip: Path, model, frame_format: str, audio_source: str, workdir: Path) -> tuple[object, dict]:
    """(b) syncnet_python's approach: every frame a file on disk, the whole video in memory."""
    import cv2
    import scipy.io.wavfile
    import torch

    from avlib import media
    from avlib.data import preprocess as pp
    from avlib.data import crops as crop_mod, tracking
    from avlib.audio import syncnet_mfcc
    from avlib.sync import calc_pdist, num_sync_windows, summarise_dists

    stages = {}
    t0 = time.perf_counter()
    frames_dir = workdir / "frames"
    frames_dir.mkdir()
    opts = ["-qscale:v", "2"] if frame_format == "jpg" else []
    _ffmpeg("-i", str(clip), *opts, "-f", "image2", str(frames_dir / f"%06d.{frame_format}"))
    files = sorted(frames_dir.glob(f"*.{frame_format}"))
    t_frames = time.perf_counter()
    stages["extract frames (ffmpeg)"] = t_frames - t0
    if audio_source == "wav16":
        _ffmpeg("-i", str(clip), "-vn", "-ac", "1", "-ar", "16000", "-acodec", "pcm_s16le", str(workdir / "audio.wav"))
        _, wav = scipy.io.wavfile.read(workdir / "audio.wav")  # int16, as syncnet_python feeds it
    else:
        wav = media.read_audio(clip)
    t1 = time.perf_counter()
    stages["audio (" + ("ffmpeg 16-bit wav" if audio_source == "wav16" else "read_audio") + ")"] = t1 - t_frames

    reading = {"s": 0.0}

    def imread_rgb(f: Path) -> np.ndarray:
        t = time.perf_counter()
        bgr = cv2.imread(str(f))
        reading["s"] += time.perf_counter() - t
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)  # avlib's face code takes RGB

    n = min(len(files), len(wav) // 640)
    cfg = pp.PreprocessConfig(crops=("syncnet",), features=(), syncnet_size=model.img_size)
    detector = pp.make_detector(cfg)
    detections = []
    try:
        for f in files[:n]:
            rgb = imread_rgb(f)
            detections.append([(np.asarray(d.box), d.score) for d in detector.detect(rgb)])
    finally:
        detector.close()
    size = (rgb.shape[1], rgb.shape[0])
    track = tracking.track_faces(detections, size, cfg)
    t2 = time.perf_counter()
    stages["faces (imread + detect)"] = t2 - t1

    crops = [crop_mod.crop_syncnet(imread_rgb(f), *track.syncnet[i], model.img_size) for i, f in enumerate(files[:n])]
    t3 = time.perf_counter()
    stages["crops (imread + crop)"] = t3 - t2

    # SyncNetInstance.evaluate: the whole video as one float tensor (1, 3, T, S, S), raw 0-255 BGR.
    imtv = torch.from_numpy(np.stack(crops, axis=0)).float().permute(3, 0, 1, 2).unsqueeze(0).contiguous()
    del crops
    mfcc = torch.from_numpy(syncnet_mfcc(wav))
    windows = num_sync_windows(n, len(wav))
    video_feats, audio_feats = [], []
    model.eval()
    with torch.no_grad():
        for start in range(0, windows, BATCH):
            stop = min(windows, start + BATCH)
            lip = torch.cat([imtv[:, :, i:i + 5] for i in range(start, stop)], 0)
            aud = torch.stack([mfcc[:, 4 * i:4 * i + 20] for i in range(start, stop)], 0).unsqueeze(1)
            video_feats.append(model.forward_lip(lip))
            audio_feats.append(model.forward_aud(aud))
    result = summarise_dists(calc_pdist(torch.cat(video_feats), torch.cat(audio_feats), VSHIFT), VSHIFT)
    stages["evaluate (whole-video tensor + network)"] = time.perf_counter() - t3
    stages["frame I/O (ffmpeg extraction + 2 imreads)"] = stages["extract frames (ffmpeg)"] + reading["s"]
    return result, stages


def child(args) -> None:
    """One measured run in this (fresh) process; writes a JSON record to ``args.record``."""
    import cv2  # noqa: F401  (imported before the clock starts: imports are not what is measured)
    import scipy.io.wavfile  # noqa: F401
    import torch

    from avlib.data import preprocess  # noqa: F401  (mediapipe's import takes seconds)
    from avlib.sync import tool  # noqa: F401
    from avlib.checkpoints import load_checkpoint

    from avlib import sync

    model, _ = load_checkpoint(args.weights)
    spent = _time_network(model)
    # Peak memory up to the distance step: calc_pdist (shared by both paths) materialises
    # (windows x (2 vshift + 1), D) float32 tensors, which dominates the peak of long clips.
    before_dists = {"kib": -1}
    real_pdist = sync.calc_pdist

    def pdist_with_snapshot(*a, **k):
        before_dists["kib"] = _rss_kib("VmHWM")
        return real_pdist(*a, **k)

    sync.calc_pdist = pdist_with_snapshot
    peak_ok = _reset_peak()
    baseline = _rss_kib("VmRSS")
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        cpu0 = _cpu_seconds()
        t0 = time.perf_counter()
        if args.child == "stream":
            result, stages = run_stream(Path(args.clip), model)
        else:
            frame_format, audio_source = VARIANTS[args.child]
            result, stages = run_files(Path(args.clip), model, frame_format, audio_source, Path(tmp))
        wall = time.perf_counter() - t0
        cpu = _cpu_seconds() - cpu0
        disk = sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file())
    record = {
        "variant": args.child,
        "wall_s": wall,
        "cpu_s": cpu,
        "network_s": spent["s"],
        "stages": stages,
        "peak_rss_mib": _rss_kib("VmHWM") / 1024,
        "peak_before_dists_mib": before_dists["kib"] / 1024,
        "baseline_rss_mib": baseline / 1024,
        "peak_reset": peak_ok,
        "disk_mib": disk / 2**20,
        "offset": result.offset,
        "min_dist": result.min_dist,
        "confidence": result.confidence,
        "mean_dists": [float(x) for x in result.mean_dists],
        "n_windows": result.n_windows,
        "torch_threads": torch.get_num_threads(),
    }
    Path(args.record).write_text(json.dumps(record))


# ============================================================================ the parent
def measure(variant: str, clip: Path, weights: Path, workdir: Path) -> dict:
    record = workdir / f"record_{variant}.json"
    cmd = [sys.executable, __file__, "--child", variant, "--clip", str(clip), "--weights", str(weights),
           "--workdir", str(workdir), "--record", str(record)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{variant} run failed:\n{proc.stderr[-3000:]}")
    return json.loads(record.read_text())


def report(name: str, kwargs: dict, trials: dict[str, list[dict]]) -> None:
    runs = {v: min(rs, key=lambda r: r["wall_s"]) for v, rs in trials.items()}
    a = runs["stream"]
    print(f"\n=== SyncNet {name} {kwargs or '(official size)'}: {a['n_windows']} windows, random weights, "
          f"torch threads {a['torch_threads']} ===")
    print(f"{'path':<34}{'wall s':>9}{'CPU s':>8}{'network s':>11}{'other s':>9}{'peak RSS MiB':>14}"
          f"{'above base':>12}{'before dists':>14}{'disk MiB':>10}")
    labels = {"stream": "(a) avlib sync check (streaming)", "jpeg": "(b) syncnet_python way (JPEG)",
              "png": "(b') same, PNG + tool audio"}
    for variant, r in runs.items():
        print(f"{labels[variant]:<34}{r['wall_s']:>9.1f}{r['cpu_s']:>8.1f}{r['network_s']:>11.1f}{r['wall_s'] - r['network_s']:>9.1f}"
              f"{r['peak_rss_mib']:>14.0f}{r['peak_rss_mib'] - r['baseline_rss_mib']:>12.0f}"
              f"{r['peak_before_dists_mib'] - r['baseline_rss_mib']:>14.0f}{r['disk_mib']:>10.1f}")
    for variant, r in runs.items():
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in r["stages"].items())
        print(f"  {variant:<6} stages: {stages}")
    if any(len(rs) > 1 for rs in trials.values()):
        for variant, rs in trials.items():
            walls = ", ".join(f"{r['wall_s']:.1f}" for r in rs)
            nets = ", ".join(f"{r['network_s']:.1f}" for r in rs)
            print(f"  {variant:<6} wall of each run: {walls} s; network: {nets} s")
    for variant, r in runs.items():
        if variant == "stream":
            continue
        speed = r["wall_s"] / a["wall_s"]
        cpu_speed = r["cpu_s"] / a["cpu_s"]
        other = (r["wall_s"] - r["network_s"]) / max(a["wall_s"] - a["network_s"], 1e-9)
        memory = (r["peak_rss_mib"] - r["baseline_rss_mib"]) / max(a["peak_rss_mib"] - a["baseline_rss_mib"], 1e-9)
        frames_memory = ((r["peak_before_dists_mib"] - r["baseline_rss_mib"])
                         / max(a["peak_before_dists_mib"] - a["baseline_rss_mib"], 1e-9))
        io = r["stages"][IO_B] / max(a["stages"][IO_A], 1e-9)
        print(f"  speed-up of (a) over {variant}: {speed:.2f}x wall ({cpu_speed:.2f}x CPU), "
              f"{other:.2f}x without the network, "
              f"{io:.1f}x on frame I/O; memory above baseline {memory:.1f}x smaller "
              f"({frames_memory:.1f}x before the distance step)")
    print(f"  {'':<6} {'offset':>7} {'LSE-D':>12} {'LSE-C':>12}  curve vs (a)")
    for variant, r in runs.items():
        diff = np.max(np.abs(np.asarray(r["mean_dists"]) - np.asarray(a["mean_dists"])))
        same = (r["offset"], r["min_dist"], r["confidence"]) == (a["offset"], a["min_dist"], a["confidence"])
        if variant == "stream":
            verdict = "reference"
        else:
            verdict = "IDENTICAL" if same and diff == 0 else f"max |diff| {diff:.2e}"
        print(f"  {variant:<6} {r['offset']:>+7d} {r['min_dist']:>12.6f} {r['confidence']:>12.6f}  {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="clip length (s)")
    parser.add_argument("--size", type=int, default=224, help="frame side (pixels)")
    parser.add_argument("--models", default="small,full", help=f"comma list of {sorted(MODELS)}")
    parser.add_argument("--variants", default="stream,jpeg,png", help=f"comma list of {list(VARIANTS)}")
    parser.add_argument("--repeats", type=int, default=1,
                        help="runs per path; the fastest is reported (the cores may be shared)")
    parser.add_argument("--workdir", default=None, help="folder for the clip and temporary files (kept)")
    parser.add_argument("--child", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--clip", help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    parser.add_argument("--record", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    import torch

    from avlib import envinfo
    from avlib.checkpoints import save_checkpoint
    from avlib.models import SyncNet

    print("machine:", json.dumps(envinfo.machine()))
    print("load average before: %.2f %.2f %.2f (other processes share these cores)" % os.getloadavg())
    own_dir = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="bench_sync_")) if own_dir else Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if "stream" not in variants:
        variants.insert(0, "stream")
    try:
        clip = workdir / f"talk_{args.seconds:g}s_{args.size}px.mp4"
        if not clip.exists():
            t0 = time.perf_counter()
            info = make_clip(clip, args.seconds, args.size)
            print(f"clip: {clip.name}: {info['frames']} frames {args.size}x{args.size}, {info['seconds']:.1f} s "
                  f"(rendered and written in {time.perf_counter() - t0:.1f} s)")
        for name in [m.strip() for m in args.models.split(",") if m.strip()]:
            torch.manual_seed(0)
            weights = save_checkpoint(workdir / f"syncnet_{name}", SyncNet(**MODELS[name]))[1]
            trials: dict[str, list[dict]] = {v: [] for v in variants}
            for _ in range(args.repeats):
                for v in variants:  # interleaved, so a burst of load hits every path alike
                    trials[v].append(measure(v, clip, weights, workdir))
            report(name, MODELS[name], trials)
        print("\nload average after: %.2f %.2f %.2f" % os.getloadavg())
    finally:
        if own_dir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
