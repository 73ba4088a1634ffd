# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
#   avlib:
#     needs: [00_corpus]
#     expected_seconds: {smoke: 50, cpu: 300, gpu: 1800}
# ---

# %% [markdown]
# # From videos to model inputs
# Decoding, face tracks, the crops each paper feeds its network, audio features on the video's clock, and a clip store that serves any window without decoding a video.

# %% [markdown]
# ## Overview
#
# Every model of this book reads the same raw material, a talking face at 25 fps with 16 kHz
# audio, but each paper cut it differently: SyncNet {cite}`chung2016syncnet` wants a colour
# crop of the whole face with a strip of neck, Wav2Lip {cite}`prajwal2020wav2lip` and VocaLiST
# {cite}`kadandale2022vocalist` a tight 96×96 face box in BGR, SyncVSR {cite}`ahn2024syncvsr` a
# grey LRW-style mouth, VCA-GAN {cite}`kim2021vcagan` a grey mouth aligned to a reference face.
# The audio side differs just as much: an 80 Hz mel spectrogram with or without pre-emphasis,
# or 100 Hz MFCCs. This chapter runs every step on clips of the corpus of chapter 00:
#
# 1. **decode** at a constant 25 fps, whatever the source's frame rate, with the audio on the
#    same clock;
# 2. **find the face**: BlazeFace detections {cite}`bazarevsky2019blazeface`, linked into a track,
#    gaps filled, boxes smoothed; the face mesh {cite}`kartynnik2019facemesh` for the lips;
# 3. **crop** the four model inputs;
# 4. **compute the audio features** and check how their frames line up with video frames;
# 5. **store** the whole corpus in a clip store, with rejections recorded, and measure what the
#    store buys over the per-frame JPEG folders of the original repositories.
#
# **Learning goals.** After this chapter you can explain how variable frame rates are handled;
# why face boxes are tracked and smoothed; which crop, colour order and resolution each of the
# five models expects and why a wrong one silently breaks pretrained weights; how many mel and
# MFCC frames belong to one video frame; and how to run the same pipeline on LRS2, LRW or GRID.
#
# **Prerequisites:** chapter 00 (the corpus); basic numpy and image arrays.

# %% [markdown]
# ## Setup

# %%
import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pandas as pd
import soundfile as sf
from matplotlib.patches import Rectangle

from avlib import audio as afeat
from avlib import book, faces, media, plotting
from avlib.artifacts import read_metadata
from avlib.corpus.make import find_corpus
from avlib.data import crops as cropping
from avlib.data import preprocess as pp
from avlib.data import tracking
from avlib.data.datasets import ClipItem, list_clips
from avlib.data.store import StoreWriter, find_store

# %% [markdown]
# ## Parameters
# Every expensive knob of the chapter. The runner injects the values of a profile
# (`profiles/*.yml`); the defaults below are those of the published `cpu` profile.

# %% tags=["parameters"]
profile = "cpu"  # the profile whose values these are (injected by the runner)
seed = 0  # picks the clips of the window-read measurement
device = "cpu"  # mediapipe runs on the CPU; nothing in this chapter uses a GPU
artifacts_root = None  # None: $AVLIB_ARTIFACTS or _build/artifacts/<profile>/
data_root = None  # None: chapter 00's corpus; else a corpus or a real dataset's folder
ckpt_policy = "auto"  # load: reuse the store; train: remake it; auto: make if missing
dataset = "corpus"  # "corpus", or a dataset: "lrs2", "lrs3", "lrw", "grid", "acappella"
kinds = ["grid", "sync"]  # corpus clip kinds put in the store (None: every kind)
split = None  # keep one split only (None: all)
workers = 2  # preprocessing processes
crops = ["face96", "syncnet", "mouth96", "vcagan112"]  # crop streams to store
features = ["wav2lip_mel", "syncnet_mfcc"]  # audio features to store
syncnet_size = 112  # SyncNet crop side in pixels; the released SyncNet v2 uses 224
jpeg_quality = 95  # quality of the stored JPEG crops (cv2.imwrite's default)
max_gap = 5  # detection gaps up to this many frames are interpolated
max_missing = 0.2  # reject a clip when more of its frames have no face
multi_face = "largest"  # several faces: keep the speaker's ("largest") or "reject"
smooth_window = 5  # moving average over face boxes (frames)
syncnet_smooth_window = 13  # median filter of syncnet_python (frames)
bench_clips = 6  # clips exported to the per-frame JPEG layout for the comparison
bench_windows = 200  # random 5-frame windows read each way

# %%
ch = book.chapter("01_preprocessing", profile=profile, seed=seed, device=device,
                  artifacts_root=artifacts_root, data_root=data_root)
cfg = pp.PreprocessConfig(
    crops=tuple(crops), features=tuple(features), syncnet_size=syncnet_size,
    max_gap=max_gap, max_missing=max_missing, multi_face=multi_face,
    smooth_window=smooth_window, syncnet_smooth_window=syncnet_smooth_window,
    jpeg_quality=jpeg_quality)
if dataset == "corpus":
    source = find_corpus(ch.artifacts, ch.data_root)
    listed = list_clips("corpus", source, split=split)
    items = [it for it in listed if kinds is None or it.extra.get("kind") in kinds]
    # The walk-through follows a GRID sentence: 3 s, one speaker, the longest clips.
    example = next((it for it in items if it.extra.get("kind") == "grid"), items[0])
else:
    if ch.data_root is None:
        raise ValueError(f"dataset={dataset!r} is read from data_root: pass its folder")
    source = ch.data_root
    items = list_clips(dataset, source, split=split)
    example = items[0]
work = Path(tempfile.mkdtemp(prefix="avlib_ch01_"))  # scratch files of the examples
costs = {}  # seconds of each step on the example clip
print(f"{dataset} at {ch.rel(source)}: {len(items)} clips to store; "
      f"example clip {example.id!r}")

# %% [markdown]
# ## Decoding at a constant 25 fps
#
# The models count time in video frames at 25 fps, and in audio samples at 16 kHz: 640 samples
# per frame. Real files do not always play along: phone and web video is often 30 fps or has a
# *variable* frame rate, and audio may be 44.1 or 48 kHz stereo. `avlib.media` places every
# stream on one clock whose zero is the first video frame's presentation time, and picks for
# output frame *k* the source frame that is on screen at time *k*/25 s. Audio is resampled to
# 16 kHz mono on the same clock.

