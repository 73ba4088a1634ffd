"""Sync evaluation over a clip store: the shared accuracy protocol of
:mod:`avlib.sync.protocol` run on the store's test clips (GRID clips at offset 0, sync-test clips
at their recorded shift) for any scorer, so one table compares SyncNet, the Wav2Lip expert,
VocaLiST and MTDVocaLiST on the same clips. :class:`AudioOracleScorer` and
:func:`accuracy_on_speech` measure what digital silence does to that protocol: identical silent
audio windows tie, and no model can win those windows.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import torch

from avlib import audio as A
from avlib.audio import SAMPLES_PER_FRAME
from avlib.data.store import ClipStore
from avlib.sync import protocol as sync
from avlib.sync.pairs import FACE_STREAM, RMS_SILENT, WINDOW
from avlib.sync.recipes import recipe_class

__all__ = [
    "stream_for",
    "clip_frames",
    "clip_audio",
    "true_offset",
    "clip_kind",
    "store_clips",
    "make_scorer",
    "evaluate_store",
    "clip_mean_scores",
    "clip_offset",
    "delay_audio",
    "AudioOracleScorer",
    "speech_windows",
    "accuracy_on_speech",
    "pair_scores",
    "scores_around_truth",
    "SPEECH_METRIC",
    "CLIP_METRIC",
    "headline_rows",
]

# ---------------------------------------------------------------------------------------------
# Clips of the store for evaluation
# ---------------------------------------------------------------------------------------------
def stream_for(model_or_kind) -> str:
    """The crop stream a network reads: ``"syncnet"`` for SyncNet, ``"face96"`` for the Wav2Lip
    expert and VocaLiST / MTDVocaLiST. Accepts a network, its class, its registry name, a scorer
    or a recipe (each declares or holds a ``crop_stream``)."""
    if isinstance(model_or_kind, str):
        from avlib.models import MODEL_REGISTRY

        if model_or_kind not in MODEL_REGISTRY:
            raise ValueError(f"unknown network {model_or_kind!r}; known: {sorted(MODEL_REGISTRY)}")
        model_or_kind = MODEL_REGISTRY[model_or_kind]
    for holder in (model_or_kind, getattr(model_or_kind, "model", None),
                   getattr(model_or_kind, "model_class", None)):
        stream = getattr(holder, "crop_stream", None)
        if stream is not None:
            return stream
    raise ValueError(f"cannot tell which crops a {type(model_or_kind).__name__} reads; pass stream=")


def clip_frames(store: ClipStore, clip_id: str, kind: str) -> np.ndarray:
    """Every frame of a clip in the crops a model of ``kind`` reads: uint8 BGR ``(T, S, S, 3)``
    (SyncNet: the ``syncnet`` stream; expert and VocaLiST: ``face96``)."""
    return store.frames(clip_id, stream_for(kind))


def clip_audio(store: ClipStore, clip_id: str) -> np.ndarray:
    """The clip's audio: float32 (640 T,) in [-1, 1] at 16 kHz."""
    return store.audio(clip_id)


def clip_kind(record: Mapping) -> str | None:
    """Corpus kind of a store record (``"grid"``, ``"lrw"``, ``"sync"``), None for real data."""
    extra = record.get("extra") or {}
    return extra.get("kind")


def true_offset(record: Mapping) -> int:
    """The clip's true offset in the sync protocol's sign: 0 for untouched clips; a sync-test
    clip whose audio was delayed by d frames gives ``sync.audio_delay_to_offset(d) = -d``."""
    extra = record.get("extra") or {}
    shift = extra.get("shift_frames") or 0
    if clip_kind(record) != "sync":
        shift = 0  # only sync-test clips were shifted; others are in sync by construction
    return sync.audio_delay_to_offset(int(shift))


