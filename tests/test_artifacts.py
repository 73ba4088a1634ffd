from pathlib import Path

import pytest

from avlib import artifacts


def test_resolve_root_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv(artifacts.ARTIFACTS_ENV, raising=False)
    assert artifacts.resolve_artifacts_root(None, "cpu", tmp_path) == (tmp_path / "_build/artifacts/cpu").resolve()
    monkeypatch.setenv(artifacts.ARTIFACTS_ENV, str(tmp_path / "env"))
    assert artifacts.resolve_artifacts_root(None, "cpu", tmp_path) == (tmp_path / "env").resolve()
    assert artifacts.resolve_artifacts_root(tmp_path / "p", "cpu", tmp_path) == (tmp_path / "p").resolve()


def test_produce_or_load_policies(tmp_path):
    calls = []

    def produce(folder: Path):
        calls.append(folder)
        (folder / "weights.txt").write_text("w")
        return {"loss": 0.5}

    cfg = {"width": 0.25, "epochs": 2}
    with pytest.raises(artifacts.ArtifactMissing, match="02_syncnet"):
        artifacts.produce_or_load("expert", cfg, produce, "load", tmp_path, producer="02_syncnet")
    a = artifacts.produce_or_load("expert", cfg, produce, "auto", tmp_path)
    assert (a / "weights.txt").read_text() == "w" and len(calls) == 1
    assert artifacts.read_metadata(a)["metadata"] == {"loss": 0.5}
    assert artifacts.produce_or_load("expert", cfg, produce, "load", tmp_path) == a
    assert artifacts.produce_or_load("expert", cfg, produce, "auto", tmp_path) == a and len(calls) == 1
    assert artifacts.produce_or_load("expert", cfg, produce, "train", tmp_path) == a and len(calls) == 2
    other = artifacts.produce_or_load("expert", {**cfg, "epochs": 3}, produce, "auto", tmp_path)
    assert other != a
    with pytest.raises(ValueError, match="ckpt_policy"):
        artifacts.produce_or_load("expert", cfg, produce, "sometimes", tmp_path)


def test_failed_production_leaves_nothing(tmp_path):
    def produce(folder: Path):
        (folder / "half.bin").write_bytes(b"x")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        artifacts.produce_or_load("corpus", {"n": 1}, produce, "auto", tmp_path)
    assert not any(p.name.endswith("half.bin") for p in tmp_path.rglob("*"))
    assert not artifacts.is_complete(artifacts.product_dir(tmp_path, "corpus", {"n": 1}))


def test_resumable_production_keeps_work(tmp_path):
    attempts = []

    def produce(folder: Path):
        attempts.append(sorted(p.name for p in folder.iterdir()))
        (folder / f"piece{len(attempts)}").write_text("done")
        if len(attempts) == 1:
            raise KeyboardInterrupt  # a killed run
        return {}

    with pytest.raises(KeyboardInterrupt):
        artifacts.produce_or_load("corpus", {"n": 2}, produce, "auto", tmp_path, resumable=True)
    final = artifacts.produce_or_load("corpus", {"n": 2}, produce, "auto", tmp_path, resumable=True)
    assert attempts == [[], ["piece1"]]
    assert sorted(p.name for p in final.iterdir()) == ["artifact.json", "piece1", "piece2"]


def test_code_hash_joins_the_key(tmp_path, monkeypatch):
    import sys

    pkg = tmp_path / "fakemod.py"
    pkg.write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("fakemod", None)
    a = artifacts.product_dir(tmp_path, "p", {"n": 1}, code=("fakemod",))
    pkg.write_text("X = 2\n")
    b = artifacts.product_dir(tmp_path, "p", {"n": 1}, code=("fakemod",))
    assert a != b and a.parent == b.parent
    assert artifacts.product_dir(tmp_path, "p", {"n": 1}) != a
    with pytest.raises(ValueError, match="no module"):
        artifacts.source_hash(("no_such_module_xyz",))


def test_current_product_pointers(tmp_path):
    root = tmp_path / "artifacts"
    with pytest.raises(FileNotFoundError, match=r"no current 'store' .*run chapter 01_preprocessing"):
        artifacts.find_current(root, "store", producer="01_preprocessing")
    product = artifacts.produce_or_load("store", {"n": 1}, lambda folder: None, "auto", root)
    pointer = artifacts.record_current(root, "store", product)
    assert pointer == root / "store" / "current.json"
    assert artifacts.find_current(root, "store") == product.resolve()
    # A moved (or copied) artifacts root still finds its products.
    moved = tmp_path / "moved"
    root.rename(moved)
    assert artifacts.find_current(moved, "store") == moved / "store" / product.name
    # A recorded product that lost its completion mark, or is gone, is an error naming the chapter.
    (moved / "store" / product.name / "artifact.json").unlink()
    with pytest.raises(FileNotFoundError, match="incomplete.*02_syncnet"):
        artifacts.find_current(moved, "store", producer="02_syncnet")
    (moved / "store" / "current.json").write_text("{not json")
    with pytest.raises(FileNotFoundError, match="unreadable"):
        artifacts.find_current(moved, "store")
    # Any folder can be recorded (a store written elsewhere); only its existence is checked.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    artifacts.record_current(moved, "store", elsewhere)
    assert artifacts.find_current(moved, "store") == elsewhere.resolve()
    elsewhere.rmdir()
    with pytest.raises(FileNotFoundError, match="is gone"):
        artifacts.find_current(moved, "store")


def test_temporaries_record_their_owner(tmp_path):
    import os

    tmp = artifacts.temp_path(tmp_path / "clip.mp4")
    assert tmp.parent == tmp_path and tmp.name.startswith(".clip.mp4.") and tmp.suffix == ".mp4"
    assert artifacts.temp_owner(tmp) == (artifacts.HOST, os.getpid())
    assert artifacts.temp_owner(tmp_path / f".tmp.{artifacts.HOST}.12.abcdef0123.x") == (artifacts.HOST, 12)
    assert artifacts.temp_owner(tmp_path / "clip.mp4") is None
    tmp.write_bytes(b"x")
    assert not artifacts.is_stale_temp(tmp)  # this very process
    untagged = tmp_path / ".old.tmp"
    untagged.write_bytes(b"x")
    assert not artifacts.is_stale_temp(untagged)
    os.utime(untagged, (0, 0))
    assert artifacts.is_stale_temp(untagged)


def test_folder_lock_excludes_a_second_holder(tmp_path):
    with artifacts.folder_lock(tmp_path / ".lock", what="the test folder"):
        with pytest.raises(artifacts.Busy, match=r"the test folder is in use by another process \(host .* pid"):
            with artifacts.folder_lock(tmp_path / ".lock", blocking=False, what="the test folder"):
                pass
    with artifacts.folder_lock(tmp_path / ".lock", blocking=False):
        pass  # released with the first holder


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    final = tmp_path / "out.bin"
    final.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with artifacts.atomic_path(final) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("writer died")
    assert final.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]
    with pytest.raises(IsADirectoryError):
        with artifacts.atomic_path(tmp_path):
            pass
    with pytest.raises(FileNotFoundError, match="does not exist"):
        artifacts.atomic_write_text(tmp_path / "no" / "x.txt", "x", make_parents=False)