# %%
t0 = time.perf_counter()
frames, wav, facts = pp.load_clip(example, cfg)
costs["decode"] = time.perf_counter() - t0
n_frames = len(frames)
timestamps = np.arange(n_frames) / 25
width, height = facts["source_size"]
print(f"{Path(example.video).name}: {width}x{height} at {facts['source_fps']:.2f} fps "
      f"(variable: {facts['variable_frame_rate']}), "
      f"audio {facts['source_audio_sr']} Hz x "
      f"{facts.get('source_audio_channels', 1)} channel(s)")
print(f"decoded: frames {frames.shape} {frames.dtype} RGB at t = {timestamps[:3]} ... "
      f"{timestamps[-1]:.2f} s; audio {wav.shape} samples at 16 kHz "
      f"= {len(wav) / afeat.SAMPLES_PER_FRAME:.2f} frames of 640 samples")

# %% [markdown]
# The corpus is already 25 fps. To see the conversion, we write two tiny videos whose frame *i*
# is a flat grey of level 8 (*i* + 1), so that a decoded frame tells which source frame it came
# from: one at 30 fps and one with irregular frame intervals (29, 58 and 62 ms, repeating).
# Decoding both at 25 fps drops source frames (30 → 25) or repeats and drops them (VFR)
# according to their timestamps.

# %%
def counter_video(path: Path, n: int = 30, fps: float = 30.0) -> Path:
    """A video whose frame i is a flat grey of level 8 (i + 1)."""
    levels = (8 * (np.arange(n) + 1)).astype(np.uint8)
    frames_ = np.broadcast_to(levels[:, None, None, None], (n, 64, 64, 3)).copy()
    return media.write_video(path, frames_, fps=fps)


