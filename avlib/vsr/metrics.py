"""Scoring a word lip reader: top-k accuracy, confusions, homophenes, per-speaker accuracy.

Inputs are numpy arrays or torch tensors (any device; bfloat16 logits are fine):

=========== ============ ===================================================================
argument    shape        meaning
=========== ============ ===================================================================
logits      (N, C)       word scores of N clips over the C classes of ``vocabulary``
pred        (N,) or      predicted class indices, or logits (N, C) whose argmax is taken
            (N, C)
labels      (N,)         true class indices in ``[0, C)``
vocabulary  (C,)         the classes' words, in class order (compared case-insensitively
                         with the homophene groups)
speakers    (N,)         a speaker id per clip (any hashable)
=========== ============ ===================================================================

================================ ==========================================================
function                         what
================================ ==========================================================
:func:`topk_accuracy`            share of clips whose word is among the k best scores; ties
                                 go to the lower class index, as ``argmax`` breaks them, so
                                 ``k=1`` equals ``mean(argmax == label)``
:func:`confusion_matrix`         (C, C) int64 counts, rows = true word, columns = predicted
:func:`group_of`                 the homophene-group id of every class (see below)
:func:`homophene_order`          class indices with every homophene group's words adjacent,
                                 to lay out a confusion matrix
:func:`homophene_accuracy`       share of clips whose prediction is in the true word's group
:func:`word_report`              ``n``, ``top1``, ``top5``, ``homophene_acc``,
                                 ``homophene_errors`` of one evaluation
:func:`speaker_breakdown`        word accuracy per speaker
================================ ==========================================================

Homophene groups (:data:`avlib.corpus.text.HOMOPHENE_GROUPS`) are words whose visible mouth
movements are near-identical (PAT / BAT / MAT). A reader that sees only lips cannot tell them
apart, so two numbers say how much of its error is that ceiling:

* ``homophene_acc``: a prediction counts when it lies in the true word's group (a word outside
  every group is a group of its own), hence ``top1 <= homophene_acc`` always;
* ``homophene_errors``: of the wrong predictions, the share that stays inside the true word's
  group (NaN when there is no error); ``homophene_acc = top1 + (1 - top1) * homophene_errors``.

Group ids (:func:`group_of`) follow :func:`homophene_order`: the groups with at least one word
in the vocabulary get ids 0, 1, ... in the groups' order, then every other word its own id in
alphabetical order, so ``group_of(v)[homophene_order(v)]`` never decreases.

Every shape or range mismatch raises ValueError.
"""
from __future__ import annotations

from typing import Hashable, Sequence

import numpy as np

from avlib.corpus.text import HOMOPHENE_GROUPS

