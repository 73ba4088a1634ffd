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
#     needs: []
#     expected_seconds: {smoke: 45, cpu: 300, gpu: 1800}
# ---

# %% [markdown]
# # An embedded corpus of talking faces
# Synthesized speech, articulated mouths and rendered faces, with the ground truth real datasets lack.

# %% [markdown]
# ## Overview
#
# The models of this book learn from people talking: GRID {cite}`cooke2006grid`, LRW
# {cite}`chung2016lrw`, LRS2 {cite}`afouras2018lrs2`, LRS3 {cite}`afouras2018lrs3` and Acappella
# {cite}`montesinos2021acappella`. None of them can be downloaded here, and most readers do not
# have them. This chapter builds a corpus from scratch instead, in four steps:
#
# 1. **text → speech and phonemes**: espeak-ng {cite}`espeakng` speaks GRID-grammar sentences
#    and LRW-like words inside carrier phrases, and reports the exact sample at which each
#    phoneme starts;
# 2. **phonemes → articulatory targets**: each phoneme asks the mouth for a shape (jaw opening,
#    lip spread, rounding, bilabial closure, labiodental contact, tongue);
# 3. **targets → coarticulated trajectories**: dominance functions {cite}`cohen1993coarticulation`
#    blend neighbouring phonemes into smooth motion, with the mouth one frame ahead of the sound;
# 4. **trajectories → frames**: a parametric 2-D face with its own identity, head motion, blinks,
#    lighting and sensor noise draws the mouth from lip contours.
#
# The clips are written in the real datasets' layouts (GRID and LRW), as H.264 mp4 files with AAC
# audio, so that every later chapter reads them with the same code as real data.
#
# **Learning goals.** After this chapter you can explain how audio-visual speech corpora are
# organised (speakers, splits, alignments); what a viseme is and why homophenes (/p/, /b/, /m/)
# make lip reading hard; how coarticulation and the natural visual lead shape the audio-visual
# relationship that sync models learn; and what a synthetic corpus can and cannot teach.
#
# **Prerequisites:** Python and numpy; no machine learning yet.

# %% [markdown]
# ## Setup

# %%
import time

import numpy as np
import pandas as pd

from avlib import book, faces, media, plotting
from avlib.corpus import articulation, make, render, speech, text
from avlib.corpus.mouth import INDEX, MOUTH_PARAMS

# %% [markdown]
# ## Parameters
# Every expensive knob of the chapter. The runner injects the values of a profile
# (`profiles/*.yml`); the defaults below are those of the published `cpu` profile.

# %% tags=["parameters"]
profile = "cpu"  # the profile whose values these are (injected by the runner)
seed = 0  # corpus seed: the same seed gives the same corpus
device = "cpu"  # no model is trained in this chapter
artifacts_root = None  # None: $AVLIB_ARTIFACTS or _build/artifacts/<profile>/
data_root = None  # this chapter makes the data, so it reads none
ckpt_policy = "auto"  # load: reuse the corpus; train: remake it; auto: make if missing
workers = None  # corpus processes (None: one per core)
n_seen_speakers = 14  # speakers of train/val/test
n_unseen_speakers = 3  # speakers held out for test_unseen
grid_per_speaker = 18  # GRID sentences per seen speaker
grid_per_unseen_speaker = 10  # GRID sentences per unseen speaker
lrw_words = 50  # words of the LRW-like vocabulary (homophene groups always included)
lrw_train_per_word = 4  # LRW-style clips per word and split
lrw_val_per_word = 1
lrw_test_per_word = 1
lrw_unseen_per_word = 1
sync_per_split = 20  # shifted sync-test clips from test and from test_unseen
max_shift = 15  # sync shifts drawn from -max_shift..max_shift frames
size = 160  # frame size in pixels
lead_frames = 1.0  # natural visual lead of the mouth over the audio, in frames
crf = 18  # H.264 quality (lower is better)
check_frames = 300  # frames checked with the mediapipe face detector and mesh

# %%
ch = book.chapter("00_corpus", profile=profile, seed=seed, device=device,
                  artifacts_root=artifacts_root, data_root=data_root)
