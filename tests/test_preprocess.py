"""Tests for avlib.data.preprocess.

Unit tests drive the tracking, smoothing and crop geometry with synthetic detections and frames
(no mediapipe). Integration tests preprocess real mp4 files written into tmp_path: a tiny
embedded corpus, rendered faces, and every kind of bad input, each of which must end as a
recorded rejection with a clear reason and leave a readable store behind.
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess

import cv2
import numpy as np
import pytest
from scipy.signal import resample_poly

from avlib import cli, media
from avlib.data import preprocess as pp
from avlib.data import crops, tracking
from avlib.corpus.render import FaceIdentity, render_clip
from avlib.data.datasets import ClipItem, list_clips
from avlib.data.tracking import ClipRejected
from avlib.data.preprocess import PreprocessConfig
from avlib.data.store import ClipStore, StoreWriter

SR = 16000
#: Test settings: the 112-px SyncNet crop of the CPU profile keeps the runs fast.
CFG = PreprocessConfig(syncnet_size=112)


# ============================================================================ helpers


def ffmpeg(*args: str) -> None:
    subprocess.run([media.ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def speechlike(n: int, sr: int, seed: int = 0) -> np.ndarray:
    """Amplitude-modulated harmonics plus a little noise: float32 mono in [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    phase = 2 * np.pi * np.cumsum(140 + 20 * np.sin(2 * np.pi * 1.3 * t)) / sr
    voiced = sum(np.sin(h * phase) / h for h in range(1, 8))
    x = 0.25 * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2) * voiced + 0.02 * rng.standard_normal(n)
    return (x / np.abs(x).max() * 0.8).astype(np.float32)


def face_frames(n: int, seed: int = 0, size: int = 160) -> np.ndarray:
    """Rendered talking face, RGB uint8 (n, size, size, 3), the mouth opening and closing."""
    mouth = np.full((n, 7), 0.3, np.float32)
    mouth[:, 0] = 0.5 + 0.4 * np.sin(np.arange(n) / 2.0)
    identity = FaceIdentity.sample(np.random.default_rng(seed))
    return render_clip(identity, mouth, seed=seed, size=size).frames


def item_for(path, clip_id: str | None = None, audio=None, **extra) -> ClipItem:
    return ClipItem(clip_id or path.stem, "test", path, "train", None, None, [], audio=audio, extra=extra)


def face_clip(path, n: int = 15, seed: int = 0, audio: bool = True):
    """A rendered face clip with speech-like audio (or none)."""
    wav = speechlike(n * 640, SR, seed) if audio else None
    return media.write_video(path, face_frames(n, seed), audio=wav, sr=SR)


def run_items(out, items, cfg: PreprocessConfig = CFG, **kw) -> dict:
    return pp.preprocess_dataset(items, out, cfg, progress=False, **kw)


def record(summary: dict, clip_id: str) -> dict:
    return next(r for r in summary["manifest"]["clips"] if r["id"] == clip_id)


def assert_store_sound(out) -> ClipStore:
    """The store opens, has no unfinished clip, and every finished clip reads completely."""
    store = ClipStore(out)
    assert store.manifest["summary"]["n_incomplete"] == 0
    assert not [p for p in (out / "clips").iterdir() if p.name.startswith(".")]
    for cid in store.ids:
        for stream in store.meta(cid)["streams"]:
            assert len(store.frames(cid, stream)) == store.n_frames(cid)
    return store


def rejected_as(tmp_path, item, reason: str, cfg: PreprocessConfig = CFG) -> dict:
    """Run one bad item: a recorded rejection with ``reason``, a sound store, no exception."""
    out = tmp_path / "store"
    summary = run_items(out, [item], cfg)
    assert summary["rejected"] == {reason: 1} and summary["processed"] == 0
    rec = record(summary, item.id)
    assert rec["status"] == "rejected" and rec["reason"] == reason and rec["detail"]
    store = assert_store_sound(out)
    assert store.rejected[0]["id"] == item.id
    return rec


def boxes_detections(boxes, score: float = 0.9):
    """Per-frame detections from a list (per frame) of box lists."""
    return [[(np.asarray(b, float), score) for b in frame] for frame in boxes]


# ============================================================================ tracking (no mediapipe)


def test_box_iou():
    assert tracking.box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert tracking.box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert tracking.box_iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0


def test_link_tracks_follows_two_faces_through_dropouts():
    n = 30
    left = [(10 + t, 40, 60 + t, 90) for t in range(n)]
    right = [(200 - t, 40, 260 - t, 100) for t in range(n)]
    frames = []
    for t in range(n):
        faces = [right[t]]
        if not 10 <= t < 14:  # the left face is lost for 4 frames
            faces.insert(0, left[t])
        frames.append(faces)
    tracks = tracking.link_tracks(boxes_detections(frames))
    assert len(tracks) == 2
    by_len = sorted(tracks, key=len)
    assert by_len[0].frames == [t for t in range(n) if not 10 <= t < 14]
    assert by_len[1].frames == list(range(n))
    np.testing.assert_allclose(by_len[1].boxes[5], right[5])