def source_times(path: Path) -> np.ndarray:
    """Presentation times (s) of every frame of a file, from the container (PyAV)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        times = [float(f.pts * stream.time_base) for f in container.decode(stream)]
    return np.array(times) - times[0]


cfr30 = counter_video(work / "cfr30.mp4")
vfr = work / "vfr.mp4"
# Frame intervals of 29, 58 and 62 ms, repeating (timestamps in ms).
setpts = r"setpts='floor(N/3)*149+eq(mod(N\,3)\,1)*29+eq(mod(N\,3)\,2)*87'"
subprocess.run(
    [media.ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-i", str(cfr30),
     "-vf", f"settb=1/1000,{setpts}", "-fps_mode", "passthrough",
     "-enc_time_base", "1/1000", "-video_track_timescale", "1000",
     "-c:v", "libx264", "-preset", "veryfast", "-crf", "10", str(vfr)],
    check=True)
conversions, decoded = {}, {}
for path, title in ((cfr30, "30 fps source"), (vfr, "variable-frame-rate source")):
    src_t = source_times(path)
    out, out_t = media.read_video(path, fps=25)
    shown = np.rint(out.reshape(len(out), -1).mean(1) / 8 - 1).astype(int)
    decoded[title] = (src_t, out_t, shown)
    conversions[title] = {
        "source_frames": len(src_t), "output_frames": len(out),
        "variable": media.probe(path).variable_frame_rate,
        "dropped": sorted(set(range(len(src_t))) - set(shown.tolist())),
        "repeated": sorted({int(i) for i in shown if (shown == i).sum() > 1})}
pd.DataFrame(conversions).T

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Which source frame each 25 fps output frame shows (dots), against the source frame on screen at each time (grey steps), for a 30 fps source and a variable-frame-rate one.", "name": "fig-01-frame-rate"}}
fig, axes = plotting.figure(1, 2, height=2.6, sharey=True)
for ax, (title, (src_t, out_t, shown)) in zip(axes, decoded.items()):
    ax.step(src_t, np.arange(len(src_t)), where="post", color="0.6",
            label="source frame on screen")
    ax.plot(out_t, shown, "o", ms=3.5, color=plotting.COLORS["mouth"],
            label="25 fps output frame")
    ax.set(xlabel="time (s)", title=title)
axes[0].set_ylabel("source frame index")
axes[0].legend(loc="upper left")
plotting.save(fig, ch.figures / "frame_rate_conversion.png");

# %% [markdown]
# ## Finding the face
#
# The detector is mediapipe's BlazeFace {cite}`bazarevsky2019blazeface`. Its box runs from the eyebrows to the chin; the S3FD
# detector {cite}`zhang2017s3fd` that Wav2Lip and syncnet_python use draws taller boxes, from the forehead down, so the
# box is extended to match (`tracking.FACE_BOX_EXTEND`). The SyncNet window is wider again: a
# square around the face centre reaching further down than up, so the chin and the neck are in.
# The face mesh gives 468 landmarks; the 40 lip points (outer and inner contour) are stored with
# every clip.

# %%
detector = pp.make_detector(cfg)
k_show = n_frames // 2
frame = frames[k_show]
dets = detector.detect(frame)
with faces.FaceMesher(static_image_mode=True) as still_mesher:
    mesh = still_mesher.landmarks(frame)
if dets:
    print(f"frame {k_show}: {len(dets)} detection(s), score {dets[0].score:.3f}")
else:
    print(f"frame {k_show}: no detection")

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Left: the BlazeFace box (dashed) and keypoints, the box extended to S3FD's shape (blue) and the SyncNet window around it (red). Right: the 468 points of the face mesh, the 40 lip points in red.", "name": "fig-01-detection"}}
fig, axes = plotting.figure(1, 2, height=3.6, width=7.2)
for ax in axes:
    ax.imshow(frame)
    ax.axis("off")


def box_patch(x0, y0, x1, y1, **kw):
    return Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, **kw)


for d in dets:
    axes[0].add_patch(box_patch(*d.box, ls="--", lw=1.2, ec="#e08a1e"))
    e = tracking.s3fd_like_box(np.array(d.box))
    axes[0].add_patch(box_patch(*e, lw=1.4, ec="#2b6f9e"))
    x, y = (e[0] + e[2]) / 2, (e[1] + e[3]) / 2
    bs = max(e[2] - e[0], e[3] - e[1]) / 2
    top, bottom, left, right = cropping.syncnet_window(x, y, bs)
    axes[0].add_patch(box_patch(left, top, right, bottom, lw=1.2, ec="#c0445a"))
    axes[0].plot(*d.keypoints.T, "o", ms=3, color="#e08a1e")
axes[0].set_title("BlazeFace (dashed), S3FD-like box (blue),\nSyncNet window (red), "
                  "keypoints", fontsize=8)
if mesh is not None:
    axes[1].plot(mesh[:, 0], mesh[:, 1], ".", ms=1.2, color="#7fd1ff")
    lips = mesh[list(faces.LIPS_ALL)]
    axes[1].plot(lips[:, 0], lips[:, 1], ".", ms=2.5, color=plotting.COLORS["mouth"])
axes[1].set_title("face mesh: 468 landmarks, the 40 lip points in red", fontsize=8)
plotting.save(fig, ch.figures / "detection_and_mesh.png");

# %% [markdown]
# ### Tracks, gaps and smoothing
#
# Detections are made frame by frame and jitter by a pixel or two; a crop that follows them
# shakes, and a model then sees motion that is not speech. The pipeline links detections into
# tracks by overlap (IoU ≥ 0.5, as syncnet_python), keeps the speaker's track, fills gaps of up to
# `max_gap` frames by interpolation and smooths the boxes: a centred moving average of
# `smooth_window` frames for the face crop (Wav2Lip smooths over 5 frames at inference), a running
# median of `syncnet_smooth_window` frames for the SyncNet crop (syncnet_python's kernel 13).
# To show the gap filling we also delete the detections of four frames.

# %%
t0 = time.perf_counter()
detections = tracking.detect_faces(frames, detector)
costs["detect"] = time.perf_counter() - t0
frame_size = (frames.shape[2], frames.shape[1])
t0 = time.perf_counter()
track = tracking.track_faces(detections, frame_size, cfg)
costs["track"] = time.perf_counter() - t0
holed = [[] if 20 <= k < 24 else d for k, d in enumerate(detections)]
holed_track = tracking.track_faces(holed, frame_size, cfg)
states = np.array(["detected", "interpolated", "missing"])
names_, counts_ = np.unique(states[holed_track.state], return_counts=True)
print(f"box jitter (mean centre step / box width): "
      f"raw {track.stats['box_jitter_raw']:.4f}, "
      f"smoothed {track.stats['box_jitter_smooth']:.4f}; with the hole: states "
      f"{ {str(k): int(v) for k, v in zip(names_, counts_)} }")

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Face-box centres over the clip: as detected (grey), after the 5-frame mean of the face crop (blue) and the 13-frame median of the SyncNet crop (dashed). Right: the same track with the detections of four frames deleted and interpolated.", "name": "fig-01-box-smoothing"}}
raw_c = (track.raw[:, :2] + track.raw[:, 2:]) / 2
smooth_c = (track.boxes[:, :2] + track.boxes[:, 2:]) / 2
fig, axes = plotting.figure(1, 3, height=2.6)
t_axis = np.arange(n_frames) / 25
for ax, col, name in zip(axes[:2], (0, 1), ("box centre x (px)", "box centre y (px)")):
    ax.plot(t_axis, raw_c[:, col], color="0.55", lw=1, label="detected (S3FD-like)")
    ax.plot(t_axis, smooth_c[:, col], color=plotting.COLORS["audio"], lw=1.6,
            label=f"mean {smooth_window}")
    ax.plot(t_axis, track.syncnet[:, col], color=plotting.COLORS["mouth"], lw=1.2,
            ls="--", label=f"median {syncnet_smooth_window} (SyncNet)")
    ax.set(xlabel="time (s)", title=name)
axes[0].legend(loc="best")
h_c = (holed_track.raw[:, :2] + holed_track.raw[:, 2:]) / 2
axes[2].plot(t_axis, h_c[:, 0], color="0.55", lw=1)
for s, color in ((tracking.DETECTED, "0.55"),
                 (tracking.INTERPOLATED, plotting.COLORS["pred"])):
    sel = holed_track.state == s
    axes[2].plot(t_axis[sel], h_c[sel, 0], "o", ms=2.5, color=color, label=states[s])
axes[2].set(xlabel="time (s)", title="centre x, detections of 4 frames deleted")
axes[2].legend(loc="best")
plotting.save(fig, ch.figures / "box_smoothing.png");

# %% [markdown]
# The mesh then runs on every frame in tracking mode (one fresh mesher per clip: tracking
# reuses the previous frame's landmarks), and a frame where it fails or lands on another face is
# interpolated from its neighbours.

# %%
t0 = time.perf_counter()
landmarks, found = tracking.mesh_landmarks(frames, track)
costs["mesh"] = time.perf_counter() - t0
print(f"mesh found on {found.sum()} of {n_frames} frames; landmarks {landmarks.shape}")

# %% [markdown]
# ## The crops of each paper
#
# | stream | shape, colour | used by | how it is cut |
# |---|---|---|---|
# | `face96` | 96×96, **BGR** | Wav2Lip {cite}`prajwal2020wav2lip` (generator, lip-sync expert, visual discriminator); VocaLiST {cite}`kadandale2022vocalist` and MTDVocaLiST {cite}`chen2024mtdvocalist` read its lower half (rows 48–95) | smoothed S3FD-like box, clipped to the frame, no padding, resized |
# | `syncnet` | S×S, **BGR** (S = `syncnet_size`; 224 for the released model) | SyncNet v2 {cite}`chung2016syncnet` and the LSE-D / LSE-C metrics | syncnet_python's window around the median-filtered box, grey (110) outside the frame |
# | `mouth96` | 96×96, grey | SyncVSR's LRW word model {cite}`ahn2024syncvsr`; classic LRW front-ends centre-crop 88×88 | SyncVSR's 112×96 box around the lips-and-jaw centre, scaled to LRW's face size, centre 96×96 |
# | `vcagan112` | 112×112, grey | VCA-GAN lip-to-speech {cite}`kim2021vcagan` | similarity alignment of eye and mouth corners to a 256×256 reference face, crop 136×136, resize |
#
# The colour order matters more than it looks: Wav2Lip, VocaLiST and SyncNet read frames with
# OpenCV, so their released weights expect **BGR**; feeding RGB swaps red and blue, nothing
# fails, and the weights simply see colours they were never trained on. avlib
# decodes RGB and converts at the crop step, and the store records each stream's order.

# %%
t0 = time.perf_counter()
streams = pp.make_crops(frames, track, landmarks, cfg)
costs["crops"] = time.perf_counter() - t0
pd.DataFrame({name: {"shape": arr.shape, "order": cropping.CROP_ORDERS[name]}
              for name, arr in streams.items()}).T

# %% tags=["hide-input"] mystnb={"figure": {"caption": "The four crops at seven moments of the clip. The veiled upper half of `face96` is what VocaLiST and the sync experts never see; the orange square in `mouth96` is the 88×88 centre crop of classic LRW front-ends.", "name": "fig-01-crops"}}
labels = {
    "face96": ("face96 (BGR, shown as RGB)\nWav2Lip; VocaLiST and the\n"
               "experts: the lower half"),
    "syncnet": f"syncnet {syncnet_size}x{syncnet_size} (BGR)\nSyncNet v2, LSE-D/C",
    "mouth96": "mouth96 (grey)\nSyncVSR / LRW: centre 88x88",
    "vcagan112": "vcagan112 (grey)\nVCA-GAN"}
show_k = np.linspace(0, n_frames - 1, 7).astype(int)
names = list(streams)
fig, axes = plotting.figure(len(names), len(show_k) + 1, height=1.1 * len(names),
                            width=8.0, squeeze=False,
                            gridspec_kw={"width_ratios": [1.9] + [1] * len(show_k)})
for r, name in enumerate(names):
    axes[r, 0].axis("off")
    axes[r, 0].text(0.0, 0.5, labels[name], fontsize=7.5, va="center",
                    transform=axes[r, 0].transAxes)
    for c, k in enumerate(show_k):
        ax = axes[r, c + 1]
        img = streams[name][k]
        if cropping.CROP_ORDERS[name] == "bgr":
            img = img[..., ::-1]  # BGR -> RGB for display only
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255)
        ax.axis("off")
        if name == "face96":  # veil the upper half: the experts see rows 48-95 only
            ax.add_patch(Rectangle((-0.5, -0.5), 96, 48, color="white", alpha=0.5,
                                   lw=0))
        if name == "mouth96":
            ax.add_patch(Rectangle((3.5, 3.5), 88, 88, fill=False,
                                   ec=plotting.COLORS["pred"], lw=0.8))
        if r == 0:
            ax.set_title(f"{k / 25:.2f} s", fontsize=7)
plotting.save(fig, ch.figures / "crops.png");

# %% [markdown]
# ## Audio features on the video's clock
#
# The audio is trimmed or padded to exactly 640 samples per frame, so frame *f* owns samples
# [640 *f*, 640 *f* + 640). The features run at other rates, and every model slices them by
# video frame:
#
# - **Wav2Lip mel** (pre-emphasis, 80 bands, hop 200): 80 frames/s, 3.2 mel frames per video
#   frame; a 5-frame window is 16 mel frames starting at column ⌊3.2 *f*⌋.
# - **VocaLiST mel**: the same without pre-emphasis (its training code computes it on the GPU
#   from the audio window; the store keeps the audio, not this mel).
# - **SyncNet MFCC** (13 coefficients, 10 ms step): 100 frames/s, exactly 4 per video frame; a
#   5-frame window is 20 MFCC frames starting at column 4 *f*.

# %%
# The first call builds the mel filterbank (and imports librosa): not timed.
afeat.wav2lip_mel(np.zeros(3200, np.float32))
t0 = time.perf_counter()
fitted, audio_info = pp.fit_audio(wav, n_frames)
mel = afeat.wav2lip_mel(fitted)
costs["features"] = time.perf_counter() - t0
vmel = afeat.vocalist_mel(fitted)
mfcc = afeat.syncnet_mfcc(fitted)
bookkeeping = pd.DataFrame([
    ("audio samples", afeat.SR, afeat.SAMPLES_PER_FRAME,
     afeat.SAMPLES_PER_FRAME * afeat.SYNC_WINDOW_FRAMES, len(fitted)),
    ("Wav2Lip / VocaLiST mel", afeat.MEL_FPS, afeat.MEL_FRAMES_PER_VIDEO_FRAME,
     afeat.MEL_WINDOW, mel.shape[1]),
    ("SyncNet MFCC", afeat.MFCC_FPS, afeat.MFCC_FRAMES_PER_VIDEO_FRAME,
     afeat.MFCC_WINDOW, mfcc.shape[1]),
], columns=["signal", "per second", "per video frame", "per 5-frame window",
            f"this clip ({n_frames} frames)"]).set_index("signal")
plotting.table(bookkeeping)

# %% [markdown]
# {numref}`fig-01-features` draws half a second of the clip, from just before speech starts, on
# one time axis. Grey lines are video frame boundaries; the shaded span is one 5-frame window,
# and the white brackets in each feature mark the columns `mel_window` and `mfcc_window` return
# for it. The MFCC bracket matches the video window exactly; the mel bracket starts up to half a
# mel frame (6 ms) early, because the centred STFT puts mel column *j* at 12.5 *j* ms and
# upstream starts the window at column ⌊3.2 *f*⌋.

# %%
frame_rms = np.sqrt((fitted.reshape(n_frames, -1) ** 2).mean(axis=1))
voiced = np.flatnonzero(frame_rms > 0.1 * frame_rms.max())
f_show = min(12, n_frames)
f_start = int(np.clip((voiced[0] if len(voiced) else 0) - 3, 0, n_frames - f_show))
f0 = min(f_start + 2, n_frames - afeat.SYNC_WINDOW_FRAMES)  # the window drawn
m0 = afeat.mel_start_index(f0)
c0 = afeat.MFCC_FRAMES_PER_VIDEO_FRAME * f0
w = afeat.mel_window(mel, f0)
print(f"window at frame {f0}: samples [{640 * f0}, {640 * (f0 + 5)}), "
      f"mel columns [{m0}, {m0 + w.shape[1]}) -> {w.shape}, "
      f"MFCC columns [{c0}, {c0 + afeat.MFCC_WINDOW}) "
      f"-> {afeat.mfcc_window(mfcc, f0).shape}")
diff = np.abs(mel - vmel)
print(f"pre-emphasis: Wav2Lip and VocaLiST mel differ by {diff[:20].mean():.3f} "
      f"on the 20 lowest bands and {diff[-20:].mean():.3f} on the 20 highest "
      "(normalised units)")

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Half a second of the clip on one time axis: the waveform, both mels and the MFCCs. Grey lines are video frame boundaries, the light span one 5-frame window, and the white brackets the feature columns `mel_window` and `mfcc_window` return for it.", "name": "fig-01-features"}}
t_begin, t_end = f_start / 25, (f_start + f_show) / 25
fig, axes = plotting.figure(4, 1, height=6.2, sharex=True)
axes[0].plot(np.arange(len(fitted)) / afeat.SR, fitted, color=plotting.COLORS["audio"],
             lw=0.5)
axes[0].set_ylabel("waveform")
# Centred STFT: mel column j is centred on sample 200 j; MFCC frame j starts at 160 j.
mel_step, mfcc_step = 1 / afeat.MEL_FPS, 1 / afeat.MFCC_FPS
panels = [(axes[1], mel, mel_step, -0.5 * mel_step, "Wav2Lip mel"),
          (axes[2], vmel, mel_step, -0.5 * mel_step, "VocaLiST mel"),
          (axes[3], mfcc, mfcc_step, 0.0, "SyncNet MFCC")]
for ax, feat, step, offset, label in panels:
    ax.imshow(feat, aspect="auto", origin="lower", cmap=plotting.CMAP,
              interpolation="nearest",
              extent=(offset, offset + feat.shape[1] * step, 0, feat.shape[0]))
    ax.set_ylabel(label)
    ax.grid(False)
for ax in axes:
    for k in range(f_start, f_start + f_show + 1):
        ax.axvline(k / 25, color="0.75", lw=0.6)
    ax.axvspan(f0 / 25, (f0 + 5) / 25, color="white", alpha=0.18)
for ax in axes[1:3]:
    ax.add_patch(Rectangle((m0 * mel_step - 0.5 * mel_step, 1),
                           afeat.MEL_WINDOW * mel_step, 78, fill=False, ec="white",
                           lw=1.2))
axes[3].add_patch(Rectangle((c0 * mfcc_step, 0.3), afeat.MFCC_WINDOW * mfcc_step, 12.4,
                            fill=False, ec="white", lw=1.2))
axes[3].set(xlabel="time (s)", xlim=(t_begin, t_end))
plotting.save(fig, ch.figures / "features_on_video_clock.png");

# %% [markdown]
# Pre-emphasis is a high-pass filter: it removes most of the energy below a few hundred hertz
# and lifts the top of the spectrum by up to 6 dB, so the two mels differ most in the lowest
# bands (the printed differences above). A VocaLiST checkpoint fed Wav2Lip's mel would hear a
# voice without its low end.
#
# ### What each step costs
#
# The steps above were timed on the example clip (one process; wall time also depends on what
# else runs on the machine):

# %%
whole = "whole clip (preprocess_clip, incl. JPEG encoding)"
t0 = time.perf_counter()
with tempfile.TemporaryDirectory(dir=work) as tmp:
    writer = StoreWriter(tmp, cfg.to_dict(), cfg.jpeg_quality)
    pp.preprocess_clip(example, writer, cfg, detector)
costs[whole] = time.perf_counter() - t0
per_frame = {k: 1000 * v / n_frames for k, v in costs.items()}
cost_table = pd.DataFrame({"seconds": costs, "ms per frame": per_frame})
steps = cost_table.drop(index=whole)["seconds"]
print("largest steps: " + ", ".join(f"{k} ({100 * v / steps.sum():.0f} % of the steps)"
                                    for k, v in steps.nlargest(2).items()))
cost_table.round(3)

# %% [markdown]
# Face detection and the mesh run a neural network on every frame; the crops and features are
# array work whose cost grows with the crop sizes (timings vary with the machine's load). Two
# cheaper set-ups when the machine is small: store only the crops a chapter needs
# (`crops=["face96", "syncnet"]` still runs the mesh, for the stored lip landmarks and the track
# check), or preprocess only the clips the next chapters read, which is what the `kinds`
# parameter does.

# %% [markdown]
# ## Preprocessing the corpus into the store
#
# `preprocess.store_artifact` lists the clips, preprocesses them in `workers` processes (each
# with its own detector and store writer) and records the store so that later chapters find it
# with `avlib.data.store.find_store(artifacts_root)`. It is keyed by the settings above: a rerun
# with the same settings loads the store, and a killed run resumes clip by clip. A clip that
# cannot be used is never an exception: it becomes a *rejection* with a reason code.
#
# The `cpu` profile stores the GRID sentences and the shifted sync-test clips (`kinds`): they
# are what the sync chapters train and evaluate on. The LRW-style word clips serve lip reading;
# a chapter that needs them preprocesses them with the same call, `kinds=["lrw"]` and
# `record=False` (so that `find_store` keeps returning this store). The `gpu` profile stores
# every kind.

# %%
t0 = time.perf_counter()
store_dir = pp.store_artifact(cfg, ch.artifacts, dataset=dataset,
                              data_root=ch.data_root, kinds=kinds, split=split,
                              policy=ckpt_policy, workers=workers, progress=True)
cell_seconds = time.perf_counter() - t0
run = read_metadata(store_dir)["metadata"]
store = find_store(ch.artifacts)
assert store.root == store_dir
print(f"store (in the artifacts folder): {ch.rel(store_dir)}")
print(f"{run['items']} clips listed: {run['processed']} processed, "
      f"{run['skipped']} already done, rejected {run['rejected'] or 'none'}; "
      f"{run['frames']} frames = {run['hours'] * 60:.1f} min of video in "
      f"{run['seconds']:.1f} s with {run['workers']} worker process(es) "
      f"({run['frames_per_s']:.0f} frames/s, {run['clips_per_s']:.2f} clips/s); "
      f"this cell took {cell_seconds:.1f} s")

# %% [markdown]
# ### What the store holds
#
# Per split: clips, frames and the face-track statistics the pipeline recorded for every clip
# (detected and interpolated frames, mesh failures, mean detector score, box jitter before and
# after smoothing).

# %%
rows = []
for rec in store.clips:
    ft = rec["face_track"]
    rows.append({"kind": (rec.get("extra") or {}).get("kind", rec.get("dataset")),
                 "split": rec["split"], "clips": 1, "frames": rec["n_frames"],
                 "detected": ft["detected"], "interpolated": ft["interpolated"],
                 "missing": ft["missing"], "mesh failed": ft["mesh_filled"],
                 "score": ft["mean_score"], "jitter raw": ft["box_jitter_raw"],
                 "jitter smooth": ft["box_jitter_smooth"]})
per_clip = pd.DataFrame(rows)
stats = per_clip.groupby(["kind", "split"]).agg(
    clips=("clips", "sum"), frames=("frames", "sum"), detected=("detected", "sum"),
    interpolated=("interpolated", "sum"), missing=("missing", "sum"),
    mesh_failed=("mesh failed", "sum"), mean_score=("score", "mean"),
    jitter_raw=("jitter raw", "mean"), jitter_smooth=("jitter smooth", "mean"))
stats.insert(2, "minutes", (stats["frames"] / 25 / 60).round(2))
stats["detected %"] = (100 * stats.pop("detected") / stats["frames"]).round(2)
stats.round(4)

# %%
summary = store.manifest["summary"]
print(f"{summary['n_clips']} clips, {summary['n_rejected']} rejected "
      f"({summary['rejections'] or 'no rejection'}), {summary['n_frames']} frames, "
      f"{summary['hours'] * 60:.1f} minutes; "
      f"{summary['image_bytes'] / 2**20:.1f} MiB of JPEG crops")

# %% [markdown]
# ### Rejections
#
# Real datasets contain broken files. To see what the pipeline does with them we make a few
# deliberately bad inputs: one second of the example clip cut to 60 % of its bytes, a text file
# named `.mp4`, the example's first frames without audio, a clip of noise with no face, and a
# clip of three frames (shorter than the shortest model context, five frames).

# %%
bad_dir = work / "bad"
bad_dir.mkdir()
second = media.write_video(work / "one_second.mp4", frames[:25],
                           audio=fitted[: 25 * 640])
data = second.read_bytes()
(bad_dir / "truncated.mp4").write_bytes(data[: len(data) * 6 // 10])
(bad_dir / "notes.mp4").write_text("lecture notes, not a video\n" * 20)
media.write_video(bad_dir / "silent.mp4", frames[:15])
noise = np.random.default_rng(seed).integers(0, 256, (10, 96, 96, 3), dtype=np.uint8)
media.write_video(bad_dir / "noise.mp4", noise, audio=fitted[: 10 * 640])
media.write_video(bad_dir / "short.mp4", frames[:3], audio=fitted[: 3 * 640])
bad_items = [ClipItem(p.stem, "bad", p, "test", None, None, [])
             for p in sorted(bad_dir.glob("*.mp4"))]
bad = pp.preprocess_dataset(bad_items, work / "bad_store", cfg, workers=1,
                            progress=False)
# the details name the scratch folder: show the paths inside it
rejections = pd.DataFrame([
    {"clip": r["id"], "reason": r["reason"], "meaning": pp.REJECT_REASONS[r["reason"]],
     "detail": r["detail"].replace(f"{bad_dir}/", "")[:90]}
    for r in bad["manifest"]["clips"]]).set_index("clip")
rejections

# %% [markdown]
# Each reason code is in `preprocess.REJECT_REASONS`; the store keeps a `rejected/<id>.json`
# record with the detail and whatever was learnt before the rejection (for `no_face`, the
# face-track statistics), and `ClipStore.rejected` lists them.

# %% [markdown]
# ## Windows from the store versus per-frame JPEG files
#
# Wav2Lip and VocaLiST train from folders of per-frame JPEG files plus `audio.wav`, and compute
# the mel spectrogram of the whole wav for every training sample. The store keeps each clip's
# JPEGs back to back with an index, so a 5-frame window is one read of a contiguous byte range,
# and the features are precomputed and memory-mapped. `ClipStore.export_jpeg_layout` writes the
# upstream layout byte for byte; we export a few clips and read the same random windows both
# ways, and the image files alone, to separate the cost of the frames from that of the mel.

# %% tags=["hide-input"]
rng = np.random.default_rng(seed)
pool = store.select(split="train") or store.clips
chosen = rng.choice(len(pool), size=min(bench_clips, len(pool)), replace=False)
bench_ids = [pool[i]["id"] for i in chosen]
jpeg_root = work / "jpeg_layout"
folder_of = {}
for i, cid in enumerate(bench_ids):
    # One export folder per clip, so the clip's folder holds the only audio.wav.
    store.export_jpeg_layout(jpeg_root / str(i), "face96", clip_ids=[cid])
    folder_of[cid] = next((jpeg_root / str(i)).rglob("audio.wav")).parent
windows = [(cid, int(rng.integers(0, store.n_frames(cid) - 5 + 1)))
           for cid in rng.choice(bench_ids, size=bench_windows)]


def read_store(cid, start):
    mel_cols = afeat.mel_window(store.feature(cid, "wav2lip_mel"), start)
    return store.frames(cid, "face96", start, 5), mel_cols


def read_jpeg_layout(cid, start):
    folder = folder_of[cid]
    imgs = np.stack([cv2.imread(str(folder / f"{start + i}.jpg")) for i in range(5)])
    wav_f, _ = sf.read(folder / "audio.wav", dtype="float32")
    return imgs, afeat.mel_window(afeat.wav2lip_mel(wav_f), start)


def read_jpeg_frames_only(cid, start):
    folder = folder_of[cid]
    return np.stack([cv2.imread(str(folder / f"{start + i}.jpg")) for i in range(5)])


STORE = "store: frames() + feature slice"
JPEG = "JPEG files: cv2.imread + mel of the wav"
timings = {}
for name, reader in ((STORE, read_store), (JPEG, read_jpeg_layout),
                     ("JPEG files: cv2.imread only", read_jpeg_frames_only)):
    reader(*windows[0])  # warm the caches of both paths alike
    t0 = time.perf_counter()
    for cid, start in windows:
        reader(cid, start)
    timings[name] = 1000 * (time.perf_counter() - t0) / len(windows)
a_img, a_mel = read_store(*windows[1])
b_img, b_mel = read_jpeg_layout(*windows[1])
assert np.array_equal(a_img, b_img), "exported JPEGs must decode to the stored pixels"
speedup = timings[JPEG] / timings[STORE]
print(f"same pixels both ways; mel differs by at most "
      f"{np.abs(a_mel - b_mel).max():.4f} "
      "(the store's mel was computed before the audio was rounded to 16 bits)")
pd.Series(timings, name="ms per 5-frame window").round(3).to_frame()

# %% tags=["hide-input"]
def disk_bytes(paths) -> tuple[int, int]:
    """(apparent size, allocated size) of files: what `ls` and what `du` count."""
    apparent = allocated = 0
    for p in paths:
        st = p.stat()
        apparent += st.st_size
        allocated += st.st_blocks * 512
    return apparent, allocated


# The per-frame layout of the other streams (their JPEG files; audio.wav is counted).
other_streams = [n for n in store.meta(bench_ids[0])["streams"] if n != "face96"]
for name in other_streams:
    for i, cid in enumerate(bench_ids):
        store.export_jpeg_layout(work / f"layout_{name}" / str(i), name, clip_ids=[cid])
face_layout = [p for p in jpeg_root.rglob("*") if p.is_file()]
all_layout = face_layout + [p for name in other_streams
                            for p in (work / f"layout_{name}").rglob("*.jpg")]
face_store, face_store_feats, whole_store = [], [], []
for cid in bench_ids:
    d = store.clip_dir(cid)
    base = [d / "face96.jpg.bin", d / "face96.idx.npy", d / "audio.npy",
            d / "meta.json"]
    face_store += base
    face_store_feats += base + sorted((d / "features").glob("*.npy"))
    # every stream, audio, features, face boxes, lip landmarks, metadata
    whole_store += [p for p in d.rglob("*") if p.is_file()]
layout_face = "per-frame layout: face96 + audio.wav"
layout_all = "per-frame layout: every stream + audio.wav"
compared = {layout_face: (face_layout, layout_face),
            "store: face96 + audio": (face_store, layout_face),
            "store: face96 + audio + features": (face_store_feats, layout_face),
            layout_all: (all_layout, layout_all),
            "store: every stream, audio, features": (whole_store, layout_all)}
size_table = pd.DataFrame({name: (*disk_bytes(files), len(files))
                           for name, (files, _) in compared.items()},
                          index=["bytes", "bytes on disk", "files"]).T
reference = [ref for _, ref in compared.values()]
for col in ("bytes", "bytes on disk"):
    ratio = size_table[col] / size_table.loc[reference, col].to_numpy()
    size_table[col.replace("bytes", "ratio")] = ratio.round(3)
size_table

# %% [markdown]
# Each ratio compares a store row with the per-frame layout above it, on the same clips. The
# store's streams hold the very JPEG bytes of the per-frame files, so without features the two
# hold about the same bytes, while on disk each of the many small files of the per-frame layout
# also wastes part of a file-system block. Stored features cost extra bytes (80 mel values per
# 12.5 ms, 13 MFCCs per 10 ms) in exchange for never recomputing them; this is why they are stored
# as float16 (`feature_dtype`), why the profiles store only `wav2lip_mel` and `syncnet_mfcc`, and
# why VocaLiST's mel is computed from the stored audio when it is needed.

# %% [markdown]
# ## The same pipeline on LRS2, LRW and GRID
#
# Nothing above is specific to the corpus. The dataset adapters of `avlib.data.datasets` list the
# clips of the real layouts (LRS2 {cite}`afouras2018lrs2`, LRS3 {cite}`afouras2018lrs3`, LRW
# {cite}`chung2016lrw`, GRID {cite}`cooke2006grid`, Acappella {cite}`montesinos2021acappella`)
# and the command line runs the same pipeline, resumable and shardable:
#
# ```bash
# # LRS2 (pass the mvlrs_v1 folder): the official train list, 16 processes, shard 0 of 4 machines
# avlib preprocess --dataset lrs2 --root /data/mvlrs_v1 --split train \
#     --out /data/stores/lrs2 --workers 16 --shard 0/4
# # LRW (pass lipread_mp4): the test split only, the 224-pixel SyncNet crop of the released model
# avlib preprocess --dataset lrw --root /data/lipread_mp4 --split test --out /data/stores/lrw --workers 16
# # GRID with a split list (one "s<N>/<id>" or "<split>/s<N>/<id>" a line, e.g. VCA-GAN's lists)
# avlib preprocess --dataset grid --root /data/grid --split-file /data/grid/splits/test.txt \
#     --out /data/stores/grid --workers 8
# ```
#
# Shards are chosen by a stable hash of the clip id, so N machines writing into one folder (or
# into N folders) split a dataset without talking to each other; each finishes by rewriting the
# manifest of what exists so far. A chapter reads a real store by passing its folder as
# `data_root`, or builds one through this chapter's parameters, e.g.
# `avlib book run --only 01_preprocessing -p dataset=lrs2 -p data_root=/data/mvlrs_v1 -p kinds=null -p split=test`.
# Every option of the command:

# %% tags=["hide-input"]
parser = argparse.ArgumentParser(prog="avlib preprocess",
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
pp.add_arguments(parser)
print(parser.format_help())

# %% [markdown]
# ### What the original pipelines did differently
#
# | step | the papers' repositories | here |
# |---|---|---|
# | face detector | S3FD on a GPU: Wav2Lip takes the first detection of each frame in batches of 32; syncnet_python runs it at a quarter of the resolution with confidence 0.9 | BlazeFace on the CPU, boxes extended to S3FD's forehead-to-chin shape |
# | shots and tracks | syncnet_python cuts videos into shots with PySceneDetect, then tracks faces by IoU ≥ 0.5, tolerating 25 missed detections, keeping tracks of at least 100 frames and faces of at least 100 px | the same IoU linking and tolerance within a clip; no shot detection (dataset clips are single shots) and no minimum track length (LRW clips have 29 frames) |
# | smoothing | Wav2Lip: none while preprocessing (a forward 5-frame mean at inference); syncnet_python: median over 13 frames | a centred 5-frame mean for `face96`; the median of 13 for `syncnet` |
# | Wav2Lip face crop | box clipped to the frame, no padding, saved at native size as one JPEG per frame; frames without a face skipped (gaps in the numbering) | the same box rules; resized to 96×96 at crop time; short gaps interpolated, clips with long ones rejected |
# | SyncNet crop | 224×224, written as an XVID video | `syncnet_size` pixels (112 on the `cpu` profile, 224 on `gpu`), JPEG |
# | VCA-GAN alignment | 98-point landmarks, similarity transform to a reference LRW face, 256×256 frames written as mp4, crop at load time | four FaceMesh points (eye and mouth corners) to our reference face, crop written directly |
# | SyncVSR mouth ROI | FaceMesh with iris refinement on 256×256 LRW frames, fixed 112×96 box, missing frames reuse the previous landmarks | the same centre formula and box, scaled by the face size so that any resolution gets LRW's framing; missing frames interpolated |
# | storage | folders of per-frame JPEGs + `audio.wav`; features recomputed per sample | one indexed JPEG stream per crop, int16 audio, precomputed features |
#
# None of these changes touches what the models see at the input (shape, colour order, value
# range, framing); they replace GPU-only or licence-restricted tools and make the pipeline
# resumable.

# %% [markdown]
# ## Results
#
# The chapter's claims, judged against targets set before the run: the store serves a training
# window at least twice as fast as the per-frame JPEG files of the original repositories (the
# baseline, 1×); it takes no more bytes than those files for the same crop and audio (at most
# 1.05×); and the pipeline keeps the clips of a clean dataset (at least 95 % of those listed;
# the embedded corpus should lose none).

# %% tags=["hide-input"]
# everything else the chapter measured, saved as free-form "extra" with the metrics
run_keys = ("items", "processed", "skipped", "rejected", "frames", "seconds",
            "frames_per_s", "clips_per_s", "workers")
extra = {
    "dataset": dataset, "kinds": kinds, "store": ch.rel(store_dir),
    "config": cfg.to_dict(),
    "rejections": summary["rejections"], "frames": summary["n_frames"],
    "hours": summary["hours"], "splits": summary["splits"],
    "image_bytes": summary["image_bytes"], "run": {k: run[k] for k in run_keys},
    "example_costs_ms_per_frame": {k: round(1000 * v / n_frames, 3)
                                   for k, v in costs.items()},
    "frame_rate_conversion": conversions,
    "bad_input_reasons": {r["id"]: r["reason"] for r in bad["manifest"]["clips"]},
    "window_read_ms": {k: round(v, 4) for k, v in timings.items()},
    "storage": {name: {"bytes": int(row["bytes"]),
                       "bytes_on_disk": int(row["bytes on disk"]),
                       "ratio": float(row["ratio"]),
                       "ratio_on_disk": float(row["ratio on disk"])}
                for name, row in size_table.iterrows()},
}

# %%
kept = 100 * summary["n_clips"] / max(summary["n_clips"] + summary["n_rejected"], 1)
ratio = size_table["ratio"]
rows = [
    {"metric": "window read speed-up, store over per-frame JPEG files",
     "value": speedup, "unit": "×", "target": 2, "baseline": 1, "headline": True},
    {"metric": "store size / per-frame JPEG layout (face96 + audio)",
     "value": ratio["store: face96 + audio"], "unit": "×", "target": 1.05,
     "higher_is_better": False, "headline": True},
    {"metric": "clips kept", "value": kept, "unit": "%", "target": 95,
     "headline": True},
    {"metric": "clips in the store", "value": summary["n_clips"], "unit": ""},
    {"metric": "rejected clips", "value": summary["n_rejected"], "unit": ""},
    {"metric": "video", "value": summary["hours"] * 60, "unit": "min"},
    {"metric": "preprocessing", "value": run["seconds"], "unit": "s"},
    {"metric": "preprocessing speed", "value": run["frames_per_s"], "unit": "frames/s"},
    {"metric": "window read, store", "value": timings[STORE], "unit": "ms"},
    {"metric": "window read, per-frame JPEG files", "value": timings[JPEG],
     "unit": "ms"},
    {"metric": "store size / per-frame JPEG layout (face96 + audio + features)",
     "value": ratio["store: face96 + audio + features"], "unit": "×"},
    {"metric": "store size / per-frame JPEG layout (every stream, with features)",
     "value": ratio["store: every stream, audio, features"], "unit": "×"},
]
ch.save_metrics(rows, extra=extra, task="preprocessing", model="clip store", size=None,
                split=split or "all")

# %% [markdown]
# The rest of what the chapter measured:

# %%
ch.metrics_table(headline=False)

# %% tags=["remove-cell"]
detector.close()
shutil.rmtree(work, ignore_errors=True)

# %% [markdown]
# ## Summary
#
# - Video is decoded at a constant 25 fps by timestamps; 30 fps and variable-rate sources are
#   converted by dropping or repeating frames, and audio is put on the same clock at 16 kHz.
# - Face boxes are detected per frame, linked into one track, gap-filled and smoothed (mean 5 for
#   the face crop, median 13 for SyncNet); the mesh gives the lips.
# - Four crops serve five models: `face96` (BGR; Wav2Lip, VocaLiST, MTDVocaLiST), `syncnet`
#   (BGR; SyncNet), `mouth96` (grey; SyncVSR) and `vcagan112` (grey; VCA-GAN).
# - One video frame = 640 samples = 3.2 mel frames = 4 MFCC frames; a 5-frame sync window =
#   16 mel = 20 MFCC frames.
# - The clip store serves a window with one read and a slice of precomputed features; the
#   Results table judges its speed-up over per-frame files and its size, and the tables before
#   it hold the run statistics and the rejections.

# %% [markdown]
# ## Exercises
#
# 1. Set `smooth_window=1` and `syncnet_smooth_window=1` and compare the box jitter of the
#    statistics table. Which models would notice?
#
#    :::{dropdown} Hint
#    `avlib book run --profile smoke --only 01 -p smooth_window=1 -p syncnet_smooth_window=1`
#    makes a new store (the settings are part of its key). Its `jitter_smooth` column then
#    equals `jitter_raw`. Every model that reads several frames at once sees the shake as
#    motion: the sync experts over 5 frames, the lip readers over a whole word.
#    :::
#
# 2. Feed the `face96` crop in RGB instead of BGR to a pretrained sync model of chapter 02 or 03
#    and measure how much the accuracy drops.
#
#    :::{dropdown} Hint
#    `store.frames(clip, "face96", start, 5)[..., ::-1]` gives the RGB version of a window.
#    :::
#
# 3. Write a 50 fps copy of a corpus clip (`media.write_video(..., fps=50)` of frames read at
#    50 fps) and check that `load_clip` returns the original 25 fps frames.
#
#    :::{dropdown} Hint
#    `media.read_video(path, fps=50)` shows every frame twice. H.264 re-encoding changes the
#    pixels a little, so compare with a tolerance, or use grey counter frames as in the frame
#    rate cell and check which source frame each output frame shows.
#    :::
#
# 4. Add `"vocalist_mel"` to `features` and measure the store size again. Is the time saved per
#    window worth the bytes?
#
#    :::{dropdown} Hint
#    Run with `-p 'features=[wav2lip_mel, syncnet_mfcc, vocalist_mel]'` and read the row
#    *store: face96 + audio + features*. For the time, compare
#    `afeat.vocalist_mel(store.audio(cid, start, 5))` with a slice of the stored feature, as
#    `read_store` does for Wav2Lip's mel.
#    :::
#
# 5. Run the chapter with `kinds=None`. How long do the LRW-style clips take per frame compared
#    with GRID, and why?
#
#    :::{dropdown} Hint
#    Divide the preprocessing time by the frames of each kind (the store table counts them).
#    An LRW-style clip has 29 frames against 75 for a GRID sentence, so what every clip pays
#    once (opening the file, a new tracker and a new face mesh) weighs more per frame.
#    :::

# %% [markdown]
# ## References
#
# ```{bibliography}
# :filter: docname in docnames
# :labelprefix: 01-
# ```
