"""Benchmark: the streaming sync tool versus syncnet_python's frames-on-disk approach.

Three modes, each run in fresh child processes on rendered talking-face clips (synthesized
speech, 25 fps) with SyncNets of **random weights** (no trained weights can be had here):
timings and memory do not depend on the weights, the identities below hold for any weights,
and the offsets random weights find mean nothing.

**Default mode** (one clip of ``--seconds`` at ``--size``; ``--models small,full``):

(a) ``avlib sync check`` (:func:`avlib.sync.tool.check_video`): the mp4 is decoded twice with PyAV,
    one frame at a time (faces, then crops streamed into the engine).
(b) syncnet_python's approach (spec §1.2, §1.5): ffmpeg writes every frame to a JPEG file
    (``-qscale:v 2``, run_pipeline.py's extraction) and the audio to a 16 kHz 16-bit wav; the JPEGs
    are read back with ``cv2.imread`` for face detection, then again for cropping; the crops of the
    whole video are stacked into one float32 tensor as ``SyncNetInstance.evaluate`` does, and the
    same engine and protocol (:class:`avlib.sync.batch.SyncEngine`, batches of 20 windows,
    ``calc_pdist``, ``summarise_dists``) run on it. Faces and crops use the same code as (a)
    (BlazeFace, :func:`avlib.data.tracking.track_faces`, :func:`avlib.data.crops.crop_syncnet`), so
    only the frame and audio handling differ. (syncnet_python also writes the crops to an XVID
    avi and extracts that to JPEGs again before scoring; that round trip is skipped here, which
    only makes (b) faster.)
(b') the same as (b) with lossless PNG frames and the audio read as (a) reads it: the inputs
    are then bit-identical to (a)'s, so the offset, LSE-D, LSE-C and the whole distance curve must
    be identical. (b) differs from (a) only by JPEG compression and 16-bit audio quantisation.

**--cropped** (one clip of ``--seconds`` whose 224 x 224 frames are the face, i.e. a pre-cropped
face track as syncnet_python's ``pycrop/*.avi``; full-size SyncNet by default): the tool with
``cropped=True`` in fp32 and in bf16, the tool with ``protocol="syncnet_python"``, and the
extract-JPEGs path as upstream and Wav2Lip's LSE scripts run it: ffmpeg JPEGs at ffmpeg's
default quality (``SyncNetInstance.evaluate``'s extraction), every file read with
``cv2.imread``, the whole video as one float32 tensor, the reference network (no fast copy) in
batches of 20.

**--batch** (``--clips`` clips of ``--seconds`` each; small SyncNet by default): videos per hour of
``avlib sync check CLIPS... --csv`` in one process (torch's default threads) versus
``--workers 2`` (one thread per worker; worker start-up included).

Every run reports its wall time, each stage's share (decode = frames, audio and its MFCC; face
detection and tracking; crops; network; distances), the network's achieved GFLOP/s (2 FLOP per
multiply-add of every convolution and linear layer, counted on a probe pass by
:func:`avlib.sync.batch.network_flops`: 3.1 GFLOP per lip window and 0.5 GFLOP per audio window
at full size), and its peak resident set size (``VmHWM``, reset after the imports and the model
load) above that baseline.

Run: ``.venv/bin/python benchmarks/bench_sync_tool.py [--seconds 60 --size 224 --models
small,full]``, ``... --cropped [--seconds 60]``, ``... --batch [--clips 8 --seconds 20]``;
``--seconds 5`` for a quick check that it works.
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

MODELS = {
    # name -> SyncNet kwargs
    "small": {"width": 0.25, "img_size": 112},
    "full": {},
}
VARIANTS = {
    # name -> (frame format, audio source) of the files path; None = a tool run
    "stream": None,
    "jpeg": ("jpg", "wav16"),
    "png": ("png", "tool"),
}
CROPPED_VARIANTS = ("crop_fp32", "crop_bf16", "crop_sp", "crop_jpeg")
BATCH_VARIANTS = ("batch1", "batch2")
LABELS = {
    "stream": "(a) avlib sync check (streaming)",
    "jpeg": "(b) syncnet_python way (JPEG)",
    "png": "(b') same, PNG + tool audio",
    "crop_fp32": "tool --cropped, fp32",
    "crop_bf16": "tool --cropped, bf16",
    "crop_sp": "tool --cropped --protocol syncnet_python",
    "crop_jpeg": "extract JPEGs + reference network",
    "batch1": "check --csv, 1 process",
    "batch2": "check --csv --workers 2",
}
STAGES = ("decode", "detect", "crop", "network", "distances")
VSHIFT = 15
BATCH = 20
IO_A = "frame I/O (2 PyAV decodes)"
IO_B = "frame I/O (ffmpeg extraction + 2 imreads)"


# ============================================================================ the clips
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


def ensure_clip(path: Path, seconds: float, size: int, seed: int = 0) -> Path:
    if not path.exists():
        t0 = time.perf_counter()
        info = make_clip(path, seconds, size, seed)
        print(f"clip: {path.name}: {info['frames']} frames {size}x{size}, {info['seconds']:.1f} s "
              f"(rendered and written in {time.perf_counter() - t0:.1f} s)")
    return path


# ============================================================================ child processes
def _cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (ffmpeg, workers), all threads."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _ffmpeg(*args: str) -> None:
    from avlib import media

    subprocess.run([media.ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args],
                   check=True)


def run_tool(clip: Path, model, **options) -> tuple[object, dict, dict]:
    """(a) and the --cropped tool variants: the sync tool, its own stage timings."""
    from avlib.sync import tool as synctool

    result, facts = synctool._analyse(clip, model, VSHIFT, BATCH, "cpu", progress=False, **options)
    stages = dict(facts["stages"])
    return result, stages, {"faces pass": facts["faces_s"], "sync pass": facts["sync_s"],
                            IO_A: stages["decode"], "forward": facts["forward_s"]}


def run_files(clip: Path, model, frame_format: str, audio_source: str, workdir: Path,
              cropped: bool = False, reference_net: bool = False) -> tuple[object, dict, dict]:
    """(b), (b') and crop_jpeg: every frame a file on disk, the whole video in memory."""
    import cv2
    import scipy.io.wavfile
    import torch

    from avlib import media
    from avlib.audio import syncnet_mfcc
    from avlib.data import crops as crop_mod
    from avlib.data import preprocess as pp
    from avlib.data import tracking
    from avlib.sync import calc_pdist, num_sync_windows, summarise_dists
    from avlib.sync.batch import SyncEngine, embed_stream

    stages = dict.fromkeys(STAGES, 0.0)
    extra = {}
    t0 = time.perf_counter()
    frames_dir = workdir / "frames"
    frames_dir.mkdir()
    # run_pipeline.py extracts the frames it detects faces on at -qscale:v 2;
    # SyncNetInstance.evaluate extracts the face track it scores at ffmpeg's default quality.
    opts = ["-qscale:v", "2"] if frame_format == "jpg" and not cropped else []
    _ffmpeg("-i", str(clip), *opts, "-f", "image2", str(frames_dir / f"%06d.{frame_format}"))
    files = sorted(frames_dir.glob(f"*.{frame_format}"))
    t_frames = time.perf_counter()
    extra["extract frames (ffmpeg)"] = t_frames - t0
    if audio_source == "wav16":
        _ffmpeg("-i", str(clip), "-vn", "-ac", "1", "-ar", "16000", "-acodec", "pcm_s16le",
                str(workdir / "audio.wav"))
        _, wav = scipy.io.wavfile.read(workdir / "audio.wav")  # int16, as syncnet_python feeds it
    else:
        wav = media.read_audio(clip)
    stages["decode"] += time.perf_counter() - t_frames  # the audio; frames are added below
    reading = {"s": 0.0}

    def imread(f: Path, rgb: bool = True) -> np.ndarray:
        t = time.perf_counter()
        image = cv2.imread(str(f))
        if rgb:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)  # avlib's face code takes RGB
        reading["s"] += time.perf_counter() - t
        return image

    n = min(len(files), len(wav) // 640)
    size = model.img_size
    if cropped:
        crops = [cv2.resize(imread(f, rgb=False), (size, size)) for f in files[:n]]
    else:
        cfg = pp.PreprocessConfig(crops=("syncnet",), features=(), syncnet_size=size)
        detector = pp.make_detector(cfg)
        detections = []
        try:
            for f in files[:n]:
                rgb = imread(f)
                t = time.perf_counter()
                detections.append([(np.asarray(d.box), d.score) for d in detector.detect(rgb)])
                stages["detect"] += time.perf_counter() - t
        finally:
            detector.close()
        t = time.perf_counter()
        track = tracking.track_faces(detections, (rgb.shape[1], rgb.shape[0]), cfg)
        stages["detect"] += time.perf_counter() - t
        crops = []
        for i, f in enumerate(files[:n]):
            rgb = imread(f)
            t = time.perf_counter()
            crops.append(crop_mod.crop_syncnet(rgb, *track.syncnet[i], size))
            stages["crop"] += time.perf_counter() - t
    stages["decode"] += extra["extract frames (ffmpeg)"] + reading["s"]
    # SyncNetInstance.evaluate: the whole video as one float tensor (1, 3, T, S, S), raw 0-255 BGR.
    t3 = time.perf_counter()
    imtv = torch.from_numpy(np.stack(crops, axis=0)).float().permute(3, 0, 1, 2)
    imtv = imtv.unsqueeze(0).contiguous()
    del crops
    mfcc = torch.from_numpy(syncnet_mfcc(wav))
    windows = num_sync_windows(n, len(wav))
    spent = 0.0
    if reference_net:  # upstream: 5 float copies per window, the network as written
        video_feats, audio_feats = [], []
        model.eval()
        with torch.no_grad():
            for start in range(0, windows, BATCH):
                stop = min(windows, start + BATCH)
                t = time.perf_counter()
                lip = torch.cat([imtv[:, :, i:i + 5] for i in range(start, stop)], 0)
                aud = torch.stack([mfcc[:, 4 * i:4 * i + 20] for i in range(start, stop)])
                aud = aud.unsqueeze(1)
                video_feats.append(model.forward_lip(lip))
                audio_feats.append(model.forward_aud(aud))
                spent += time.perf_counter() - t
        video_emb, audio_emb = torch.cat(video_feats), torch.cat(audio_feats)
    else:  # the tool's engine and batching on the same frames: identical numbers to (a)
        engine = SyncEngine(model, "fp32")
        frames = (imtv[0, :, t].permute(1, 2, 0).to(torch.uint8).numpy() for t in range(n))
        video_emb, audio_emb, _ = embed_stream(engine, frames, mfcc, n, BATCH)
        spent = engine.seconds
    stages["network"] = spent
    t = time.perf_counter()
    result = summarise_dists(calc_pdist(video_emb, audio_emb, VSHIFT), VSHIFT)
    stages["distances"] = time.perf_counter() - t
    extra["evaluate (whole-video tensor + network)"] = time.perf_counter() - t3
    extra[IO_B] = extra["extract frames (ffmpeg)"] + reading["s"]
    return result, stages, extra


def run_batch(clips: list[Path], model, workers: int, workdir: Path) -> dict:
    """``check --csv`` over the clips; adds ``steady_clips_per_hour``: the rate after each
    worker finished its first clip (start-up, imports and first-call costs left out)."""
    from avlib.sync import batch

    done: list[float] = []
    summary = batch.score_videos(clips, model, workdir / f"scores_{workers}.csv", workers=workers,
                                 vshift=VSHIFT, batch_size=BATCH, progress=False,
                                 on_row=lambda row: done.append(time.perf_counter()))
    first = min(workers, len(done)) - 1
    span = done[-1] - done[first] if len(done) > first + 1 else 0.0
    steady = (len(done) - 1 - first) / span * 3600 if span > 0 else float("nan")
    summary["steady_clips_per_hour"] = steady
    return summary


def child(args) -> None:
    """One measured run in this (fresh) process; writes a JSON record to ``args.record``."""
    # Imported before the clock starts (imports are not what is measured; mediapipe's takes
    # seconds).
    import cv2
    import scipy.io.wavfile
    import torch

    from avlib.checkpoints import load_checkpoint
    from avlib.data import preprocess
    from avlib.sync import tool
    from avlib.sync.batch import network_flops

    del cv2, scipy, preprocess, tool

    model, _ = load_checkpoint(args.weights)
    model.eval()
    flops = network_flops(model)
    variant = args.child
    peak_ok = reset_peak()
    baseline = rss_kib("VmRSS")
    record = {"variant": variant, "torch_threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        cpu0 = _cpu_seconds()
        t0 = time.perf_counter()
        if variant in BATCH_VARIANTS:
            clips = [Path(p) for p in json.loads(args.clip)]
            summary = run_batch(clips, model, int(variant[-1]), Path(tmp))
            result = None
            record.update(clips=len(clips), ok=summary["ok"], errors=summary["errors"],
                          clips_per_hour=summary["clips_per_hour"],
                          steady_clips_per_hour=summary["steady_clips_per_hour"])
            stages, extra = {}, {}
        elif variant == "stream":
            result, stages, extra = run_tool(Path(args.clip), model)
        elif variant in ("crop_fp32", "crop_bf16", "crop_sp"):
            options = {"cropped": True, "precision": "bf16" if variant == "crop_bf16" else "fp32",
                       "protocol": "syncnet_python" if variant == "crop_sp" else "avlib",
                       "tmp_dir": tmp}
            result, stages, extra = run_tool(Path(args.clip), model, **options)
        elif variant == "crop_jpeg":
            result, stages, extra = run_files(Path(args.clip), model, "jpg", "wav16", Path(tmp),
                                              cropped=True, reference_net=True)
        else:
            frame_format, audio_source = VARIANTS[variant]
            result, stages, extra = run_files(Path(args.clip), model, frame_format, audio_source,
                                              Path(tmp))
        wall = time.perf_counter() - t0
        cpu = _cpu_seconds() - cpu0
        disk = sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file())
    record.update({
        "wall_s": wall,
        "cpu_s": cpu,
        "stages": stages,
        "extra": extra,
        "flops_per_window": flops["lip"] + flops["aud"],
        "peak_rss_mib": rss_kib("VmHWM") / 1024,
        "baseline_rss_mib": baseline / 1024,
        "peak_reset": peak_ok,
        "disk_mib": disk / 2**20,
    })
    if result is not None:
        record.update(offset=result.offset, min_dist=result.min_dist, confidence=result.confidence,
                      mean_dists=[float(x) for x in result.mean_dists], n_windows=result.n_windows)
    Path(args.record).write_text(json.dumps(record))


# ============================================================================ the parent
def measure(variant: str, clip, weights: Path, workdir: Path) -> dict:
    record = workdir / f"record_{variant}.json"
    clip_arg = json.dumps([str(c) for c in clip]) if isinstance(clip, list) else str(clip)
    cmd = [sys.executable, __file__, "--child", variant, "--clip", clip_arg, "--weights",
           str(weights), "--workdir", str(workdir), "--record", str(record)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{variant} run failed:\n{proc.stderr[-3000:]}")
    return json.loads(record.read_text())


def _gflops(r: dict) -> float:
    """Achieved GFLOP/s of the network's forward passes (the tool's fast-copy folding, counted
    in its network stage, left out)."""
    net = r["extra"].get("forward", r["stages"].get("network", 0.0))
    return r["flops_per_window"] * r["n_windows"] / net / 1e9 if net > 0 else float("nan")


def _print_runs(runs: dict[str, dict], reference: str) -> None:
    print(f"{'path':<42}{'wall s':>8}{'CPU s':>8}{'network s':>10}{'GFLOP/s':>9}"
          f"{'peak RSS MiB':>14}{'above base':>12}{'disk MiB':>10}")
    for variant, r in runs.items():
        print(f"{LABELS[variant]:<42}{r['wall_s']:>8.1f}{r['cpu_s']:>8.1f}"
              f"{r['stages']['network']:>10.1f}{_gflops(r):>9.1f}{r['peak_rss_mib']:>14.0f}"
              f"{r['peak_rss_mib'] - r['baseline_rss_mib']:>12.0f}{r['disk_mib']:>10.1f}")
    print("  share of wall time per stage (decode = frames, audio and MFCC; detect = faces and "
          "tracking; crop; network; distances; other = the rest):")
    for variant, r in runs.items():
        shares = {k: r["stages"].get(k, 0.0) / r["wall_s"] for k in STAGES}
        other = 1.0 - sum(shares.values())
        print(f"  {variant:<10} " + "  ".join(f"{k} {100 * v:4.1f} %" for k, v in shares.items())
              + f"  other {100 * other:4.1f} %")
    a = runs[reference]
    for variant, r in runs.items():
        if variant == reference:
            continue
        memory = ((r["peak_rss_mib"] - r["baseline_rss_mib"])
                  / max(a["peak_rss_mib"] - a["baseline_rss_mib"], 1e-9))
        print(f"  {variant} takes {r['wall_s'] / a['wall_s']:.2f}x the wall time of {reference} "
              f"({r['stages']['network'] / max(a['stages']['network'], 1e-9):.2f}x its network "
              f"time, {memory:.1f}x its memory above baseline)")
    print(f"  {'':<10} {'offset':>7} {'LSE-D':>12} {'LSE-C':>12}  curve vs {reference}")
    for variant, r in runs.items():
        diff = np.max(np.abs(np.asarray(r["mean_dists"]) - np.asarray(a["mean_dists"])))
        keys = ("offset", "min_dist", "confidence")
        same = all(r[k] == a[k] for k in keys)
        if variant == reference:
            verdict = "reference"
        else:
            rel_d = abs(r["min_dist"] - a["min_dist"]) / abs(a["min_dist"])
            rel_c = abs(r["confidence"] - a["confidence"]) / max(abs(a["confidence"]), 1e-12)
            verdict = ("IDENTICAL" if same and diff == 0 else f"max |diff| {diff:.2e}; LSE-D "
                       f"{100 * rel_d:.3f} %, LSE-C {100 * rel_c:.3f} %")
        print(f"  {variant:<10} {r['offset']:>+7d} {r['min_dist']:>12.6f} "
              f"{r['confidence']:>12.6f}  {verdict}")


def report(name: str, kwargs: dict, trials: dict[str, list[dict]], reference: str) -> None:
    runs = {v: min(rs, key=lambda r: r["wall_s"]) for v, rs in trials.items()}
    a = runs[reference]
    print(f"\n=== SyncNet {name} {kwargs or '(official size)'}: {a['n_windows']} windows, random "
          f"weights, torch threads {a['torch_threads']}, {a['flops_per_window'] / 1e9:.2f} GFLOP "
          "per window ===")
    _print_runs(runs, reference)
    if "jpeg" in runs and reference == "stream":
        b = runs["jpeg"]
        io = b["extra"][IO_B] / max(a["extra"][IO_A], 1e-9)
        print(f"  frame I/O: (b) {b['extra'][IO_B]:.1f} s vs (a) {a['extra'][IO_A]:.1f} s "
              f"({io:.1f}x)")
    if any(len(rs) > 1 for rs in trials.values()):
        for variant, rs in trials.items():
            walls = ", ".join(f"{r['wall_s']:.1f}" for r in rs)
            print(f"  {variant:<10} wall of each run: {walls} s")


def report_batch(name: str, trials: dict[str, list[dict]], seconds: float) -> None:
    runs = {v: min(rs, key=lambda r: r["wall_s"]) for v, rs in trials.items()}
    print(f"\n=== batch throughput, SyncNet {name}, {runs['batch1']['clips']} clips of "
          f"{seconds:g} s ===")
    for variant, r in runs.items():
        print(f"  {LABELS[variant]:<28} {r['wall_s']:8.1f} s wall {r['cpu_s']:8.1f} s CPU  "
              f"{r['clips_per_hour']:8.0f} clips/hour overall, {r['steady_clips_per_hour']:8.0f} "
              f"after each worker's first clip  ({r['ok']} ok, {r['errors']} errors)")
    one, two = runs["batch1"], runs["batch2"]
    ratio = two["clips_per_hour"] / max(one["clips_per_hour"], 1e-9)
    steady = two["steady_clips_per_hour"] / max(one["steady_clips_per_hour"], 1e-9)
    print(f"  --workers 2 / 1 process: {ratio:.2f}x clips per hour overall (worker start-up "
          f"included: short runs understate it), {steady:.2f}x after start-up "
          "(target >= 1.7x on 2 free cores)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=None,
                        help="clip length (s); default 60 (--batch: 20 per clip)")
    parser.add_argument("--size", type=int, default=224, help="frame side (pixels)")
    parser.add_argument("--models", default=None,
                        help=f"comma list of {sorted(MODELS)}; default small,full "
                             "(--cropped: full, --batch: small)")
    parser.add_argument("--variants", default=None,
                        help=f"comma list of {list(VARIANTS)} "
                             f"(--cropped: {list(CROPPED_VARIANTS)})")
    parser.add_argument("--cropped", action="store_true",
                        help="pre-cropped 224 px face track: tool fp32 / bf16 / syncnet_python "
                             "protocol vs the extract-JPEGs path")
    parser.add_argument("--batch", action="store_true",
                        help="clips per hour: check --csv in 1 process vs --workers 2")
    parser.add_argument("--clips", type=int, default=6, help="--batch: number of clips")
    parser.add_argument("--repeats", type=int, default=1,
                        help="runs per path; the fastest is reported (the cores may be shared)")
    parser.add_argument("--workdir", default=None,
                        help="folder for the clips and temporary files (kept)")
    parser.add_argument("--child", choices=[*VARIANTS, *CROPPED_VARIANTS, *BATCH_VARIANTS],
                        help=argparse.SUPPRESS)
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

    mode = "batch" if args.batch else "cropped" if args.cropped else "default"
    seconds = args.seconds if args.seconds is not None else (20.0 if args.batch else 60.0)
    models = args.models or {"default": "small,full", "cropped": "full", "batch": "small"}[mode]
    if mode == "cropped":
        variants = (args.variants or ",".join(CROPPED_VARIANTS)).split(",")
        reference = "crop_fp32"
        size = 224  # the face track at the full-size model's input size
    elif mode == "batch":
        variants, reference, size = list(BATCH_VARIANTS), "batch1", args.size
    else:
        variants = (args.variants or ",".join(VARIANTS)).split(",")
        reference, size = "stream", args.size
    variants = [v.strip() for v in variants if v.strip()]
    if reference not in variants:
        variants.insert(0, reference)
    print("machine:", json.dumps(envinfo.machine()))
    print("load average before: %.2f %.2f %.2f (other processes share these cores)"
          % os.getloadavg())
    own_dir = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="bench_sync_")) if own_dir else Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        if mode == "batch":
            clip = [ensure_clip(workdir / f"talk_{seconds:g}s_{size}px_{i}.mp4", seconds, size,
                                seed=i) for i in range(args.clips)]
        else:
            clip = ensure_clip(workdir / f"talk_{seconds:g}s_{size}px.mp4", seconds, size)
        for name in [m.strip() for m in models.split(",") if m.strip()]:
            torch.manual_seed(0)
            weights = save_checkpoint(workdir / f"syncnet_{name}", SyncNet(**MODELS[name]))[1]
            trials: dict[str, list[dict]] = {v: [] for v in variants}
            for _ in range(args.repeats):
                for v in variants:  # interleaved, so a burst of load hits every path alike
                    trials[v].append(measure(v, clip, weights, workdir))
            if mode == "batch":
                report_batch(name, trials, seconds)
            else:
                report(name, MODELS[name], trials, reference)
        print("\nload average after: %.2f %.2f %.2f" % os.getloadavg())
    finally:
        if own_dir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