cfg = make.CorpusConfig(
    seed=seed, n_seen_speakers=n_seen_speakers, n_unseen_speakers=n_unseen_speakers,
    grid_per_speaker=grid_per_speaker, grid_per_unseen_speaker=grid_per_unseen_speaker,
    lrw_words=lrw_words, lrw_train_per_word=lrw_train_per_word,
    lrw_val_per_word=lrw_val_per_word, lrw_test_per_word=lrw_test_per_word,
    lrw_unseen_per_word=lrw_unseen_per_word, sync_per_split=sync_per_split,
    max_shift=max_shift, size=size, lead_frames=lead_frames, crf=crf)
speakers = make.make_speakers(cfg)

# %% [markdown]
# ## From text to speech and phonemes
#
# GRID sentences follow a six-slot grammar, *command · colour · preposition · letter · digit ·
# adverb*, with 51 words; a sentence id has one character per slot. We take one sentence and let
# the first speaker say it. The synthesizer's phoneme events carry exact sample positions: that
# is the phoneme alignment, and the word alignment follows from it.

# %%
rng = np.random.default_rng(seed)
sentence = text.grid_sentence(rng)
spk = speakers[0]
voice = speech.Voice(**spk["voice"])
utt = speech.synthesize(text.grid_spoken_text(sentence.words), voice)
print(f"GRID id {sentence.id!r}: {' '.join(sentence.words)!r}, spoken by {spk['id']} "
      f"({voice.espeak_name}, pitch {voice.pitch}, rate {voice.rate} wpm): "
      f"{utt.duration:.2f} s")
pd.DataFrame([(p.label, round(p.start, 3), round(p.end, 3)) for p in utt.phonemes[:14]],
             columns=["phoneme", "start (s)", "end (s)"]).T

# %% tags=["hide-input"] mystnb={"figure": {"caption": "The sentence's waveform. Grey spans are the words of the alignment, thin lines the phoneme boundaries espeak-ng reported.", "name": "fig-00-waveform"}}
fig, ax = plotting.figure(height=2.4)
t = np.arange(len(utt.wav)) / utt.sr
ax.plot(t, utt.wav, color=plotting.COLORS["audio"], lw=0.5)
for w in utt.words:
    ax.axvspan(w.start, w.end, color="0.85", zorder=0)
    ax.text((w.start + w.end) / 2, 0.95 * np.abs(utt.wav).max(), w.label, ha="center",
            fontsize=8)
for p in utt.phonemes:
    ax.axvline(p.start, color="0.6", lw=0.4)
ax.set(xlabel="time (s)", ylabel="amplitude",
       title="Waveform with word spans and phoneme boundaries")
plotting.save(fig, ch.figures / "waveform.png");

# %%
plotting.audio_player(utt.wav, utt.sr)

# %% [markdown]
# ## From phonemes to articulatory targets
#
# A *viseme* is what a phoneme looks like on the lips. Several phonemes share one: /p/, /b/ and
# /m/ all close the lips, /f/ and /v/ put the lower lip under the upper teeth, /t/, /d/, /n/ and
# /k/, /g/ happen behind the lips and barely show. Each viseme class has a target over the seven
# mouth parameters:

# %%
targets = pd.DataFrame({v: articulation.VISEME_CLASSES[v].target
                        for v in articulation.VISEMES}, index=MOUTH_PARAMS).T
targets["example phonemes"] = [
    ", ".join(sorted(p for p in articulation.KNOWN_PHONEMES
                     if articulation.viseme_of(p) == v)[:6])
    for v in targets.index]
targets.round(2)

# %% [markdown]
# The same targets drawn by the renderer, one frame per viseme, for the first speaker's face:

# %% mystnb={"figure": {"caption": "One rendered frame per viseme class, each at its articulatory target, for the first speaker.", "name": "fig-00-visemes"}}
identity = render.FaceIdentity.from_dict(spk["identity"])
viseme_frames = [render.render_frame(identity, articulation.VISEME_CLASSES[v].target,
                                     size=size).frame
                 for v in articulation.VISEMES]
fig = plotting.show_frames(np.stack(viseme_frames), titles=list(articulation.VISEMES),
                           ncols=7, size=1.15)
plotting.save(fig, ch.figures / "visemes.png");

