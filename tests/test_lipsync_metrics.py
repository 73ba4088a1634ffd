"""Metrics of generated lip-sync videos (avlib.lipsync.metrics) and FID (avlib.lipsync.fid)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from avlib.corpus.articulation import mouth_trajectory
from avlib.corpus.mouth import INDEX, MOUTH_PARAMS
from avlib.corpus.render import FaceIdentity, mouth_shape, render_clip
from avlib.corpus.speech import Voice, synthesize
from avlib.data.store import ClipStore, StoreWriter
from avlib.faces import LIPS_ALL, OUTER_EYE_CORNERS
from avlib.lipsync import fid as fidmod
from avlib.lipsync import metrics as M

from test_synctool import DELAY, SPEECH, MouthEnergyOracle

CLIP = "grid/s9/bbaf2n"


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def rendered():
    """The talking face of test_synctool (SPEECH, lips in sync with the sound, true offset 0)
    with its ground truth: frames RGB (T, 160, 160, 3), wav, mouth (T, 7), lip landmarks."""
    utt = synthesize(SPEECH, Voice(variant="m3"))
    n = len(utt.wav) // 640
    mouth = mouth_trajectory(utt.phonemes, n, lead_frames=0.0)
    clip = render_clip(FaceIdentity.sample(np.random.default_rng(0)), mouth, seed=0, size=160)
    return clip, utt.wav[: n * 640]


@pytest.fixture(scope="module")
def corpus_store(rendered, tmp_path_factory):
    """A store holding the rendered clip as a corpus clip: its sidecar (as avlib.corpus.make
    writes it) and a tiny stream (the metrics read the truth, not the pixels)."""
    clip, wav = rendered
    root = tmp_path_factory.mktemp("lipsync_corpus")
    sidecar = root / "truth.json"
    sidecar.write_text(json.dumps({
        "id": "bbaf2n", "kind": "grid", "size": 160, "visual_lead_frames": 0.0,
        "mouth_params": list(MOUTH_PARAMS), "mouth": np.round(clip.mouth, 4).tolist(),
        "face_boxes": np.round(clip.face_boxes, 2).tolist(),
        "lip_landmarks": np.round(clip.lip_landmarks, 2).tolist()}))
    n = len(clip.frames)
    writer = StoreWriter(root / "store")
    tiny = {"face96": np.zeros((n, 8, 8, 3), np.uint8)}
    writer.write_clip(CLIP, {"dataset": "corpus", "split": "test_unseen", "speaker": "s9",
                             "extra": {"kind": "grid", "sidecar": str(sidecar)}}, tiny, wav)
    writer.write_clip("grid/s9/nosidecar", {"dataset": "corpus", "split": "test_unseen",
                                            "speaker": "s9"}, tiny, wav)
    (root / "sync.json").write_text(json.dumps({"id": "x_3", "kind": "sync", "source_id": CLIP}))
    writer.finalize()
    return ClipStore(root / "store"), root


@pytest.fixture(scope="module")
def pairs_store(tmp_path_factory) -> ClipStore:
    """Six unseen-speaker clips of three speakers, two train clips, one lone-speaker split."""
    writer = StoreWriter(tmp_path_factory.mktemp("pairs_store"))
    tiny = {"face96": np.zeros((2, 8, 8, 3), np.uint8)}
    wav = np.zeros(2 * 640, np.float32)
    clips = [(f"grid/s{s}/c{i}", "test_unseen", f"s{s}") for s in (7, 8, 9) for i in range(2)]
    clips += [("grid/s1/t0", "train", "s1"), ("grid/s1/t1", "train", "s1"),
              ("grid/s5/v0", "val", "s5"), ("grid/s5/v1", "val", "s5")]
    for cid, split, speaker in clips:
        writer.write_clip(cid, {"dataset": "corpus", "split": split, "speaker": speaker},
                          tiny, wav)
    writer.finalize()
    return ClipStore(writer.root)


def _bgr(frames: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(frames[..., ::-1])


# --------------------------------------------------------------------------- LSE
def test_lse_scores_runs_the_syncnet_python_protocol_on_arrays(rendered, tmp_path):
    clip, wav = rendered
    oracle = MouthEnergyOracle()
    frames = _bgr(clip.frames)
    synced = M.lse_scores(frames, wav, oracle, tmp_dir=tmp_path)
    assert set(synced) == {"lse_d", "lse_c", "offset"}
    assert abs(synced["offset"]) <= 1 and synced["lse_c"] > 0
    late = np.concatenate([np.zeros(DELAY * 640, np.float32), wav])[: len(wav)]
    delayed = M.lse_scores(frames, late, oracle, tmp_dir=tmp_path)
    assert abs(delayed["offset"] + DELAY) <= 1  # audio 4 frames late: syncnet's sign gives -4
    # the direct (lossless) path agrees with the file protocol
    direct = M.lse_scores(frames, late, oracle, protocol="avlib")
    assert abs(direct["offset"] - delayed["offset"]) <= 1
    assert direct["lse_d"] == pytest.approx(delayed["lse_d"], rel=0.15)
    assert list(tmp_path.iterdir()) == []  # temporary video and JPEGs are gone
    with pytest.raises(ValueError, match="driving audio"):
        M.lse_scores(frames, None, oracle)


def test_lse_scores_reads_crops_whole_and_passes_paths(monkeypatch, tmp_path):
    from avlib.sync import tool

    calls = []

    class Result:
        min_dist, confidence, offset = 7.5, 6.25, -2

    def spy(source, model, **kwargs):
        calls.append((source, kwargs))
        return Result()

    monkeypatch.setattr(tool, "lse", spy)
    crops = np.zeros((30, 96, 96, 3), np.uint8)
    wav = np.zeros(30 * 640, np.int16)
    out = M.lse_scores(crops, wav, nn.Identity(), protocol="avlib")
    assert out == {"lse_d": 7.5, "lse_c": 6.25, "offset": -2}
    assert calls[-1][1]["cropped"] is True and calls[-1][1]["order"] == "bgr"
    assert calls[-1][0][1].dtype == np.float32  # int16 audio scaled to float
    M.lse_scores(np.zeros((30, 160, 160, 3), np.uint8), wav, nn.Identity(), protocol="avlib")
    assert calls[-1][1]["cropped"] is False
    M.lse_scores(tmp_path / "gen.mp4", syncnet=nn.Identity())
    assert calls[-1][0] == tmp_path / "gen.mp4"
    assert calls[-1][1]["protocol"] == "syncnet_python"
    with pytest.raises(ValueError, match="own audio"):
        M.lse_scores(tmp_path / "gen.mp4", wav, nn.Identity())


# --------------------------------------------------------------------------- lip gap
def _fake_meshes(gaps: np.ndarray, iod: float = 40.0) -> np.ndarray:
    """468-point 'meshes' with eye corners iod apart and the inner-lip midpoints gap * iod apart."""
    lm = np.zeros((len(gaps), 468, 2))
    lm[:, OUTER_EYE_CORNERS[0]] = (30, 50)
    lm[:, OUTER_EYE_CORNERS[1]] = (30 + iod, 50)
    lm[:, 13] = (50, 80)
    lm[:, 14, 0] = 50
    lm[:, 14, 1] = 80 + np.asarray(gaps) * iod
    return lm


def test_lip_gap_correlation_of_a_known_sequence():
    t = np.arange(60)
    gaps = 0.15 + 0.1 * np.sin(t / 3.0)
    meshes = _fake_meshes(gaps)
    np.testing.assert_allclose(M.lip_gaps(meshes), gaps, atol=1e-12)
    assert M.lip_gap_correlation(meshes, 3 * gaps + 1) == pytest.approx(1.0)
    assert M.lip_gap_correlation(meshes, -gaps) == pytest.approx(-1.0)
    assert M.lip_gap_correlation(gaps, gaps[::-1] ** 2) < 0.5  # (T,) gaps are taken as they are
    # the truth may be longer (the first min(T, T') frames count)
    assert M.lip_gap_correlation(meshes, np.r_[gaps, 0.0, 0.0]) == pytest.approx(1.0)
    # mesh failures (NaN rows) are dropped and counted
    meshes[[3, 10, 11]] = np.nan
    out = M.lip_gap_correlation(meshes, gaps, details=True)
    assert (out.n_frames, out.n_used, out.n_dropped) == (60, 57, 3)
    assert out.r == pytest.approx(1.0) and float(out) == out.r
    assert np.isnan(out.gaps[[3, 10, 11]]).all()
    # too few frames or a constant sequence: NaN
    assert math.isnan(M.lip_gap_correlation(meshes[:8], gaps[:8]))
    assert math.isnan(M.lip_gap_correlation(meshes, np.ones(60)))
    with pytest.raises(ValueError, match="landmarks"):
        M.lip_gaps(np.zeros((5, 12, 2)))


def test_lip_gap_follows_the_true_opening_on_a_rendered_clip(rendered, corpus_store):
    clip, _ = rendered
    store, _ = corpus_store
    truth = M.true_mouth(store, CLIP)
    frames = _bgr(clip.frames)
    meshes = M.mesh_landmarks(frames)
    out = M.lip_gap_correlation(meshes, truth["opening"], details=True)
    assert out.n_dropped == 0 and out.r > 0.8, out
    gap_truth = M.true_mouth(store, CLIP, opening="gap")["opening"]
    assert M.lip_gap_correlation(meshes, gap_truth) > 0.8
    # lips that follow other speech: the truth of the clip played backwards
    assert M.lip_gap_correlation(meshes, truth["opening"][::-1]) < 0.4
    # frames without a face are dropped and counted, straight from frames
    broken = frames.copy()
    broken[[5, 6, 40]] = 0
    out = M.lip_gap_correlation(broken, truth["opening"], details=True)
    assert out.n_dropped == 3 and out.r > 0.8
    # the mesh's lips land on the renderer's (a few pixels; mouth width ~ 40 px)
    assert M.lip_landmark_distance(meshes, truth["lip_landmarks"], unit="mouth_width") < 0.15


# --------------------------------------------------------------------------- landmark distance
def test_lip_landmark_distance_in_face_units():
    rng = np.random.default_rng(0)
    real = rng.uniform(0, 100, (6, 468, 2))
    real[:, OUTER_EYE_CORNERS[0]] = (20, 40)
    real[:, OUTER_EYE_CORNERS[1]] = (70, 40)  # interocular 50 px
    gen = real.copy()
    gen[:, list(LIPS_ALL)] += (3.0, 4.0)  # every lip point 5 px off; the rest does not count
    gen[:, sorted(set(range(200)) - set(LIPS_ALL))] += 100
    assert M.lip_landmark_distance(gen, real, unit="none") == pytest.approx(5.0)
    assert M.lip_landmark_distance(gen, real) == pytest.approx(0.1)  # auto: interocular
    assert M.lip_landmark_distance(gen, real, unit=np.full(6, 25.0)) == pytest.approx(0.2)
    # 40 lip points (store / sidecar) give the same distances; auto unit = mouth width
    lips_gen, lips_real = gen[:, list(LIPS_ALL)], real[:, list(LIPS_ALL)]
    width = np.linalg.norm(lips_real[:, 0] - lips_real[:, 10], axis=1)
    assert M.lip_landmark_distance(lips_gen, lips_real) == pytest.approx(np.mean(5 / width))
    assert M.lip_landmark_distance(gen, lips_real, unit="none") == pytest.approx(5.0)
    with pytest.raises(ValueError, match="eyes"):
        M.lip_landmark_distance(lips_gen, lips_real, unit="interocular")
    # frames where a mesh failed are left out
    gen[2] = np.nan
    per_frame = M.lip_landmark_distance(gen, real, unit="none", reduce="none")
    assert np.isnan(per_frame[2]) and np.allclose(np.delete(per_frame, 2), 5.0)
    assert M.lip_landmark_distance(gen, real, unit="none") == pytest.approx(5.0)
    assert M.lip_landmark_distance(real[0], real[0]) == 0.0
    with pytest.raises(ValueError, match="generated frames"):
        M.lip_landmark_distance(gen[:3], real)


# --------------------------------------------------------------------------- SSIM / PSNR
def _ssim_by_hand(x: np.ndarray, y: np.ndarray) -> float:
    """SSIM of two grey images from the definition, one window position at a time."""
    g = np.exp(-(np.arange(11) - 5.0) ** 2 / (2 * 1.5 ** 2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for i in range(x.shape[0] - 10):
        for j in range(x.shape[1] - 10):
            a, b = x[i:i + 11, j:j + 11], y[i:i + 11, j:j + 11]
            ma, mb = (w * a).sum(), (w * b).sum()
            va, vb = (w * (a - ma) ** 2).sum(), (w * (b - mb) ** 2).sum()
            cov = (w * (a - ma) * (b - mb)).sum()
            values.append((2 * ma * mb + c1) * (2 * cov + c2)
                          / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2)))
    return float(np.mean(values))


def _smooth_faces(rng, n=3, size=96) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size] / size
    base = 60 + 120 * np.sin(3 * xx + 2 * yy)[..., None] * np.array([1.0, 0.8, 0.6]) ** 2
    frames = base[None] + rng.normal(0, 8, (n, size, size, 3))
    return np.clip(frames, 0, 255).astype(np.uint8)


def test_ssim_identity_noise_and_the_definition():
    rng = np.random.default_rng(1)
    real = _smooth_faces(rng)
    assert M.ssim(real, real) == pytest.approx(1.0)
    scores = []
    for sigma in (3, 10, 30, 80):
        noisy = np.clip(real + rng.normal(0, sigma, real.shape), 0, 255).astype(np.uint8)
        scores.append(M.ssim(noisy, real))
        assert M.ssim(noisy, real) == pytest.approx(M.ssim(real, noisy))  # symmetric
    assert all(a > b for a, b in zip(scores, scores[1:])) and scores[-1] < 0.5, scores
    # the vectorised map equals the definition, window by window (a 24 x 20 grey image)
    x = rng.integers(0, 256, (24, 20)).astype(np.float64)
    y = np.clip(x + rng.normal(0, 25, x.shape), 0, 255)
    assert M.ssim(x, y, region="full") == pytest.approx(_ssim_by_hand(x, y), rel=1e-10)
    assert M.ssim(x, y) == pytest.approx(_ssim_by_hand(x[12:], y[12:]), rel=1e-10)
    # per-channel mean vs luma: equal on grey colour images
    grey = np.repeat(real[..., :1], 3, axis=3)
    grey_noisy = np.repeat(np.clip(real[..., :1] + 20.0, 0, 255).astype(np.uint8), 3, axis=3)
    assert M.ssim(grey, grey_noisy, channels="luma") == pytest.approx(
        M.ssim(grey, grey_noisy), rel=1e-9)
    per_frame = M.ssim(grey, grey_noisy, reduce="none")
    assert per_frame.shape == (3,)
    with pytest.raises(ValueError, match="shape"):
        M.ssim(real, real[:, :50])


def test_ssim_and_psnr_judge_only_the_lower_half():
    rng = np.random.default_rng(2)
    real = _smooth_faces(rng, n=2)
    upper_changed = real.copy()
    upper_changed[:, :48] = 255 - upper_changed[:, :48]
    assert M.ssim(upper_changed, real) == pytest.approx(1.0)
    assert M.psnr(upper_changed, real) == math.inf
    assert M.ssim(upper_changed, real, region="full") < 0.9
    assert M.lower_half(real).shape == (2, 48, 96, 3)


def test_psnr_formula():
    a = np.zeros((2, 96, 96, 3), np.uint8)
    b = a.copy()
    b[0] += 10  # MSE 100 on frame 0
    b[1, 48:, :, 0] = 30  # MSE 900 / 3 = 300 on the lower half of frame 1
    per_frame = M.psnr(a, b, reduce="none")
    np.testing.assert_allclose(per_frame, [10 * np.log10(255 ** 2 / 100),
                                           10 * np.log10(255 ** 2 / 300)])
    assert M.psnr(a, b) == pytest.approx(per_frame.mean())
    assert M.psnr(a, b, reduce="pooled") == pytest.approx(10 * np.log10(255 ** 2 / 200))
    assert M.psnr(a, b, region="full", reduce="none")[1] == pytest.approx(
        10 * np.log10(255 ** 2 / 150))
    assert M.psnr(a[0], b[0]) == pytest.approx(per_frame[0])  # one image
    b[1] = 0  # one identical frame: the frame mean is infinite, the pooled PSNR is not
    assert M.psnr(a, b) == math.inf
    assert M.psnr(a, b, reduce="pooled") == pytest.approx(10 * np.log10(255 ** 2 / 50))


# --------------------------------------------------------------------------- ground truth
def test_true_mouth_reads_the_sidecar(rendered, corpus_store):
    clip, _ = rendered
    store, root = corpus_store
    truth = M.true_mouth(store, CLIP)
    n = len(clip.frames)
    assert truth["opening"].shape == (n,) and truth["lip_landmarks"].shape == (n, 40, 2)
    assert M.OPENING == "jaw_open" and truth["mouth_params"] == MOUTH_PARAMS
    np.testing.assert_allclose(truth["opening"], clip.mouth[:, INDEX["jaw_open"]], atol=1e-4)
    np.testing.assert_allclose(truth["lip_landmarks"], clip.lip_landmarks, atol=0.01)
    gap = M.true_mouth(store, CLIP, opening="gap")["opening"]
    expected = [mouth_shape(FaceIdentity(), m).gap for m in truth["mouth"]]
    np.testing.assert_allclose(gap, expected)
    assert M.true_mouth(store, CLIP, opening="lip_round")["opening"].max() > 0
    with pytest.raises(ValueError, match="opening must be"):
        M.true_mouth(store, CLIP, opening="teeth")
    with pytest.raises(ValueError, match="no corpus ground truth"):
        M.true_mouth(store, "grid/s9/nosidecar")
    with pytest.raises(ValueError, match="sync clip"):
        M.true_mouth(store, CLIP, sidecar=root / "sync.json")
    with pytest.raises(FileNotFoundError, match="moved"):
        M.true_mouth(store, CLIP, sidecar=root / "gone.json")


# --------------------------------------------------------------------------- protocol
def test_cross_pairs_are_deterministic_and_cross_speakers(pairs_store):
    store = pairs_store
    speaker = {rec["id"]: rec["speaker"] for rec in store.clips}
    pairs = M.cross_pairs(store, seed=0)
    assert pairs == M.cross_pairs(store, seed=0)
    assert any(M.cross_pairs(store, seed=s) != pairs for s in (1, 2, 3))
    unseen = sorted(r["id"] for r in store.select(split="test_unseen"))
    assert [face for _, face in pairs] == unseen  # one pair per face, sorted like the lists
    for audio, face in pairs:
        assert audio != face and audio in unseen and speaker[audio] != speaker[face]
    few = M.cross_pairs(store, seed=5, n=3)
    assert len(few) == 3 and len({f for _, f in few}) == 3
    many = M.cross_pairs(store, seed=5, n=14)
    assert len(many) == 14 and {f for _, f in many} == set(unseen)
    # one speaker only: another clip of the same speaker
    assert M.cross_pairs(store, split="val") == [("grid/s5/v1", "grid/s5/v0"),
                                                 ("grid/s5/v0", "grid/s5/v1")]
    with pytest.raises(ValueError, match="at least 2 clips"):
        M.cross_pairs(store, split="test")
    with pytest.raises(ValueError, match="positive"):
        M.cross_pairs(store, n=0)


def test_official_filelists_read_and_write(pairs_store, tmp_path):
    path = tmp_path / "lrs2.txt"
    path.write_text("6339758276407584924/00098 6330311066473698535/00011\n\n"
                    "# a comment\nBRING_00018.mp4   WESTERN_00039  \n")
    assert M.read_filelist(path) == [("6339758276407584924/00098", "6330311066473698535/00011"),
                                     ("BRING_00018", "WESTERN_00039")]
    pairs = M.cross_pairs(pairs_store)
    back = M.read_filelist(M.write_filelist(pairs, tmp_path / "ours.txt"), store=pairs_store)
    assert back == pairs
    with pytest.warns(UserWarning, match="2 of the 2 pairs"):
        assert M.read_filelist(path, store=pairs_store) == []
    path.write_text("only_one_field\n")
    with pytest.raises(ValueError, match="line 1"):
        M.read_filelist(path)


# --------------------------------------------------------------------------- FID
def test_frechet_distance_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=16), rng.normal(size=16)
    a, b = rng.uniform(0.1, 3, 16), rng.uniform(0.1, 3, 16)
    expected = ((mu1 - mu2) ** 2).sum() + (a + b - 2 * np.sqrt(a * b)).sum()
    for method in ("scipy", "eigh", "auto"):
        assert fidmod.frechet_distance(mu1, np.diag(a), mu2, np.diag(b), method) == \
            pytest.approx(expected, rel=1e-10)
    # full covariances from small sets (rank-deficient): the three routes agree
    f1, f2 = rng.normal(size=(10, 64)), rng.normal(1.0, 2.0, size=(12, 64))
    stats = (*fidmod.activation_statistics(f1), *fidmod.activation_statistics(f2))
    gram = fidmod.fid_from_features(f1, f2, "gram")
    # (the eigenvalue routes take square roots of round-off around the zero eigenvalues)
    assert fidmod.frechet_distance(*stats, method="eigh") == pytest.approx(gram, rel=1e-7)
    assert fidmod.frechet_distance(*stats, method="scipy") == pytest.approx(gram, rel=1e-6)
    assert fidmod.fid_from_features(f1, f1) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="method"):
        fidmod.frechet_distance(*stats, method="newton")


def _calibrated_inception(input_size: int = 150) -> fidmod.FIDInceptionV3:
    """Random weights whose BatchNorm statistics are set from one batch, so that activations
    keep a sensible scale (raw random weights shrink them to ~1e-8)."""
    torch.manual_seed(0)
    model = fidmod.FIDInceptionV3(input_size=input_size)
    for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
        bn.momentum = None
        bn.reset_running_stats()
    model.train()
    with torch.no_grad():
        model(torch.rand(4, 3, input_size, input_size))
    return model.eval()


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    """A pt_inception-style checkpoint: a bare state dict without BatchNorm counters."""
    state = {k: v for k, v in _calibrated_inception().state_dict().items()
             if not k.endswith("num_batches_tracked")}
    path = tmp_path_factory.mktemp("fid") / fidmod.CHECKPOINT_NAME
    torch.save(state, path)
    return path


def test_fid_inception_has_the_checkpoint_layout():
    model = fidmod.FIDInceptionV3()
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["Conv2d_1a_3x3.conv.weight"] == (32, 3, 3, 3)
    assert shapes["Mixed_5b.branch1x1.conv.weight"] == (64, 192, 1, 1)
    assert shapes["Mixed_5b.branch_pool.conv.weight"] == (32, 192, 1, 1)
    assert shapes["Mixed_6e.branch7x7dbl_5.conv.weight"] == (192, 192, 1, 7)
    assert shapes["Mixed_7c.branch3x3dbl_3b.bn.running_var"] == (384,)
    assert shapes["fc.weight"] == (1008, 2048)
    assert not any(k.startswith("AuxLogits") for k in shapes)
    # torchvision's inception_v3 has 27,161,264 parameters with its auxiliary classifier
    # (3,326,696) and 1000 classes; without it and with 1008 classes: 23,850,960.
    assert sum(p.numel() for p in model.parameters()) == 23_850_960


def test_fid_features_at_299_through_the_checkpoint_loader(inception_file):
    model = fidmod.load_inception(inception_file)
    assert model.input_size == 299 and not model.training
    saved = torch.load(inception_file, weights_only=True)
    loaded = model.state_dict()
    assert all(torch.equal(loaded[key], value) for key, value in saved.items())
    assert all(loaded[k] == 0 for k in set(loaded) - set(saved))  # BatchNorm counters filled
    rng = np.random.default_rng(3)
    real, fake = _smooth_faces(rng, n=2), rng.integers(0, 256, (2, 96, 96, 3), dtype=np.uint8)
    with torch.inference_mode():
        feats = fidmod.inception_features(np.concatenate([real, fake]), model, batch_size=3)
    assert feats.shape == (4, 2048) and feats.dtype == np.float64 and np.isfinite(feats).all()
    same = fidmod.fid_from_features(feats[:2], feats[:2])
    other = fidmod.fid_from_features(feats[:2], feats[2:])
    assert same == pytest.approx(0.0, abs=1e-6 * other) and other > 1e-3 * np.var(feats)


def test_fid_end_to_end_and_from_the_environment(inception_file, monkeypatch):
    monkeypatch.setenv(fidmod.ENV_CHECKPOINT, str(inception_file))
    model = fidmod.load_inception(input_size=150)  # small input: plumbing only, not FID
    rng = np.random.default_rng(4)
    real = _smooth_faces(rng, n=2)
    fake = np.ascontiguousarray(real[..., ::-1])  # the colours swapped
    other = fidmod.fid(real, fake, model=model)
    # read in the other colour order, the fake frames are the real ones
    same = fidmod.fid(real[..., ::-1], fake, model=model, order="rgb")
    assert same == pytest.approx(0.0, abs=1e-6 * other) and other > 1.0


def test_fid_without_a_checkpoint_says_what_it_needs(monkeypatch, tmp_path):
    monkeypatch.delenv(fidmod.ENV_CHECKPOINT, raising=False)
    frames = np.zeros((2, 32, 32, 3), np.uint8)
    with pytest.raises(fidmod.FIDCheckpointMissing,
                       match=r"pt_inception-2015-12-05.*AVLIB_FID_INCEPTION"):
        fidmod.fid(frames, frames)
    with pytest.raises(fidmod.FIDCheckpointMissing, match="does not exist"):
        fidmod.fid(frames, frames, checkpoint=tmp_path / "nowhere.pth")
    monkeypatch.setenv(fidmod.ENV_CHECKPOINT, str(tmp_path / "nowhere.pth"))
    with pytest.raises(FileNotFoundError, match=r"from \$AVLIB_FID_INCEPTION"):
        fidmod.load_inception()
