"""The book runner on a tiny project made in a temporary folder."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from avlib import book, profiles

NOTEBOOK = '''\
# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
#   avlib:
#     needs: []
#     expected_seconds: {{smoke: 30, cpu: 60}}
# ---

# %% [markdown]
# # Demo
# A chapter for the runner's tests.

# %% tags=["parameters"]
profile = "cpu"
seed = 0
device = "cpu"
artifacts_root = None
data_root = None
ckpt_policy = "auto"
n_items = 3  # how many items
fail = False

# %%
import json, pathlib
assert not fail, "asked to fail"
out = pathlib.Path(artifacts_root) / "demo.json"
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(json.dumps({{"n_items": n_items, "profile": profile}}))
print("items", list(range(n_items)))
'''


def make_project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "notebooks").mkdir(parents=True)
    (root / "avlib").mkdir()
    (root / "profiles").mkdir()
    (root / "book").mkdir()
    (root / "_config.yml").write_text("title: t\nonly_build_toc_files: true\n"
                                      "sphinx:\n  config:\n    exclude_patterns: ['.venv', '_build/profiles']\n"
                                      "execute:\n  execute_notebooks: 'off'\n")
    (root / "notebooks" / "00_demo.py").write_text(NOTEBOOK.format())
    (root / "profiles" / "smoke.yml").write_text(textwrap.dedent("""\
        description: tiny
        shared: {seed: 1, device: cpu, unused_elsewhere: 5}
        chapters:
          00_demo: {n_items: 2}
        """))
    (root / "book" / "intro.md").write_text("# Intro\n\nHello.\n")
    (root / "book" / "status.md").write_text("# Status\n\n<!-- run-table -->\n")
    (root / "book" / "_toc.yml").write_text(
        "format: jb-book\nroot: book/intro\nchapters:\n  - file: notebooks/00_demo\n  - file: book/status\n")
    return root


@pytest.fixture()
def project(tmp_path, monkeypatch):
    monkeypatch.delenv("AVLIB_ARTIFACTS", raising=False)
    return make_project(tmp_path)


def test_run_skip_force_and_record(project, capsys):
    record = book.run("smoke", root=project, progress=False)
    entry = record["notebooks"]["00_demo"]
    assert entry["status"] == "ok"
    # shared values reach only chapters that declare them; chapter values override shared ones
    assert entry["parameters"]["n_items"] == 2 and entry["parameters"]["seed"] == 1
    assert "unused_elsewhere" not in entry["parameters"]
    for key in ("wall_seconds", "git_commit", "packages", "machine", "finished_at", "fingerprint"):
        assert key in entry
    assert entry["machine"]["cores"] >= 1 and entry["packages"]["torch"]
    out = json.loads((project / "_build/artifacts/smoke/demo.json").read_text())
    assert out == {"n_items": 2, "profile": "smoke"}
    executed = project / "_build/executed/smoke/00_demo.ipynb"
    assert "items [0, 1]" in executed.read_text()
    on_disk = json.loads((project / "_build/executed/smoke/run.json").read_text())
    assert on_disk["notebooks"]["00_demo"]["status"] == "ok"

    capsys.readouterr()
    book.run("smoke", root=project, progress=False)
    assert "skipped" in capsys.readouterr().out
    book.run("smoke", root=project, progress=False, overrides={"n_items": 4})
    assert "executing" in capsys.readouterr().out
    book.run("smoke", root=project, progress=False, overrides={"n_items": 4}, force=True)
    assert "executing" in capsys.readouterr().out


def test_artifacts_env_override(project, tmp_path, monkeypatch):
    monkeypatch.setenv("AVLIB_ARTIFACTS", str(tmp_path / "elsewhere"))
    book.run("smoke", root=project, progress=False)
    assert (tmp_path / "elsewhere" / "demo.json").is_file()


def test_failure_reports_cell_and_exits(project, capsys):
    with pytest.raises(book.BookError, match="00_demo failed"):
        book.run("smoke", root=project, progress=False, overrides={"fail": True})
    err = capsys.readouterr().err
    assert "assert not fail" in err and "AssertionError" in err and "asked to fail" in err
    record = book.read_run_record("smoke", project)
    assert record["notebooks"]["00_demo"]["status"] == "failed"


def test_bad_profile_and_parameters(project):
    with pytest.raises(profiles.ProfileError, match="unknown profile"):
        book.run("nope", root=project)
    with pytest.raises(book.BookError, match="declared by none"):
        book.run("smoke", root=project, overrides={"epochs": 3})
    with pytest.raises(book.BookError, match="no chapter matches"):
        book.run("smoke", root=project, only=["99"])
    (project / "profiles" / "bad.yml").write_text("chapters:\n  00_demo: {epochs: 2}\n")
    with pytest.raises(book.BookError, match="not declared by the chapter"):
        book.run("bad", root=project)


def test_parse_overrides_types():
    assert profiles.parse_overrides(["a=3", "b=0.5", "c=cuda", "d=true", "e=[1, 2]"]) == {
        "a": 3, "b": 0.5, "c": "cuda", "d": True, "e": [1, 2]}
    with pytest.raises(profiles.ProfileError):
        profiles.parse_overrides(["novalue"])


def test_inspect_lists_parameters(project):
    (chapter,) = book.find_chapters(project)
    params = chapter.parameters()
    assert params["n_items"]["default"] == "3" and params["n_items"]["help"] == "how many items"
    assert chapter.expected_seconds("smoke") == 30


def test_status_table_and_build(project):
    book.run("smoke", root=project, progress=False)
    index = book.build("smoke", root=project)
    assert index.is_file()
    status = (index.parent / "_build/executed/smoke/status.html").read_text()
    assert "00_demo" in status and "smoke" in status