def test_choose_track_longest_then_largest_then_central():
    def track(frames, box):
        tr = tracking.Track()
        for t in frames:
            tr.add(t, np.asarray(box, float), 0.9)
        return tr

    size = (400, 200)
    small_long = track(range(20), (10, 10, 40, 40))
    big_short = track(range(10), (100, 10, 200, 110))
    assert tracking.choose_track([big_short, small_long], size) is small_long
    # A dropout of one frame (19 vs 20 detections) is a tie on length: the larger face wins.
    big_dropout = track([t for t in range(20) if t != 7], (100, 10, 200, 110))
    assert tracking.choose_track([small_long, big_dropout], size) is big_dropout
    # Equal length and area: the most central face wins.
    side = track(range(20), (0, 50, 100, 150))
    centre = track(range(20), (150, 50, 250, 150))
    assert tracking.choose_track([side, centre], size) is centre
    assert tracking.choose_track([], size) is None


def test_fill_track_interpolates_short_gaps_and_marks_long_ones():
    tr = tracking.Track()
    known = {t: np.array([t, 2 * t, t + 10, 2 * t + 10], float)
             for t in [2, 3, 4, 8, 9, 20, 21]}
    for t, box in known.items():
        tr.add(t, box, 0.9)
    boxes, state = tracking.fill_track(tr, 24, max_gap=3)
    # Gap 5..7 (3 frames) is filled linearly: the boxes move linearly here, so exactly.
    for t in (5, 6, 7):
        np.testing.assert_allclose(boxes[t], [t, 2 * t, t + 10, 2 * t + 10])
        assert state[t] == tracking.INTERPOLATED
    # Gap 10..19 (10 frames) is filled too, but counts as missing.
    assert (state[10:20] == tracking.MISSING).all() and np.isfinite(boxes[10:20]).all()
    # Ends are held: 2 frames at the start (<= max_gap), 2 at the end.
    np.testing.assert_allclose(boxes[0], known[2])
    np.testing.assert_allclose(boxes[23], known[21])
    assert state[0] == state[1] == state[22] == state[23] == tracking.INTERPOLATED
    assert (state[list(known)] == tracking.DETECTED).all()
    empty_boxes, empty_state = tracking.fill_track(None, 5, 3)
    assert np.isnan(empty_boxes).all() and (empty_state == tracking.MISSING).all()


def test_smooth_boxes_mean_and_median():
    rng = np.random.default_rng(0)
    t = np.arange(60, dtype=float)
    truth = np.column_stack([50 + t, 40 + 0 * t, 150 + t, 140 + 0 * t])
    noisy = truth + rng.normal(0, 2, truth.shape)
    smooth = tracking.smooth_boxes(noisy, 5, "mean")
    assert tracking.box_jitter(smooth) < 0.6 * tracking.box_jitter(noisy)
    assert np.abs(smooth - truth).mean() < np.abs(noisy - truth).mean()
    # A centred moving average keeps linear motion exactly (no lag), away from the edges.
    np.testing.assert_allclose(tracking.smooth_boxes(truth, 5, "mean")[2:-2], truth[2:-2])
    # The running median removes a one-frame glitch entirely (SyncNet's kernel 13).
    glitch = truth.copy()
    glitch[30] += 40
    np.testing.assert_allclose(tracking.smooth_boxes(glitch, 13, "median")[30], truth[30], atol=1.5)
    np.testing.assert_allclose(tracking.smooth_boxes(truth, 1), truth)
    with pytest.raises(ValueError, match="odd"):
        tracking.smooth_boxes(truth, 4)
    # syncnet_params: centre and half-size max(w, h) / 2 of each box.
    params = tracking.syncnet_params(np.array([[10.0, 20.0, 50.0, 80.0]]), kernel=13)
    np.testing.assert_allclose(params, [[30.0, 50.0, 30.0]])


def test_track_faces_statistics_and_rejections():
    n, size = 40, (320, 160)
    face = (40, 40, 120, 120)
    other = (200, 50, 260, 110)
    rng = np.random.default_rng(1)
    jittered = [[np.add(face, rng.normal(0, 1.5, 4))] for _ in range(n)]

    track = tracking.track_faces(boxes_detections(jittered), size, CFG)
    s = track.stats
    assert (s["frames"], s["detected"], s["interpolated"], s["missing"]) == (n, n, 0, 0)
    assert s["n_faces_max"] == 1 and s["mean_score"] == pytest.approx(0.9)
    assert s["box_jitter_smooth"] < s["box_jitter_raw"]
    assert track.boxes.shape == (n, 4) and track.syncnet.shape == (n, 3)
    # The stored box is the S3FD-like extension of the detector box (taller, same width).
    h = face[3] - face[1]
    np.testing.assert_allclose(np.median(track.raw, axis=0),
                               [40, 40 - 0.3 * h, 120, 120 + 0.05 * h], atol=2.0)

    with pytest.raises(ClipRejected) as err:
        tracking.track_faces([[] for _ in range(n)], size, CFG)
    assert err.value.reason == "no_face"
    with pytest.raises(ClipRejected) as err:  # a face on 30 % of the frames
        tracking.track_faces(boxes_detections([[face] if t < 12 else [] for t in range(n)]), size, CFG)
    assert err.value.reason == "no_face"
    # Face on 70 % of the frames, in one block: the 12-frame gap is too long to fill.
    gappy = boxes_detections([[face] if not 10 <= t < 22 else [] for t in range(n)])
    with pytest.raises(ClipRejected) as err:
        tracking.track_faces(gappy, size, CFG)
    assert err.value.reason == "face_track_gaps"
    assert err.value.meta["face_track"]["missing"] == 12
    # The same gaps are fine when they are short.
    short_gaps = boxes_detections([[face] if t % 4 else [] for t in range(n)])
    assert tracking.track_faces(short_gaps, size, CFG).stats["interpolated"] == 10

    two = boxes_detections([[face, other] for _ in range(n)])
    kept = tracking.track_faces(two, size, CFG)
    assert kept.stats["n_faces_max"] == 2 and kept.stats["multi_face_frames"] == n
    assert kept.raw[0][0] == pytest.approx(face[0])  # the larger face
    with pytest.raises(ClipRejected) as err:
        tracking.track_faces(two, size, PreprocessConfig(syncnet_size=112, multi_face="reject"))
    assert err.value.reason == "multi_face"
    # A second face on a few frames only is not persistent: "reject" keeps the clip; so does
    # one face that jumps (a scene cut: two tracks, never two faces on one frame).
    passer = boxes_detections([[face, other] if t < 5 else [face] for t in range(n)])
    assert tracking.track_faces(passer, size, PreprocessConfig(multi_face="reject")).stats["n_faces_max"] == 2
    cut = boxes_detections([[face] if t < 25 else [(150, 40, 230, 120)] for t in range(n)])
    jumped = tracking.track_faces(cut, size, PreprocessConfig(multi_face="reject", max_missing=0.5))
    assert jumped.stats["n_tracks"] == 2 and jumped.stats["missing"] == 15


