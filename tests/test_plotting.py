"""The book's plotting conventions: one style per model, numbers as a reader should see them."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.colors as mcolors  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from avlib import plotting  # noqa: E402

BOOK_MODELS = ("syncnet", "wav2lip_expert", "vocalist", "mtd_vocalist", "wav2lip", "vcagan",
               "syncvsr", "mmab")


def test_every_model_of_the_book_has_a_style():
    for name in BOOK_MODELS:
        style = plotting.model_style(name)
        assert set(style) >= {"color", "marker", "linestyle", "label"}
        assert mcolors.is_color_like(style["color"])
        assert style["label"]


def test_models_look_different():
    looks = [(s["color"], s["marker"], s["linestyle"]) for s in plotting.MODEL_STYLES.values()]
    assert len(set(looks)) == len(looks), "two models share colour, marker and line style"
    colors = [plotting.MODEL_STYLES[m]["color"].lower() for m in BOOK_MODELS]
    assert len(set(colors)) == len(colors), "each model of the book has its own colour"
    labels = [s["label"] for s in plotting.MODEL_STYLES.values()]
    assert len(set(labels)) == len(labels)


def test_model_style_is_a_copy_with_overrides_and_aliases():
    style = plotting.model_style("syncnet", label="SyncNet, seen", marker="")
    assert style["label"] == "SyncNet, seen" and style["marker"] == ""
    assert plotting.MODEL_STYLES["syncnet"]["label"] == "SyncNet"
    style["color"] = "red"
    assert plotting.model_color("syncnet") != "red"
    assert plotting.model_style("expert") == plotting.model_style("wav2lip_expert")
    assert plotting.model_style("MTD-VocaLiST") == plotting.model_style("mtd_vocalist")
    assert plotting.model_label("vocalist") == "VocaLiST"
    with pytest.raises(KeyError, match="known"):
        plotting.model_style("no such model")


def test_model_style_draws():
    fig, ax = plotting.figure()
    for name in plotting.MODEL_STYLES:
        ax.plot([0, 1], [0, 1], **plotting.model_style(name))
    ax.legend()
    assert len(ax.get_lines()) == len(plotting.MODEL_STYLES)
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_numbers_print_as_a_reader_expects():
    assert plotting.number(12) == "12" and plotting.number(np.int64(1422)) == "1422"
    assert plotting.number(48000) == "48,000"
    assert plotting.number(12.0) == "12" and plotting.number(0.89558) == "0.8956"
    assert plotting.number(181.14) == "181.1" and plotting.number(np.float32(5.7)) == "5.7"
    assert plotting.number(None) == "" and plotting.number("x") == "x"
    assert plotting.number(float("nan")) == "nan"


def test_table_keeps_integers_integers():
    mixed = {"clips": 12, "rejected": 0, "minutes": 0.6, "speed-up": 5.736}
    text = plotting.table(mixed).to_string()
    assert "12.000" not in text and ".000" not in text
    assert "12" in text and "5.736" in text
    frame = pd.DataFrame({"per second": [16000.0, 80.0], "per frame": [640.0, 3.2]},
                         index=["audio", "mel"])
    shown = plotting.table(frame)
    assert list(shown["per frame"]) == ["640", "3.2"] and shown.loc["audio", "per second"] == "16,000"


def test_use_style_is_idempotent():
    plotting.use_style()
    plotting.use_style()
    assert matplotlib.rcParams["image.cmap"] == plotting.CMAP
    assert not matplotlib.rcParams["axes.spines.top"]


def test_training_curves_draw_loss_accuracy_and_chance(tmp_path):
    from avlib.train import History

    hist = History(train=[{"step": s, "loss": 1.0 / s, "acc": 0.5 + s / 1000} for s in (10, 20)],
                   eval=[{"step": 20, "val_loss": 0.6, "val_acc": 0.7}])
    fig, (ax_loss, ax_acc) = plotting.training_curves(hist, "wav2lip_expert",
                                                       chance_loss=0.693,
                                                       chance_label="ln 2")
    assert [line.get_ydata()[0] for line in ax_loss.lines][-1] == pytest.approx(0.693)
    assert any(list(line.get_ydata()) == [0.5, 0.5] for line in ax_acc.lines)
    labels = [t.get_text() for t in ax_loss.get_legend().get_texts()]
    assert labels == ["train", "validation", "ln 2"]
    assert plotting.save(fig, tmp_path / "curves.png").stat().st_size > 0
    fig, (ax_loss, _) = plotting.training_curves(History(), "syncnet")
    assert "no 'loss' recorded" in [t.get_text() for t in ax_loss.texts]


def test_score_histograms_share_bins_and_count_each_pile():
    fig, ax = plotting.figure()
    plotting.score_histograms(ax, {"genuine": np.ones(5), "false": np.zeros(7),
                                   "empty": np.array([np.nan])}, "score")
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["genuine (5)", "false (7)"]
    fig, ax = plotting.figure()
    plotting.score_histograms(ax, {}, "score")
    assert [t.get_text() for t in ax.texts] == ["no scores"]