# %% [markdown]
# ## Coarticulation: from targets to trajectories
#
# Real mouths never reach one target, hold it and jump to the next. Each gesture *dominates*
# each parameter with a strength that decays exponentially away from the phoneme, and the mouth
# follows the dominance-weighted mean of all targets (Cohen and Massaro's model). Closure
# dominates strongly, so the lips do seal for /b/ in "bin"; the jaw is dominated softly, so it
# glides from vowel to vowel. In {numref}`fig-00-coarticulation` the step functions are the
# raw per-phoneme targets and the curves the coarticulated trajectories, sampled at 1 kHz.

# %%
fine_fps = 1000.0
n_fine = int(utt.duration * fine_fps)
curve = articulation.mouth_trajectory(utt.phonemes, n_fine, fps=fine_fps,
                                      lead_frames=0.0)
steps = np.zeros_like(curve)
tf = (np.arange(n_fine) + 0.5) / fine_fps
for p in utt.phonemes:
    sel = (tf >= p.start) & (tf < p.end)
    steps[sel] = articulation.VISEME_CLASSES[articulation.viseme_of(p.label)].target

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Three mouth parameters of the sentence: raw per-phoneme targets (grey steps) and the coarticulated trajectories (red). Grey spans are words.", "name": "fig-00-coarticulation"}}
fig, axes = plotting.figure(3, 1, height=5.0, sharex=True)
for ax, name in zip(axes, ("jaw_open", "lip_close", "lip_round")):
    ax.plot(tf, steps[:, INDEX[name]], color="0.6", lw=0.8, label="raw targets")
    ax.plot(tf, curve[:, INDEX[name]], color=plotting.COLORS["mouth"], lw=1.5,
            label="coarticulated")
    ax.set_ylabel(name)
    for w in utt.words:
        ax.axvspan(w.start, w.end, color="0.93", zorder=0)
axes[0].legend(loc="upper right", ncols=2)
axes[-1].set_xlabel("time (s)")
plotting.save(fig, ch.figures / "coarticulation.png");

# %% [markdown]
# ### Homophenes: same viseme, small learnable differences
#
# /p/, /b/ and /m/ share a viseme, which is why *pat*, *bat* and *mat* are near-impossible to
# tell apart on the lips. The corpus keeps the small differences real speakers have: /p/ presses
# the lips hardest (it builds pressure for a voiceless burst), /m/ holds the closure longest.

# %% mystnb={"figure": {"caption": "Lip closure and lip pressure of *pat*, *bat* and *mat*: one viseme, three slightly different gestures.", "name": "fig-00-homophenes"}}
fig, axes = plotting.figure(1, 2, height=2.4, sharey=True)
for word, color in zip(("pat", "bat", "mat"), ("#c0445a", "#2b6f9e", "#e08a1e")):
    u = speech.synthesize(word, speech.Voice())
    n = int(u.duration * fine_fps)
    c = articulation.mouth_trajectory(u.phonemes, n, fps=fine_fps, lead_frames=0.0)
    tt = np.arange(n) / fine_fps
    axes[0].plot(tt, c[:, INDEX["lip_close"]], color=color, label=word)
    axes[1].plot(tt, c[:, INDEX["lip_press"]], color=color, label=word)
axes[0].set(title="lip_close", xlabel="time (s)")
axes[1].set(title="lip_press", xlabel="time (s)")
axes[1].legend()
plotting.save(fig, ch.figures / "homophenes.png");

# %% [markdown]
# ## The natural visual lead
#
# Lips move before the sound they shape: the mouth opens for a vowel, and closes for /b/ or
# /m/, tens of milliseconds before the acoustic event. The corpus makes the mouth lead the audio
# by `lead_frames` (one frame, 40 ms, by default). The cross-correlation between the jaw opening
# and the audio energy envelope, averaged over sentences, peaks at that lead
# ({numref}`fig-00-lead`).

# %%
def xcorr(a, b, max_lag=6):
    """Normalised cross-correlation r[k] = mean(a[t] b[t+k]), k in -max_lag..max_lag."""
    a, b = (a - a.mean()) / a.std(), (b - b.mean()) / b.std()
    lags = np.arange(-max_lag, max_lag + 1)
    r = [np.mean(a[max(0, -k):len(a) - max(0, k)] * b[max(0, k):len(b) - max(0, -k)])
         for k in lags]
    return lags, np.array(r)


