"""One plotting style for the whole book, and the players readers use to watch and listen.

Figures use :func:`figure` (consistent sizes, a perceptual colormap, no top/right spines) and
:func:`model_style` (one colour, marker and label per model across chapters); tables for the
reader go through :func:`table` (integers print as integers);
frames are shown with :func:`show_frames`; audio and video are embedded with :func:`audio_player`
and :func:`video_player`, and :func:`frame_scrubber` gives an ipywidgets slider over a clip.
"""
from __future__ import annotations

import base64
from pathlib import Path

import numpy as np

#: Perceptual colormap for spectrograms and maps, diverging one for signed values.
CMAP = "magma"
CMAP_DIVERGING = "RdBu_r"
#: Colours for recurring meanings: audio, video/mouth, ground truth, prediction.
COLORS = {"audio": "#2b6f9e", "mouth": "#c0445a", "truth": "#333333", "pred": "#e08a1e",
          "seen": "#2b6f9e", "unseen": "#c0445a"}
WIDTH = 8.0  # inches: the text width of the book's pages

#: One colour, marker, line style and label per model, used by every chapter and figure (the
#: Okabe-Ito colour-blind-safe palette; grey and black are kept for baselines and ceilings).
MODEL_STYLES = {
    "syncnet": {"color": "#0072B2", "marker": "o", "linestyle": "-", "label": "SyncNet"},
    "wav2lip_expert": {"color": "#D55E00", "marker": "s", "linestyle": "-",
                       "label": "Wav2Lip expert"},
    "vocalist": {"color": "#009E73", "marker": "^", "linestyle": "-", "label": "VocaLiST"},
    "mtd_vocalist": {"color": "#CC79A7", "marker": "D", "linestyle": "-",
                     "label": "MTDVocaLiST"},
    "mtd_vocalist_scratch": {"color": "#CC79A7", "marker": "v", "linestyle": "--",
                             "label": "MTDVocaLiST size, from scratch"},
    "wav2lip": {"color": "#E69F00", "marker": "P", "linestyle": "-", "label": "Wav2Lip"},
    "wav2lip_gan": {"color": "#D55E00", "marker": "p", "linestyle": "-",
                    "label": "Wav2Lip + GAN"},
    "wav2lip_no_expert": {"color": "#E69F00", "marker": "o", "linestyle": ":",
                          "label": "Wav2Lip, no expert"},
    "wav2lip_vocalist_judge": {"color": "#009E73", "marker": "P", "linestyle": "--",
                               "label": "Wav2Lip, VocaLiST judge"},
    "real_video": {"color": "#000000", "marker": "s", "linestyle": "-", "label": "real videos"},
    "reference_copy": {"color": "#999999", "marker": "x", "linestyle": ":",
                       "label": "reference copy"},
    "face_video": {"color": "#777777", "marker": "+", "linestyle": ":",
                   "label": "face video, unchanged"},
    "vcagan": {"color": "#56B4E9", "marker": "X", "linestyle": "-", "label": "VCA-GAN"},
    "vcagan_no_attention": {"color": "#0072B2", "marker": "v", "linestyle": "--",
                            "label": "VCA-GAN without attention"},
    "l1_regression": {"color": "#E69F00", "marker": "d", "linestyle": ":",
                      "label": "L1 regression (no GAN)"},
    "gl_ceiling": {"color": "#555555", "marker": "", "linestyle": "--",
                   "label": "true audio through Griffin-Lim (ceiling)"},
    "syncvsr": {"color": "#8C510A", "marker": "h", "linestyle": "-", "label": "SyncVSR"},
    "syncvsr_lam0": {"color": "#8C510A", "marker": "o", "linestyle": ":",
                     "label": "lip reader, λ = 0"},
    "syncvsr_lam1": {"color": "#BF812D", "marker": "d", "linestyle": "--",
                     "label": "SyncVSR, λ = 1"},
    "syncvsr_phonemes": {"color": "#01665E", "marker": "h", "linestyle": "--",
                         "label": "SyncVSR, phoneme tokens"},
    "mmab": {"color": "#332288", "marker": "*", "linestyle": "-", "label": "MMAB"},
    "mmab_visual_only": {"color": "#44AA99", "marker": "o", "linestyle": "-.",
                         "label": "visual only (no memory)"},
    "mmab_audio_only": {"color": "#777777", "marker": "s", "linestyle": "--",
                        "label": "audio only"},
    "audio_oracle": {"color": "#000000", "marker": "", "linestyle": "--",
                     "label": "audio oracle (ceiling)"},
    "chance": {"color": "#999999", "marker": "", "linestyle": ":", "label": "chance"},
}
#: Other spellings of the same models (product names, paper spellings).
MODEL_ALIASES = {"expert": "wav2lip_expert", "lipsync_expert": "wav2lip_expert",
                 "mtdvocalist": "mtd_vocalist", "vca_gan": "vcagan", "oracle": "audio_oracle"}

