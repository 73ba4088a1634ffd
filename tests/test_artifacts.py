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
