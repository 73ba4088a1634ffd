"""Parametric 2-D talking-face renderer of the embedded corpus.

A face is an :class:`FaceIdentity` (shape, colours, hair, eyes, brows, nose, lips, clothes,
background) drawn with anti-aliased OpenCV polygons, driven per frame by

- a mouth vector (see :mod:`avlib.corpus.mouth`, 7 values in [0, 1]) that shapes the outer and
  inner lip contours, the teeth, the tongue and the jaw/chin, and
- a :class:`FaceLife` frame: head translation/rotation/scale drift, eye blinks, gaze,
  lighting gain and sensor noise, generated deterministically from a seed.

Geometry lives in *face units*: origin at the face centre, x to the image right, y down, and
the face (forehead top to chin, mouth closed) spans y in [-1, 1]; z points to the camera and
gives features depth, so that yaw and pitch move the nose, eyes and mouth relative to the
outline (an orthographic 2.5-D projection). One face unit is ``face_height * size / 2`` pixels,
so the face covers ``face_height`` (60-72 %) of the frame height like an LRS2 face crop, and the
mediapipe face detector and face mesh work on the frames (tested in ``tests/test_render.py``).

Lip landmarks (:data:`N_LIP_LANDMARKS` = 40 points per frame, pixels) follow the order of the
mediapipe lip loops in :mod:`avlib.faces`: 20 outer-contour points, then 20 inner-contour points;
each contour starts at the mouth corner on the image left, runs along the upper lip (index 5 =
upper midpoint) to the other corner (index 10), then back along the lower lip (index 15 = lower
midpoint). Inner points 5 and 15 are the counterparts of mediapipe landmarks 13 and 14.

Frames are RGB ``uint8`` arrays of shape (size, size, 3); video runs at 25 fps.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.signal import lfilter
from scipy.special import ndtri

from avlib.corpus.mouth import INDEX, MOUTH_PARAMS, N_MOUTH

FPS = 25.0
HAIR_STYLES: tuple[str, ...] = ("short", "buzz", "bald", "bob", "long", "afro")
BACKGROUNDS: tuple[str, ...] = ("flat", "vertical_gradient", "horizontal_gradient", "stripes", "blobs")

N_LIP_CONTOUR = 20
N_LIP_LANDMARKS = 2 * N_LIP_CONTOUR
#: Index of the named points inside each 20-point lip contour.
LIP_LEFT_CORNER, LIP_UPPER_MID, LIP_RIGHT_CORNER, LIP_LOWER_MID = 0, 5, 10, 15
#: Slices of the (K=40, 2) lip landmark array.
LIP_OUTER = slice(0, N_LIP_CONTOUR)
LIP_INNER = slice(N_LIP_CONTOUR, N_LIP_LANDMARKS)

_SHIFT = 4  # OpenCV sub-pixel bits: polygons are drawn at 1/16 pixel precision
_ONE = float(1 << _SHIFT)
_AA = cv2.LINE_AA

# Points per side of a lip curve when drawing; landmarks are every other one (11 per side).
_LIP_SAMPLES = 21
_T_LIP = np.linspace(-1.0, 1.0, _LIP_SAMPLES)

# Skin tones from very light to very dark (RGB); identities interpolate between neighbours so
# that every part of the range, darker tones included, is sampled equally often.
_SKIN_TONES = np.array([
    (250, 221, 196), (240, 196, 165), (226, 176, 140), (204, 146, 106),
    (176, 116, 80), (141, 90, 60), (106, 67, 45), (76, 49, 34)], dtype=np.float64)
_HAIR_COLOURS = np.array([
    (20, 16, 14), (45, 32, 24), (78, 52, 34), (120, 84, 52), (168, 128, 80),
    (204, 170, 110), (150, 70, 40), (130, 128, 126), (210, 206, 200)], dtype=np.float64)
_IRIS_COLOURS = np.array([
    (70, 45, 30), (100, 68, 40), (60, 100, 140), (80, 110, 70), (110, 120, 130)], dtype=np.float64)
# The mouth cavity is near black: on dark skin and lips only a dark cavity keeps the inner lip
# edge readable for the face mesh. The line where closed lips meet is a softer shadow.
_MOUTH_DARK = (12.0, 4.0, 6.0)
_LIP_SHADOW = (58.0, 18.0, 24.0)
_TONGUE = (196.0, 92.0, 100.0)
# Standard-normal quantiles of 256 equiprobable bins (sensor noise lookup table, (1, 256)).
_GAUSS_QUANTILES = ndtri((np.arange(256) + 0.5) / 256).astype(np.float32).reshape(1, 256)


def _rgb(value) -> tuple[float, float, float]:
    arr = np.clip(np.asarray(value, dtype=np.float64).reshape(3), 0, 255)
    return (float(arr[0]), float(arr[1]), float(arr[2]))


def _mix(a, b, t: float) -> tuple[float, float, float]:
    """Linear colour mix: a at t=0, b at t=1."""
    return _rgb((1.0 - t) * np.asarray(a, dtype=np.float64) + t * np.asarray(b, dtype=np.float64))


def _shade(colour, factor: float) -> tuple[float, float, float]:
    return _rgb(np.asarray(colour, dtype=np.float64) * factor)


# ----------------------------------------------------------------------------- identity


@dataclass
class FaceIdentity:
    """Identity parameters of one rendered speaker (colours are RGB 0-255; lengths in face units
    where the face spans y in [-1, 1], see the module docstring)."""

    face_height: float = 0.66           # face (forehead top to chin) / frame height
    face_width: float = 0.76            # cheek half-width
    jaw_width: float = 0.82             # jaw-angle half-width / cheek half-width
    chin_width: float = 0.36            # chin half-width / cheek half-width
    skin: tuple = (226.0, 176.0, 140.0)
    hair_style: str = "short"
    hair_color: tuple = (45.0, 32.0, 24.0)
    hairline: float = 0.62              # height of the forehead hairline above the face centre
    fringe: bool = False                # hair over the forehead (never below the brows)
    eye_size: float = 1.0               # scale of the eye opening
    eye_spacing: float = 0.33           # half distance between the eye centres
    eye_tilt: float = 0.0               # outer corners up (>0) or down (<0)
    iris_color: tuple = (100.0, 68.0, 40.0)
    brow_thickness: float = 0.05
    brow_height: float = 0.17           # brow above the eye centre
    brow_color: tuple = (40.0, 28.0, 20.0)
    nose_length: float = 1.0            # scale
    nose_width: float = 1.0             # scale
    mouth_width: float = 0.30           # half-width of the closed mouth
    lip_color: tuple = (190.0, 110.0, 106.0)
    upper_lip: float = 0.065            # upper lip thickness at rest
    lower_lip: float = 0.09             # lower lip thickness at rest
    cupid_bow: float = 0.5              # depth of the upper-lip notch, 0 (flat) to 1
    teeth_color: tuple = (236.0, 230.0, 214.0)
    shirt_color: tuple = (60.0, 90.0, 140.0)
    background: str = "vertical_gradient"
    background_colors: tuple = ((90.0, 110.0, 130.0), (40.0, 50.0, 60.0))
    background_seed: int = 0            # layout of stripes / blobs

    def __post_init__(self):
        if self.hair_style not in HAIR_STYLES:
            raise ValueError(f"hair_style must be one of {HAIR_STYLES}, got {self.hair_style!r}")
        if self.background not in BACKGROUNDS:
            raise ValueError(f"background must be one of {BACKGROUNDS}, got {self.background!r}")
        if not 0.3 <= self.face_height <= 0.9:
            raise ValueError(f"face_height is a fraction of the frame height in [0.3, 0.9], got {self.face_height}")
        for name in ("skin", "hair_color", "iris_color", "brow_color", "lip_color", "teeth_color", "shirt_color"):
            setattr(self, name, _rgb(getattr(self, name)))
        colours = np.asarray(self.background_colors, dtype=np.float64)
        if colours.shape != (2, 3):
            raise ValueError(f"background_colors must be two RGB colours, got shape {colours.shape}")
        self.background_colors = (_rgb(colours[0]), _rgb(colours[1]))
        self.fringe = bool(self.fringe)
        self.background_seed = int(self.background_seed)

    @classmethod
    def sample(cls, rng: np.random.Generator, skin_tone: float | None = None) -> "FaceIdentity":
        """A varied but plausible identity; all randomness comes from ``rng``.

        skin_tone: optional position on the skin-tone scale, 0 (lightest) to 1 (darkest), to
        balance a corpus; by default it is uniform on that scale.
        """
        u = rng.uniform
        if skin_tone is not None and not 0.0 <= skin_tone <= 1.0:
            raise ValueError(f"skin_tone must lie in [0, 1] (0 lightest, 1 darkest), got {skin_tone}")
        tone = u(0, len(_SKIN_TONES) - 1) if skin_tone is None else skin_tone * (len(_SKIN_TONES) - 1)
        lo = int(np.floor(tone))
        hi = min(lo + 1, len(_SKIN_TONES) - 1)
        skin = (1 - (tone - lo)) * _SKIN_TONES[lo] + (tone - lo) * _SKIN_TONES[hi]
        skin = skin * u(0.95, 1.05, 3)  # slight hue jitter (warmer / pinker / more olive)
        darkness = tone / (len(_SKIN_TONES) - 1)

        # Lips: redder than the skin on light skin, rosy brown on dark skin. Dark lips are not
        # made darker than the skin: the lips must stand out from the near-black mouth cavity
        # for the face mesh to find the inner lip edges (see _MOUTH_DARK).
        lip_target = np.array([185, 70, 85]) * (1 - darkness) + np.array([125, 62, 68]) * darkness
        lip = (0.45 + 0.2 * u()) * skin + (0.55 - 0.2 * u()) * lip_target
        lip = lip * u(0.88, 1.0)
        if rng.random() < 0.12:  # occasional lipstick
            lip = np.array([u(150, 200), u(20, 60), u(40, 80)])

        style = str(rng.choice(HAIR_STYLES, p=[0.30, 0.12, 0.08, 0.18, 0.20, 0.12]))
        hair = _HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))] * u(0.85, 1.15)
        if darkness > 0.55 and rng.random() < 0.7:
            hair = _HAIR_COLOURS[rng.integers(0, 2)] * u(0.9, 1.1)
        brow = hair * u(0.6, 0.85) if hair.mean() < 170 else hair * 0.55

        background = str(rng.choice(BACKGROUNDS))
        bg1 = rng.uniform(20, 235, 3)
        bg2 = np.clip(bg1 * u(0.4, 1.3) + rng.normal(0, 25, 3), 0, 255)
        return cls(
            face_height=u(0.62, 0.71),
            face_width=u(0.70, 0.82),
            jaw_width=u(0.74, 0.90),
            chin_width=u(0.28, 0.44),
            skin=skin,
            hair_style=style,
            hair_color=hair,
            hairline=u(0.52, 0.70),
            fringe=bool(style in ("short", "bob", "long") and rng.random() < 0.3),
            eye_size=u(0.85, 1.15),
            eye_spacing=u(0.30, 0.36),
            eye_tilt=u(-0.02, 0.03),
            iris_color=_IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))] * u(0.8, 1.2),
            brow_thickness=u(0.035, 0.07),
            brow_height=u(0.15, 0.21),
            brow_color=brow,
            nose_length=u(0.85, 1.15),
            nose_width=u(0.85, 1.25),
            mouth_width=u(0.27, 0.34),
            lip_color=lip,
            upper_lip=u(0.05, 0.08),
            lower_lip=u(0.07, 0.11),
            cupid_bow=u(0.2, 1.0),
            teeth_color=np.array([236, 230, 214]) * u(0.9, 1.05),
            shirt_color=rng.uniform(20, 230, 3),
            background=background,
            background_colors=(bg1, bg2),
            background_seed=int(rng.integers(2**31)),
        )

    def to_dict(self) -> dict:
        """JSON-ready dict (tuples become lists)."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = [list(v) if isinstance(v, tuple) else v for v in value]
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "FaceIdentity":
        """Inverse of :meth:`to_dict`; unknown keys are an error (likely a version mismatch)."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown FaceIdentity fields {sorted(unknown)}; known: {sorted(known)}")
        values = dict(data)
        if "background_colors" in values:
            values["background_colors"] = tuple(tuple(c) for c in values["background_colors"])
        return cls(**values)


# ----------------------------------------------------------------------------- life


@dataclass(frozen=True)
class LifeFrame:
    """Head pose, eyes and camera state of one frame.

    tx, ty: head translation as a fraction of the frame size; scale: multiplicative face size;
    roll, yaw, pitch: degrees; blink: eyelid closure in [0, 1]; gaze: iris offset (x, y) in
    [-1, 1]; gain: RGB gain; light: horizontal light gradient (-0.2 left-lit .. 0.2 right-lit);
    noise_sigma: Gaussian sensor noise, uint8 levels.
    """

    tx: float = 0.0
    ty: float = 0.0
    scale: float = 1.0
    roll: float = 0.0
    yaw: float = 0.0
    pitch: float = 0.0
    blink: float = 0.0
    gaze: tuple = (0.0, 0.0)
    gain: tuple = (1.0, 1.0, 1.0)
    light: float = 0.0
    noise_sigma: float = 0.0


def _smooth_walk(rng: np.random.Generator, n: int, amplitude: float, timescale_s: float,
                 fps: float) -> np.ndarray:
    """Smooth random walk (T,): a mean-reverting (Ornstein-Uhlenbeck) walk with the given
    timescale, low-passed over ~0.24 s (no jerky frame-to-frame steps) and softly bounded to
    +-amplitude. It starts from the stationary distribution, so frame 0 is random too."""
    a = float(np.exp(-1.0 / (timescale_s * fps)))
    sigma = 0.24 * fps
    pad = int(3 * sigma) + 1  # margin so the filter sees real samples at both ends
    total = n + 2 * pad
    start = rng.standard_normal()
    steps = rng.standard_normal(total) * np.sqrt(1 - a * a)
    walk, _ = lfilter([1.0], [1.0, -a], steps, zi=[a * start])  # walk[i] = a walk[i-1] + step[i]
    walk = gaussian_filter1d(walk, sigma=sigma)[pad:pad + n]
    # tanh keeps rare excursions within the range mediapipe and the crops can handle
    return amplitude * np.tanh(0.6 * walk)


def _blinks(rng: np.random.Generator, n: int, fps: float) -> np.ndarray:
    """Eyelid closure (T,) in [0, 1]: blinks every 2-5 s lasting ~150 ms (60 ms closing,
    30 ms closed, 90 ms opening), at continuous random times."""
    times = np.arange(n) / fps
    closure = np.zeros(n)
    t0 = rng.uniform(0.2, 4.0)
    close_s, hold_s, open_s = 0.06, 0.03, 0.09
    while t0 < n / fps + close_s:
        rel = times - t0
        value = np.where(rel < 0, 1 + rel / close_s,
                         np.where(rel < hold_s, 1.0, 1 - (rel - hold_s) / open_s))
        closure = np.maximum(closure, np.clip(value, 0, 1))
        t0 += rng.uniform(2.0, 5.0)
    return closure


@dataclass
class FaceLife:
    """Per-frame life of a clip; every array has T rows (see :class:`LifeFrame` for units)."""

    tx: np.ndarray
    ty: np.ndarray
    scale: np.ndarray
    roll: np.ndarray
    yaw: np.ndarray
    pitch: np.ndarray
    blink: np.ndarray
    gaze: np.ndarray        # (T, 2)
    gain: np.ndarray        # (T, 3)
    light: np.ndarray
    noise_sigma: float
    fps: float = FPS

    def __len__(self) -> int:
        return len(self.tx)

    @classmethod
    def sample(cls, n_frames: int, rng: np.random.Generator, fps: float = FPS,
               amount: float = 1.0) -> "FaceLife":
        """Random life for ``n_frames`` frames; ``amount`` scales every motion/lighting range
        (0 gives a still, evenly lit, noise-free face)."""
        if n_frames < 1:
            raise ValueError(f"n_frames must be >= 1, got {n_frames}")
        if amount < 0:
            raise ValueError(f"amount must be >= 0, got {amount}")
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")

        def walk(amplitude: float, timescale_s: float) -> np.ndarray:
            return _smooth_walk(rng, n_frames, amplitude * amount, timescale_s, fps)

        brightness = walk(0.12, 3.0)
        tint = np.stack([walk(0.05, 4.0) for _ in range(3)], axis=1)
        return cls(
            tx=walk(0.035, 1.5), ty=walk(0.03, 1.5), scale=1.0 + walk(0.05, 2.5),
            roll=walk(7.0, 1.5), yaw=walk(14.0, 1.2), pitch=walk(9.0, 1.2),
            blink=_blinks(rng, n_frames, fps) if amount > 0 else np.zeros(n_frames),
            gaze=np.stack([walk(0.6, 0.8), walk(0.4, 0.8)], axis=1),
            gain=1.0 + brightness[:, None] + tint,
            light=walk(0.18, 3.0),
            noise_sigma=float(rng.uniform(1.0, 4.0) * amount),
            fps=float(fps),
        )

    @classmethod
    def still(cls, n_frames: int, fps: float = FPS) -> "FaceLife":
        """A frontal, still, evenly lit, noise-free face with open eyes."""
        z = np.zeros(n_frames)
        return cls(tx=z, ty=z.copy(), scale=np.ones(n_frames), roll=z.copy(), yaw=z.copy(),
                   pitch=z.copy(), blink=z.copy(), gaze=np.zeros((n_frames, 2)),
                   gain=np.ones((n_frames, 3)), light=z.copy(), noise_sigma=0.0, fps=float(fps))

    def frame(self, t: int) -> LifeFrame:
        """The life of frame ``t``."""
        return LifeFrame(
            tx=float(self.tx[t]), ty=float(self.ty[t]), scale=float(self.scale[t]),
            roll=float(self.roll[t]), yaw=float(self.yaw[t]), pitch=float(self.pitch[t]),
            blink=float(self.blink[t]), gaze=tuple(float(v) for v in self.gaze[t]),
            gain=tuple(float(v) for v in self.gain[t]), light=float(self.light[t]),
            noise_sigma=self.noise_sigma)

    def to_dict(self) -> dict:
        """JSON-ready dict of per-frame lists."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            # full precision: a clip re-rendered from its JSON sidecar is bit-identical
            out[f.name] = value.tolist() if isinstance(value, np.ndarray) else value
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "FaceLife":
        """Inverse of :meth:`to_dict`."""
        known = {f.name for f in fields(cls)}
        if set(data) - known:
            raise ValueError(f"unknown FaceLife fields {sorted(set(data) - known)}; known: {sorted(known)}")
        values = {k: (np.asarray(v, dtype=np.float64) if isinstance(v, list) else v) for k, v in data.items()}
        return cls(**values)