def store_clips(store: ClipStore, splits: Sequence[str] = ("test", "test_unseen"),
                kind: str | Sequence[str] | None = "grid", max_clips: int | None = None,
                min_frames: int = 6) -> list[dict]:
    """Records of the clips to evaluate: ``splits`` (in that order), corpus ``kind`` (None = any;
    real datasets have no kind and are kept only when ``kind`` is None), at least ``min_frames``
    frames, at most ``max_clips`` per split (the first by id, so runs compare the same clips)."""
    kinds = None if kind is None else ({kind} if isinstance(kind, str) else set(kind))
    out = []
    for split in splits:
        records = [rec for rec in store.select(split=split, min_frames=min_frames)
                   if kinds is None or clip_kind(rec) in kinds]
        if max_clips is not None:
            records = records[: int(max_clips)]
        out.extend(records)
    return out


def make_scorer(model: torch.nn.Module, device: str = "cpu", batch_size: int = 64):
    """The :mod:`avlib.sync.protocol` scorer of a network, as its recipe scores it:
    :class:`~avlib.sync.protocol.EmbeddingScorer` for SyncNet (negative distance) and the expert
    (cosine), :class:`~avlib.sync.protocol.PairScorer` (logits) for VocaLiST / MTDVocaLiST."""
    return recipe_class(model).scorer(model, device=device, batch_size=batch_size)


def evaluate_store(
    scorer,
    store: ClipStore,
    splits: Sequence[str] = ("test", "test_unseen"),
    groups: Mapping[str, str] | None = None,
    kind: str | Sequence[str] | None = "grid",
    contexts: Sequence[int] = sync.DEFAULT_CONTEXTS,
    *,
    stream: str | None = None,
    max_clips: int | None = None,
    tolerance: int = 1,
    vshift: int = sync.DEFAULT_VSHIFT,
    progress: bool = False,
    keep_scores: bool = False,
) -> sync.SyncEvaluation:
    """The shared sync-accuracy protocol (:func:`avlib.sync.evaluate_sync`) over store clips.

    Args:
        scorer: an :class:`~avlib.sync.EmbeddingScorer` / :class:`~avlib.sync.PairScorer` (see
            :func:`make_scorer`) or any object with ``window_scores``.
        store: the clip store.
        splits: splits to evaluate, in table order.
        groups: split -> group label of the table (default ``{"test": "seen", "test_unseen":
            "unseen"}``; other splits keep their name).
        kind: corpus kind(s) to keep: ``"grid"`` (real, in-sync sentences: true offset 0),
            ``"sync"`` (the sync-test clips, true offset from their recorded shift), a tuple,
            or None for every clip.
        contexts: context lengths (frames).
        stream: crop stream to read (default: the one the scorer's model reads).
        max_clips: at most this many clips per split.
        tolerance, vshift: as in :func:`avlib.sync.evaluate_sync`.
        progress: show a progress bar.
        keep_scores: keep each clip's window scores (for plots).

    Returns:
        :class:`avlib.sync.SyncEvaluation`; ``.table`` is the group x context accuracy in %.
    """
    groups = {"test": "seen", "test_unseen": "unseen"} if groups is None else dict(groups)
    stream = stream or stream_for(scorer)
    records = store_clips(store, splits, kind, max_clips)
    if not records:
        raise ValueError(f"no clip of kind {kind!r} in splits {tuple(splits)} of {store.root}; "
                         "check the splits and kind (store.select(...) lists what exists)")

    def clips() -> Iterator[tuple]:
        for rec in records:
            yield (rec["id"], store.frames(rec["id"], stream), store.audio(rec["id"]),
                   true_offset(rec), groups.get(rec.get("split"), rec.get("split")))

    return sync.evaluate_sync(scorer, clips(), contexts=contexts, tolerance=tolerance,
                              vshift=vshift, progress=progress, keep_scores=keep_scores)


def clip_mean_scores(scores) -> np.ndarray:
    """Mean score of each candidate column over the windows where it lies inside the clip:
    ``(n, 2 vshift + 1)`` -> ``(2 vshift + 1,)`` (``-inf`` for a column that is never inside).
    Out-of-range entries (``sync.OUT_OF_RANGE``) are left out instead of dragging means down.
    Column j is the candidate offset ``vshift - j``."""
    arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] % 2 != 1 or arr.shape[0] < 1:
        raise ValueError(f"scores must have shape (n_windows >= 1, 2 * vshift + 1), got {arr.shape}")
    valid = arr > sync.OUT_OF_RANGE / 2
    counts = valid.sum(axis=0)
    return np.where(counts > 0, np.where(valid, arr, 0.0).sum(axis=0) / np.maximum(counts, 1), -np.inf)