_STYLE = {
    "figure.dpi": 110,
    "savefig.dpi": 110,
    "figure.figsize": (WIDTH, 3.0),
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "image.cmap": CMAP,
}


def _model_key(name: str) -> str:
    key = str(name).strip().lower().replace("-", "_").replace(" ", "_")
    key = MODEL_ALIASES.get(key, key)
    if key not in MODEL_STYLES:
        raise KeyError(f"no style for model {name!r}; known: {sorted(MODEL_STYLES)} "
                       f"(aliases {sorted(MODEL_ALIASES)}); add it to plotting.MODEL_STYLES")
    return key


def model_style(name: str, **overrides) -> dict:
    """Matplotlib keyword arguments (``color``, ``marker``, ``linestyle``, ``label``) of a model.

    ``ax.plot(x, y, **plotting.model_style("syncnet"))``; ``overrides`` replace or add keys
    (``label="SyncNet, seen speakers"``, ``marker=""``). Unknown names raise ``KeyError``.
    """
    return {**MODEL_STYLES[_model_key(name)], **overrides}


def model_color(name: str) -> str:
    """The colour of a model (see :data:`MODEL_STYLES`)."""
    return MODEL_STYLES[_model_key(name)]["color"]


def model_label(name: str) -> str:
    """The display name of a model (see :data:`MODEL_STYLES`)."""
    return MODEL_STYLES[_model_key(name)]["label"]


def number(value) -> str:
    """A number as a reader should see it: integers as integers (``1422``, ``12,000``), floats
    with four significant digits (``0.8956``, ``181.1``, ``5.7``); anything else with ``str``."""
    if isinstance(value, (bool, np.bool_)) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}" if abs(int(value)) >= 10_000 else str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if not np.isfinite(v):
            return str(v)
        if abs(v) >= 10_000:
            return f"{v:,.0f}"
        if v != 0 and abs(v) < 1e-3:
            return f"{v:.2e}"
        return f"{v:.4g}"
    return str(value)


def table(data, name: str = "value", index_name: str | None = None):
    """A table for display in which integers print as integers and floats at four significant
    digits, whatever the column's dtype (a pandas column mixing ints and floats would print
    ``12.000``). ``data``: a DataFrame, a Series or a mapping (one column called ``name``)."""
    import pandas as pd

    if isinstance(data, dict):
        data = pd.Series(data, name=name, dtype=object)
    if isinstance(data, pd.Series):
        data = data.to_frame(name=data.name if data.name is not None else name)
    out = data.copy().astype(object)
    for col in out.columns:
        out[col] = [number(v) if isinstance(v, (int, float, np.number)) else v
                    for v in data[col].tolist()]
    if index_name is not None:
        out.index.name = index_name
    return out


def use_style() -> None:
    """Apply the book's matplotlib style (idempotent)."""
    import matplotlib as mpl

    mpl.rcParams.update(_STYLE)


def figure(nrows: int = 1, ncols: int = 1, height: float = 3.0, width: float = WIDTH, **kwargs):
    """``plt.subplots`` with the book's style and width; returns (fig, axes)."""
    import matplotlib.pyplot as plt

    use_style()
    kwargs.setdefault("constrained_layout", True)
    return plt.subplots(nrows, ncols, figsize=(width, height), **kwargs)


