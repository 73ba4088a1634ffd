"""The book runner on a tiny project made in a temporary folder."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
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
accuracy = 96.0  # the headline metric the demo saves

# %%
import json, pathlib
assert not fail, "asked to fail"
out = pathlib.Path(artifacts_root) / "demo.json"
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(json.dumps({{"n_items": n_items, "profile": profile}}))
print("items", list(range(n_items)))

# %%
from avlib import book
from avlib.progress import progress_bar
ch = book.chapter("00_demo", profile=profile, seed=seed, device=device,
                  artifacts_root=artifacts_root, data_root=data_root)
bar = progress_bar(n_items, "demo work", "step")
for _ in range(n_items):
    bar.update(1)
    bar.set_postfix(loss="0.25")
bar.close()
rows = [{{"metric": "accuracy", "value": accuracy, "unit": "%", "target": 90,
          "baseline": 10, "headline": True}},
        {{"metric": "items", "value": n_items, "unit": ""}}]
ch.save_metrics(rows, task="demo", model="syncnet", size="tiny", split="test",
                extra={{"where": ch.rel(out)}})
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


# --------------------------------------------------------------------------------------------
# Chapter setup, saved metrics, verdicts, progress in the executed book
# --------------------------------------------------------------------------------------------
def test_executed_chapter_shows_relative_paths_and_one_progress_line(project):
    book.run("smoke", root=project, progress=False)
    entry = book.read_run_record("smoke", project)["notebooks"]["00_demo"]
    assert entry["parameters"]["artifacts_root"] == "_build/artifacts/smoke"
    nb = json.loads((project / "_build/executed/smoke/00_demo.ipynb").read_text())
    text = json.dumps([(c["source"], c.get("outputs")) for c in nb["cells"]],
                      ensure_ascii=False)
    assert str(project) not in text, "an executed chapter shows an absolute build path"
    assert "profile smoke · device cpu · seed 1 · artifacts: _build/artifacts/smoke" in text
    # summary mode: one line with the last postfix, no bar drawing
    assert "demo work: 2 steps in" in text and "loss=0.25" in text
    assert "%|" not in text and "it/s]" not in text
    record = json.loads((project / "_build/artifacts/smoke/metrics/00_demo.json").read_text())
    assert record["schema"] == book.METRICS_SCHEMA and record["chapter"] == "00_demo"
    assert record["run"]["profile"] == "smoke" and record["run"]["seconds"] >= 0
    assert record["run"]["host"]["cores"] >= 1 and "commit" in record["run"]
    assert record["extra"] == {"where": "demo.json"}
    head, other = record["rows"]
    assert head["model"] == "syncnet" and head["headline"] is True and head["value"] == 96.0
    assert other["value"] == 2 and isinstance(other["value"], int) and other["target"] is None


def test_status_page_judges_headline_metrics(project):
    book.run("smoke", root=project, progress=False)
    chapters = book.find_chapters(project)
    record = book.read_run_record("smoke", project)
    metrics = book.run_metrics(record, chapters, project)
    assert metrics["00_demo"]["rows"][0]["metric"] == "accuracy"
    assert "| 00_demo | ok |" in book.status_table(record, chapters, metrics)
    table = book.headline_table(chapters, metrics)
    assert "| accuracy |" in table and "≥ 90 %" in table and "| met |" in table
    # a headline model at its chance level is never "ok", whatever the run did
    book.run("smoke", root=project, progress=False, overrides={"accuracy": 10.2})
    record = book.read_run_record("smoke", project)
    metrics = book.run_metrics(record, chapters, project)
    status = book.status_table(record, chapters, metrics)
    assert "| 00_demo | ok |" not in status and "1 of 1 headline at chance" in status
    assert "**at chance**" in book.headline_table(chapters, metrics)
    book.run("smoke", root=project, progress=False, overrides={"accuracy": 50.0})
    record = book.read_run_record("smoke", project)
    status = book.status_table(record, chapters, book.run_metrics(record, chapters, project))
    assert "headline target missed" in status


def test_status_table_shows_time_against_budget():
    chapters = [book.Chapter(Path("notebooks/00_a.py")), book.Chapter(Path("notebooks/01_b.py")),
                book.Chapter(Path("notebooks/02_c.py"))]
    record = {"notebooks": {
        "00_a": {"status": "ok", "profile": "cpu", "wall_seconds": 30.0,
                 "expected_seconds": 60},
        "01_b": {"status": "ok", "profile": "cpu", "wall_seconds": 90.0,
                 "expected_seconds": 60}}}
    table = book.status_table(record, chapters)
    assert "| 30 s | 60 s | 50 % |" in table
    assert "| 90 s | 60 s | **150 %, over** |" in table
    assert "| 02_c | not run |" in table
    assert "| **all chapters** | | | | 2.0 min | 2.0 min | 100 % |" in table


def test_chapter_status_without_metrics():
    assert book.chapter_status(None, None) == "not run"
    assert book.chapter_status({"status": "failed"}, None) == "failed"
    assert book.chapter_status({"status": "ok"}, None) == "ran · no metrics saved"


def test_chapter_context(project, monkeypatch, capsys):
    # the kernel may run in notebooks/ (Jupyter): a relative root is the project's
    monkeypatch.chdir(project / "notebooks")
    ch = book.chapter("00_demo", profile="smoke", seed=3, device="cpu",
                      artifacts_root="_build/artifacts/smoke", data_root="data/x")
    art = (project / "_build/artifacts/smoke").resolve()
    assert ch.artifacts == art and ch.figures == art / "figures" / "00_demo"
    assert ch.figures.is_dir() and ch.metrics_path == art / "metrics" / "00_demo.json"
    assert ch.data_root == project.resolve() / "data/x"
    out = capsys.readouterr().out.strip().splitlines()
    assert out == ["profile smoke · device cpu · seed 3 · artifacts: _build/artifacts/smoke "
                   "· data: data/x"]
    assert ch.rel(art / "corpus" / "abc") == "corpus/abc"
    assert ch.rel(project / "notebooks") == "notebooks"
    assert ch.rel("relative/stays") == "relative/stays"
    assert ch.seconds() >= 0
    # outside the project the root is shown absolute; numpy's global generator is seeded
    import numpy as np

    elsewhere = project.parent / "elsewhere"
    book.chapter("00_demo", profile="smoke", seed=3, device="cpu", artifacts_root=elsewhere)
    assert f"artifacts: {elsewhere.resolve()}" in capsys.readouterr().out
    first = np.random.rand()
    book.chapter("00_demo", profile="smoke", seed=3, device="cpu", artifacts_root=elsewhere,
                 quiet=True)
    assert np.random.rand() == first


def test_chapter_threads_and_torch_seed(project, monkeypatch):
    import torch

    monkeypatch.chdir(project)
    before = torch.get_num_threads()
    try:
        book.chapter("00_demo", profile="smoke", seed=5, device="cpu", artifacts_root=None,
                     threads=1, quiet=True)
        assert torch.get_num_threads() == 1
        a = torch.rand(3)
        book.chapter("00_demo", profile="smoke", seed=5, device="cpu", artifacts_root=None,
                      quiet=True)
        assert torch.equal(a, torch.rand(3))
    finally:
        torch.set_num_threads(before)


ROW = {"task": "sync", "model": "syncnet", "size": "tiny", "split": "test",
       "metric": "accuracy", "value": 50.0, "unit": "%"}


def test_save_and_load_metrics(tmp_path):
    rows = [dict(ROW, headline=True, target=90, baseline=10),
            {"metric": "loss", "value": np.float32(0.5), "unit": "", "higher_is_better": False}]
    record = book.save_metrics(rows, chapter="02_x", artifacts_root=tmp_path, profile="smoke",
                               task="sync", model="syncnet", size="tiny", split="val",
                               extra={"note": 1})
    on_disk = json.loads((tmp_path / "metrics/02_x.json").read_text())
    assert on_disk == json.loads(json.dumps(record))
    assert set(on_disk) == {"schema", "chapter", "run", "rows", "extra"}
    assert set(on_disk["run"]) == {"profile", "commit", "started", "seconds", "host"}
    assert on_disk["rows"][1]["split"] == "val" and on_disk["rows"][0]["split"] == "test"
    assert isinstance(on_disk["rows"][1]["value"], float)
    (tmp_path / "metrics/old.json").write_text('{"profile": "cpu"}')  # an older format
    book.save_metrics([dict(ROW)], chapter="01_y", artifacts_root=tmp_path)
    records = book.load_metrics(tmp_path)
    assert [r["chapter"] for r in records] == ["01_y", "02_x"]
    assert [r["chapter"] for r in book.load_metrics(tmp_path, chapters=["02_x"])] == ["02_x"]
    frame = book.metrics_frame(tmp_path)
    assert list(frame["chapter"]) == ["01_y", "02_x", "02_x"]
    assert list(frame["verdict"]) == ["", "missed", ""]
    assert book.load_metrics(tmp_path / "nothing") == []


@pytest.mark.parametrize("row, message", [
    ({k: v for k, v in ROW.items() if k != "unit"}, "no 'unit'"),
    ({k: v for k, v in ROW.items() if k != "metric"}, "no 'metric'"),
    (dict(ROW, value=float("nan")), "'value' must be a finite number"),
    (dict(ROW, value=float("inf")), "finite"),
    (dict(ROW, value="96 %"), "'value' must be a finite number"),
    (dict(ROW, value=True), "finite number"),
    (dict(ROW, target=float("nan")), "'target'"),
    (dict(ROW, acuracy=1), "unknown key"),
])
def test_metrics_rows_are_validated(tmp_path, row, message):
    with pytest.raises(ValueError, match=message):
        book.save_metrics([row], chapter="02_x", artifacts_root=tmp_path)
    assert not (tmp_path / "metrics/02_x.json").exists()


def test_verdicts():
    v = book.verdict
    assert v(96.0, 95, 10) == "met"
    assert v(94.0, 95, 10) == "missed"
    assert v(10.3, 95, 10) == "at chance"  # within 5 % of the baseline: not better than it
    assert v(5.9, 95, 10) == "below baseline"
    assert v(99.0, 95, 99.0) == "at chance", "reaching the target is not enough"
    assert v(0.9, 1.05, higher_is_better=False) == "met"
    assert v(1.2, 1.05, higher_is_better=False) == "missed"
    assert v(0.5, 0.3, 1.0, higher_is_better=False) == "missed"
    assert v(2.0, None, 1.0, higher_is_better=False) == "below baseline"
    assert v(0.4, None, 0.0) == "beats baseline" and v(3.0) == ""
    assert v(0.05, 0.8, 0.0, tolerance=0.1) == "at chance"
    assert set(book.VERDICTS) >= {"met", "missed", "at chance", "below baseline"}


def test_metrics_table_for_the_reader():
    rows = [dict(ROW, headline=True, target=90, baseline=10, value=96.0),
            dict(ROW, metric="clips", value=12, unit=""),
            dict(ROW, metric="loss", value=0.4, unit="", higher_is_better=False, target=0.5)]
    head = book.metrics_table(rows, headline=True)
    assert list(head.index) == ["accuracy"] and head.loc["accuracy", "verdict"] == "met"
    assert head.loc["accuracy", "target"] == "≥ 90" and head.loc["accuracy", "value"] == "96"
    rest = book.metrics_table(rows, headline=False)
    assert rest.loc["clips", "value"] == "12" and rest.loc["loss", "target"] == "≤ 0.5"
    assert "model" not in rest.columns  # constant columns are left out
    two = book.metrics_table([rows[0], dict(rows[0], model="vocalist")])
    assert two.index.names == ["model", "metric"]


def test_progress_summary_mode(monkeypatch, capsys):
    from avlib import progress

    monkeypatch.setenv(progress.PROGRESS_ENV, "summary")
    bar = progress.progress_bar(10, "training", "step", initial=4)
    bar.set_postfix_str("resumed at step 4")
    for _ in range(6):
        bar.update(1)
        bar.set_postfix(loss="0.3680")
    bar.close()
    bar.close()  # twice: still one line
    for _ in progress.progress_bar(desc="sync accuracy", unit="clip", iterable=range(3)):
        pass
    with progress.progress_bar(5, "stopped", "clip") as b:
        b.update(2)
    progress.progress_bar(5, "silent", disable=True).close()
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3, lines
    assert lines[0].startswith("training: 6 steps in ") and "step/s" in lines[0]
    assert "[resumed at 4]" in lines[0] and lines[0].endswith("· loss=0.3680")
    assert lines[1].startswith("sync accuracy: 3 clips in ")
    assert "[stopped at 2 of 5]" in lines[2]
    assert progress.summary_line("training", 1400, 1400, 385.0, "step") == \
        "training: 1400 steps in 385 s (3.64 step/s)"
    monkeypatch.setenv(progress.PROGRESS_ENV, "live")
    live = progress.progress_bar(3, "live", disable=True)
    assert not isinstance(live, progress.SummaryBar)


def test_live_bars_follow_the_progress_mode(monkeypatch):
    from avlib import progress

    monkeypatch.setenv(progress.PROGRESS_ENV, "summary")
    assert not progress.live_bars()
    monkeypatch.setenv(progress.PROGRESS_ENV, "live")
    assert progress.live_bars()
    monkeypatch.delenv(progress.PROGRESS_ENV)
    assert progress.live_bars()