# ============================================================================ crop geometry


def test_syncnet_window_matches_hand_computation():
    x, y, bs = 100.3, 80.6, 40.2
    # bsi = int(40.2 * 1.8) = 72; padded centre (172.3, 152.6);
    # rows int(152.6 - 40.2) = 112 .. int(152.6 + 72.36) = 224,
    # cols int(172.3 - 56.28) = 116 .. int(172.3 + 56.28) = 228; minus the pad 72.
    assert crops.syncnet_window(x, y, bs) == (40, 152, 44, 156)

    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    padded = np.pad(frame, ((72, 72), (72, 72), (0, 0)), constant_values=110)
    expected = padded[112:224, 116:228][..., ::-1]  # BGR
    np.testing.assert_array_equal(crops.crop_syncnet(frame, x, y, bs, size=112), expected)
    # The window reaches past the bottom of this 120-row frame: those rows are the pad value.
    crop = crops.crop_syncnet(frame, x, y, bs, size=112)
    assert (crop[120 - 40:] == 110).all()
    # Resized to the requested size.
    assert crops.crop_syncnet(frame, x, y, bs, size=224).shape == (224, 224, 3)


def test_crop_face96_is_bgr_and_clips_the_box():
    frame = np.zeros((100, 200, 3), np.uint8)
    frame[:, :100] = (255, 0, 0)  # red left half (RGB)
    frame[:, 100:] = (0, 0, 255)  # blue right half
    red = crops.crop_face96(frame, (10, 10, 60, 90))
    assert red.shape == (96, 96, 3) and red.dtype == np.uint8
    assert (red[..., 2] == 255).all() and (red[..., 0] == 0).all()  # BGR: red in channel 2
    # A box leaving the frame is clipped (no padding), like Wav2Lip's preprocess.
    edge = crops.crop_face96(frame, (150, -30, 260, 120))
    assert (edge[..., 0] == 255).all() and (edge[..., 2] == 0).all()


def test_mouth_centre_and_crop():
    lm = np.full((468, 2), 60.0)
    lm[234, 0], lm[454, 0] = 20, 140  # the face's extent (cheek points, not in the ROI)
    roi = list(crops.MOUTH_ROI_INDICES)
    lm[roi, 0] = np.linspace(70, 90, len(roi))
    lm[roi, 1] = np.linspace(100, 110, len(roi))
    cx, cy = crops.mouth_roi_centre(lm)
    assert cx == pytest.approx((80 + 80 + 20 + 140) / 4)
    assert cy == pytest.approx(105)

    frame = np.zeros((160, 160, 3), np.uint8)
    cv2.circle(frame, (80, 105), 12, (255, 255, 255), -1)
    crop = crops.crop_mouth96(frame, (80.0, 105.0), scale=0.5)
    assert crop.shape == (96, 96) and crop.dtype == np.uint8
    # A 24-px disc in a 48 px (96 x 0.5) window: centred and half the width.
    ys, xs = np.nonzero(crop > 128)
    assert abs(xs.mean() - 47.5) < 1.5 and abs(ys.mean() - 47.5) < 1.5
    assert 44 <= xs.max() - xs.min() + 1 <= 52
    # Near the frame edge the box is shifted inside (the disc moves off-centre, no padding).
    corner = crops.crop_mouth96(frame, (5.0, 105.0), scale=0.5)
    assert corner.shape == (96, 96)