# ----------------------------------------------------------------------------- geometry helpers


def _catmull_rom(points: np.ndarray, samples_per_segment: int) -> np.ndarray:
    """Open Catmull-Rom spline through (N, 2) points, (segments * samples + 1, 2)."""
    p = np.vstack([2 * points[0] - points[1], points, 2 * points[-1] - points[-2]])
    t = np.linspace(0, 1, samples_per_segment, endpoint=False)[:, None]
    out = []
    for i in range(1, len(p) - 2):
        p0, p1, p2, p3 = p[i - 1], p[i], p[i + 1], p[i + 2]
        out.append(0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t ** 2
                          + (-p0 + 3 * p1 - 3 * p2 + p3) * t ** 3))
    out.append(points[-1:])
    return np.vstack(out)


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 20, angle: float = 0.0) -> np.ndarray:
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    x, y = rx * np.cos(a), ry * np.sin(a)
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], axis=1)


def _check_mouth(mouth: np.ndarray) -> np.ndarray:
    m = np.asarray(mouth, dtype=np.float64)
    if m.shape[-1:] != (N_MOUTH,):
        raise ValueError(f"mouth vectors need {N_MOUTH} values {MOUTH_PARAMS}, got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise ValueError("mouth vector contains NaN or infinite values")
    if m.size and (m.min() < -1e-6 or m.max() > 1 + 1e-6):
        raise ValueError(f"mouth values must lie in [0, 1], got range [{m.min():.3f}, {m.max():.3f}]")
    return np.clip(m, 0.0, 1.0)


# ----------------------------------------------------------------------------- mouth shape


@dataclass
class MouthShape:
    """Lip contours of one mouth state in face units (y down), relative to the mouth centre.

    outer_upper, inner_upper: (21, 2) from the image-left corner to the image-right corner.
    outer_lower, inner_lower: (21, 2) likewise (left to right).
    upper_teeth_edge, lower_teeth_edge: y of the biting edges; chin_drop: jaw displacement (y).
    """

    outer_upper: np.ndarray
    outer_lower: np.ndarray
    inner_upper: np.ndarray
    inner_lower: np.ndarray
    upper_teeth_edge: float
    lower_teeth_edge: float
    chin_drop: float
    gap: float
    tongue: float
    press: float
    inner_half_width: float


def mouth_shape(identity: FaceIdentity, mouth: np.ndarray) -> MouthShape:
    """Lip contours for one mouth vector (7,) (see :mod:`avlib.corpus.mouth`)."""
    m = _check_mouth(mouth)
    jaw, spread, rnd = m[INDEX["jaw_open"]], m[INDEX["lip_spread"]], m[INDEX["lip_round"]]
    close, press = m[INDEX["lip_close"]], m[INDEX["lip_press"]]
    labio, tongue = m[INDEX["labiodental"]], m[INDEX["tongue"]]

    # Rounding and spreading change the *width* and shape of the lips; the vertical opening
    # belongs to the jaw. Calibrated against mediapipe's face mesh on corpus speech: its lip
    # gap (landmarks 13-14) reads a narrow mouth with full lips as an open one, so rounded
    # lips are pursed (slightly thinner, not pouted thicker) and do not widen the opening;
    # see tests/test_render.py::test_mesh_lip_gap_ignores_rounding_and_spreading.
    half_w = identity.mouth_width * (1 + 0.22 * spread - 0.25 * rnd) * (1 - 0.05 * jaw)
    thick_gain = (1 - 0.15 * rnd - 0.55 * press) * (1 - 0.18 * spread)
    upper_t = identity.upper_lip * thick_gain
    lower_t = identity.lower_lip * thick_gain * (1 - 0.3 * labio)

    # Opening at the centre: the jaw opens it; rounding narrows the aperture (a smaller hole
    # for the same jaw, a tiny one with the jaw shut), spreading pulls the lips off the teeth
    # (a little taller); the tongue needs a little room; closure seals it whatever the jaw does.
    gap = (0.44 * jaw * (1 - 0.4 * rnd + 0.3 * spread) + 0.02 * rnd * (1 - jaw)
           + 0.05 * tongue * (1 - jaw))
    gap *= 1 - close
    # Labiodental: the lower lip rises under the upper teeth, leaving the teeth edge visible.
    gap = (1 - labio) * gap + labio * 0.06 * (1 - close)

    upper_teeth_edge = 0.035
    lift = 0.22 * gap + 0.02 * spread + 0.025 * labio * (1 - close)  # upper lip rises a little
    y_ui = -lift
    y_li = y_ui + gap
    chin_drop = 0.26 * jaw
    # Closed lips stretched by an open jaw get longer, not apart.
    lower_t = lower_t + 0.25 * chin_drop * close
    lower_teeth_edge = upper_teeth_edge - 0.01 + 0.85 * chin_drop

    # Corners move down a little as the jaw opens; the inner opening is narrower than the
    # outer contour, much narrower (round hole) when rounding.
    corner_y = 0.25 * gap - 0.012 * spread
    inner_w = half_w * (0.9 - 0.35 * rnd + 0.06 * spread)

    t = _T_LIP
    x_out, x_in = t * half_w, t * inner_w
    # exponents < 0.5 give a boxy slit (spread), 0.5 an ellipse (round)
    p_in = 0.55 - 0.15 * spread
    lens = (1 - t ** 2) ** p_in
    y_inner_u = corner_y + (y_ui - corner_y) * lens
    y_inner_l = corner_y + (y_li - corner_y) * lens

    # Outer upper contour with a Cupid's bow: peaks at |t|~0.3, notch at the centre.
    bow = identity.cupid_bow * (1 - 0.3 * rnd)
    top = y_ui - upper_t
    profile_u = (1 - t ** 2) ** 0.55
    bump = np.exp(-((np.abs(t) - 0.32) / 0.2) ** 2)
    notch = np.exp(-(t / 0.1) ** 2)
    y_outer_u = corner_y + (top - corner_y) * profile_u - upper_t * (0.25 * bow * bump - 0.25 * bow * notch)
    bottom = y_li + lower_t
    y_outer_l = corner_y + (bottom - corner_y) * (1 - t ** 2) ** 0.6

    # Keep the lips' thickness positive near the corners, where outer and inner curves meet.
    y_outer_u = np.minimum(y_outer_u, np.interp(x_out, x_in, y_inner_u, left=corner_y, right=corner_y) - 0.004)
    y_outer_l = np.maximum(y_outer_l, np.interp(x_out, x_in, y_inner_l, left=corner_y, right=corner_y) + 0.004)
    y_outer_u[[0, -1]] = corner_y
    y_outer_l[[0, -1]] = corner_y

    return MouthShape(
        outer_upper=np.column_stack([x_out, y_outer_u]),
        outer_lower=np.column_stack([x_out, y_outer_l]),
        inner_upper=np.column_stack([x_in, y_inner_u]),
        inner_lower=np.column_stack([x_in, y_inner_l]),
        upper_teeth_edge=upper_teeth_edge, lower_teeth_edge=lower_teeth_edge,
        chin_drop=chin_drop, gap=gap, tongue=tongue, press=press, inner_half_width=inner_w)


def lip_contours(shape: MouthShape) -> np.ndarray:
    """(40, 2) lip landmarks in face units, in the documented order (outer 20, inner 20)."""
    def loop(upper: np.ndarray, lower: np.ndarray) -> np.ndarray:
        # every other drawing sample: 11 points corner..corner on top, 9 interior points below
        return np.vstack([upper[::2], lower[::-2][1:-1]])
    return np.vstack([loop(shape.outer_upper, shape.outer_lower),
                      loop(shape.inner_upper, shape.inner_lower)])


# ----------------------------------------------------------------------------- renderer


@dataclass
class RenderedFrame:
    """frame (size, size, 3) uint8 RGB; face_box (4,) x0, y0, x1, y1 pixels of the skin face
    (forehead top to chin, cheek to cheek, no ears or hair); lip_landmarks (40, 2) pixels."""

    frame: np.ndarray
    face_box: np.ndarray
    lip_landmarks: np.ndarray


@dataclass
class RenderedClip:
    """frames (T, size, size, 3) uint8 RGB; face_boxes (T, 4) pixels; lip_landmarks (T, 40, 2)
    pixels (see module docstring for the order); mouth (T, 7) the driving mouth vectors;
    life: the per-frame :class:`FaceLife`."""

    frames: np.ndarray
    face_boxes: np.ndarray
    lip_landmarks: np.ndarray
    mouth: np.ndarray
    life: FaceLife
    identity: FaceIdentity
    seed: int
    fps: float = FPS


def _make_background(identity: FaceIdentity, size: int) -> np.ndarray:
    c1 = np.asarray(identity.background_colors[0], dtype=np.float32)
    c2 = np.asarray(identity.background_colors[1], dtype=np.float32)
    ramp = np.linspace(0, 1, size, dtype=np.float32)
    kind = identity.background
    rng = np.random.default_rng(identity.background_seed)
    if kind == "flat":
        img = np.broadcast_to(c1, (size, size, 3)).copy()
    elif kind == "vertical_gradient":
        img = c1 + (c2 - c1) * ramp[:, None, None] * np.ones((1, size, 1), np.float32)
    elif kind == "horizontal_gradient":
        img = c1 + (c2 - c1) * ramp[None, :, None] * np.ones((size, 1, 1), np.float32)
    elif kind == "stripes":
        period = rng.uniform(0.15, 0.4) * size
        angle = rng.uniform(0, np.pi)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        phase = (np.cos(angle) * xx + np.sin(angle) * yy) / period
        w = (0.5 + 0.5 * np.sin(2 * np.pi * phase))[:, :, None]
        img = c1 + (c2 - c1) * w
    else:  # blobs: out-of-focus room lights / furniture
        img = np.broadcast_to(c1, (size, size, 3)).copy()
        for _ in range(int(rng.integers(4, 9))):
            colour = np.clip(c2 + rng.normal(0, 30, 3), 0, 255)
            centre = (float(rng.uniform(0, size)), float(rng.uniform(0, size)))
            radius = float(rng.uniform(0.08, 0.3) * size)
            cv2.circle(img, (int(centre[0] * _ONE), int(centre[1] * _ONE)), int(radius * _ONE),
                       colour.tolist(), -1, _AA, _SHIFT)
        img = cv2.GaussianBlur(img, (0, 0), sigmaX=max(1.0, size / 40))
    return np.clip(img, 0, 255).astype(np.uint8)


class FaceRenderer:
    """Renders one identity at one frame size; geometry, colours and background are
    precomputed once, so a frame costs one projection of the static points plus the eyes and
    the mouth.

    ``render(mouth, life, noise_rng)`` draws one frame; use :func:`render_clip` for clips.
    """

    def __init__(self, identity: FaceIdentity, size: int = 160):
        if not isinstance(identity, FaceIdentity):
            raise ValueError(f"identity must be a FaceIdentity, got {type(identity).__name__}")
        if not 32 <= int(size) <= 1024:
            raise ValueError(f"size must be an integer in [32, 1024] pixels, got {size}")
        self.identity = identity
        self.size = int(size)
        self.background = _make_background(identity, self.size)
        self._unit = identity.face_height * self.size / 2.0  # pixels per face unit
        self._line = max(1, int(round(self.size / 160)))
        self._x_norm = (np.arange(self.size, dtype=np.float32) - self.size / 2) / (self.size / 2)
        self.mouth_y = 0.50
        self._build_colours()
        self._build_static()
        self._build_body()
        self._build_eyes()

    # ---- precomputation --------------------------------------------------------------------
    def _build_colours(self) -> None:
        idt = self.identity
        skin = idt.skin
        hair = idt.hair_color if idt.hair_style != "buzz" else _mix(idt.hair_color, skin, 0.45)
        sheen = _mix(hair, (255, 255, 255), 0.12)
        self._colour = {
            "hair_back": _shade(idt.hair_color, 0.8), "hair_front": hair, "hair_sheen": sheen,
            "neck": _shade(skin, 0.78), "shirt": idt.shirt_color, "collar": _shade(skin, 0.7),
            "ears": _shade(skin, 0.9), "ears_inner": _shade(skin, 0.72),
            "face_rim": _shade(skin, 0.86), "face_mid": _shade(skin, 0.94), "face_core": skin,
            "eye_sockets": _shade(skin, 0.91), "creases": _shade(skin, 0.72), "lower_lids": _shade(skin, 0.76),
            "brows": idt.brow_color,
            "nose_bridge": _shade(skin, 0.8), "nose_under": _shade(skin, 0.72),
            "nose_wings": _shade(skin, 0.88), "nose_tip": _shade(skin, 1.04), "nostrils": _shade(skin, 0.35),
            "folds": _shade(skin, 0.89), "under_lip": _shade(skin, 0.86),
            "sclera": (236.0, 232.0, 226.0), "iris": idt.iris_color, "pupil": (18.0, 14.0, 14.0),
            "glint": (250.0, 250.0, 250.0), "lash": (30.0, 22.0, 20.0),
            "teeth": idt.teeth_color, "lower_teeth": _shade(idt.teeth_color, 0.85),
            "seams": _shade(idt.teeth_color, 0.8), "tongue_body": _shade(_TONGUE, 0.75), "tongue": _TONGUE,
        }

    def _build_static(self) -> None:
        """Canonical points (N, 3) of everything that only moves with the head and the jaw,
        with a per-point jaw weight (how far it follows ``chin_drop``) and named slices."""
        idt = self.identity
        fw = idt.face_width
        points: list[np.ndarray] = []
        jaw: list[np.ndarray] = []
        parts: dict[str, list[slice]] = {}
        count = 0

        def add(name: str, xy: np.ndarray, z: float, jaw_weight=0.0) -> None:
            nonlocal count
            xy = np.asarray(xy, dtype=np.float64)
            points.append(np.column_stack([xy, np.broadcast_to(np.asarray(z, dtype=np.float64), (len(xy),))]))
            jaw.append(np.broadcast_to(np.asarray(jaw_weight, dtype=np.float64), (len(xy),)))
            parts.setdefault(name, []).append(slice(count, count + len(xy)))
            count += len(xy)

        # Outline: right half from the forehead top to the chin, mirrored for the left half.
        arc = np.linspace(0, np.pi / 2, 12)
        y_cheek = 0.05
        upper = np.column_stack([fw * np.sin(arc), -1 + (1 + y_cheek) * (1 - np.cos(arc))])
        lower = _catmull_rom(np.array([
            [fw, y_cheek], [0.985 * fw, 0.30], [idt.jaw_width * fw, 0.64],
            [idt.chin_width * fw + 0.06, 0.90], [idt.chin_width * fw * 0.55, 0.985], [0.0, 1.0]]), 4)[1:]
        right = np.vstack([upper, lower])
        outline = np.vstack([right, right[-2:0:-1] * np.array([-1, 1])])
        # the chin follows the jaw fully, the cheekbones not at all
        follow = np.clip((outline[:, 1] - 0.15) / 0.85, 0, 1) ** 1.3

        for style_part in self._hair_shapes()["back"]:
            add("hair_back", style_part, -0.5)
        add("neck_top", [[-0.55 * fw, 0.55], [0.55 * fw, 0.55]], -0.3, 0.5)
        for side in (-1, 1) if idt.hair_style not in ("bob", "long") else ():  # else under the hair
            add("ears", _ellipse(side * fw * 0.97, 0.02, 0.11, 0.21, 16), -0.35)
            add("ears_inner", _ellipse(side * fw * 0.99, 0.03, 0.05, 0.12, 12), -0.3)
        # The silhouette is the head's widest section, slightly behind the face plane; a
        # darker rim and a lighter centre read as a rounded, front-lit head.
        add("face_rim", outline, -0.1, follow)
        add("face_mid", outline * [0.9, 0.94] + [0, -0.02], 0.1, 0.94 * follow)
        add("face_core", outline * [0.74, 0.84] + [0, -0.06], 0.3, 0.84 * follow)
        self._outline_slice = parts["face_rim"][0]

        es, ey = idt.eye_spacing, -0.12
        self.eye_centres = np.array([[-es, ey], [es, ey]])
        t = np.linspace(-1, 1, 15)
        ew, eh_up, eh_low = 0.14 * idt.eye_size, 0.068 * idt.eye_size, 0.048 * idt.eye_size
        self._eye_t = t
        eye_x, eye_up, eye_low = [], [], []
        for side, (cx, cy) in zip((-1, 1), self.eye_centres):
            tilt = -idt.eye_tilt * side * t  # outer corner (side * t > 0) raised by eye_tilt
            x = cx + ew * t
            up = cy + tilt - eh_up * (1 - t ** 2) ** 0.75 + 0.012 * side * t
            low = cy + tilt + eh_low * (1 - t ** 2) ** 0.9
            eye_x.append(x), eye_up.append(up), eye_low.append(low)
            add("eye_sockets", np.vstack([np.column_stack([x * 1.05, up - 0.05]),
                                          np.column_stack([x, up])[::-1]]), 0.5)
            add("creases", np.column_stack([x[2:-2], up[2:-2] - 0.035]), 0.5)
            add("lower_lids", np.column_stack([x[3:-1], low[3:-1] + 0.004]), 0.5)
        self._eye_x, self._eye_up, self._eye_low = map(np.array, (eye_x, eye_up, eye_low))

        bt = idt.brow_thickness
        s = np.linspace(0, 1, 9)
        for side, (cx, _) in zip((-1, 1), self.eye_centres):
            x = cx + side * (-0.16 + 0.34 * s) * idt.eye_size ** 0.5
            y = ey - idt.brow_height - 0.045 * np.sin(np.pi * (0.15 + 0.75 * s)) - 0.01 * s
            half = bt * (1.0 - 0.55 * s) / 2  # tapered: thick inner end
            add("brows", np.vstack([np.column_stack([x, y - half]), np.column_stack([x, y + half])[::-1]]), 0.55)

        nl, nw = idt.nose_length, idt.nose_width
        tip_y = -0.12 + 0.37 * nl
        add("nose_bridge", np.column_stack([np.full(6, 0.075 * nw), np.linspace(-0.04, tip_y - 0.06, 6)]), 0.8)
        add("nose_under", _ellipse(0, tip_y + 0.035, 0.12 * nw, 0.04, 16), 0.8)
        for side in (-1, 1):
            add("nose_wings", _ellipse(side * 0.1 * nw, tip_y + 0.01, 0.045 * nw, 0.045, 12), 0.8)
        add("nose_tip", _ellipse(0, tip_y - 0.005, 0.075 * nw, 0.055, 16), 0.95)
        for side in (-1, 1):
            add("nostrils", _ellipse(side * 0.055 * nw, tip_y + 0.04, 0.03 * nw, 0.014, 10, side * 0.35), 0.85)
        # nasolabial folds: from the nose wings down past the mouth corners
        my, mw = self.mouth_y, idt.mouth_width
        for side in (-1, 1):
            fold = _catmull_rom(np.array([
                [side * 0.17 * nw, tip_y + 0.02], [side * (mw + 0.06), my - 0.05],
                [side * (mw + 0.055), my + 0.06]]), 3)
            add("folds", fold, 0.6, np.clip((fold[:, 1] - (my - 0.1)) / 0.3, 0, 1) * 0.5)

        hair = self._hair_shapes()
        for part, depth in hair["front"]:
            add("hair_front", part, depth)
        for sheen in hair["sheen"]:
            add("hair_sheen", sheen, 0.25)

        self._static_xyz = np.vstack(points)
        self._static_jaw = np.concatenate(jaw)
        self._parts = parts

    def _hair_shapes(self) -> dict:
        """Hair shapes in face units: 'back' polygons (behind the head), 'front' (polygon,
        per-point depth) pairs over the head, 'sheen' polygons (highlight on the front hair)."""
        idt = self.identity
        fw = idt.face_width
        style = idt.hair_style
        shapes: dict[str, list] = {"back": [], "front": [], "sheen": []}
        if style == "bald":
            return shapes
        volume = {"short": 1.07, "buzz": 1.015, "bob": 1.1, "long": 1.1, "afro": 1.2}[style]
        a = np.linspace(-np.pi * 0.56, np.pi * 0.56, 25)  # over the top of the skull
        top_y = -1.0 - (volume - 1.0) * 1.4
        outer = np.column_stack([fw * volume * np.sin(a), 0.05 + (top_y - 0.05) * np.cos(a)])
        # hairline: temples low at the sides, forehead up at the hairline height
        s = np.linspace(1, -1, 21)
        hairline_y = -idt.hairline + (idt.hairline - 0.05) * np.abs(s) ** 2.2
        hairline_x = fw * 0.99 * s * (1 - 0.1 * (1 - np.abs(s)))
        if idt.fringe:
            hairline_y = np.minimum(hairline_y, -0.5 + 0.1 * np.abs(s))
        # depth: the outer edge is on the silhouette, the forehead hairline towards the camera
        # (so that yaw slides the hairline, not the whole cap, across the face)
        depth = np.concatenate([np.full(len(outer), -0.1), -0.1 + 0.5 * (1 - s ** 2)])
        shapes["front"].append((np.vstack([outer, np.column_stack([hairline_x, hairline_y])]), depth))
        if style in ("short", "bob", "long"):
            # a soft sheen crescent on the crown suggests a rounded, glossy head of hair
            c = np.linspace(-0.35 * np.pi, 0.1 * np.pi, 12)
            rim = np.column_stack([fw * volume * 0.8 * np.sin(c), -0.3 + (top_y + 0.38) * np.cos(c)])
            rim_in = np.column_stack([fw * volume * 0.66 * np.sin(c), -0.3 + (top_y + 0.46) * np.cos(c)])
            shapes["sheen"].append(np.vstack([rim, rim_in[::-1]]))
        if style == "afro":
            ang = np.linspace(0, 2 * np.pi, 48, endpoint=False)
            radius = 1 + 0.035 * np.sin(11 * ang)  # curly, bumpy silhouette
            shapes["back"].append(np.column_stack([fw * 1.5 * radius * np.cos(ang),
                                                   -0.35 + 1.02 * radius * np.sin(ang)]))
        elif style in ("bob", "long"):
            bottom = 0.85 if style == "bob" else 1.65
            width = fw * (1.2 if style == "bob" else 1.15)
            shapes["back"].append(np.vstack([
                np.column_stack([width * np.sin(a), 0.05 + (top_y - 0.05) * np.cos(a)]),
                [[width * 1.02, bottom], [-width * 1.02, bottom]]]))
        return shapes

    def _build_body(self) -> None:
        fw = self.identity.face_width
        shoulders = _catmull_rom(np.array([
            [-2.2, 2.6], [-1.9, 1.65], [-1.1, 1.38], [-0.45 * fw, 1.33], [0.0, 1.45],
            [0.45 * fw, 1.33], [1.1, 1.38], [1.9, 1.65], [2.2, 2.6]]), 4)
        collar = np.array([[-0.45 * fw, 1.33], [0.0, 1.55], [0.45 * fw, 1.33], [0.0, 1.45]])
        neck_bottom = np.array([[0.5 * fw, 1.45], [-0.5 * fw, 1.45]])
        self._body_xy = np.vstack([neck_bottom, shoulders, collar])
        n = len(shoulders)
        self._body_parts = {"neck_bottom": slice(0, 2), "shirt": slice(2, 2 + n),
                            "collar": slice(2 + n, 6 + n)}

    def _build_eyes(self) -> None:
        r = 0.066 * self.identity.eye_size
        circle = _ellipse(0, 0, 1, 1, 20)
        self._iris_disc = r * circle
        self._pupil_disc = 0.45 * r * circle
        self._glint = _ellipse(0.35 * r, -0.35 * r, 0.2 * r, 0.2 * r, 8)
        t = self._eye_t
        # lash line thickness, thicker towards each outer corner
        self._lash_w = 0.014 + 0.01 * np.clip(np.array([-t, t]), 0, 1)

    # ---- projection and drawing ------------------------------------------------------------
    def _pose(self, life: LifeFrame) -> tuple[np.ndarray, np.ndarray]:
        """(2, 3) matrix from face units (x, y, z) to pixels, and the pixel centre (2,)."""
        r, y, p = np.radians([life.roll, life.yaw, life.pitch])
        cy_, sy_ = np.cos(y), np.sin(y)
        cp, sp = np.cos(p), np.sin(p)
        cr, sr = np.cos(r), np.sin(r)
        yaw = np.array([[cy_, 0, sy_], [0, 1, 0], [-sy_, 0, cy_]])
        pitch = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
        roll = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
        matrix = (roll @ pitch @ yaw)[:2] * (self._unit * life.scale)  # orthographic
        centre = np.array([self.size * (0.5 + life.tx), self.size * (0.52 + life.ty)])
        return matrix, centre

    @staticmethod
    def _fixed(px: np.ndarray) -> np.ndarray:
        """Pixels -> OpenCV fixed point (``_SHIFT`` fractional bits)."""
        return np.rint(px * _ONE).astype(np.int32)

    def _fill(self, img: np.ndarray, polys: list[np.ndarray], name: str, colour=None) -> None:
        cv2.fillPoly(img, polys, colour or self._colour[name], _AA, _SHIFT)

    def _stroke(self, img: np.ndarray, polys: list[np.ndarray], name: str, colour=None) -> None:
        cv2.polylines(img, polys, False, colour or self._colour[name], self._line, _AA, _SHIFT)

    def render(self, mouth: np.ndarray, life: LifeFrame | None = None,
               noise_rng: np.random.Generator | None = None) -> RenderedFrame:
        """One frame for a mouth vector (7,) and a :class:`LifeFrame` (default: still).

        noise_rng draws the sensor noise (required when ``life.noise_sigma > 0``).
        """
        life = life or LifeFrame()
        if life.noise_sigma > 0 and noise_rng is None:
            raise ValueError("life.noise_sigma > 0 needs a noise_rng (np.random.Generator)")
        shape = mouth_shape(self.identity, mouth)
        matrix, centre = self._pose(life)
        img = self.background.copy()

        static = self._static_xyz @ matrix.T + centre
        static += np.outer(shape.chin_drop * self._static_jaw, matrix[:, 1])
        fixed = self._fixed(static)

        def part(name: str) -> list[np.ndarray]:
            return [fixed[s] for s in self._parts.get(name, ())]

        # Body and neck move less than the head: half the translation, no rotation.
        body_centre = np.array([self.size * (0.5 + 0.5 * life.tx), self.size * (0.52 + 0.5 * life.ty)])
        body = self._fixed(self._body_xy * self._unit + body_centre)
        bp = self._body_parts

        self._fill(img, part("hair_back"), "hair_back")
        self._fill(img, [np.vstack([fixed[self._parts["neck_top"][0]], body[bp["neck_bottom"]]])], "neck")
        self._fill(img, [body[bp["shirt"]]], "shirt")
        self._fill(img, [body[bp["collar"]]], "collar")
        for name in ("ears", "ears_inner", "face_rim", "face_mid", "face_core", "eye_sockets"):
            self._fill(img, part(name), name)
        self._draw_eyes(img, matrix, centre, life)
        self._stroke(img, part("creases"), "creases")
        self._stroke(img, part("lower_lids"), "lower_lids")
        self._fill(img, part("brows"), "brows")
        self._stroke(img, part("nose_bridge"), "nose_bridge")
        for name in ("nose_under", "nose_wings", "nose_tip", "nostrils"):
            self._fill(img, part(name), name)
        self._stroke(img, part("folds"), "folds")
        lips_px = self._draw_mouth(img, matrix, centre, shape)
        self._fill(img, part("hair_front"), "hair_front")
        self._fill(img, part("hair_sheen"), "hair_sheen")

        frame = self._camera(img, life, noise_rng)
        face = static[self._outline_slice]
        box = np.array([face[:, 0].min(), face[:, 1].min(), face[:, 0].max(), face[:, 1].max()],
                       dtype=np.float32)
        return RenderedFrame(frame=frame, face_box=box, lip_landmarks=lips_px.astype(np.float32))

    def _draw_eyes(self, img: np.ndarray, matrix: np.ndarray, centre: np.ndarray, life: LifeFrame) -> None:
        """Both eyes at once: sclera, iris, pupil, glint and lash line, lids following the blink."""
        x, up, low = self._eye_x, self._eye_up, self._eye_low  # (2, 15) each
        up_b = up + life.blink * (low - 0.01 - up)
        n = x.shape[1]
        sclera = np.concatenate([np.stack([x, up_b], -1), np.stack([x, low], -1)[:, ::-1]], axis=1)
        lash = np.concatenate([np.stack([x, up_b - self._lash_w], -1),
                               np.stack([x, up_b + 0.004], -1)[:, ::-1]], axis=1)
        gaze = self.eye_centres + [0.045 * life.gaze[0], 0.012 * life.gaze[1] + 0.004]  # (2, 2)
        iris = gaze[:, None, :] + self._iris_disc
        pupil = gaze[:, None, :] + self._pupil_disc
        glint = gaze[:, None, :] + self._glint
        # Clip iris and pupil to the lid opening: clamp each point's x into the eye and its y
        # between the lids at that x (exact for these vertically convex shapes).
        discs = np.concatenate([iris, pupil], axis=1)
        x0, dx = x[:, :1], (x[:, 1:2] - x[:, :1])
        xs = np.clip(discs[..., 0], x0 + 0.01, x[:, -1:] - 0.01)
        pos = (xs - x0) / dx
        i = np.clip(pos.astype(np.int64), 0, n - 2)
        f = pos - i
        rows = np.arange(2)[:, None]
        top = up_b[rows, i] * (1 - f) + up_b[rows, i + 1] * f
        bottom = np.maximum(top, low[rows, i] * (1 - f) + low[rows, i + 1] * f)
        discs = np.stack([xs, np.clip(discs[..., 1], top, bottom)], -1)

        sizes = [sclera.shape[1], discs.shape[1], glint.shape[1], lash.shape[1]]
        xy = np.concatenate([sclera, discs, glint, lash], axis=1).reshape(-1, 2)
        px = self._fixed(np.column_stack([xy, np.full(len(xy), 0.5)]) @ matrix.T + centre).reshape(2, -1, 2)
        bounds = np.cumsum([0] + sizes)
        sclera_px, discs_px, glint_px, lash_px = (px[:, a:b] for a, b in zip(bounds[:-1], bounds[1:]))
        if life.blink < 0.92:
            self._fill(img, list(sclera_px), "sclera")
            k = iris.shape[1]
            self._fill(img, list(discs_px[:, :k]), "iris")
            self._fill(img, list(discs_px[:, k:]), "pupil")
            if life.blink < 0.4:
                self._fill(img, list(glint_px), "glint")
        self._fill(img, list(lash_px), "lash")

    def _draw_mouth(self, img: np.ndarray, matrix: np.ndarray, centre: np.ndarray,
                    shape: MouthShape) -> np.ndarray:
        """Mouth interior, teeth, tongue and lips; returns the (40, 2) lip landmarks (pixels)."""
        idt = self.identity
        inner_x = shape.inner_upper[:, 0]
        wi = shape.inner_half_width
        polys: dict[str, np.ndarray] = {}
        is_open = shape.gap > 1e-3
        if is_open:
            polys["interior"] = np.vstack([shape.inner_upper, shape.inner_lower[::-1][1:-1]])
            t = np.linspace(-1, 1, 11)
            tx = 0.85 * wi * t
            # tongue body low in the mouth, behind the lower teeth
            polys["tongue_body"] = _ellipse(0, shape.lower_teeth_edge + 0.04, 0.75 * wi, 0.07, 16)
            polys["lower_teeth"] = np.vstack([
                np.column_stack([tx, shape.lower_teeth_edge + 0.02 * t ** 2]),
                np.column_stack([tx, np.full_like(tx, shape.lower_teeth_edge + 0.12)])[::-1]])
            polys["teeth"] = np.vstack([
                np.column_stack([tx, shape.upper_teeth_edge - 0.025 * t ** 2]),
                np.column_stack([tx, np.full_like(tx, -0.2)])[::-1]])
            seam_x = np.array([-0.09, 0.0, 0.09])
            polys["seams"] = np.column_stack([np.repeat(seam_x, 2),
                                              np.tile([-0.1, shape.upper_teeth_edge - 0.004], 3)])
            if shape.tongue > 0.05:
                tip_y = shape.lower_teeth_edge + (1 - shape.tongue) * 0.06 - shape.tongue * 0.035
                polys["tongue"] = _ellipse(0, tip_y, 0.45 * wi * (0.6 + 0.4 * shape.tongue), 0.055, 16)
            # keep everything drawn inside the mouth within the inner lip contour
            for key in ("tongue_body", "lower_teeth", "teeth", "seams", "tongue"):
                if key in polys:
                    polys[key] = _clamp_between(polys[key], inner_x, shape.inner_upper[:, 1],
                                                shape.inner_lower[:, 1])
        polys["lower_lip"] = np.vstack([shape.outer_lower, shape.inner_lower[::-1]])
        polys["upper_lip"] = np.vstack([shape.outer_upper, shape.inner_upper[::-1]])
        mid = _LIP_SAMPLES // 2
        thick = shape.outer_lower[mid, 1] - shape.inner_lower[mid, 1]
        half_w = shape.outer_lower[-1, 0]
        polys["shine"] = _ellipse(0.0, 0.5 * (shape.inner_lower[mid, 1] + shape.outer_lower[mid, 1]) + 0.1 * thick,
                                  0.35 * half_w, 0.22 * thick, 14)
        polys["lip_line"] = shape.inner_upper
        polys["under_lip"] = shape.outer_lower[5:16] + [0, 0.03]
        polys["landmarks"] = lip_contours(shape)

        names = list(polys)
        xy = np.vstack([polys[k] for k in names]) + [0.0, self.mouth_y]
        px = np.column_stack([xy, np.full(len(xy), 0.7)]) @ matrix.T + centre
        bounds = np.cumsum([0] + [len(polys[k]) for k in names])
        fixed = self._fixed(px)
        get = {k: fixed[a:b] for k, a, b in zip(names, bounds[:-1], bounds[1:])}

        if is_open:
            cv2.fillPoly(img, [get["interior"]], _MOUTH_DARK, _AA, _SHIFT)
            self._fill(img, [get["tongue_body"]], "tongue_body")
            self._fill(img, [get["lower_teeth"]], "lower_teeth")
            self._fill(img, [get["teeth"]], "teeth")
            self._stroke(img, [get["seams"][i:i + 2] for i in (0, 2, 4)], "seams")
            if "tongue" in get:
                self._fill(img, [get["tongue"]], "tongue")
        # lips: pressing thins (geometry) and pales them (colour)
        lip = _mix(idt.lip_color, idt.skin, 0.5 * shape.press)
        self._fill(img, [get["lower_lip"]], "lower_lip", lip)
        self._fill(img, [get["upper_lip"]], "upper_lip", _shade(lip, 0.88))
        self._fill(img, [get["shine"]], "shine", _mix(lip, (255, 255, 255), 0.12))
        # one pixel whatever the size: a thicker line would hide the teeth of a small opening
        cv2.polylines(img, [get["lip_line"]], False, _mix(lip, _LIP_SHADOW, 0.6), 1, _AA, _SHIFT)
        self._stroke(img, [get["under_lip"]], "under_lip")
        return px[bounds[-2]:bounds[-1]]

    def _camera(self, img: np.ndarray, life: LifeFrame, noise_rng) -> np.ndarray:
        """Lighting gain, horizontal light gradient and Gaussian sensor noise -> uint8 RGB."""
        factor = (1.0 + np.float32(life.light) * self._x_norm)[:, None] * np.asarray(life.gain, np.float32)
        out = img * factor[None]  # (H, W, 3) float32
        if life.noise_sigma > 0:
            # Gaussian noise from random bytes through a 256-bin quantile table (tails cut at
            # +-2.9 sigma): ~4x cheaper than Generator.standard_normal, the frame-time bottleneck.
            raw = np.frombuffer(noise_rng.bytes(out.size), np.uint8).reshape(self.size, -1)
            out += cv2.LUT(raw, _GAUSS_QUANTILES * np.float32(life.noise_sigma)).reshape(out.shape)
        np.clip(out, 0, 255, out=out)
        out += 0.5
        return out.astype(np.uint8)


def _clamp_between(points: np.ndarray, xs: np.ndarray, top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """Clamp (N, 2) points into the region between curves top(x) <= y <= bottom(x), sampled
    at increasing xs; exact clipping for shapes that are convex along y (teeth, tongue)."""
    x = np.clip(points[:, 0], xs[0], xs[-1])
    lo = np.interp(x, xs, top)
    hi = np.maximum(lo, np.interp(x, xs, bottom))
    return np.column_stack([x, np.clip(points[:, 1], lo, hi)])


def render_frame(identity: FaceIdentity, mouth: np.ndarray, size: int = 160,
                 life: LifeFrame | None = None, seed: int = 0) -> RenderedFrame:
    """One frame (e.g. for viseme grids): mouth (7,), default life = frontal and still.

    seed drives the sensor noise when ``life.noise_sigma > 0``.
    """
    return FaceRenderer(identity, size).render(mouth, life, np.random.default_rng(seed))


def render_clip(identity: FaceIdentity, mouth: np.ndarray, seed: int, size: int = 160,
                life: FaceLife | None = None, fps: float = FPS) -> RenderedClip:
    """Render a clip: mouth (T, 7) trajectory -> frames (T, size, size, 3) uint8 RGB.

    The life (pose drift, blinks, lighting, noise) is sampled from ``seed`` unless given; the
    same identity, mouth, seed and size always give identical frames.
    """
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    m = _check_mouth(mouth)
    if m.ndim != 2 or len(m) == 0:
        raise ValueError(f"mouth must be a (T, {N_MOUTH}) trajectory with T >= 1, got shape {m.shape}")
    rng = np.random.default_rng(seed)
    if life is None:
        life = FaceLife.sample(len(m), rng, fps=fps)
    elif len(life) != len(m):
        raise ValueError(f"life has {len(life)} frames but the mouth trajectory has {len(m)}")
    noise_rng = np.random.default_rng([seed, 1])  # separate stream: life and noise independent
    renderer = FaceRenderer(identity, size)
    n = len(m)
    frames = np.empty((n, renderer.size, renderer.size, 3), np.uint8)
    boxes = np.empty((n, 4), np.float32)
    lips = np.empty((n, N_LIP_LANDMARKS, 2), np.float32)
    for t in range(n):
        out = renderer.render(m[t], life.frame(t), noise_rng)
        frames[t], boxes[t], lips[t] = out.frame, out.face_box, out.lip_landmarks
    return RenderedClip(frames=frames, face_boxes=boxes, lip_landmarks=lips, mouth=m.astype(np.float32),
                        life=life, identity=identity, seed=int(seed), fps=float(fps))