def mouth_and_energy(u, n_frames=make.GRID_FRAMES):
    """Jaw opening and audio RMS per video frame (25 fps) of an utterance."""
    wav = np.zeros(n_frames * make.SAMPLES_PER_FRAME, np.float32)
    wav[: len(u.wav)] = u.wav[: len(wav)]
    m = articulation.mouth_trajectory(u.phonemes, n_frames, fps=25,
                                      lead_frames=lead_frames)
    return m[:, INDEX["jaw_open"]], np.sqrt((wav.reshape(n_frames, -1) ** 2).mean(1))


jaw, energy = mouth_and_energy(utt)
# One sentence is noisy: average the cross-correlation over sentences and voices.
curves = []
for k in range(20):
    s_k = text.grid_sentence(rng)
    v_k = speech.Voice(**speakers[k % len(speakers)]["voice"])
    u_k = speech.synthesize(text.grid_spoken_text(s_k.words), v_k)
    curves.append(xcorr(*mouth_and_energy(u_k))[1])
lags = np.arange(-6, 7)
r = np.mean(curves, axis=0)
best_lag = int(lags[np.argmax(r)])
print(f"averaged over 20 sentences, the audio envelope best matches the jaw opening "
      f"{best_lag} frame(s) later (configured lead: {lead_frames} frame)")

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Left: the jaw opening leads the audio envelope of one sentence. Right: their cross-correlation averaged over 20 sentences; the red bar is its peak, the measured lead.", "name": "fig-00-lead"}}
fig, axes = plotting.figure(1, 2, height=2.6, gridspec_kw={"width_ratios": [3, 1]})
tt = np.arange(len(jaw)) / 25
axes[0].plot(tt, energy / energy.max(), color=plotting.COLORS["audio"],
             label="audio RMS envelope")
axes[0].plot(tt, jaw / jaw.max(), color=plotting.COLORS["mouth"],
             label="jaw opening (mouth)")
axes[0].set(xlabel="time (s)", title="Mouth opening against the audio envelope")
axes[0].legend(loc="upper right")
axes[1].bar(lags, r, color="0.6")
axes[1].bar([best_lag], [r.max()], color=plotting.COLORS["mouth"])
axes[1].set(xlabel="audio lag (frames)", title="mean cross-correlation")
plotting.save(fig, ch.figures / "lead.png");

# %% [markdown]
# ## Making the corpus
#
# The generator draws speakers (voice and face identity), plans every clip from the seed, and
# renders clips in parallel worker processes, each with its own espeak-ng engine. A clip counts
# as done when its ground-truth sidecar exists; every file is written atomically, so an
# interrupted run resumes where it stopped. `ckpt_policy="auto"` reuses a finished corpus with the
# same settings.

# %%
t0 = time.perf_counter()
corpus_dir = make.corpus_artifact(cfg, ch.artifacts, policy=ckpt_policy,
                                  workers=workers)
manifest = make.load_manifest(corpus_dir)
gen = manifest["generation"]
print(f"corpus (in the artifacts folder): {ch.rel(corpus_dir)}")
print(f"{manifest['n_clips']} clips, {manifest['n_frames']} frames, "
      f"{manifest['hours'] * 60:.1f} minutes, {manifest['bytes'] / 2**20:.1f} MiB; "
      f"generated in {gen['seconds']:.1f} s with {gen['workers']} workers "
      f"({gen['clips_made'] / max(gen['seconds'], 1e-9):.2f} clips/s, "
      f"{manifest['n_frames'] / max(gen['seconds'], 1e-9):.0f} frames/s); "
      f"this cell took {time.perf_counter() - t0:.1f} s")

# %% [markdown]
# ### One clip: watch, listen, scrub
#
# A GRID-layout clip as it lies on disk (`grid/s<N>/video/<id>.mp4`), decoded back with PyAV,
# and its ground truth from the sidecar.

# %%
grid_clips = [c for c in manifest["clips"] if c["kind"] == "grid"]
clip = grid_clips[0]
truth = make.read_truth(corpus_dir, clip)
av_clip = media.read_av(corpus_dir / clip["video"])
print(f"{clip['video']}: {len(av_clip.frames)} frames at {av_clip.fps} fps, "
      f"{len(av_clip.audio) / av_clip.sr:.2f} s of audio; text {truth['text']!r}")
