"""Word lip-reading metrics (avlib.vsr.metrics) on constructed predictions with known answers."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from avlib.corpus.text import HOMOPHENE_GROUPS, LRW_WORDS
from avlib.vsr import metrics as M

# A small vocabulary: one homophene group of three, one of two, and two lone words.
VOCAB = ("ABOUT", "BAT", "FAN", "MAT", "PAT", "VAN", "WATER")
GROUPS = (("PAT", "BAT", "MAT"), ("FAN", "VAN"))
PAT, BAT, MAT, FAN, VAN, ABOUT, WATER = (VOCAB.index(w) for w in
                                         ("PAT", "BAT", "MAT", "FAN", "VAN", "ABOUT", "WATER"))


def one_hot_logits(pred, n_classes=len(VOCAB)):
    out = np.zeros((len(pred), n_classes), np.float32)
    out[np.arange(len(pred)), pred] = 1.0
    return out


# ------------------------------------------------------------------------------------ top-k
def test_topk_counts_the_true_word_among_the_k_best():
    logits = np.array([[0.1, 0.5, 0.3, 0.9],    # label 3: rank 0
                       [0.8, 0.1, 0.6, 0.2],    # label 2: rank 1
                       [0.2, 0.3, 0.4, 0.1],    # label 0: rank 2
                       [0.4, 0.3, 0.2, 0.1]])   # label 3: rank 3
    labels = np.array([3, 2, 0, 3])
    assert M.topk_accuracy(logits, labels, 1) == 0.25
    assert M.topk_accuracy(logits, labels, 2) == 0.5
    assert M.topk_accuracy(logits, labels, 3) == 0.75
    assert M.topk_accuracy(logits, labels, 4) == 1.0
    assert M.topk_accuracy(logits, labels, 9) == 1.0  # k >= C counts every clip
    # torch input (bfloat16 too) gives the same answer
    t = torch.tensor(logits)
    assert M.topk_accuracy(t, torch.tensor(labels), 2) == 0.5
    assert M.topk_accuracy(t.to(torch.bfloat16), torch.tensor(labels), 2) == 0.5


def test_top1_equals_argmax_accuracy_even_with_ties():
    logits = np.array([[1.0, 1.0, 0.0],   # tie: argmax picks class 0
                       [1.0, 1.0, 0.0],
                       [0.0, 0.0, 0.0]])  # all equal: argmax picks 0
    labels = np.array([0, 1, 2])
    assert M.topk_accuracy(logits, labels, 1) == pytest.approx(1 / 3)
    assert M.topk_accuracy(logits, labels, 1) == (logits.argmax(1) == labels).mean()
    assert M.topk_accuracy(logits, labels, 2) == pytest.approx(2 / 3)  # class 2 ranks third


def test_topk_errors():
    logits = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match="one entry per clip"):
        M.topk_accuracy(logits, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        M.topk_accuracy(np.zeros(4), np.array([0]))
    with pytest.raises(ValueError, match=r"lie in \[0, 4\)"):
        M.topk_accuracy(logits, np.array([0, 1, 4]))
    with pytest.raises(ValueError, match="integer class indices"):
        M.topk_accuracy(logits, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="k must be a positive integer"):
        M.topk_accuracy(logits, np.array([0, 1, 2]), k=0)
    with pytest.raises(ValueError, match="NaN"):
        M.topk_accuracy(np.full((3, 4), np.nan), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="no clip"):
        M.topk_accuracy(np.zeros((0, 4)), np.zeros(0, np.int64))


# ------------------------------------------------------------------------------------ confusions
def test_confusion_matrix_rows_are_truth_columns_predictions():
    labels = np.array([0, 0, 0, 1, 1, 2])
    pred = np.array([0, 1, 1, 1, 2, 0])
    cm = M.confusion_matrix(pred, labels, 3)
    np.testing.assert_array_equal(cm, [[1, 2, 0], [0, 1, 1], [1, 0, 0]])
    assert cm.dtype == np.int64 and cm.sum() == 6
    np.testing.assert_array_equal(cm.sum(axis=1), np.bincount(labels, minlength=3))
    np.testing.assert_array_equal(cm.sum(axis=0), np.bincount(pred, minlength=3))
    # logits are taken through their argmax; torch works too
    np.testing.assert_array_equal(M.confusion_matrix(torch.tensor(one_hot_logits(pred, 3)),
                                                     torch.tensor(labels), 3), cm)
    # a class nobody has or predicts is an empty row and column
    assert M.confusion_matrix(pred, labels, 5)[3:].sum() == 0


def test_confusion_matrix_errors():
    with pytest.raises(ValueError, match="one entry per clip"):
        M.confusion_matrix(np.array([0, 1]), np.array([0]), 2)
    with pytest.raises(ValueError, match=r"pred must lie in \[0, 2\)"):
        M.confusion_matrix(np.array([0, 2]), np.array([0, 1]), 2)
    with pytest.raises(ValueError, match="3 classes, expected 2"):
        M.confusion_matrix(np.zeros((2, 3)), np.array([0, 1]), 2)
    with pytest.raises(ValueError, match="n_classes"):
        M.confusion_matrix(np.array([0]), np.array([0]), 0)


# ------------------------------------------------------------------------------------ homophenes
def test_homophene_order_keeps_groups_adjacent_then_the_rest_alphabetically():
    order = M.homophene_order(VOCAB, GROUPS)
    assert [VOCAB[i] for i in order] == ["PAT", "BAT", "MAT", "FAN", "VAN", "ABOUT", "WATER"]
    assert sorted(order) == list(range(len(VOCAB)))
    gid = M.group_of(VOCAB, GROUPS)
    assert gid[PAT] == gid[BAT] == gid[MAT] == 0 and gid[FAN] == gid[VAN] == 1
    assert gid[ABOUT] == 2 and gid[WATER] == 3  # lone words: an id each
    assert np.all(np.diff(gid[order]) >= 0)


def test_homophene_order_on_the_corpus_vocabulary():
    order = M.homophene_order(LRW_WORDS)
    assert sorted(order) == list(range(len(LRW_WORDS)))
    words = [LRW_WORDS[i] for i in order]
    n_grouped = sum(len(g) for g in HOMOPHENE_GROUPS)
    for group in HOMOPHENE_GROUPS:  # each group is one contiguous run, in the groups' order
        at = sorted(words.index(w) for w in group)
        assert at == list(range(at[0], at[0] + len(group)))
    assert words[:3] == list(HOMOPHENE_GROUPS[0])
    assert words[n_grouped:] == sorted(words[n_grouped:])
    gid = M.group_of(LRW_WORDS)
    assert len(set(gid.tolist())) == len(HOMOPHENE_GROUPS) + len(LRW_WORDS) - n_grouped


def test_homophene_groups_match_case_insensitively_and_skip_missing_words():
    vocab = ("mat", "bat", "zebra", "van")  # lower case; PAT and FAN absent
    assert [vocab[i] for i in M.homophene_order(vocab, GROUPS)] == ["bat", "mat", "van", "zebra"]
    gid = M.group_of(vocab, GROUPS)
    assert gid[0] == gid[1] != gid[3] != gid[2]


def test_homophene_grouping_errors():
    with pytest.raises(ValueError, match="repeats"):
        M.homophene_order(("PAT", "pat"), GROUPS)
    with pytest.raises(ValueError, match="must not overlap"):
        M.group_of(VOCAB, (("PAT", "BAT"), ("BAT", "MAT")))
    with pytest.raises(ValueError, match="one string"):
        M.group_of(VOCAB, ("PAT",))
    with pytest.raises(ValueError, match="empty"):
        M.homophene_order((), GROUPS)


def test_homophene_accuracy_counts_errors_inside_the_true_group():
    labels = np.array([PAT, PAT, PAT, FAN, FAN, ABOUT, WATER, MAT])
    pred = np.array([PAT, BAT, FAN, VAN, FAN, WATER, WATER, PAT])
    # right: 0, 4, 6; within-group errors: 1 (BAT for PAT), 3 (VAN for FAN), 7 (PAT for MAT)
    word_acc = (pred == labels).mean()
    assert word_acc == 3 / 8
    acc = M.homophene_accuracy(pred, labels, VOCAB, GROUPS)
    assert acc == 6 / 8 and acc >= word_acc
    assert M.homophene_accuracy(one_hot_logits(pred), labels, VOCAB, GROUPS) == acc
    # without groups it is word accuracy
    assert M.homophene_accuracy(pred, labels, VOCAB, ()) == word_acc
    with pytest.raises(ValueError, match="one entry per clip"):
        M.homophene_accuracy(pred[:3], labels, VOCAB, GROUPS)
    with pytest.raises(ValueError, match=r"lie in \[0, 7\)"):
        M.homophene_accuracy(pred, labels + 7, VOCAB, GROUPS)


def test_word_report():
    labels = np.array([PAT, PAT, PAT, FAN, FAN, ABOUT, WATER, MAT])
    pred = np.array([PAT, BAT, FAN, VAN, FAN, WATER, WATER, PAT])
    logits = one_hot_logits(pred)
    logits[2, PAT] = 0.5  # clip 2: its word second best
    report = M.word_report(torch.tensor(logits), torch.tensor(labels), VOCAB, GROUPS)
    assert report["n"] == 8
    assert report["top1"] == 3 / 8
    assert report["homophene_acc"] == 6 / 8
    assert report["homophene_errors"] == 3 / 5  # 3 of the 5 errors stay in the true group
    assert report["homophene_acc"] == pytest.approx(
        report["top1"] + (1 - report["top1"]) * report["homophene_errors"])
    assert report["top5"] == M.topk_accuracy(logits, labels, 5)
    assert report["top1"] <= report["top5"] and report["top1"] <= report["homophene_acc"]
    perfect = M.word_report(one_hot_logits(labels), labels, VOCAB, GROUPS)
    assert perfect["top1"] == perfect["homophene_acc"] == 1.0
    assert math.isnan(perfect["homophene_errors"])  # no error to share out
    with pytest.raises(ValueError, match="vocabulary has 3 words but there are 7 classes"):
        M.word_report(logits, labels, VOCAB[:3], GROUPS)


def test_top5_with_fewer_than_five_classes_counts_every_clip():
    report = M.word_report(np.eye(3)[[1, 2, 0]], np.array([0, 1, 2]), ("A", "B", "C"))
    assert report["top1"] == 0.0 and report["top5"] == 1.0


def test_speaker_breakdown():
    labels = np.array([0, 1, 2, 0, 1, 2])
    pred = np.array([0, 1, 0, 0, 2, 2])
    speakers = ["s2", "s2", "s2", "s10", "s10", "s1"]
    got = M.speaker_breakdown(pred, labels, speakers)
    assert got == {"s1": 1.0, "s10": 0.5, "s2": pytest.approx(2 / 3)}
    assert list(got) == ["s1", "s10", "s2"]
    assert M.speaker_breakdown(one_hot_logits(pred, 3), labels, speakers) == got
    with pytest.raises(ValueError, match="one entry per clip"):
        M.speaker_breakdown(pred, labels, speakers[:5])