def save(fig, path: str | Path) -> Path:
    """Save a figure (PNG) into the artifacts folder, creating parents."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    return path


def show_frames(frames: np.ndarray, titles: list[str] | None = None, ncols: int | None = None,
                size: float = 1.3, suptitle: str | None = None, bgr: bool = False):
    """A grid of images (N,H,W,3) uint8 RGB (or BGR with ``bgr=True``) or (N,H,W) gray."""
    frames = np.asarray(frames)
    n = len(frames)
    ncols = ncols or min(n, 8)
    nrows = int(np.ceil(n / ncols))
    fig, axes = figure(nrows, ncols, height=size * nrows + (0.3 if suptitle else 0),
                       width=size * ncols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        img = frames[i][..., ::-1] if (bgr and frames[i].ndim == 3) else frames[i]
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255)
        if titles:
            ax.set_title(titles[i], fontsize=7)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def audio_player(wav: np.ndarray, sr: int = 16000):
    """An HTML audio player for a mono waveform (embedded in the notebook)."""
    from IPython.display import Audio

    return Audio(np.asarray(wav, dtype=np.float32), rate=sr, normalize=True)


def video_player(path: str | Path, width: int = 240):
    """An HTML5 video player with the mp4 embedded (base64), so the static book plays it."""
    from IPython.display import HTML

    data = base64.b64encode(Path(path).read_bytes()).decode()
    return HTML(f'<video width="{width}" controls preload="metadata" '
                f'src="data:video/mp4;base64,{data}"></video>')


def _png(frame: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(frame[..., ::-1]))
    if not ok:
        raise ValueError("could not encode frame as PNG")
    return buf.tobytes()


def frame_scrubber(frames: np.ndarray, fps: float = 25.0, labels: list[str] | None = None):
    """An ipywidgets scrubber over RGB frames (T,H,W,3): a slider, a play button, frame and time.

    Live in Jupyter; in the static book the widget shows its first frame.
    """
    import ipywidgets as w

    pngs = [_png(f) for f in frames]
    image = w.Image(value=pngs[0], format="png", width=2 * frames.shape[2])
    slider = w.IntSlider(value=0, min=0, max=len(frames) - 1, description="frame")
    play = w.Play(value=0, min=0, max=len(frames) - 1, interval=int(1000 / fps))
    w.jslink((play, "value"), (slider, "value"))
    caption = w.Label()

    def update(change=None):
        i = slider.value
        image.value = pngs[i]
        text = f"t = {i / fps:.2f} s"
        if labels:
            text += f"   {labels[i]}"
        caption.value = text

    slider.observe(update, names="value")
    update()
    return w.VBox([image, w.HBox([play, slider]), caption])


def filmstrip(frames: np.ndarray, step: int = 1, max_frames: int = 16, labels=None,
              fps: float = 25.0):
    """A row of frames (every ``step``-th) labelled with their time: the static scrubber."""
    idx = list(range(0, len(frames), step))[:max_frames]
    titles = [f"{i / fps:.2f}s" + (f"\n{labels[i]}" if labels else "") for i in idx]
    return show_frames(np.asarray(frames)[idx], titles=titles, ncols=len(idx), size=0.95)



def _records(records, key: str) -> tuple[list, list]:
    rows = [r for r in records if key in r and r[key] is not None and np.isfinite(r[key])]
    return [r["step"] for r in rows], [r[key] for r in rows]


def training_curves(hist, model: str, *, chance_loss: float | None = None,
                    chance_label: str = "chance", chance_acc: float = 0.5,
                    loss_key: str = "loss", acc_key: str = "acc", val_loss_key: str = "val_loss",
                    val_acc_key: str = "val_acc", title: str | None = None, height: float = 2.6):
    """Loss and accuracy against the update of one training run, with their chance lines.

    ``hist`` is a :class:`avlib.train.History` (or anything with ``train`` and ``eval`` lists
    of records holding ``step``): the training records' ``loss_key`` / ``acc_key`` are drawn
    as lines, the evaluations' ``val_loss_key`` / ``val_acc_key`` as dots. ``chance_loss`` (e.g. ln 2 = 0.693 for
    BCE) and ``chance_acc`` are dashed: where a network that cannot tell genuine from false
    pairs sits. Returns ``(fig, (ax_loss, ax_acc))``; panels without data say so.
    """
    style = model_style(model)
    fig, axes = figure(1, 2, height=height)
    for ax, key, val_key, chance, ylabel in (
            (axes[0], loss_key, val_loss_key, chance_loss, "loss"),
            (axes[1], acc_key, val_acc_key, chance_acc, "accuracy")):
        steps, values = _records(hist.train, key)
        val_steps, val_values = _records(hist.eval, val_key)
        if steps:
            ax.plot(steps, values, color=style["color"], lw=1, alpha=0.6, label="train")
        if val_steps:
            ax.plot(val_steps, val_values, color=style["color"], marker=style["marker"],
                    ms=4, lw=0.8, label="validation")
        if chance is not None:
            ax.axhline(chance, color="0.5", ls="--", lw=0.8,
                       label=chance_label if key == loss_key else f"chance ({chance:g})")
        if not steps and not val_steps:
            ax.text(0.5, 0.5, f"no '{key}' recorded", ha="center", va="center",
                    transform=ax.transAxes)
        ax.set(xlabel="update", ylabel=ylabel)
        ax.legend()
    fig.suptitle(title or style["label"])
    return fig, axes


def score_histograms(ax, groups: dict, xlabel: str, title: str | None = None, bins: int = 40):
    """Overlaid density histograms of the scores of several pair groups (e.g. genuine, false at
    2-5 frames, false farther away) on ``ax``, one shared set of bins, each group's count in
    its label. ``groups`` maps a label to a 1-D array."""
    arrays = {name: np.asarray(v, dtype=float).ravel() for name, v in groups.items()}
    arrays = {name: v[np.isfinite(v)] for name, v in arrays.items() if np.isfinite(v).any()}
    if not arrays:
        ax.text(0.5, 0.5, "no scores", ha="center", va="center", transform=ax.transAxes)
        return ax
    everything = np.concatenate(list(arrays.values()))
    lo, hi = np.percentile(everything, [0.5, 99.5])
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    colors = [COLORS["truth"], COLORS["pred"], COLORS["audio"], COLORS["mouth"]]
    for i, (name, values) in enumerate(arrays.items()):
        ax.hist(np.clip(values, edges[0], edges[-1]), bins=edges, density=True, alpha=0.45,
                color=colors[i % len(colors)], label=f"{name} ({len(values):,})")
    ax.set(xlabel=xlabel, ylabel="density")
    if title:
        ax.set_title(title)
    ax.legend()
    return ax