def clip_offset(scores) -> int:
    """A clip's offset from its window scores ``(n, 2 vshift + 1)``: the column with the highest
    :func:`clip_mean_scores`, as ``vshift - column`` (the sign of
    :func:`avlib.sync.predicted_offsets`)."""
    means = clip_mean_scores(scores)
    return int((len(means) - 1) // 2 - int(np.argmax(means)))


def delay_audio(wav: np.ndarray, shift_frames: int) -> np.ndarray:
    """The clip's audio delayed by ``shift_frames`` video frames (640 samples each), same length.

    ``shift_frames > 0``: the sound comes later than the picture (silence is prepended and the
    end is cut), the convention of :func:`avlib.media.remux_with_shifted_audio`; ``< 0``: earlier
    (the start is cut, silence appended). The sync protocols then report
    ``sync.audio_delay_to_offset(shift_frames) = -shift_frames``.
    """
    x = np.asarray(wav)
    if x.ndim != 1:
        raise ValueError(f"expected mono audio of shape (N,), got shape {x.shape}")
    if int(shift_frames) != shift_frames:
        raise ValueError(f"shift_frames must be a whole number of frames, got {shift_frames!r}")
    n = SAMPLES_PER_FRAME * int(shift_frames)
    out = np.zeros_like(x)
    if n >= 0:
        out[n:] = x[: len(x) - n] if n < len(x) else x[:0]
    else:
        out[: len(x) + n] = x[-n:] if -n < len(x) else x[:0]
    return out


# ---------------------------------------------------------------------------------------------
# What silence does to the protocol
# ---------------------------------------------------------------------------------------------
class AudioOracleScorer:
    """The best any sync model can do on an **in-sync** clip: a scorer whose "video" reveals the
    true audio exactly.

    Window i is scored against audio window ``i - vshift + j`` by the negative distance between
    the two Wav2Lip mel windows (window i's own audio stands for what its video shows), so the
    true offset always has the highest possible score. It still fails where other audio windows
    are *identical* to the true one: stretches of digital silence give identical mel windows, the
    tie goes to the first column (``np.argmax``), and no model that sees only these inputs can do
    better there. Its accuracy is the ceiling of the protocol on a set of clips. Valid for clips
    at offset 0 only (``evaluate_store(..., kind="grid")``); frames are used for their count.
    """

    crop_stream = FACE_STREAM  # frames are used for their count only

    def window_scores(self, frames: np.ndarray, wav: np.ndarray,
                      vshift: int = sync.DEFAULT_VSHIFT) -> np.ndarray:
        """(n_windows, 2 vshift + 1) float64 scores (``sync.OUT_OF_RANGE`` outside the clip)."""
        from avlib.audio import wav2lip_mel

        n = sync.num_sync_windows(len(frames), len(wav))
        if n < 1:
            raise ValueError(f"the clip is too short to score ({len(frames)} frames, {len(wav)} samples)")
        mel = wav2lip_mel(np.asarray(wav, dtype=np.float32))
        windows = np.stack([A.mel_window(mel, i) for i in range(n)]).reshape(n, -1).astype(np.float64)
        audio_index = np.arange(n)[:, None] - vshift + np.arange(2 * vshift + 1)[None, :]
        inside = (audio_index >= 0) & (audio_index < n)
        scores = np.full(audio_index.shape, sync.OUT_OF_RANGE)
        rows, cols = np.nonzero(inside)
        scores[rows, cols] = -np.linalg.norm(windows[rows] - windows[audio_index[rows, cols]], axis=1)
        return scores


def speech_windows(wav: np.ndarray, n_windows: int, rms_threshold: float = RMS_SILENT) -> np.ndarray:
    """(n_windows,) bool: whether audio window i (samples ``[640 i, 640 i + 3200)``) holds sound
    above ``rms_threshold`` (VocaLiST's silence threshold 0.01 by default)."""
    x = np.asarray(wav, dtype=np.float64)
    out = np.zeros(int(n_windows), dtype=bool)
    for i in range(int(n_windows)):
        chunk = x[SAMPLES_PER_FRAME * i : SAMPLES_PER_FRAME * (i + WINDOW)]
        out[i] = chunk.size > 0 and float(np.sqrt(np.mean(chunk**2))) > rms_threshold
    return out


def _true_speech(store: ClipStore, clip_id: str, n: int, true_offset: int,
                 rms_threshold: float) -> np.ndarray:
    """(n,) bool: the windows whose true audio window (``i - true_offset``) holds speech."""
    own = speech_windows(store.audio(clip_id), n, rms_threshold)
    true_audio = np.arange(n) - true_offset
    valid = (true_audio >= 0) & (true_audio < n)
    counted = np.zeros(n, dtype=bool)
    counted[valid] = own[true_audio[valid]]
    return counted


def accuracy_on_speech(evaluation: sync.SyncEvaluation, store: ClipStore,
                       rms_threshold: float = RMS_SILENT):
    """The accuracy table of ``evaluation`` counted only on windows whose true audio holds speech.

    Context averaging still uses every window (as the protocol does); only the windows that are
    *counted* change: a window counts when the audio window that truly belongs to it (``i -
    true_offset``) is above ``rms_threshold``. Needs ``evaluate_store(..., keep_scores=True)``.

    Returns a DataFrame (group x context, %), like ``evaluation.table``.
    """
    import pandas as pd

    if not evaluation.scores:
        raise ValueError("the evaluation kept no scores; run evaluate_store(..., keep_scores=True)")
    rows = []
    for rec in evaluation.per_clip.itertuples(index=False):
        scores = evaluation.scores[rec.clip_id]
        n = scores.shape[0]
        counted = _true_speech(store, rec.clip_id, n, int(rec.true_offset), rms_threshold)
        if not counted.any():
            continue
        row = {"group": rec.group}
        for context in evaluation.contexts:
            predicted = sync.predicted_offsets(sync.context_average(scores, context))
            correct = np.abs(predicted - int(rec.true_offset)) <= evaluation.tolerance
            row[context] = float(np.mean(correct[counted]))
        rows.append(row)
    table = pd.DataFrame(rows, columns=["group", *evaluation.contexts])
    groups = list(dict.fromkeys(table["group"]))
    means = table.groupby("group", sort=False)[list(evaluation.contexts)].mean() * 100.0
    return means.loc[groups].rename_axis(index="group", columns="context (frames)")


def pair_scores(evaluation: sync.SyncEvaluation, store: ClipStore, near: tuple[int, int] = (2, 5),
                speech_only: bool = True, rms_threshold: float = RMS_SILENT) -> dict[str, np.ndarray]:
    """The window scores of an evaluation split by what the audio window is to the video window:
    ``"genuine"`` (the true alignment), ``"false, near"`` (``near[0]..near[1]`` frames from it)
    and ``"false, far"`` (farther). For the distance histograms of genuine and false pairs; a
    network that learnt sync separates the genuine scores from both false groups, and the
    ±1-frame protocol is decided against the near ones.

    Scores are the scorer's (higher = more in sync: a negative distance for SyncNet, a cosine
    for the expert, a logit for VocaLiST). ``speech_only`` keeps the windows whose true audio
    holds speech (as :func:`accuracy_on_speech` counts them). Needs ``keep_scores=True``."""
    if not evaluation.scores:
        raise ValueError("the evaluation kept no scores; run evaluate_store(..., keep_scores=True)")
    lo, hi = int(near[0]), int(near[1])
    if not 1 <= lo <= hi:
        raise ValueError(f"near must be (lo, hi) with 1 <= lo <= hi, got {near!r}")
    out: dict[str, list] = {"genuine": [], "false, near": [], "false, far": []}
    for rec in evaluation.per_clip.itertuples(index=False):
        scores = np.asarray(evaluation.scores[rec.clip_id], dtype=np.float64)
        n, width = scores.shape
        vshift = (width - 1) // 2
        true = int(rec.true_offset)
        rows = np.arange(n)
        if speech_only:
            rows = rows[_true_speech(store, rec.clip_id, n, true, rms_threshold)]
        distance = np.abs((vshift - np.arange(width)) - true)  # frames from the truth
        block = scores[rows]
        inside = block > sync.OUT_OF_RANGE / 2
        for name, cols in (("genuine", distance == 0),
                           ("false, near", (distance >= lo) & (distance <= hi)),
                           ("false, far", distance > hi)):
            out[name].append(block[:, cols][inside[:, cols]])
    return {name: np.concatenate(parts) if parts else np.zeros(0) for name, parts in out.items()}


def scores_around_truth(evaluation: sync.SyncEvaluation, store: ClipStore, reach: int = 3,
                        speech_only: bool = True, rms_threshold: float = RMS_SILENT):
    """The mean score at each offset from the true alignment, ``-reach .. +reach`` frames
    (offset > 0: the audio candidate leads the truth), over the windows of every clip of an
    evaluation (``speech_only``: those whose true audio holds speech). A network that learnt
    sync peaks at 0; one trained on pairs indexed differently from the evaluation peaks one or
    two frames away. Returns a Series indexed by the offset. Needs ``keep_scores=True``."""
    import pandas as pd

    if not evaluation.scores:
        raise ValueError("the evaluation kept no scores; run evaluate_store(..., keep_scores=True)")
    sums, counts = np.zeros(2 * reach + 1), np.zeros(2 * reach + 1)
    for rec in evaluation.per_clip.itertuples(index=False):
        scores = np.asarray(evaluation.scores[rec.clip_id], dtype=np.float64)
        n, width = scores.shape
        vshift, true = (width - 1) // 2, int(rec.true_offset)
        rows = np.arange(n)
        if speech_only:
            rows = rows[_true_speech(store, rec.clip_id, n, true, rms_threshold)]
        for i, rel in enumerate(range(-reach, reach + 1)):
            column = vshift - (true + rel)
            if 0 <= column < width and len(rows):
                values = scores[rows, column]
                values = values[values > sync.OUT_OF_RANGE / 2]
                sums[i] += values.sum()
                counts[i] += len(values)
    means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return pd.Series(means, index=pd.Index(range(-reach, reach + 1), name="offset (frames)"))


# ---------------------------------------------------------------------------------------------
# Headline results in the book's metrics schema
# ---------------------------------------------------------------------------------------------
SPEECH_METRIC = "accuracy (±1 frame, 15-frame context), speech windows"
CLIP_METRIC = "whole-clip offset found (±1 frame)"
_GROUP_SPLITS = {"seen": "seen speakers", "unseen": "unseen speakers"}


def headline_rows(model: str, size: str, speech_table, clips_found: float, n_clips: int, *,
                  chance: float, window_tolerance: float,
                  targets: Mapping[str, float] | None = None) -> list[dict]:
    """A sync model's headline rows for ``book.save_metrics``: the accuracy at a 15-frame context
    on speech windows for each group of ``speech_table`` (:func:`accuracy_on_speech`), with the
    group's target from ``targets`` (None: no target) and ``window_tolerance`` points around
    ``chance``; then the share of ``n_clips`` sync-test clips whose whole-clip offset it finds
    (``clips_found``, %), whose tolerance is two binomial standard errors of a guesser on
    ``n_clips`` clips (a guesser's hit rate scatters by sqrt(p (1 - p) / n))."""
    targets = targets or {}
    rows = [{"model": model, "size": size, "split": split, "metric": SPEECH_METRIC,
             "value": float(speech_table.loc[group, 15]), "unit": "%",
             "target": targets.get(group), "baseline": chance,
             "tolerance": window_tolerance, "headline": True}
            for group, split in _GROUP_SPLITS.items() if group in speech_table.index]
    p = chance / 100
    rows.append({"model": model, "size": size, "split": f"{n_clips} sync-test clips",
                 "metric": CLIP_METRIC, "value": float(clips_found), "unit": "%",
                 "baseline": chance, "headline": True,
                 "tolerance": 200 * math.sqrt(p * (1 - p) / max(n_clips, 1))})
    return rows