__all__ = [
    "topk_accuracy",
    "confusion_matrix",
    "group_of",
    "homophene_order",
    "homophene_accuracy",
    "word_report",
    "speaker_breakdown",
]


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------
def _numpy(x) -> np.ndarray:
    """A numpy view of an array or a tensor (detached, on the CPU, bf16/fp16 as float32)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor, without importing torch
        x = x.detach().cpu()
        if x.is_floating_point():
            x = x.float()
        return x.numpy()
    return np.asarray(x)


def _logits(logits, name: str = "logits") -> np.ndarray:
    arr = _numpy(logits)
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise ValueError(f"{name} must be (N, C) class scores, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise ValueError(f"{name} contain NaN or inf")
    return arr


def _labels(labels, n_classes: int | None = None, name: str = "labels") -> np.ndarray:
    arr = _numpy(labels)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be (N,) class indices, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be integer class indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if n_classes is not None and arr.size and (arr.min() < 0 or arr.max() >= n_classes):
        raise ValueError(f"{name} must lie in [0, {n_classes}), got values "
                         f"{int(arr.min())}..{int(arr.max())}")
    return arr


def _pred(pred, n_classes: int | None = None) -> np.ndarray:
    """Class indices (N,) from indices or from logits (N, C)."""
    arr = _numpy(pred)
    if arr.ndim == 2:
        arr = _logits(arr, "pred")
        if n_classes is not None and arr.shape[1] != n_classes:
            raise ValueError(f"pred logits have {arr.shape[1]} classes, expected {n_classes}")
        return arr.argmax(axis=1).astype(np.int64)
    return _labels(arr, n_classes, "pred")


def _n_classes(pred) -> int | None:
    """The class count of logits (N, C); None for class indices."""
    arr = _numpy(pred)
    return int(arr.shape[1]) if arr.ndim == 2 else None


def _same_length(**arrays) -> int:
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"one entry per clip is needed, got lengths {lengths}")
    n = next(iter(lengths.values()))
    if n == 0:
        raise ValueError("no clip to score (N = 0)")
    return n


def _vocabulary(vocabulary: Sequence[str], n_classes: int | None = None) -> tuple[str, ...]:
    if isinstance(vocabulary, str):
        raise ValueError("vocabulary must be a sequence of words, not one string")
    words = tuple(str(w) for w in vocabulary)
    if not words:
        raise ValueError("vocabulary is empty")
    keys = [_key(w) for w in words]
    if len(set(keys)) != len(keys):
        dup = sorted({w for w in keys if keys.count(w) > 1})
        raise ValueError(f"vocabulary repeats words {dup}")
    if n_classes is not None and len(words) != n_classes:
        raise ValueError(f"vocabulary has {len(words)} words but there are {n_classes} classes")
    return words


def _key(word: str) -> str:
    return str(word).strip().upper()


# --------------------------------------------------------------------------------------------
# Accuracy and confusions
# --------------------------------------------------------------------------------------------
def _ranks(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """0-based rank of each clip's true class: classes scoring higher, plus equal scores at a
    lower index (argmax's tie-break)."""
    true = logits[np.arange(len(labels)), labels][:, None]
    before = np.arange(logits.shape[1])[None, :] < labels[:, None]
    return (logits > true).sum(axis=1) + ((logits == true) & before).sum(axis=1)


def topk_accuracy(logits, labels, k: int = 1) -> float:
    """Share of clips whose true word is among the ``k`` highest of its logits (N, C).

    Ties go to the lower class index (``argmax``'s rule). ``k >= C`` counts every clip."""
    scores = _logits(logits)
    truth = _labels(labels, scores.shape[1])
    _same_length(logits=scores, labels=truth)
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return float((_ranks(scores, truth) < int(k)).mean())


def confusion_matrix(pred, labels, n_classes: int) -> np.ndarray:
    """Counts (C, C) int64: entry ``[i, j]`` = clips of word ``i`` predicted as word ``j``.

    ``pred`` is (N,) class indices or (N, C) logits (their argmax)."""
    if int(n_classes) != n_classes or n_classes < 1:
        raise ValueError(f"n_classes must be a positive integer, got {n_classes!r}")
    n_classes = int(n_classes)
    guess = _pred(pred, n_classes)
    truth = _labels(labels, n_classes)
    if len(guess) != len(truth):
        raise ValueError(f"one entry per clip is needed, got {len(guess)} predictions and "
                         f"{len(truth)} labels")
    flat = np.bincount(truth * n_classes + guess, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes).astype(np.int64)


# --------------------------------------------------------------------------------------------
# Homophenes
# --------------------------------------------------------------------------------------------
def _grouping(vocabulary: Sequence[str], groups) -> tuple[list[int], np.ndarray]:
    """(homophene order, group id per class) of a vocabulary."""
    words = _vocabulary(vocabulary)
    index = {_key(w): i for i, w in enumerate(words)}
    seen: dict[str, int] = {}
    order: list[int] = []
    gid = np.full(len(words), -1, np.int64)
    next_id = 0
    for g, group in enumerate(groups):
        if isinstance(group, str):
            raise ValueError(f"group {g} is one string {group!r}; a group is a tuple of words")
        members = []
        for word in group:
            key = _key(word)
            if key in seen and seen[key] != g:
                raise ValueError(f"{word!r} is in homophene groups {seen[key]} and {g}; groups "
                                 "must not overlap")
            seen[key] = g
            if key in index and index[key] not in members:
                members.append(index[key])
        if members:
            order.extend(members)
            gid[members] = next_id
            next_id += 1
    rest = sorted((i for i in range(len(words)) if gid[i] < 0), key=lambda i: (_key(words[i]), i))
    for i in rest:
        gid[i] = next_id
        next_id += 1
    return order + rest, gid


def homophene_order(vocabulary: Sequence[str], groups=HOMOPHENE_GROUPS) -> list[int]:
    """Class indices ordered so that each homophene group's words are adjacent.

    First the groups (in the order of ``groups``, each group's words in its own order, words
    missing from the vocabulary skipped), then every other word alphabetically. Reorder a
    confusion matrix with ``cm[np.ix_(order, order)]`` to see homophene confusions as blocks."""
    return [int(i) for i in _grouping(vocabulary, groups)[0]]


def group_of(vocabulary: Sequence[str], groups=HOMOPHENE_GROUPS) -> np.ndarray:
    """The homophene-group id (C,) int64 of every class; a word outside every group has an id
    of its own. Ids are numbered along :func:`homophene_order`."""
    return _grouping(vocabulary, groups)[1]


def homophene_accuracy(pred, labels, vocabulary: Sequence[str], groups=HOMOPHENE_GROUPS) -> float:
    """Share of clips whose prediction lies in the true word's homophene group (the true word
    itself included, so word accuracy <= this). ``pred``: (N,) indices or (N, C) logits."""
    gid = group_of(vocabulary, groups)
    guess = _pred(pred, len(gid))
    truth = _labels(labels, len(gid))
    _same_length(pred=guess, labels=truth)
    return float((gid[guess] == gid[truth]).mean())


def word_report(logits, labels, vocabulary: Sequence[str], groups=HOMOPHENE_GROUPS) -> dict:
    """One evaluation of a word reader on N clips.

    Returns ``{"n": N, "top1", "top5", "homophene_acc", "homophene_errors"}``: word accuracy,
    top-5 accuracy (every clip counts when C <= 5), accuracy up to homophenes, and the share of
    the wrong top-1 predictions that stay inside the true word's homophene group (NaN when
    none is wrong)."""
    scores = _logits(logits)
    words = _vocabulary(vocabulary, scores.shape[1])
    truth = _labels(labels, scores.shape[1])
    n = _same_length(logits=scores, labels=truth)
    gid = group_of(words, groups)
    guess = scores.argmax(axis=1)
    wrong = guess != truth
    same_group = gid[guess] == gid[truth]
    return {
        "n": int(n),
        "top1": topk_accuracy(scores, truth, 1),
        "top5": topk_accuracy(scores, truth, 5),
        "homophene_acc": float(same_group.mean()),
        "homophene_errors": float(same_group[wrong].mean()) if wrong.any() else float("nan"),
    }


def speaker_breakdown(pred, labels, speakers: Sequence[Hashable]) -> dict:
    """Word accuracy per speaker: ``{speaker: accuracy}``, speakers in sorted order (by their
    text). ``pred``: (N,) indices or (N, C) logits."""
    guess = _pred(pred)
    truth = _labels(labels, _n_classes(pred))
    speakers = list(speakers)
    _same_length(pred=guess, labels=truth, speakers=speakers)
    hit = guess == truth
    out: dict = {}
    for who in sorted(set(speakers), key=str):
        mask = np.fromiter((s == who for s in speakers), bool, len(speakers))
        out[who] = float(hit[mask].mean())
    return out