def test_similarity_transform_and_vcagan_alignment():
    rng = np.random.default_rng(3)
    src = rng.uniform(0, 100, (6, 2))
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -5.0])
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    dst = src @ (scale * rot).T + shift
    m = crops.similarity_transform(src, dst)
    np.testing.assert_allclose(m, np.column_stack([scale * rot, shift]), atol=1e-9)
    with pytest.raises(ValueError):
        crops.similarity_transform(src, dst[:3])

    # Landmarks placed exactly at a scaled/shifted copy of the reference map back onto it.
    lm = np.zeros((468, 2))
    ref = crops.VCAGAN_REFERENCE
    lm[[33, 263, 61, 291]] = ref * 0.5 + [10, 20]
    np.testing.assert_allclose(cv2.transform(lm[None, [33, 263, 61, 291]], crops.vcagan_matrix(lm))[0],
                               ref, atol=1e-9)
    frame = np.full((200, 200, 3), 90, np.uint8)
    crop = crops.crop_vcagan112(frame, lm)
    assert crop.shape == (112, 112) and crop.dtype == np.uint8
    assert abs(int(crop[56, 56]) - 90) <= 1


def test_fit_audio_trims_and_pads_to_640_per_frame():
    x = np.arange(1000, dtype=np.float32) / 1000
    out, info = pp.fit_audio(x, 2)
    assert len(out) == 1280 and info == {"source_samples": 1000, "padded_samples": 280, "trimmed_samples": 0}
    np.testing.assert_array_equal(out[:1000], x)
    assert (out[1000:] == 0).all()
    out, info = pp.fit_audio(x, 1)
    np.testing.assert_array_equal(out, x[:640])
    assert info["trimmed_samples"] == 360


def test_config_validation_and_round_trip():
    for bad in ({"crops": ("face96", "lips")}, {"crops": ()}, {"features": ("mfcc40",)},
                {"multi_face": "all"}, {"smooth_window": 4}, {"max_missing": 1.5},
                {"syncnet_size": 8}, {"min_frames": 0}, {"max_side": 10}):
        with pytest.raises(ValueError):
            PreprocessConfig(**bad)
    cfg = PreprocessConfig(crops=["face96"], syncnet_size=112)
    assert PreprocessConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="unknown"):
        PreprocessConfig.from_dict({"crop": ["face96"]})


def test_shards_are_stable_and_partition_ids():
    ids = [f"clip{i}/{i * 7}" for i in range(200)]
    shards = [pp.shard_of(i, 3) for i in ids]
    assert shards == [pp.shard_of(i, 3) for i in ids]  # deterministic
    assert set(shards) == {0, 1, 2} and min(shards.count(k) for k in range(3)) > 40
    assert pp.parse_shard("1/4") == (1, 4) and pp.parse_shard(None) is None
    for bad in ("4/4", "1-4", "a/b", "-1/3", "0/0"):
        with pytest.raises(ValueError, match="i/N"):
            pp.parse_shard(bad)


# ============================================================================ the corpus, end to end


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """Tiny embedded corpus: 2 GRID sentences (75 frames) and 2 LRW words (29 frames)."""
    from avlib.corpus.make import CorpusConfig, make_corpus

    cfg = CorpusConfig(n_seen_speakers=1, n_unseen_speakers=0, grid_per_speaker=2, lrw_words=2,
                       lrw_train_per_word=1, lrw_val_per_word=0, lrw_test_per_word=0,
                       lrw_unseen_per_word=0, sync_per_split=0)
    out = tmp_path_factory.mktemp("corpus")
    make_corpus(cfg, out, workers=1, progress=False)
    return out


@pytest.fixture(scope="session")
def corpus_items(corpus):
    return list_clips("corpus", corpus)


@pytest.fixture(scope="session")
def short_items(corpus_items):
    """The two 29-frame LRW clips: enough for the resume/kill/parallel tests, and quick."""
    return [it for it in corpus_items if it.extra["kind"] == "lrw"]


@pytest.fixture(scope="session")
def corpus_store(corpus_items, tmp_path_factory):
    out = tmp_path_factory.mktemp("store") / "store"
    summary = run_items(out, corpus_items)
    return out, summary