align = corpus_dir / "grid" / clip["speaker"] / "align" / f"{clip['id']}.align"
print(align.read_text())
plotting.video_player(corpus_dir / clip["video"])

# %% [markdown]
# In a live notebook the next cell gives a scrubber: a slider and a play button over the clip's
# frames, each labelled with the phoneme the mouth is shaping. A static page has no Python
# behind it: the widget shows its saved state (the first frame) and its slider moves without
# redrawing, so the book also shows the same clip as a filmstrip below it.

# %%
frame_visemes = []
for k in range(len(av_clip.frames)):
    tk = (k + 0.5) / 25 + lead_frames / 25
    label = next((p["label"] for p in truth["phonemes"] if p["start"] <= tk < p["end"]),
                 "_")
    frame_visemes.append(f"/{label}/ {articulation.viseme_of(label)}")
plotting.frame_scrubber(av_clip.frames, labels=frame_visemes)

# %% mystnb={"figure": {"caption": "Every third frame of the clip, labelled with its time, the phoneme the mouth is shaping and that phoneme's viseme.", "name": "fig-00-filmstrip"}}
fig = plotting.filmstrip(av_clip.frames, step=3, max_frames=12, labels=frame_visemes)
plotting.save(fig, ch.figures / "filmstrip.png");

# %% [markdown]
# ### Speakers
#
# Seen speakers appear in train, val and test; unseen speakers only in `test_unseen`, as in the
# unseen-speaker protocols of GRID lip-to-speech work and Acappella.

# %% mystnb={"figure": {"caption": "Every speaker of the corpus with the mouth at rest; unseen speakers appear only in the `test_unseen` split.", "name": "fig-00-speakers"}}
rest = articulation.VISEME_CLASSES[articulation.VISEMES[0]].target
faces_of = np.stack([render.render_frame(render.FaceIdentity.from_dict(s["identity"]),
                                         rest, size=size).frame
                     for s in speakers])
titles = [f"{s['id']} ({'seen' if s['seen'] else 'unseen'})" for s in speakers]
fig = plotting.show_frames(faces_of, titles=titles, ncols=min(len(speakers), 8),
                           size=1.0)
plotting.save(fig, ch.figures / "speakers.png");

# %% [markdown]
# ## Does a real face detector see these faces?
#
# The preprocessing of the next chapter finds faces with mediapipe's face detector
# {cite}`bazarevsky2019blazeface` and face mesh {cite}`kartynnik2019facemesh`. The corpus is only
# useful if they work on it, and if the mesh's lips follow the rendered mouth. We sample
# `check_frames` frames across clips and speakers and measure the detection rate and the
# correlation between the mesh's inner-lip gap and the jaw opening the renderer drew.

# %%
rng_check = np.random.default_rng(seed + 1)
order = rng_check.permutation(len(grid_clips))
found, checked = 0, 0
gaps, jaws, closed = [], [], []
t0 = time.perf_counter()
with faces.FaceDetector() as detector:
    for i in order:
        if checked >= check_frames:
            break
        c = grid_clips[i]
        frames, _ = media.read_video(corpus_dir / c["video"])
        mouth_c = np.asarray(make.read_truth(corpus_dir, c)["mouth"])
        # the mesh tracks faces from frame to frame: a fresh tracker per clip
        with faces.FaceMesher(static_image_mode=False) as mesher:
            for k in range(min(len(frames), check_frames - checked)):
                checked += 1
                found += bool(detector.detect(frames[k]))
                lm = mesher.landmarks(frames[k])
                if lm is not None:
                    gaps.append(faces.lip_gap(lm))
                    jaws.append(mouth_c[k, INDEX["jaw_open"]])
                    closed.append(mouth_c[k, INDEX["lip_close"]] >= 0.5)
