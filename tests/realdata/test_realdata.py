"""Every chapter that reads a real dataset, run end to end on a small tree in its layout.

Each test checks that its chapter finished and saved its metrics, that it read the fixture's
data (a store made from the tree, never the embedded corpus) and that it saw the fixture's
clips (see conftest.py for how the trees are made and run).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from avlib import sync
from avlib.data.store import ClipStore
from avlib.profiles import load_profile

from . import layouts

SMOKE = load_profile("smoke")["chapters"]
#: The sync chapter's test groups: the corpus names its test splits test and test_unseen;
#: LRS2 and LRS3 have one test split, Acappella test_seen and test_unseen.
SYNC_GROUPS = {"lrs2": {"seen"}, "lrs3": {"seen"}, "acappella": {"seen", "unseen"}}


def store_of(out: Path, layout: str, metrics: dict) -> ClipStore:
    """The store a chapter read (its metrics name it relative to the artifacts root)."""
    return ClipStore(out / layout / "artifacts" / metrics["extra"]["store"])


def assert_saved(metrics: dict, chapter: str) -> None:
    assert metrics["chapter"] == chapter and metrics["run"]["profile"] == "smoke"
    assert any(row["headline"] for row in metrics["rows"]), "no headline row saved"


def assert_from_tree(store: ClipStore, layout: str, tree: tuple[Path, dict]) -> None:
    """Every clip of the fixture, and nothing else, made from the tree's files."""
    root, ids = tree
    assert {rec["dataset"] for rec in store.clips} == {layout}
    assert all(Path(rec["source"]).resolve().is_relative_to(root.resolve())
               for rec in store.clips)
    found: dict[str, list[str]] = {}
    for rec in store.clips:
        found.setdefault(rec["split"], []).append(rec["id"])
    assert {k: sorted(v) for k, v in found.items()} == {k: sorted(v) for k, v in ids.items()}
    assert store.rejected == []


@pytest.mark.parametrize("layout", ["lrs2", "lrs3", "acappella", "grid"])
def test_preprocessing_stores_every_clip(layout, chapter_run, trees, out):
    metrics = chapter_run(layout, "01_preprocessing")
    assert_saved(metrics, "01_preprocessing")
    extra = metrics["extra"]
    ids = trees[layout][1]
    n_clips = sum(len(v) for v in ids.values())
    assert extra["dataset"] == layout and extra["kinds"] is None
    assert extra["run"]["items"] == extra["run"]["processed"] == n_clips
    assert extra["rejections"] == {}
    assert {k: v["clips"] for k, v in extra["splits"].items()} == {
        k: len(v) for k, v in ids.items()}
    assert_from_tree(store_of(out, layout, metrics), layout, trees[layout])


@pytest.mark.parametrize("layout", ["lrs2", "lrs3", "acappella"])
def test_sync_chapter(layout, chapter_run, out):
    prep = chapter_run(layout, "01_preprocessing")
    metrics = chapter_run(layout, "02_syncnet")
    assert_saved(metrics, "02_syncnet")
    extra = metrics["extra"]
    assert extra["store"] == prep["extra"]["store"]
    steps = {"syncnet": SMOKE["02_syncnet"]["syncnet_steps"],
             "wav2lip_expert": SMOKE["02_syncnet"]["expert_steps"]}
    assert {k: v["steps"] for k, v in extra["training"].items()} == steps
    groups = {key.split(" | ")[1] for key in extra["accuracy_test"]
              if not key.startswith("SyncNet (paper)")}
    assert groups == SYNC_GROUPS[layout]
    assert set(extra["lse"]) == {f"{layout} | {g}" for g in SYNC_GROUPS[layout]}
    # a real dataset has no shifted sync-test clips: their rows are left out, not faked
    assert extra["accuracy_sync_test"] == {} and extra["shifted_offsets_within_1"] is None
    headline = [r for r in metrics["rows"] if r["headline"]]
    assert {r["metric"] for r in headline} == {sync.SPEECH_METRIC}
    assert len(headline) == 2 * len(SYNC_GROUPS[layout])  # SyncNet and the expert


def test_vocalist_on_lrs2(chapter_run):
    prep = chapter_run("lrs2", "01_preprocessing")
    metrics = chapter_run("lrs2", "03_vocalist")
    assert_saved(metrics, "03_vocalist")
    assert metrics["extra"]["store"] == prep["extra"]["store"]
    assert metrics["extra"]["eval_clips"] == {"seen": SMOKE["03_vocalist"]["eval_clips"]}
    assert metrics["extra"]["sync_test_offsets"] == {}


def test_wav2lip_on_lrs2(chapter_run, trees):
    prep = chapter_run("lrs2", "01_preprocessing")
    sync02 = chapter_run("lrs2", "02_syncnet")
    metrics = chapter_run("lrs2", "04_wav2lip")
    assert_saved(metrics, "04_wav2lip")
    extra = metrics["extra"]
    assert extra["store"] == prep["extra"]["store"]
    # the judges are the ones chapters 02 and 03 trained on this store
    trained = sync02["extra"]["training"]
    assert extra["judges"]["expert"] == trained["wav2lip_expert"]["folder"]
    assert extra["judges"]["lse_syncnet"] == trained["syncnet"]["folder"]
    # cross pairs of LRS2's test clips (it has no unseen-speaker split); no truth of the lips
    test_ids = set(trees["lrs2"][1]["test"])
    assert len(extra["pairs"]) == SMOKE["04_wav2lip"]["eval_pairs"]
    assert all(set(pair) <= test_ids and pair[0] != pair[1] for pair in extra["pairs"])
    assert extra["lip_gap_truth"] is None
    assert not [r for r in metrics["rows"] if "lip-gap" in r["metric"]]
    assert {"LSE-D", "LSE-C", "SSIM"} <= {r["metric"] for r in metrics["rows"]
                                          if r["model"] == "wav2lip"}


def test_lip2speech_on_grid(chapter_run, trees):
    prep = chapter_run("grid", "01_preprocessing")
    metrics = chapter_run("grid", "05_lip2speech")
    assert_saved(metrics, "05_lip2speech")
    extra = metrics["extra"]
    assert extra["store"] == prep["extra"]["store"]
    ids = trees["grid"][1]
    n = SMOKE["05_lip2speech"]["eval_clips"]
    assert extra["clips"] == {split: sorted(ids[split])[:n] for split in ("test", "test_unseen")}
    assert {r["split"] for r in metrics["rows"] if r["headline"]} == {"seen speakers"}


def test_syncvsr_on_lrw(chapter_run, trees, out):
    metrics = chapter_run("lrw", "06_syncvsr")
    assert_saved(metrics, "06_syncvsr")
    # the chapter preprocessed the lipread_mp4 folder itself: every clip, every word
    assert_from_tree(store_of(out, "lrw", metrics), "lrw", trees["lrw"])
    assert metrics["extra"]["vocabulary"] == sorted(layouts.LRW_WORDS)
    assert {r["split"] for r in metrics["rows"] if r["headline"]} == {"seen speakers"}


def test_mmab_on_lrw(chapter_run):
    words = chapter_run("lrw", "06_syncvsr")
    metrics = chapter_run("lrw", "07_mmab")
    assert_saved(metrics, "07_mmab")
    assert metrics["extra"]["store"] == words["extra"]["store"]