def test_corpus_store_streams_shapes_and_orders(corpus_items, corpus_store):
    out, summary = corpus_store
    assert summary["processed"] == len(corpus_items) == 4 and summary["rejected"] == {}
    assert summary["frames"] == 2 * 75 + 2 * 29 and summary["frames_per_s"] > 0
    assert summary["hours"] == pytest.approx(summary["frames"] / 25 / 3600)
    store = assert_store_sound(out)
    for item in corpus_items:
        meta = store.meta(item.id)
        n = meta["n_frames"]
        assert n == item.extra["n_frames"]
        streams = meta["streams"]
        assert streams["face96"]["shape"] == [n, 96, 96, 3] and streams["face96"]["order"] == "bgr"
        assert streams["syncnet"]["shape"] == [n, 112, 112, 3] and streams["syncnet"]["order"] == "bgr"
        assert streams["mouth96"]["shape"] == [n, 96, 96] and streams["mouth96"]["order"] == "gray"
        assert streams["vcagan112"]["shape"] == [n, 112, 112] and streams["vcagan112"]["order"] == "gray"
        assert store.frames(item.id, "mouth96", 0, 5).dtype == np.uint8
        assert meta["n_samples"] == 640 * n
        assert store.feature(item.id, "wav2lip_mel").shape == (80, 1 + 640 * n // 200)
        assert store.feature(item.id, "wav2lip_mel").dtype == np.float16  # the default feature_dtype
        assert "vocalist_mel" not in meta["features"]  # computed from the audio where needed
        assert store.feature(item.id, "syncnet_mfcc").shape[0] == 13
        assert store.landmarks(item.id).shape == (n, 40, 2)
        track = meta["face_track"]
        assert track["detected"] == n and track["missing"] == 0 and track["mesh_found"] == n
        assert meta["transcript"] == item.transcript and meta["speaker"] == "s1"


def test_crops_and_landmarks_agree_with_the_rendered_truth(corpus_items, corpus_store):
    out, _ = corpus_store
    store = ClipStore(out)
    for item in corpus_items[::2]:  # one GRID and one LRW clip
        truth = json.loads(item.extra["sidecar"].read_text())
        frames, _ = media.read_video(item.video)
        boxes = store.feature(item.id, "face_boxes")
        # The S3FD-like box spans the rendered face (forehead top to chin).
        ious = [tracking.box_iou(b, t) for b, t in zip(boxes, np.array(truth["face_boxes"]))]
        assert np.mean(ious) > 0.8
        # Lip landmarks follow the rendered lips (same point order) within a few pixels.
        err = np.linalg.norm(store.landmarks(item.id) - np.array(truth["lip_landmarks"]), axis=-1)
        assert err.mean() < 4.0
        # The stored face96 is the BGR crop of the decoded frame at the stored box.
        stored = store.frames(item.id, "face96", 10, 1)[0].astype(int)
        recomputed = crops.crop_face96(frames[10], boxes[10]).astype(int)
        assert np.abs(stored - recomputed).mean() < 3.0
        assert np.abs(stored - recomputed[..., ::-1]).mean() > 3 * np.abs(stored - recomputed).mean()


def test_resume_skips_done_clips(corpus_items, corpus_store):
    out, first = corpus_store
    again = run_items(out, corpus_items)
    assert again["skipped"] == 4 and again["processed"] == 0 and again["frames"] == 0
    assert again["manifest"]["summary"]["n_clips"] == 4


def test_cli_on_a_finished_store(corpus, corpus_store, capsys):
    out, _ = corpus_store
    parser = argparse.ArgumentParser()
    pp.add_arguments(parser)
    args = parser.parse_args(["--dataset", "corpus", "--root", str(corpus), "--out", str(out),
                              "--syncnet-size", "112", "--no-progress"])
    assert pp.main_from_args(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["skipped"] == 4 and printed["store"]["n_clips"] == 4 and printed["failed"] == {}
    # Another config on the same store is refused with a clear message and exit code 2, not a crash.
    base = ["preprocess", "--dataset", "corpus", "--root", str(corpus), "--out", str(out), "--no-progress"]
    assert cli.main(base + ["--crops", "face96"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "different config" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert cli.main(base + ["--shard", "3/2"]) == cli.EXIT_USAGE


def test_kill_mid_clip_leaves_no_half_clip_and_rerun_completes(short_items, tmp_path, monkeypatch):
    from avlib.data import store as store_mod

    out = tmp_path / "store"
    real_encode = store_mod._encode_stream
    calls = {"n": 0}

    def encode_then_die(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:  # second clip, second stream: the clip is half written
            raise KeyboardInterrupt
        return real_encode(*args, **kwargs)

    monkeypatch.setattr(store_mod, "_encode_stream", encode_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_items(out, short_items)
    monkeypatch.setattr(store_mod, "_encode_stream", real_encode)
    writer = StoreWriter(out, CFG.to_dict(), CFG.jpeg_quality)
    done = [it.id for it in short_items if writer.done(it.id)]
    assert done == [short_items[0].id]
    assert [p.name for p in (out / "clips").iterdir()] == [store_mod.safe_name(short_items[0].id)]

    rerun = run_items(out, short_items)
    assert rerun["skipped"] == 1 and rerun["processed"] == 1
    assert len(assert_store_sound(out)) == 2


def test_two_shards_cover_every_clip_once(corpus_items, tmp_path):
    out = tmp_path / "store"
    wanted = {it.id for it in corpus_items}
    mine = [{it.id for it in corpus_items if pp.shard_of(it.id, 2) == k} for k in range(2)]
    assert mine[0] | mine[1] == wanted and not mine[0] & mine[1]
    first = run_items(out, corpus_items, shard="0/2")
    second = run_items(out, corpus_items, shard=(1, 2))
    assert first["items"] + second["items"] == 4
    assert first["processed"] == len(mine[0]) and second["processed"] == len(mine[1])
    assert {r["id"] for r in second["manifest"]["clips"]} == wanted


@pytest.mark.slow
def test_parallel_run_equals_serial_run(short_items, corpus_store, tmp_path):
    serial_out, _ = corpus_store
    out = tmp_path / "store"
    summary = run_items(out, short_items, workers=2)
    assert summary["processed"] == 2 and summary["workers"] == 2
    serial, parallel = ClipStore(serial_out), ClipStore(out)
    assert parallel.ids == [it.id for it in short_items]
    for cid in parallel.ids:
        a, b = serial.meta(cid), parallel.meta(cid)
        assert a["face_track"] == b["face_track"] and a["streams"] == b["streams"]
        np.testing.assert_array_equal(serial.feature(cid, "face_boxes"), parallel.feature(cid, "face_boxes"))
        np.testing.assert_array_equal(serial.landmarks(cid), parallel.landmarks(cid))
        for stream in a["streams"]:
            np.testing.assert_array_equal(serial.frames(cid, stream), parallel.frames(cid, stream))
        np.testing.assert_array_equal(serial.audio(cid), parallel.audio(cid))


# ============================================================================ inputs of every kind


def test_truncated_corrupt_and_non_media_files_are_rejected(tmp_path):
    rng = np.random.default_rng(0)
    full = media.write_video(tmp_path / "full.mp4", rng.integers(0, 256, (25, 48, 64, 3), dtype=np.uint8),
                             audio=speechlike(SR, SR))
    data = full.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 6 // 10])
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(data[:12] + rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    text = tmp_path / "notes.mp4"
    text.write_text("lecture notes, not a video\n" * 20)
    items = [item_for(cut), item_for(garbage), item_for(text), item_for(tmp_path / "absent.mp4")]
    # All in one run: every file is rejected with its own reason, and the run goes on.
    summary = run_items(tmp_path / "store", items)
    assert summary["rejected"] == {"corrupt": 1, "missing": 1, "not_media": 1, "truncated": 1}
    reasons = {r["id"]: r["reason"] for r in summary["manifest"]["clips"]}
    assert reasons == {"cut": "truncated", "garbage": "corrupt", "notes": "not_media", "absent": "missing"}
    assert all(r["detail"] for r in summary["manifest"]["clips"])
    assert_store_sound(tmp_path / "store")


def test_video_without_audio_and_audio_without_video(tmp_path):
    silent = face_clip(tmp_path / "silent.mp4", audio=False)
    rec = rejected_as(tmp_path / "a", item_for(silent), "no_audio")
    assert "no audio" in rec["detail"]
    wav = media.write_wav(tmp_path / "voice.wav", speechlike(SR, SR), SR)
    rejected_as(tmp_path / "b", item_for(wav), "no_video")


def test_frames_without_a_face_are_rejected(tmp_path):
    rng = np.random.default_rng(0)
    noise = media.write_video(tmp_path / "noise.mp4", rng.integers(0, 256, (10, 96, 96, 3), dtype=np.uint8),
                              audio=speechlike(6400, SR))
    flat = media.write_video(tmp_path / "flat.mp4", np.full((10, 96, 96, 3), 128, np.uint8),
                             audio=speechlike(6400, SR))
    summary = run_items(tmp_path / "store", [item_for(noise), item_for(flat)])
    assert summary["rejected"] == {"no_face": 2}
    rec = record(summary, "noise")
    assert rec["face_track"]["detected"] == 0 and rec["face_track"]["frames"] == 10


def test_two_faces_follow_the_multi_face_policy(tmp_path):
    n = 10
    left, right = face_frames(n, seed=1), face_frames(n, seed=2)
    right = cv2.resize(right.reshape(-1, 160, 3), (120, 120 * n)).reshape(n, 120, 120, 3)
    canvas = np.full((n, 160, 300, 3), 60, np.uint8)
    canvas[:, :, :160] = left
    canvas[:, 20:140, 170:290] = right  # a smaller second face on the right
    path = media.write_video(tmp_path / "two.mp4", canvas, audio=speechlike(n * 640, SR))
    kept = run_items(tmp_path / "largest", [item_for(path)])
    rec = record(kept, "two")
    assert rec["status"] == "ok"
    assert rec["face_track"]["n_faces_max"] == 2 and rec["face_track"]["mesh_region"] == "face"
    box = ClipStore(tmp_path / "largest").feature("two", "face_boxes")
    assert box[:, 2].max() < 170  # the larger (left) face was kept
    lips = ClipStore(tmp_path / "largest").landmarks("two")
    assert lips[..., 0].max() < 160  # and its lips, not the other face's
    reject = PreprocessConfig(syncnet_size=112, multi_face="reject")
    rejected_as(tmp_path / "r", item_for(path), "multi_face", reject)


def test_variable_frame_rate_is_processed_at_25_fps(tmp_path):
    n = 24
    cfr = face_clip(tmp_path / "cfr.mp4", n=n)
    vfr = tmp_path / "vfr.mp4"
    # Irregular intervals (29, 58, 62 ms repeating) on a millisecond time base; audio copied.
    ffmpeg("-i", str(cfr),
           "-vf", r"settb=1/1000,setpts='floor(N/3)*149+eq(mod(N,3)\,1)*29+eq(mod(N,3)\,2)*87'",
           "-fps_mode", "passthrough", "-enc_time_base", "1/1000", "-video_track_timescale", "1000",
           "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-c:a", "copy", str(vfr))
    info = media.probe(vfr)
    assert info.variable_frame_rate
    summary = run_items(tmp_path / "store", [item_for(vfr)])
    rec = record(summary, "vfr")
    assert rec["status"] == "ok" and rec["variable_frame_rate"] is True
    expected = math.ceil(info.video_duration * 25 - 1e-6)
    assert rec["n_frames"] == expected != n
    assert rec["n_samples"] == 640 * expected


def test_stereo_44k_and_48k_audio_become_16k_mono(tmp_path):
    n = 15
    video = face_clip(tmp_path / "mute.mp4", n=n, audio=False)
    left = speechlike(48000, 48000, seed=4)
    st48 = media.write_wav(tmp_path / "st48.wav", np.stack([left, 0.5 * left], axis=1), 48000, subtype="FLOAT")
    muxed = tmp_path / "st48.mp4"
    ffmpeg("-i", str(video), "-i", str(st48), "-map", "0:v", "-map", "1:a", "-c:v", "copy",
           "-c:a", "aac", "-b:a", "192k", "-ar", "48000", "-ac", "2", str(muxed))
    l44 = speechlike(44100, 44100, seed=5)
    st44 = media.write_wav(tmp_path / "st44.wav", np.stack([l44, l44], axis=1), 44100, subtype="FLOAT")
    items = [item_for(muxed), item_for(video, "separate44", audio=st44)]
    summary = run_items(tmp_path / "store", items)
    assert summary["processed"] == 2
    store = ClipStore(tmp_path / "store")
    rec48, rec44 = store.meta("st48"), store.meta("separate44")
    assert (rec48["source_audio_sr"], rec48["source_audio_channels"]) == (48000, 2)
    assert (rec44["source_audio_sr"], rec44["source_audio_channels"]) == (44100, 2)
    for rec in (rec48, rec44):
        assert rec["n_samples"] == 640 * rec["n_frames"] and rec["sample_rate"] == 16000
    # The stored audio is the 16 kHz downmix: compare with a resampled reference.
    ref48 = resample_poly(0.75 * left.astype(np.float64), 1, 3)[: 640 * n]
    got48 = store.audio("st48")
    assert np.corrcoef(got48, ref48)[0, 1] > 0.98
    ref44 = resample_poly(l44.astype(np.float64), 160, 441)[: 640 * n]
    np.testing.assert_allclose(store.audio("separate44"), ref44, atol=2e-4)


def test_clips_shorter_than_the_model_context_are_rejected(tmp_path):
    short = face_clip(tmp_path / "short.mp4", n=3)
    rec = rejected_as(tmp_path, item_for(short), "too_short")
    assert "3 frames" in rec["detail"]


def test_huge_resolution_is_downscaled_or_rejected(tmp_path):
    small = face_frames(5, seed=3)
    big = np.stack([cv2.resize(f, (3000, 3000)) for f in small])
    big = np.pad(big, ((0, 0), (0, 0), (500, 500), (0, 0)), mode="edge")  # 4000 x 3000
    path = media.write_video(tmp_path / "huge.mp4", big, audio=speechlike(3200, SR), preset="ultrafast")
    del big
    summary = run_items(tmp_path / "down", [item_for(path)])
    rec = record(summary, "huge")
    assert rec["status"] == "ok"
    assert rec["source_size"] == [4000, 3000] and rec["frame_size"] == [1280, 960]
    assert rec["downscale"] == pytest.approx(0.32)
    no_downscale = PreprocessConfig(syncnet_size=112, max_side=None)
    rec = rejected_as(tmp_path / "keep", item_for(path), "too_large", no_downscale)
    assert "max_pixels" in rec["detail"]


def test_transcript_problems_are_recorded_not_rejected(tmp_path):
    root = tmp_path / "lipread_mp4"
    folder = root / "ABOUT" / "train"
    folder.mkdir(parents=True)
    face_clip(folder / "ABOUT_00001.mp4", n=10, seed=6)
    (folder / "ABOUT_00001.txt").write_bytes(b"Text: ABOUT\xff\xfe\nConf: 1\n\nDuration: 0.30 seconds\n")
    face_clip(folder / "ABOUT_00002.mp4", n=10, seed=7)  # no .txt at all
    items = list_clips("lrw", root)
    summary = run_items(tmp_path / "store", items)
    assert summary["processed"] == 2
    store = ClipStore(tmp_path / "store")
    assert "transcript_not_utf8" in store.meta("ABOUT/train/ABOUT_00001")["problems"]
    assert "transcript_missing" in store.meta("ABOUT/train/ABOUT_00002")["problems"]
    assert store.meta("ABOUT/train/ABOUT_00002")["transcript"] == "ABOUT"


def test_acappella_jpeg_folder_with_separate_wav(tmp_path):
    sample = "abcdefghijk_0_10_to_0_11"
    frames_dir = tmp_path / "jpgs" / "test_unseen" / "Spanish" / "female" / sample
    frames_dir.mkdir(parents=True)
    for n, frame in enumerate(face_frames(10, seed=11)):
        cv2.imwrite(str(frames_dir / f"{n}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    wav_dir = tmp_path / "splits_16k" / "test_unseen" / "audio" / "Spanish" / "female"
    wav_dir.mkdir(parents=True)
    media.write_wav(wav_dir / f"{sample}.wav", speechlike(10 * 640 + 100, SR), SR)
    items = list_clips("acappella", tmp_path)
    summary = run_items(tmp_path / "store", items)
    assert summary["processed"] == 1
    meta = ClipStore(tmp_path / "store").meta(items[0].id)
    assert meta["n_frames"] == 10 and meta["n_samples"] == 6400
    assert meta["audio"]["trimmed_samples"] == 100 and meta["dataset"] == "acappella"
    # Without its wav the clip is rejected as a clip without audio.
    (wav_dir / f"{sample}.wav").unlink()
    items = list_clips("acappella", tmp_path)
    rejected_as(tmp_path / "again", items[0], "no_audio")


def test_a_bug_inside_one_clip_is_recorded_and_the_run_goes_on(tmp_path, monkeypatch):
    good = face_clip(tmp_path / "good.mp4", n=8, seed=8)
    bad = face_clip(tmp_path / "bad.mp4", n=8, seed=9)
    real = pp.make_crops

    def broken(frames, track, landmarks, cfg):
        if len(frames) and track.stats["frames"] == 8 and broken.calls == 0:
            broken.calls += 1
            raise RuntimeError("simulated bug in the crop step")
        return real(frames, track, landmarks, cfg)

    broken.calls = 0
    monkeypatch.setattr(pp, "make_crops", broken)
    summary = run_items(tmp_path / "store", [item_for(bad), item_for(good)])
    assert summary["rejected"] == {"error": 1} and summary["processed"] == 1
    rec = record(summary, "bad")
    assert rec["detail"] == "RuntimeError: simulated bug in the crop step"
    assert record(summary, "good")["status"] == "ok"
    assert_store_sound(tmp_path / "store")


def test_preprocess_clip_result_and_own_detector(tmp_path):
    path = face_clip(tmp_path / "one.mp4", n=8, seed=10)
    writer = StoreWriter(tmp_path / "store", CFG.to_dict(), CFG.jpeg_quality)
    result = pp.preprocess_clip(item_for(path), writer, CFG)
    assert result["status"] == "ok" and result["reason"] is None
    assert result["frames"] == 8 and result["seconds"] > 0
    text = tmp_path / "x.mp4"
    text.write_text("nope")
    result = pp.preprocess_clip(item_for(text), writer, CFG)
    assert (result["status"], result["reason"]) == ("rejected", "not_media")
    assert writer.done("x") and writer.done("one")


# ============================================================================ the store as a book artifact


def test_store_artifact_resumes_records_and_reloads(corpus, corpus_items, tmp_path, monkeypatch):
    from avlib.artifacts import ArtifactMissing, atomic_write_json, read_metadata
    from avlib.data.store import find_store

    root = tmp_path / "artifacts"
    # Chapter 00 records its corpus here; store_artifact finds it without data_root.
    atomic_write_json(root / "corpus" / "current.json", {"path": str(corpus)})
    cfg = PreprocessConfig(syncnet_size=112, crops=("face96", "syncnet"), features=("wav2lip_mel",))
    lrw_ids = sorted(it.id for it in corpus_items if it.extra["kind"] == "lrw")
    assert len(lrw_ids) == 2

    # A run killed after its first clip leaves a .partial store that the rerun completes.
    real_clip = pp.preprocess_clip
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_clip(*args, **kwargs)

    monkeypatch.setattr(pp, "preprocess_clip", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pp.store_artifact(cfg, root, kinds=["lrw"], workers=1, progress=False)
    assert [p.name for p in (root / "store").iterdir() if p.name.endswith(".partial")]
    assert not (root / "store" / "current.json").exists()
    monkeypatch.setattr(pp, "preprocess_clip", real_clip)

    folder = pp.store_artifact(cfg, root, kinds=["lrw"], workers=1, progress=False)
    assert folder.parent == root / "store" and not folder.name.endswith(".partial")
    summary = read_metadata(folder)["metadata"]
    assert summary["skipped"] == 1 and summary["processed"] == 1 and summary["rejected"] == {}
    assert summary["store"]["n_clips"] == 2 and summary["kinds"] == ["lrw"]
    store = find_store(root)
    assert store.root == folder and sorted(store.ids) == lrw_ids
    assert sorted(store.meta(lrw_ids[0])["streams"]) == ["face96", "syncnet"]
    assert store.meta(lrw_ids[0])["extra"]["kind"] == "lrw"

    # auto and load reuse the finished store without preprocessing anything.
    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished store must be loaded, not remade")

    monkeypatch.setattr(pp, "preprocess_dataset", must_not_run)
    assert pp.store_artifact(cfg, root, kinds=["lrw"], policy="auto", progress=False) == folder
    assert pp.store_artifact(cfg, root, kinds="lrw", data_root=corpus, policy="load") == folder
    # Other settings are another product: under "load" it is missing, with the producer named.
    with pytest.raises(ArtifactMissing, match="01_preprocessing"):
        pp.store_artifact(PreprocessConfig(syncnet_size=96), root, kinds=["lrw"], policy="load")
    with pytest.raises(ArtifactMissing):
        pp.store_artifact(cfg, root, kinds=["grid", "lrw"], policy="load")


def test_store_artifact_rejects_bad_arguments(corpus, tmp_path):
    root = tmp_path / "artifacts"
    with pytest.raises(ValueError, match="kinds"):
        pp.store_artifact(CFG, root, data_root=corpus, kinds=["faces"])
    with pytest.raises(ValueError, match="kinds"):
        pp.store_artifact(CFG, root, dataset="grid", data_root=corpus, kinds=["grid"])
    with pytest.raises(ValueError, match="data_root"):
        pp.store_artifact(CFG, root, dataset="lrs2")
    with pytest.raises(ValueError, match="dataset"):
        pp.store_artifact(CFG, root, dataset="voxceleb", data_root=corpus)
    with pytest.raises(FileNotFoundError, match="00_corpus"):
        pp.store_artifact(CFG, root)  # no corpus recorded under this root
