"""evaluate_generators: every system on the same pairs, the baselines, the self pairs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from avlib.lipsync import evaluate as E
from avlib.models import Wav2Lip

pytestmark = pytest.mark.usefixtures("one_torch_thread")
HAS_TRUTH = E._has_truth  # the fixture below pretends the toy store is a corpus store


class Spy(torch.nn.Module):
    """A generator that returns its reference input, and records the mel windows it saw."""

    def __init__(self):
        super().__init__()
        self.mels = []

    def forward(self, audio, face):
        self.mels.append(audio.clone())
        return face[:, 3:]


@pytest.fixture()
def patched(monkeypatch, toy_sync_store):
    calls = {"lse": [], "truth": []}

    def fake_lse(frames, wav, syncnet, **kw):
        calls["lse"].append((len(frames), len(wav), kw.get("cropped")))
        return {"lse_d": float(frames.mean()) / 10, "lse_c": 1.0, "offset": 0}

    def fake_truth(store, clip, opening="gap"):
        calls["truth"].append(clip)
        return {"opening": np.linspace(0, 1, store.n_frames(clip))}

    monkeypatch.setattr(E, "lse_scores", fake_lse)
    monkeypatch.setattr(E, "true_mouth", fake_truth)
    monkeypatch.setattr(E, "_has_truth", lambda store, clip: True)  # as if a corpus store
    class View:  # the toy store has no source videos to paste into
        def __init__(self, store):
            pass

        def __call__(self, clip, faces96):
            calls.setdefault("view", []).append(clip)
            return faces96

    monkeypatch.setattr(E, "SyncNetView", View)
    monkeypatch.setattr(E, "mesh_landmarks",
                        lambda frames: np.full((len(frames), 468, 2), np.nan))
    return calls


def test_every_system_is_measured_on_the_same_pairs(patched, toy_sync_store):
    store = toy_sync_store
    spy = Spy()
    torch.manual_seed(0)
    gens = {"spy": spy, "tiny": Wav2Lip(width=0.0625).eval()}
    ev = E.evaluate_generators(gens, store, syncnet=None, split="train", n_pairs=2,
                               progress=False)
    assert set(ev.rows) == {*E.BASELINES, "spy", "tiny"}
    assert all(len(v) == 2 for v in ev.per_pair.values())
    assert len(patched["lse"]) == 2 * len(ev.rows)
    assert all(cropped for _, _, cropped in patched["lse"])
    assert [a for a, _ in ev.pairs] == patched["truth"]  # the truth of the *audio* clip
    assert patched["view"] == [f for _, f in ev.pairs for _ in gens]  # pasted into the face
    audio_clip, face_clip = ev.pairs[0]
    # the generator read the audio clip's mel (inference windows, frame 0 first)
    mel = store.feature(audio_clip, "wav2lip_mel").astype(np.float32)
    np.testing.assert_allclose(spy.mels[0][0, 0].numpy(), mel[:, :16])
    # the spy copies its reference: the cross video is the face clip; the self pair's
    # reference is reversed in time, so it is not the truth
    np.testing.assert_array_equal(ev.samples["spy"], store.frames(face_clip, "face96"))
    np.testing.assert_array_equal(ev.samples["real"], store.frames(audio_clip, "face96"))
    assert np.all(ev.samples["reference copy"] == ev.samples["reference copy"][:1])
    assert ev.rows["spy"]["SSIM"] < 1.0
    assert np.isnan(ev.rows["real"]["SSIM"])  # only generators and the still are re-synced
    table = ev.table()
    assert list(table.columns) == list(E.METRICS)
    assert np.isnan(table.loc["spy", "lip-gap r"])  # no mesh found on the toy faces


def test_clips_without_corpus_truth_have_no_lip_gap(patched, toy_sync_store, monkeypatch):
    # a real dataset's store (LRS2) has no ground-truth sidecars, as the toy store
    monkeypatch.setattr(E, "_has_truth", HAS_TRUTH)
    ev = E.evaluate_generators({"spy": Spy()}, toy_sync_store, syncnet=None, split="train",
                               n_pairs=2, progress=False)
    assert patched["truth"] == [] and ev.opening is None
    assert all(np.isnan(row["lip-gap r"]) for row in ev.rows.values())
    assert np.isfinite(ev.rows["spy"]["LSE-D"])  # everything else is measured
