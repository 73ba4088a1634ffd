"""The generated corpus: layouts, decoded media, ground truth, determinism, resume, sync shifts."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from avlib import faces, media
from avlib.data import formats
from avlib.corpus import make
from avlib.corpus.mouth import INDEX

TINY = make.CorpusConfig(n_seen_speakers=2, n_unseen_speakers=1, grid_per_speaker=3,
                         grid_per_unseen_speaker=1, lrw_words=3, lrw_train_per_word=1,
                         lrw_val_per_word=0, lrw_test_per_word=0, lrw_unseen_per_word=1,
                         sync_per_split=2, max_shift=6)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    manifest = make.make_corpus(TINY, root, workers=2, progress=False)
    return root, manifest


def test_layouts_and_manifest(corpus):
    root, manifest = corpus
    kinds = {c["kind"] for c in manifest["clips"]}
    assert kinds == {"grid", "lrw", "sync"}
    assert manifest["n_clips"] == len(manifest["clips"]) == len(make.plan_jobs(TINY, make.make_speakers(TINY)))
    for c in manifest["clips"]:
        assert (root / c["video"]).is_file() and (root / c["sidecar"]).is_file()
        if c["kind"] == "grid":
            spk, _, name = c["video"].split("/")[1:4]
            assert c["video"] == f"grid/{spk}/video/{c['id']}.mp4"
            assert (root / "grid" / spk / "align" / f"{c['id']}.align").is_file()
        if c["kind"] == "lrw":
            word, split, fname = c["video"].split("/")[1:4]
            assert fname == f"{c['id']}.mp4" and c["id"].startswith(word + "_") and len(c["id"]) == len(word) + 6
            assert (root / c["video"]).with_suffix(".txt").is_file()
    splits = {(c["kind"], c["split"]) for c in manifest["clips"]}
    assert ("grid", "train") in splits and ("grid", "test_unseen") in splits
    unseen = {s["id"] for s in manifest["speakers"] if not s["seen"]}
    for c in manifest["clips"]:
        assert (c["speaker"] in unseen) == (c["split"] == "test_unseen")
    assert manifest["hours"] > 0 and manifest["bytes"] > 0
    lines = (root / "grid" / "splits" / "train.txt").read_text().split()
    assert all(line.count("/") == 1 and line.startswith("s") for line in lines)


def test_decoded_frames_rates_and_audio_length(corpus):
    root, manifest = corpus
    for c in manifest["clips"][:6] + [c for c in manifest["clips"] if c["kind"] == "lrw"][:2]:
        info = media.probe(root / c["video"])
        assert info.fps == pytest.approx(25.0) and info.audio_sr == 16000 and info.audio_channels == 1
        clip = media.read_av(root / c["video"])
        assert len(clip.frames) == c["n_frames"]
        assert clip.frames.shape[1:] == (TINY.size, TINY.size, 3)
        # audio covers the frames: 640 samples per frame, within one AAC frame
        assert abs(len(clip.audio) - 640 * c["n_frames"]) <= 1024
    lrw = [c for c in manifest["clips"] if c["kind"] == "lrw"]
    assert all(c["n_frames"] == 29 for c in lrw)


def test_align_and_txt_parse_back_to_truth(corpus):
    root, manifest = corpus
    grid = next(c for c in manifest["clips"] if c["kind"] == "grid")
    truth = make.read_truth(root, grid)
    words = [s for s in formats.read_grid_align(root / "grid" / grid["speaker"] / "align" / f"{grid['id']}.align")
             if s.label not in ("sil", "sp")]
    assert [w.label for w in words] == truth["text"].split()
    for w, t in zip(words, truth["words"]):
        assert w.start == pytest.approx(t["start"], abs=1e-4) and w.end == pytest.approx(t["end"], abs=1e-4)
    lrw = next(c for c in manifest["clips"] if c["kind"] == "lrw")
    meta = formats.read_lrw_txt((root / lrw["video"]).with_suffix(".txt"))
    truth = make.read_truth(root, lrw)
    assert meta["text"] == truth["text"] and meta["duration"] == pytest.approx(truth["word_duration"], abs=0.006)
    # the target word is centred in the 29-frame clip
    target = truth["words"][truth["target_index"]]
    assert abs((target["start"] + target["end"]) / 2 - 29 / 25 / 2) < 0.03


def test_sidecar_ground_truth(corpus):
    root, manifest = corpus
    grid = next(c for c in manifest["clips"] if c["kind"] == "grid")
    truth = make.read_truth(root, grid)
    n = truth["n_frames"]
    assert np.asarray(truth["mouth"]).shape == (n, len(truth["mouth_params"]))
    assert np.asarray(truth["face_boxes"]).shape == (n, 4)
    assert np.asarray(truth["lip_landmarks"]).shape[:1] == (n,)
    assert truth["av_offset_frames"] == TINY.lead_frames and truth["speaker"] == grid["speaker"]
    assert isinstance(truth["render_seed"], int)
    ph = truth["phonemes"]
    assert all(a["end"] <= b["start"] + 1e-6 for a, b in zip(ph, ph[1:]))


def test_detector_and_lip_landmarks_follow_mouth(corpus):
    root, manifest = corpus
    found = total = 0
    gaps, jaws = [], []  # frames with parted lips
    all_gaps, all_jaws = [], []  # every frame the mesh found
    with faces.FaceDetector() as detector:
        for c in [c for c in manifest["clips"] if c["kind"] == "grid"][:4]:
            frames, _ = media.read_video(root / c["video"])
            mouth = np.asarray(make.read_truth(root, c)["mouth"])
            with faces.FaceMesher(static_image_mode=False) as mesher:
                for k, frame in enumerate(frames):
                    total += 1
                    found += bool(detector.detect(frame))
                    lm = mesher.landmarks(frame)
                    if lm is None:
                        continue
                    all_gaps.append(faces.lip_gap(lm))
                    all_jaws.append(mouth[k, INDEX["jaw_open"]])
                    if mouth[k, INDEX["lip_close"]] < 0.5:
                        gaps.append(all_gaps[-1])
                        jaws.append(all_jaws[-1])
    assert found / total >= 0.99
    assert np.corrcoef(all_gaps, all_jaws)[0, 1] >= 0.8
    assert np.corrcoef(gaps, jaws)[0, 1] >= 0.8


def test_determinism(corpus, tmp_path):
    root, manifest = corpus
    few = make.CorpusConfig(**{**TINY.key_fields(), "grid_per_speaker": 3})
    again = make.make_corpus(few, tmp_path / "again", workers=1, progress=False)
    a = {c["video"]: c for c in manifest["clips"]}
    for c in again["clips"][:5]:
        t1, t2 = make.read_truth(root, a[c["video"]]), make.read_truth(tmp_path / "again", c)
        assert t1 == t2, "same seed must give the same ground truth"
        f1, _ = media.read_video(root / c["video"])
        f2, _ = media.read_video(tmp_path / "again" / c["video"])
        assert np.abs(f1.astype(int) - f2.astype(int)).mean() < 1.0


def test_resume_after_interruption(corpus, tmp_path, monkeypatch):
    root, manifest = corpus
    calls = {"n": 0}
    real = make.make_clip

    def dying(job, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt("killed")
        return real(job, *args, **kwargs)

    monkeypatch.setattr(make, "make_clip", dying)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        make.make_corpus(TINY, out, workers=1, progress=False)
    # a half-written temporary file as a killed encoder would leave it
    (out / "grid").mkdir(exist_ok=True)
    (out / "grid" / ".junk.abc.tmp.mp4").write_bytes(b"partial")
    assert not (out / make.MANIFEST).exists()
    monkeypatch.setattr(make, "make_clip", real)
    resumed = make.make_corpus(TINY, out, workers=1, progress=False)
    assert resumed["generation"]["clips_reused"] == 3
    assert resumed["generation"]["stale_temporaries_removed"] >= 1
    assert resumed["n_clips"] == manifest["n_clips"]
    assert not list(out.rglob(".*.tmp*"))
    with pytest.raises(ValueError, match="other settings"):
        make.make_corpus(make.CorpusConfig(**{**TINY.key_fields(), "seed": 5}), out, workers=1,
                         progress=False)


def test_sync_shift_ground_truth(corpus):
    root, manifest = corpus
    sync = [c for c in manifest["clips"] if c["kind"] == "sync"]
    assert sync
    for c in sync:
        truth = make.read_truth(root, c)
        shifted = media.read_audio(root / c["video"])
        original = media.read_audio(root / truth["source"])
        n = min(len(shifted), len(original))
        max_lag = (TINY.max_shift + 2) * 640
        a, b = original[:n], shifted[:n]
        lags = np.arange(-max_lag, max_lag + 1, 16)
        score = [np.dot(a[max(0, -k):n - max(0, k)], b[max(0, k):n - max(0, -k)]) for k in lags]
        best = lags[int(np.argmax(score))] / 640
        assert best == pytest.approx(truth["shift_frames"], abs=0.05)
        assert truth["av_offset_frames"] == truth["visual_lead_frames"] + truth["shift_frames"]
