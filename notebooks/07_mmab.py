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
#     needs: [06_syncvsr]
#     expected_seconds: {smoke: 45, cpu: 360, gpu: 3600}
# ---

# %% [markdown]
# # MMAB: recalling the voice from the lips
# A lip reader with a memory: visual features address slots whose values were trained to hold audio features, so that video alone recalls a "virtual" sound.

# %% [markdown]
# ## Overview
#
# Chapter 06 taught a lip reader with audio *targets*. MMAB {cite}`kim2021mmab` (Multi-modality
# Associative Bridging through memory) brings audio in through a **memory** instead. A key
# memory is addressed by the visual feature of every frame (a softmax over cosine similarities,
# sharpened by a radius of 16); a value memory, addressed the same way, is trained to
# reconstruct the audio feature of that frame. During training both the real audio and the
# recalled one are fused with the visual feature and classified, and a KL term makes the
# visual (key) addressing agree with the audio (value) addressing. At test time the video alone
# recalls the audio: with an MS-TCN backend MMAB reaches 85.864 % top-1 on LRW (85.408 % with a
# Bi-GRU). With the real audio at hand, the same model reads lips and listens at once.
#
# This chapter trains, on chapter 06's word clips and splits:
#
# 1. the visual-only baseline (no memory) and MMAB with 88 and 168 slots;
# 2. an audio-only reader, to ask when lips help: under babble noise down to −5 dB;
# 3. then it measures how well the recalled audio matches the real one, and which slots each
#    word and each viseme addresses.
#
# **Learning goals.** After this chapter you can explain key-value memory addressing, why the
# recall is taken from *detached* values, and what each of MMAB's four losses does; compare
# memory and audio-token supervision as answers to the same homophene problem; and read a noise
# curve of audio-visual against audio-only recognition.
#
# **Prerequisites:** chapter 06 (word clips, top-1, homophene groups); attention as weighted
# averaging; recurrent networks.

# %% [markdown]
# ## Setup

# %%
import dataclasses
import inspect

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from IPython.display import Code, Markdown, display

from avlib import audio as afeat
from avlib import book, plotting
from avlib.corpus.articulation import viseme_of
from avlib.data.preprocess import PreprocessConfig, store_artifact
from avlib.data.store import ClipStore
from avlib.models import MMAB, MMABConfig, count_parameters
from avlib.progress import live_bars
from avlib.train import TrainConfig
from avlib.vsr import data as vdata
from avlib.vsr import metrics as vmetrics
from avlib.vsr import recipes as vrec

# %% [markdown]
# ## Parameters
# Every expensive knob of the chapter. The runner injects the values of a profile
# (`profiles/*.yml`); the defaults below are those of the published `cpu` profile.

# %% tags=["parameters"]
profile = "cpu"  # the profile whose values these are (injected by the runner)
seed = 0  # initial weights, training batches, noise
device = "cpu"  # "cuda" trains and evaluates on a GPU
precision = "fp32"  # training: "fp32", "bf16" (autocast) or "auto"
artifacts_root = None  # None: $AVLIB_ARTIFACTS or _build/artifacts/<profile>/
data_root = None  # None: chapter 06's word store; else an LRW folder or a store
ckpt_policy = "auto"  # load: reuse trained models; train: retrain; auto: train if none
size = 32  # mouth crops are resized to size x size (official: 112)
model_size = "cpu"  # MMABConfig.named(...): "cpu" or "official"
backend = "mstcn"  # "mstcn" (MS-TCN) or "gru" (Bi-GRU: learns far slower here)
slots = [168, 88]  # memory sizes, main first; released 168 MS-TCN, 88 Bi-GRU
batch_size = 32  # clips per update (official: 80 per GPU)
lr = 0.1  # SGD learning rate (official: 0.1, then 0.01 after two epochs)
weight_decay = 1.0e-5
steps = 200  # updates of every model
eval_every = 20  # validations (MMAB's "epochs" for the plateau rule)
patience = 3  # validations without progress before the rate halves (official: 5 epochs)
front_dropout = 0.0  # dropout after the visual front (official: 0.3)
crop_scale = [0.8, 1.0]  # random crop area range
snrs = [20, 10, 5, 0, -5]  # babble SNRs (dB) of the noise sweep
talkers = 4  # voices in the babble
flip_tta = True  # test-time flip augmentation (as the paper's numbers)
torch_threads = None  # CPU threads for torch; None: one per core