gaps, jaws, closed = np.array(gaps), np.array(jaws), np.array(closed)
detection_rate = found / checked
lip_r = float(np.corrcoef(gaps, jaws)[0, 1])
# sealed lips (/p b m/) show no gap whatever the jaw does: parted-lip frames alone too
lip_r_open = float(np.corrcoef(gaps[~closed], jaws[~closed])[0, 1])
check = {"frames": checked, "detection_rate": detection_rate, "lip_gap_jaw_r": lip_r,
         "lip_gap_jaw_r_open_lips": lip_r_open,
         "seconds": round(time.perf_counter() - t0, 1)}
print(f"face detected in {found}/{checked} frames ({100 * detection_rate:.1f} %); "
      f"mesh lip gap vs rendered jaw opening: r = {lip_r:.3f} over {len(gaps)} frames, "
      f"r = {lip_r_open:.3f} over the {int((~closed).sum())} frames with parted lips")

# %% tags=["hide-input"] mystnb={"figure": {"caption": "The inner-lip gap mediapipe's face mesh measures against the jaw opening the renderer drew, on the checked frames. Sealed lips (grey) show no gap whatever the jaw does.", "name": "fig-00-lip-gap"}}
fig, ax = plotting.figure(height=2.6, width=3.6)
ax.scatter(jaws[~closed], gaps[~closed], s=4, alpha=0.5, color=plotting.COLORS["mouth"],
           label="lips parted")
ax.scatter(jaws[closed], gaps[closed], s=4, alpha=0.5, color="0.5", label="lips sealed")
ax.legend()
ax.set(xlabel="rendered jaw_open", ylabel="mediapipe inner-lip gap",
       title=f"r = {lip_r:.2f}")
plotting.save(fig, ch.figures / "lip_gap.png");

# %% [markdown]
# ## Results
#
# The corpus is fit for the later chapters if a real face detector finds its faces (target:
# 95 % of the checked frames), if the lips of the face mesh follow the rendered mouth (target:
# a correlation of at least 0.8 on parted lips, against 0 for a mesh blind to the mouth) and if
# the visual lead measured from the clips is the one configured (within half a frame). The
# headline table judges each against its target; the corpus's size follows it.

# %%
counts = {"clips": manifest["n_clips"], "frames": manifest["n_frames"],
          "speakers seen": sum(s["seen"] for s in manifest["speakers"]),
          "speakers unseen": sum(not s["seen"] for s in manifest["speakers"]),
          "LRW-like words": len(manifest["words"]),
          "homophene groups": len(manifest["homophene_groups"])}
rows = [
    {"metric": "face detection rate", "value": 100 * detection_rate, "unit": "%",
     "target": 95, "headline": True},
    {"metric": "mesh lip gap vs rendered jaw, parted lips (r)", "value": lip_r_open,
     "unit": "", "target": 0.8, "baseline": 0.0, "tolerance": 0.1, "headline": True},
    {"metric": "visual lead error (measured vs configured)",
     "value": abs(best_lag - lead_frames), "unit": "frames", "target": 0.5,
     "higher_is_better": False, "headline": True},
    {"metric": "mesh lip gap vs rendered jaw, all frames (r)", "value": lip_r,
     "unit": ""},
    *[{"metric": k, "value": v, "unit": ""} for k, v in counts.items()],
    {"metric": "video", "value": manifest["hours"] * 60, "unit": "min"},
    {"metric": "size", "value": manifest["bytes"] / 2**20, "unit": "MiB"},
    {"metric": "generation", "value": gen["seconds"], "unit": "s"},
]
extra = {"corpus": ch.rel(corpus_dir), "config": cfg.key_fields(), "generation": gen,
         "detector_check": check, "measured_lead_frames": best_lag,
         "bytes": manifest["bytes"], "hours": manifest["hours"]}
ch.save_metrics(rows, extra=extra, task="corpus", model="embedded corpus", size=None,
                split="all")

# %% [markdown]
# The corpus this run produced, per kind of clip and split:

# %%
split_rows = [{"kind": kind, "split": split, "clips": s["clips"], "frames": s["frames"],
               "minutes": round(s["seconds"] / 60, 2),
               "MiB": round(s["bytes"] / 2**20, 2)}
              for kind, splits in manifest["summary"].items()
              for split, s in splits.items()]
pd.DataFrame(split_rows).sort_values(["kind", "split"]).set_index(["kind", "split"])

