"""Shared test fixtures, built once per test session.

- ``official_model(name)``: the official-size network of a registry name (``"syncnet"``,
  ``"wav2lip_expert"``, ``"vocalist"``, ``"mtd_vocalist"``), seeded, in eval mode, built once:
  the 80 M-parameter VocaLiST takes seconds to initialise. Tests must not change it; pass
  ``fresh=True`` for a private copy to load weights into.
- ``toy_sync_store``: a small clip store whose lower faces brighten with each frame's loudness
  (a learnable, clip-specific sync cue), in every split the sync code reads (``train``, ``val``,
  ``test``, ``test_unseen``) plus one sync-test clip whose audio is delayed by 3 frames.

``tests/browser`` and ``tests/realdata`` are collected only when named on the command line
(``make browser-check``, ``make realdata``): they need a built book or run chapters, so ``make
unit`` (plain ``pytest``) leaves them out.
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from avlib.audio import SAMPLES_PER_FRAME, syncnet_mfcc, vocalist_mel, wav2lip_mel
from avlib.data.store import ClipStore, StoreWriter
from avlib.models import SyncNet, VocaLiST, Wav2LipExpert, mtd_vocalist

#: Folders pytest collects only when a path inside them is named on the command line.
ONLY_WHEN_NAMED = tuple(Path(__file__).resolve().parent / name
                        for name in ("browser", "realdata"))


def _named(folder: Path, config) -> bool:
    base = Path(config.invocation_params.dir)
    for arg in config.args:
        path = (base / str(arg).split("::")[0]).resolve()
        if path == folder or folder in path.parents:
            return True
    return False


def pytest_ignore_collect(collection_path, config):
    path = Path(collection_path).resolve()
    for folder in ONLY_WHEN_NAMED:
        if (path == folder or folder in path.parents) and not _named(folder, config):
            return True
    return None


TOY_FRAMES = 24  #: frames per toy clip (>= 15 for SyncPairs)
TOY_SYNCNET_SIZE = 56  #: SyncNet crop side of the toy store (the network needs >= 51)

_OFFICIAL = {"syncnet": SyncNet, "wav2lip_expert": Wav2LipExpert, "vocalist": VocaLiST,
             "mtd_vocalist": mtd_vocalist}


@pytest.fixture(scope="session")
def official_model():
    built: dict[str, torch.nn.Module] = {}

    def get(name: str, fresh: bool = False) -> torch.nn.Module:
        if name not in built:
            torch.manual_seed(0)
            built[name] = _OFFICIAL[name]().eval()
        return copy.deepcopy(built[name]) if fresh else built[name]

    return get


def toy_clip(seed: int, shift: int = 0, frames: int = TOY_FRAMES) -> tuple[dict, np.ndarray]:
    """Crops whose lower half brightens with the loudness of each frame's audio (delayed by
    ``shift`` frames in the audio); returns ``({"face96", "syncnet"}, wav)``."""
    rng = np.random.default_rng(seed)
    gains = rng.uniform(0.02, 0.6, frames + abs(shift))
    audio_gains = np.roll(gains, shift)[:frames] if shift else gains[:frames]
    spf = SAMPLES_PER_FRAME
    wav = (rng.standard_normal(frames * spf) * audio_gains.repeat(spf)).clip(-1, 1)
    level = (40 + 300 * gains[:frames]).clip(0, 255).astype(np.uint8)

    def crops(size: int) -> np.ndarray:
        img = np.full((frames, size, size, 3), 90, np.uint8)
        img[:, size // 2:, :, :] = level[:, None, None, None]
        return img

    return {"face96": crops(96), "syncnet": crops(TOY_SYNCNET_SIZE)}, wav.astype(np.float32)


def write_toy_clip(writer: StoreWriter, clip_id: str, split: str, kind: str, seed: int,
                   shift: int = 0) -> None:
    streams, wav = toy_clip(seed, shift)
    features = {"wav2lip_mel": wav2lip_mel(wav), "vocalist_mel": vocalist_mel(wav),
                "syncnet_mfcc": syncnet_mfcc(wav)}
    meta = {"dataset": "corpus", "split": split, "speaker": f"s{seed % 3}", "transcript": "toy",
            "extra": {"kind": kind, "shift_frames": shift}}
    writer.write_clip(clip_id, meta, streams, wav, features,
                      orders={"face96": "bgr", "syncnet": "bgr"})


@pytest.fixture(scope="session")
def toy_sync_store(tmp_path_factory) -> ClipStore:
    root = tmp_path_factory.mktemp("toy_sync_store")
    writer = StoreWriter(root)
    for i in range(3):
        write_toy_clip(writer, f"grid/train{i}", "train", "grid", seed=i)
    write_toy_clip(writer, "grid/val0", "val", "grid", seed=10)
    write_toy_clip(writer, "grid/test0", "test", "grid", seed=20)
    write_toy_clip(writer, "grid/unseen0", "test_unseen", "grid", seed=30)
    write_toy_clip(writer, "sync/test/shifted", "test", "sync", seed=40, shift=3)
    writer.finalize()
    return ClipStore(root)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a test module (``pytestmark = pytest.mark.usefixtures(...)``): tiny
    models run faster on one thread, and a loaded machine makes two threads spin."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