# %%
ch = book.chapter("07_mmab", profile=profile, seed=seed, device=device,
                  artifacts_root=artifacts_root, data_root=data_root,
                  threads=torch_threads)

# %% [markdown]
# ## Word clips
#
# The same clips, speakers and splits as chapter 06 (its store keeps both crops), here read in
# MMAB's crop: VCA-GAN's mouth, aligned by four face landmarks to a canonical face and cut to
# 112 × 112 gray, normalised with MMAB's constants (0.4136, 0.17). The audio goes through MMAB's
# own mel: a normalised power spectrogram, 80 HTK mel bands, decibels, and mean and variance
# normalisation per band with the unbiased deviation; the last of the 117 frames is cropped, so
# that every video frame has four.

# %%
prep = PreprocessConfig(crops=vdata.WORD_CROPS, features=())
if ch.data_root is not None and (ch.data_root / "store.json").is_file():
    store_dir = ch.data_root
elif ch.data_root is not None:
    store_dir = store_artifact(prep, ch.artifacts, dataset="lrw",
                               data_root=ch.data_root, policy=ckpt_policy,
                               progress=live_bars(), record=False)
else:
    from avlib.artifacts import find_current

    words_dir = find_current(ch.artifacts, "words_corpus", producer="06_syncvsr")
    store_dir = store_artifact(prep, ch.artifacts, data_root=words_dir, kinds=["lrw"],
                               policy="load", progress=live_bars(), record=False)
store = ClipStore(store_dir)
read = dict(size=size, stream="vcagan112")
train_set = vdata.load_words(store, "train", **read)
vocabulary = train_set.vocabulary
val_set = vdata.load_words(store, "val", vocabulary=vocabulary, **read)
tests = {"seen": vdata.load_words(store, "test", vocabulary=vocabulary, **read)}
if store.select(split="test_unseen"):
    tests["unseen"] = vdata.load_words(store, "test_unseen", vocabulary=vocabulary,
                                       **read)
test_mels = {k: vrec.word_mels(v) for k, v in tests.items()}
chance = 1 / len(vocabulary)
print(f"store {ch.rel(store.root)}: {len(vocabulary)} words (chance {chance:.1%}); "
      f"{len(train_set)} training clips; test: "
      + ", ".join(f"{len(v)} {k}" for k, v in tests.items()))

# %% [markdown]
# ## The network and its memory
#
# Four parts, as the released checkpoints hold them (`v_front`, `a_front`, `mem`, `back`): a
# visual front (a 3-D stem and a ResNet-18 with PReLUs, one 512-d vector per frame), an audio
# front (two strided convolutions and a residual block over the mel, one 512-d vector per video
# frame), the memory, and a backend (a two-layer Bi-GRU, averaged over time, or an MS-TCN). One
# quirk is kept on purpose: the visual front ends in `AvgPool2d(3)` on a 4 × 4 map, which
# averages only its top-left 3 × 3 cells.

# %%
sizes = {
    "MMAB, Bi-GRU, 88 slots (official)":
        MMAB(**dataclasses.asdict(MMABConfig.released("gru"))),
    "MMAB, MS-TCN, 168 slots (official)":
        MMAB(**dataclasses.asdict(MMABConfig.released("mstcn"))),
}
parts = pd.DataFrame({name: {part: count_parameters(getattr(m, part))
                             for part in ("v_front", "a_front", "mem", "back")}
                      for name, m in sizes.items()})
cpu_cfg = MMABConfig.named(model_size, backend=backend, n_classes=len(vocabulary),
                           front_dropout=front_dropout)
parts[f"this run ({model_size}, {backend}, {slots[0]} slots)"] = {
    part: count_parameters(getattr(MMAB(**dataclasses.asdict(cpu_cfg)), part))
    for part in ("v_front", "a_front", "mem", "back")}
parts.loc["total"] = parts.sum()
plotting.table(parts)
del sizes