# %% [markdown]
# and the rest of what the chapter measured (saved with the headline metrics in
# `metrics/00_corpus.json` of the artifacts folder):

# %%
ch.metrics_table(headline=False)

# %% [markdown]
# ### What a synthetic corpus can and cannot teach
#
# | | GRID {cite}`cooke2006grid` | LRW {cite}`chung2016lrw` | LRS2 {cite}`afouras2018lrs2` | this corpus |
# |---|---|---|---|---|
# | speakers | 33 (34 recorded) | hundreds (BBC presenters and guests) | thousands | as many as you generate |
# | content | 1,000 sentences each, 6-word grammar | 500 words, up to 1,000 clips each | open-vocabulary TV speech | GRID grammar and ~50 LRW-like words |
# | video | studio, frontal, fixed light | broadcast, varied pose | in the wild | 2-D drawn face, mild pose and light changes |
# | ground truth | word alignments (forced) | word duration | none below the sentence | exact phonemes, mouth parameters, offsets |
#
# **It can teach** everything that hinges on the *relationship* between mouth motion and sound:
# sync detection and offsets (the ground-truth offset is exact, which real data never gives),
# the effect of context length, the visual lead, viseme confusions and homophenes, speaker
# generalisation in miniature, and every data-handling step of the real pipelines.
#
# **It cannot teach** what real faces and voices add: 3-D head turns and occlusions, beards,
# teeth and tongue in their full variety, lighting and compression artefacts, spontaneous speech,
# real prosody and noise. Absolute accuracies on this corpus are not comparable with the papers'
# numbers; trends and protocols are. Every later chapter runs unchanged on the real datasets.

# %% [markdown]
# ## Summary
#
# - espeak-ng gives real speech with exact phoneme timings; GRID sentences and LRW-like words in
#   carrier phrases follow the real corpora's designs.
# - Phonemes map to viseme targets; dominance-function coarticulation turns them into smooth
#   trajectories in which closures are reached and vowels glide.
# - The mouth leads the audio by one frame, as measured above by cross-correlation.
# - Clips are written as H.264/AAC mp4 in GRID and LRW layouts with sidecars holding the ground
#   truth; mediapipe's detector and mesh work on the rendered faces (rates above).

# %% [markdown]
# ## Exercises
#
# 1. Set `lead_frames=0` and `lead_frames=3` and rerun the lead cell: how does the
#    cross-correlation peak move? What would a sync model trained on each learn as "in sync"?
#
#    :::{dropdown} Hint
#    Only `mouth_and_energy` reads `lead_frames`, so the cell reruns in seconds; the peak
#    should move with the lead. A sync model learns whatever offset its training pairs call
#    "in sync": one trained with `lead_frames=3` would report real speech, whose lead is
#    about one frame, as two frames off.
#    :::
#
# 2. Plot `lip_press` for *peak*, *beak* and *meek*. Which differences could a lip reader use?
#
#    :::{dropdown} Hint
#    Reuse the homophene cell with `("peak", "beak", "meek")`. Look at the peak pressure of the
#    closure (highest for /p/) and at how long the lips stay sealed (longest for /m/): both are
#    small, but a model that sees several frames can use them.
#    :::
#
# 3. Make a corpus with `--set n_unseen_speakers=8` and compare the speakers' faces: which
#    identity parameters make two speakers look alike?
#
#    :::{dropdown} Hint
#    `avlib corpus make --out /tmp/c8 --profile smoke --set n_unseen_speakers=8`, then
#    render every speaker of its `speakers.json` at rest as in the speakers cell. Find the pair
#    whose frames differ least (mean absolute pixel difference) and compare the fields of their
#    `render.FaceIdentity`: which ones differ, and by how much?
#    :::
#
# 4. Open a sync clip (`sync/test/...`) and its sidecar; cross-correlate its audio with the
#    source clip's audio to recover the shift.
#
#    :::{dropdown} Hint
#    `media.read_audio` both files, then `np.correlate` over lags of ±15×640 samples; the peak
#    lag divided by 640 is the shift in frames, with the sign convention of the sidecar
#    (`shift_frames > 0`: the audio comes later).
#    :::

# %% [markdown]
# ## References
#
# ```{bibliography}
# :filter: docname in docnames
# :labelprefix: 00-
# ```