# %% [markdown]
# In the memory's `forward`, for each frame's visual feature `q` and audio feature `v`:
#
# - key addressing `a_k = softmax(16 · cos(W_q q, K))` over the slots; the recall
#   `r = a_k · V.detach()` is the "virtual audio": it trains the addressing, never the values;
# - `te = fusion([q, r])` (visual + recalled audio) and `tr = fusion([q, v])` (visual + real
#   audio) share one linear layer, and both are classified by the backend;
# - value addressing `a_v = softmax(16 · cos(W_v v, V))`; `recon = ‖a_v · V − v‖²` trains the
#   values to hold audio features; `KL(a_v ‖ a_k)` makes the visual addressing point where the
#   audio's does.

# %%
Code(inspect.getsource(vrec.MMABRecipe.training_step), language="python")

# %% [markdown]
# **What the CPU profile changes.** The official models train 25 to 40 M parameters on 112 ×
# 112 crops for 200 epochs of LRW. Here every width is a quarter (a 128-d feature), the crops
# are 32 × 32, and each model gets `steps` updates of 32 clips; the learning rate starts at
# `lr` and halves whenever the validation accuracy has not improved for `patience`
# validations (every `eval_every` updates), MMAB's rule at the scale of this run.

# %%
def train_cfg() -> TrainConfig:
    return TrainConfig(steps=steps, lr=lr, weight_decay=weight_decay, grad_clip=None,
                       eval_every=eval_every, ckpt_every=max(eval_every, steps // 2),
                       log_every=10, seed=seed, device=device, precision=precision)


def run(name: str, mode: str, n_slot: int = 88):
    setup = vrec.MMABSetup(name, mode=mode,
                           model=dataclasses.replace(cpu_cfg, n_slot=n_slot),
                           batch_size=batch_size, patience=patience,
                           crop_scale=tuple(crop_scale))
    recipe = vrec.MMABRecipe(train_set, val_set, setup, data_id=store_dir.name)
    models, hist, folder = vrec.train_mmab(recipe, train_cfg(), ckpt_policy,
                                           ch.artifacts, progress=live_bars())
    return {"net": models["net"], "hist": hist, "folder": folder, "mode": mode,
            "n_slot": n_slot}


runs = {"visual": run("visual", "visual")}
for n in slots:
    runs[f"memory{n}"] = run(f"memory{n}", "memory", n)
runs["audio"] = run("audio", "audio")
main = f"memory{slots[0]}"

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Validation accuracy against the update (left; MMAB's recalled-audio path, and the visual-only and audio-only readers), and the learning-rate multiplier of the plateau rule (right).", "name": "fig-07-training"}}
fig, axes = plotting.figure(1, 2, height=2.6)
styles = {"visual": plotting.model_style("mmab_visual_only"),
          "audio": plotting.model_style("mmab_audio_only")}
for key, r in runs.items():
    style = styles.get(
        key, plotting.model_style("mmab", label=f"MMAB, {r['n_slot']} slots"))
    ev = r["hist"].eval
    axes[0].plot([e["step"] for e in ev], [e["val_acc"] for e in ev], **style)
    tr = r["hist"].train
    axes[1].plot([t["step"] for t in tr], [t["lr_scale"] for t in tr], **style)
axes[0].axhline(chance, **plotting.model_style("chance"))
axes[0].set_xlabel("update"), axes[0].set_ylabel("val top-1")
axes[0].legend(fontsize=7)
axes[1].set_xlabel("update"), axes[1].set_ylabel("lr multiplier")
axes[1].set_yscale("log")
plotting.save(fig, ch.figures / "training.png");

# %% [markdown]
# ## Clean clips
#
# Every model on both test splits, with the flip test-time augmentation (`flip_tta`). MMAB's
# "visual + recalled audio" is its test path on video alone; "visual + real audio" is the same
# model given the clip's sound.

# %%
evaluations = {  # name -> (run, mode)
    "visual only (no memory)": ("visual", "visual"),
    **{f"MMAB, {n} slots (visual + recalled audio)": (f"memory{n}", "memory")
       for n in slots},
    f"MMAB, {slots[0]} slots, visual + real audio": (main, "audiovisual"),
    "audio only": ("audio", "audio"),
}
logits, rows = {}, []
for label, (key, mode) in evaluations.items():
    for split, data in tests.items():
        lg = vrec.mmab_predict(runs[key]["net"], data, test_mels[split], mode=mode,
                               flip_tta=flip_tta)
        logits[label, split] = lg
        rep = vmetrics.word_report(lg, data.labels, vocabulary)
        rows.append({"model": label, "split": split, "top-1": rep["top1"],
                     "top-5": rep["top5"],
                     "homophene-group accuracy": rep["homophene_acc"]})
clean = pd.DataFrame(rows)
plotting.table(clean.pivot_table(index="model", columns="split",
                                 values=["top-1", "homophene-group accuracy"],
                                 sort=False).round(3))

# %% [markdown]
# ### Beside chapter 06 and the papers
#
# Chapter 06's SyncVSR readers were trained on the same clips and are tested on the same
# splits, in another crop (SyncVSR's mouth box). The papers' numbers are LRW's (500 words, about
# 1,000 training clips per word, official sizes), so only the directions compare.

# %%
compare = {f"this run: {k}": clean[(clean["model"] == k)].set_index("split")["top-1"]
           for k in ("visual only (no memory)",
                     f"MMAB, {slots[0]} slots (visual + recalled audio)")}
prior = [row for record in book.load_metrics(ch.artifacts, ["06_syncvsr"])
         for row in record["rows"]]
for model, label in (("syncvsr_lam0", "chapter 06: lip reader, λ = 0, all data"),
                     ("syncvsr", "chapter 06: SyncVSR, λ = 10, all data")):
    picked = {r["split"].replace(" speakers", ""): r["value"] for r in prior
              if r["model"] == model and r["metric"].startswith("top-1, 1 of the data")}
    if picked:
        compare[label] = pd.Series(picked)
table = pd.DataFrame(compare).T
table["paper, LRW"] = pd.Series({
    f"this run: MMAB, {slots[0]} slots (visual + recalled audio)":
        0.85864 if backend == "mstcn" else 0.85408,
    "chapter 06: SyncVSR, λ = 10, all data": 0.950})
plotting.table(table.round(3))

# %% [markdown]
# ## When do lips help? Audio under babble
#
# The audio of every test clip is mixed with **babble**: `talkers` other speakers of the same
# split talking at once (other clips' audio, each scaled to the same level), at a signal-to-noise
# ratio from 20 dB down to −5 dB. The audio-only reader and MMAB's audio-visual path hear the
# same noisy sound; the lip readers see only the video and do not change.

# %%
rng = np.random.default_rng(seed)
noise_rows = []
for split, data in tests.items():
    audio = data.audio.astype(np.float32) / 32768
    babble = np.stack([afeat.babble(audio, talkers, rng, exclude=i,
                                    speakers=data.speakers) for i in range(len(data))])
    for snr in [None, *snrs]:
        if snr is None:
            mels = test_mels[split]
        else:
            noisy = [afeat.mix_at_snr(a, b, snr) for a, b in zip(audio, babble)]
            # A loud mixture is scaled back into [-1, 1], as a recorder's gain would
            # (the mel's per-band normalisation ignores the overall level).
            noisy = [x / max(1.0, float(np.abs(x).max())) for x in noisy]
            noisy_mels = np.stack([afeat.mmab_mel(x) for x in noisy])
            mels = torch.from_numpy(noisy_mels).unsqueeze(1)
        for label, key, mode in (("audio only", "audio", "audio"),
                                 ("audio-visual (MMAB, real noisy audio)", main,
                                  "audiovisual")):
            lg = vrec.mmab_predict(runs[key]["net"], data, mels, mode=mode,
                                   flip_tta=flip_tta)
            acc = float((lg.argmax(-1).numpy() == data.labels).mean())
            noise_rows.append({"split": split,
                               "SNR (dB)": "clean" if snr is None else snr,
                               "model": label, "top-1": acc})
noise = pd.DataFrame(noise_rows)
plotting.table(noise.pivot_table(index=["split", "model"], columns="SNR (dB)",
                                 values="top-1", sort=False).round(3))

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Top-1 against the SNR of the babble, per test split: the audio-only reader and MMAB given the noisy audio with the video; the video-only readers (MMAB's recalled audio and the no-memory baseline) as flat lines, since they do not hear the noise.", "name": "fig-07-noise"}}
fig, axes = plotting.figure(1, len(tests), height=2.8)
axes = np.atleast_1d(axes)
for ax, split in zip(axes, tests):
    part = noise[(noise["split"] == split) & (noise["SNR (dB)"] != "clean")]
    for label, style in (("audio only", styles["audio"]),
                         ("audio-visual (MMAB, real noisy audio)",
                          plotting.model_style("mmab", label="audio-visual (MMAB)"))):
        rows_ = part[part["model"] == label]
        ax.plot(rows_["SNR (dB)"].astype(float), rows_["top-1"], **style)
    for label, style in ((f"MMAB, {slots[0]} slots (visual + recalled audio)",
                          plotting.model_style("mmab", linestyle=":", marker="",
                                               label="video only: MMAB")),
                         ("visual only (no memory)",
                          {**styles["visual"], "marker": "",
                           "label": "video only: no memory"})):
        match = clean[(clean["model"] == label) & (clean["split"] == split)]
        value = match["top-1"].item()
        ax.axhline(value, **style)
    ax.axhline(chance, **plotting.model_style("chance"))
    ax.invert_xaxis(), ax.set_xlabel("SNR (dB)"), ax.set_ylabel("top-1")
    ax.set_title(f"{split} speakers"), ax.set_ylim(0, 1)
axes[0].legend(fontsize=6)
plotting.save(fig, ch.figures / "noise.png");

# %% [markdown]
# ## What the memory recalls
#
# How close is the recalled audio feature to the real one? For every frame of the test clips,
# the cosine similarity between the recall `a_k · V` (from the video) and the audio front's
# feature of the real sound, against two references: the recall of another clip of the test
# split (a shuffled pairing), and the value memory's mean vector.

# %%
net = runs[main]["net"]
recall_rows = []
with torch.no_grad():
    for split, data in tests.items():
        video = vdata.augment(data.video, train=False, mean=vrec.MMAB_MEAN,
                              std=vrec.MMAB_STD)
        q = net.v_front(video)
        real = net.a_front(test_mels[split])
        address = net.mem.address(q)
        recall = address @ net.mem.value
        perm = np.random.default_rng(seed).permutation(len(data))
        shuffled = recall[torch.from_numpy(perm)]
        mean_value = net.mem.value.mean(0).expand_as(real)
        for label, guess in (("recall from the clip's own video", recall),
                             ("recall from another clip's video", shuffled),
                             ("mean of the value memory", mean_value)):
            cos = F.cosine_similarity(guess, real, dim=-1)
            recall_rows.append({"split": split, "recalled feature": label,
                                "cosine to the real audio feature": cos.mean().item()})
        if split == "seen":
            shown = (address, recall, real, data)
recall_table = pd.DataFrame(recall_rows)
plotting.table(recall_table.pivot_table(index="recalled feature", columns="split",
                                        values="cosine to the real audio feature",
                                        sort=False).round(3))

# %% tags=["hide-input"] mystnb={"figure": {"caption": "The memory at work on one frame in the middle of a seen-speaker test clip: the key addressing of its visual feature over the main model's slots (top), the value addressing of its real audio feature (middle), and the first 48 dimensions of the recalled audio feature against the real one (bottom).", "name": "fig-07-recall"}}
address, recall, real, data = shown
frame = vdata.LRW_FRAMES // 2
with torch.no_grad():
    rows_v = F.normalize(net.mem.v_embd(real[0, frame][None]), dim=1)
    values_n = F.normalize(net.mem.value, dim=1)
    value_address = torch.softmax(net.mem.radius * rows_v @ values_n.T, dim=1)[0]
fig, axes = plotting.figure(3, 1, height=4.6)
axes[0].bar(range(address.shape[-1]), address[0, frame].numpy(),
            color=plotting.model_color("mmab"))
axes[0].set_ylabel("key address")
axes[1].bar(range(address.shape[-1]), value_address.numpy(), color="#777777")
axes[1].set_ylabel("value address"), axes[1].set_xlabel("slot")
axes[2].plot(real[0, frame, :48].numpy(), color="#333333", label="real audio feature")
axes[2].plot(recall[0, frame, :48].numpy(), color=plotting.model_color("mmab"),
             label="recalled from the video")
axes[2].set_xlabel("feature dimension"), axes[2].legend(fontsize=7)
plotting.save(fig, ch.figures / "recall.png");

# %% [markdown]
# ## Which slots does each word use?
#
# The key addressing averaged over the frames of each word (its word boundary), and over the
# frames of each viseme class (from the corpus's exact phoneme timings: the phoneme sounding at
# each frame's centre, shifted by the corpus's one-frame visual lead). Words of one homophene
# group should look alike; visemes should separate.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Mean key addressing of the main MMAB over its slots (columns) per word (left; ordered by homophene group, groups bracketed) and per viseme class (right), on all test clips. Slots are ordered by the viseme they are most used for.", "name": "fig-07-slots"}}
import json
from pathlib import Path

words_addr, viseme_addr = {}, {}
for split, data in tests.items():
    with torch.no_grad():
        video = vdata.augment(data.video, train=False, mean=vrec.MMAB_MEAN,
                              std=vrec.MMAB_STD)
        addr = net.mem.address(net.v_front(video)).numpy()  # (N, T, S)
    for i in range(len(data)):
        word = vocabulary[data.labels[i]]
        inside = data.boundary[i].numpy() > 0
        words_addr.setdefault(word, []).append(addr[i][inside].mean(0))
        sidecar = store.meta(data.ids[i]).get("extra", {}).get("sidecar")
        if not sidecar:
            continue
        phonemes = json.loads(Path(sidecar).read_text())["phonemes"]
        for f in range(addr.shape[1]):
            t = (f + 0.5 - 1) / 25  # the mouth leads the sound by one frame
            ph = next((p["label"] for p in phonemes if p["start"] <= t < p["end"]),
                      None)
            if ph is not None:
                viseme_addr.setdefault(viseme_of(ph), []).append(addr[i, f])
order = [vocabulary[i] for i in vmetrics.homophene_order(vocabulary)
         if vocabulary[i] in words_addr]
word_map = np.stack([np.mean(words_addr[w], 0) for w in order])
widths = {"width_ratios": [3, 2]} if viseme_addr else None
fig, axes = plotting.figure(1, 2 if viseme_addr else 1, height=6.0,
                            gridspec_kw=widths)
axes = np.atleast_1d(axes)
slot_order = np.arange(word_map.shape[1])
if viseme_addr:
    visemes = sorted(viseme_addr)
    vis_map = np.stack([np.mean(viseme_addr[v], 0) for v in visemes])
    slot_order = np.lexsort((-vis_map.max(0), vis_map.argmax(0)))
    axes[1].imshow(vis_map[:, slot_order], aspect="auto", cmap="Blues")
    axes[1].set_yticks(range(len(visemes)), visemes, fontsize=6)
    axes[1].set_xlabel("slot"), axes[1].set_title("per viseme", fontsize=8)
    axes[1].grid(False)
axes[0].imshow(word_map[:, slot_order], aspect="auto", cmap="Blues")
axes[0].set_yticks(range(len(order)), order, fontsize=5)
axes[0].set_xlabel("slot"), axes[0].set_title("per word", fontsize=8)
axes[0].grid(False)
plotting.save(fig, ch.figures / "slots.png");

# %% [markdown]
# ## Results
#
# The targets of this chapter: on unseen speakers, MMAB (video alone, recalled audio) beats the
# visual-only baseline by at least 2 points; at 0 dB, audio-visual recognition beats audio-only.

# %%
def top1(label: str, split: str) -> float:
    return clean[(clean["model"] == label) & (clean["split"] == split)]["top-1"].item()


target_split = "unseen" if "unseen" in tests else "seen"
mmab_label = f"MMAB, {slots[0]} slots (visual + recalled audio)"
at0_rows = noise[(noise["SNR (dB)"] == 0) & (noise["split"] == target_split)]
at0 = at0_rows.set_index("model")["top-1"]
headline = [
    {"model": "mmab", "split": f"{target_split} speakers",
     "metric": "top-1 gain over the visual-only baseline",
     "value": top1(mmab_label, target_split)
     - top1("visual only (no memory)", target_split),
     "unit": "points", "target": 0.02, "baseline": 0.0},
    {"model": "mmab", "split": f"{target_split} speakers",
     "metric": "top-1 gain of audio-visual over audio-only at 0 dB babble",
     "value": at0["audio-visual (MMAB, real noisy audio)"] - at0["audio only"],
     "unit": "points", "target": 0.0, "baseline": 0.0, "tolerance": 0.0},
]
headline = [{"size": model_size, "headline": True, "higher_is_better": True, **h}
            for h in headline]
model_keys = {"visual only (no memory)": "mmab_visual_only",
              "audio only": "mmab_audio_only"}
rows = []
for _, r in clean.iterrows():
    for metric in ("top-1", "top-5", "homophene-group accuracy"):
        rows.append({"model": model_keys.get(r["model"], "mmab"), "size": model_size,
                     "split": f"{r['split']} speakers",
                     "metric": f"{metric}: {r['model']}",
                     "value": r[metric], "unit": "", "baseline": chance})
for _, r in noise.iterrows():
    rows.append({"model": "mmab", "size": model_size, "split": f"{r['split']} speakers",
                 "metric": f"top-1 at {r['SNR (dB)']} dB babble: {r['model']}"
                 if r["SNR (dB)"] != "clean" else f"top-1, clean audio: {r['model']}",
                 "value": r["top-1"], "unit": "", "baseline": chance})
for _, r in recall_table.iterrows():
    rows.append({"model": "mmab", "size": model_size, "split": f"{r['split']} speakers",
                 "metric": f"recall cosine: {r['recalled feature']}",
                 "value": r["cosine to the real audio feature"], "unit": ""})
for key, r in runs.items():
    rows.append({"model": "mmab", "size": model_size, "split": "train",
                 "metric": f"training time, {key}",
                 "value": r["hist"].train[-1]["seconds"],
                 "unit": "s", "higher_is_better": False})
products = {k: ch.rel(r["folder"]) for k, r in runs.items()}
extra = {"store": ch.rel(store.root), "products": products}
ch.save_metrics(headline + rows, extra=extra, task="vsr")

# %% tags=["hide-input"]
lines = []
for row in headline:
    verdict = book.verdict(row["value"], row["target"], row["baseline"], True,
                           row.get("tolerance"))
    lines.append(f"- {row['metric']} ({row['split']}): "
                 f"**{100 * row['value']:+.1f} points** "
                 f"(target ≥ {100 * row['target']:+.1f}): **{verdict}**")
display(Markdown("\n".join(lines)))

# %% [markdown]
# The rest of what the chapter measured (saved with the headline in `metrics/07_mmab.json` of
# the artifacts folder):

# %%
ch.metrics_table(headline=False)

# %% [markdown]
# ## Summary
#
# - MMAB's memory pairs keys, addressed by what the lips show, with values trained to hold
#   what the voice sounds like; the KL term aligns the two addressings, and the recall comes
#   from detached values, so only the addressing learns from it.
# - With the real audio, the same network is an audio-visual recogniser; in babble, the noise
#   curves show where the lips take over from the ears.
# - Memory and audio tokens (chapter 06) both bring audio into a lip reader at training time
#   only; neither can make homophenes look different.
#
# ## Exercises
#
# 1. Train MMAB without the KL term (edit `mmab_loss` in a copy of the recipe). What happens
#    to the recall cosine and to the video-only accuracy?
#    :::{dropdown} Hint
#    Without the KL term nothing asks the visual addressing to point where the audio's does;
#    the recall becomes an arbitrary mixture of values.
#    :::
# 2. Set `backend="gru"` and compare the Bi-GRU with the MS-TCN at the same number of updates.
#    :::{dropdown} Hint
#    On this corpus the Bi-GRU (mean over time) learns far more slowly in a few hundred
#    updates; watch the validation curve, not only the final accuracy.
#    :::
# 3. Add babble to the *training* audio of the audio-visual path. Does the 0 dB gap grow?
#    :::{dropdown} Hint
#    A model that has heard noise learns to lean on the lips when the audio is unreliable.
#    :::

# %% [markdown]
# ## References
#
# ```{bibliography}
# :filter: docname in docnames
# :labelprefix: 07-
# ```
