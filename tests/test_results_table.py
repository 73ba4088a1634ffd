"""The README's results table and the landing page's summary come from the committed snapshot of
the saved metrics (``book/results/cpu/``), through ``avlib.results``."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from avlib import book, results

ROOT = Path(__file__).resolve().parent.parent
HINT = "regenerate it with `python -m avlib.book results` (make book does it after the build)"


# --------------------------------------------------------------------------------------------
# The committed pages agree with the committed snapshot
# --------------------------------------------------------------------------------------------
def test_snapshot_covers_every_chapter_in_the_schema():
    records = results.load_snapshot(results.snapshot_dir("cpu", ROOT))
    assert list(records) == results.book_chapters(ROOT), \
        "book/results/cpu/ must hold one metrics file per chapter of the book"
    for name, record in records.items():
        assert record["run"]["profile"] == "cpu", f"{name}: the snapshot of another profile"
        assert any(r["headline"] for r in record["rows"]), f"{name}: no headline metric"


@pytest.mark.parametrize("page", ["README.md", "book/intro.md"])
def test_committed_blocks_equal_the_generated_ones(page):
    markers, block = results.generated_blocks(ROOT)[page]
    text = (ROOT / page).read_text(encoding="utf-8")
    begin, end = markers
    assert text.count(begin) == 1 and text.count(end) == 1, f"{page} needs {begin} ... {end}"
    committed = text[text.index(begin) + len(begin):text.index(end)].strip("\n")
    assert committed == block.strip("\n"), \
        f"{page}'s generated block differs from the committed snapshot book/results/cpu/: {HINT}"


def test_readme_block_sits_under_its_heading():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    heading = text.index("## Results of the published run")
    begin = text.index(results.README_MARKERS[0])
    assert heading < begin and "\n## " not in text[heading + 3:begin]


# --------------------------------------------------------------------------------------------
# The generator on constructed records
# --------------------------------------------------------------------------------------------
def _row(metric, value, **kw):
    row = {"task": "demo", "model": "net", "size": None, "split": "test", "metric": metric,
           "value": value, "unit": "", "target": None, "baseline": None, "headline": True,
           "higher_is_better": True, "tolerance": None}
    row.update(kw)
    return row


def _record(chapter, rows, *, commit="0123456789abcdef0123456789abcdef01234567+dirty",
            profile="cpu", gpu=None, seconds=96.4):
    return {"schema": book.METRICS_SCHEMA, "chapter": chapter, "extra": {},
            "run": {"profile": profile, "commit": commit, "started": "2026-12-03T06:27:08+00:00",
                    "seconds": seconds,
                    "host": {"cores": 2, "cpu": "Test CPU", "gpu": gpu, "python": "3.11.7"}},
            "rows": rows}


RECORDS = {
    "01_second": _record("01_second", [
        _row("top-1", 0.4, target=0.7, baseline=0.0175, tolerance=0.02),           # missed
        _row("error", 0.0, target=0.5, higher_is_better=False, unit="frames"),     # met
        _row("not a headline", 3.0, headline=False),
    ], commit="fedcba9876543210fedcba9876543210fedcba98", gpu="NVIDIA H200", seconds=739.5),
    "00_first": _record("00_first", [
        _row("accuracy", 98.38665, unit="%", target=95, baseline=9.677419, tolerance=5.0),  # met
        _row("offset found", 100.0, unit="%", baseline=9.677419),                 # beats baseline
        _row("broken", math.nan, unit="%", target=90),                             # no value
        _row("scratch", 10.0, unit="%", baseline=9.677419, tolerance=5.0),         # at chance
        _row("clips", 12000, unit=""),                                             # reported
    ]),
}


def _table_rows(markdown):
    return [line for line in markdown.splitlines() if line.startswith("| 0")]


def test_results_markdown_rows_and_verdicts():
    md = results.results_markdown(RECORDS)
    assert md == results.results_markdown(dict(reversed(list(RECORDS.items())))), \
        "the output must not depend on the order of the records"
    rows = _table_rows(md)
    assert rows == [
        "| 00_first | net | test | accuracy | 98.4 % | ≥ 95 % / 9.68 % | met |",
        "| 00_first | net | test | offset found | 100 % | – / 9.68 % | beats baseline |",
        "| 00_first | net | test | broken | NaN % | ≥ 90 % / – | **no value** |",
        "| 00_first | net | test | scratch | 10 % | – / 9.68 % | **at chance** |",
        "| 00_first | net | test | clips | 12,000 | – / – |  |",
        "| 01_second | net | test | top-1 | 0.4 | ≥ 0.7 / 0.0175 | **missed** |",
        "| 01_second | net | test | error | 0 frames | ≤ 0.5 frames / – | met |",
    ]
    assert "not a headline" not in md


def test_results_markdown_stamps():
    md = results.results_markdown(RECORDS)
    stamps = [line for line in md.splitlines() if line.startswith("- ")]
    assert stamps == [
        "- `00_first` · commit `0123456+dirty` · profile cpu · 2 cores, Test CPU, no GPU, "
        "Python 3.11.7 · 2026-12-03 06:27 UTC · 96 s",
        "- `01_second` · commit `fedcba9` · profile cpu · 2 cores, Test CPU, NVIDIA H200, "
        "Python 3.11.7 · 2026-12-03 06:27 UTC · 740 s",
    ]
    other = {"00_first": _record("00_first", [_row("a", 1.0)], profile="smoke", commit=None)}
    line = [ln for ln in results.results_markdown(other).splitlines() if ln.startswith("- ")][0]
    assert "commit `unknown` · profile smoke" in line and "not the `cpu` profile" in line


def test_verdicts_are_those_of_the_book():
    for record in RECORDS.values():
        for row in record["rows"]:
            if math.isfinite(row["value"]):
                assert results.row_verdict(row) == book.row_verdict(row)
    assert results.row_verdict(_row("x", math.inf, baseline=1.0)) == results.NO_VALUE


def test_chapter_status_as_on_the_status_page():
    assert results.chapter_status(RECORDS["01_second"]) == "ran · 1 of 2 headline target missed"
    assert results.chapter_status(RECORDS["00_first"]) == "ran · 1 of 5 headline no value"
    ok = _record("02_ok", [_row("a", 1.0, target=0.5)])
    assert results.chapter_status(ok) == "ok" == book.chapter_status({"status": "ok"}, ok)
    chance = _record("03_chance", [_row("a", 10.0, baseline=9.8)])
    assert results.chapter_status(chance) == "ran · 1 of 1 headline at chance"


def test_landing_markdown(tmp_path):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "00_first.py").write_text(
        "# ---\n# jupyter: {}\n# ---\n\n# %% [markdown]\n# # The first chapter\n# Subtitle.\n")
    md = results.landing_markdown(RECORDS, root=tmp_path)
    lines = md.splitlines()
    assert lines[0] == ("- **00 · The first chapter**: **ran · 1 of 5 headline no value** "
                        "(run of 2026-12-03, commit `0123456+dirty`)")
    assert lines[1].startswith("- **01 · 01_second**: **ran · 1 of 2 headline target missed**")
    assert "| 00 | accuracy (net, test) | 98.4 % | met |" in lines
    assert "| 01 | top-1 (net, test) | 0.4 | **missed** |" in lines
    assert "`book/results/cpu/`" in md


@pytest.mark.parametrize("value, shown", [
    (98.38665, "98.4"), (88.956, "89.0"), (100.0, "100"), (0.5, "0.5"), (0.0, "0"),
    (0.9427733, "0.943"), (0.0072647, "0.00726"), (-0.0964912, "-0.0965"), (1422, "1422"),
    (12000, "12,000"), (1234.5, "1234"), (0.0001234, "1.23e-04"), (math.nan, "NaN"), (None, ""),
])
def test_number(value, shown):
    assert results.number(value) == shown


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------
def _project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "notebooks").mkdir(parents=True)
    (root / "avlib").mkdir()
    (root / "book").mkdir()
    (root / "_config.yml").write_text("title: t\n")
    for name, title in (("00_first", "First"), ("01_second", "Second")):
        (root / "notebooks" / f"{name}.py").write_text(f"# %% [markdown]\n# # {title}\n")
    (root / "README.md").write_text(
        "# Demo\n\n## Results of the published run\n\n<!-- results:begin -->\nstale numbers\n"
        "<!-- results:end -->\n\nProse.\n")
    (root / "book" / "intro.md").write_text(
        "# Intro\n\n## Results at a glance\n\n<!-- landing:begin -->\n<!-- landing:end -->\n")
    metrics = root / "_build" / "artifacts" / "cpu" / "metrics"
    metrics.mkdir(parents=True)
    for name, record in RECORDS.items():
        record = json.loads(json.dumps(record).replace("NaN", "1.5"))  # as save_metrics writes
        (metrics / f"{name}.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    (metrics / "99_probe.json").write_text("{}")  # not a chapter of the book: not copied
    return root


def test_command_snapshots_regenerates_and_is_idempotent(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("AVLIB_ARTIFACTS", raising=False)
    root = _project(tmp_path)
    snap = root / "book" / "results" / "cpu"
    (snap).mkdir(parents=True)
    (snap / "05_removed.json").write_text("{}")
    monkeypatch.chdir(root)
    assert book.main(["results", "--snapshot"]) == 0
    assert sorted(p.name for p in snap.iterdir()) == ["00_first.json", "01_second.json"]
    for path in snap.iterdir():
        assert path.read_bytes() == (root / "_build/artifacts/cpu/metrics" / path.name).read_bytes()
    readme = (root / "README.md").read_text()
    intro = (root / "book" / "intro.md").read_text()
    assert "stale numbers" not in readme and "| 00_first | net | test | accuracy |" in readme
    assert readme.endswith("<!-- results:end -->\n\nProse.\n")
    assert "- **00 · First**:" in intro and "- **01 · Second**:" in intro
    out = capsys.readouterr().out
    assert "README.md: results block regenerated" in out

    assert book.main(["results"]) == 0  # from the snapshot alone, idempotent
    assert (root / "README.md").read_text() == readme
    assert (root / "book" / "intro.md").read_text() == intro
    assert "README.md: results block unchanged" in capsys.readouterr().out
    markers, block = results.generated_blocks(root)["README.md"]
    assert results.replace_block(readme, markers, block) == readme


def test_command_without_a_snapshot_says_so(tmp_path, monkeypatch, capsys):
    root = _project(tmp_path)
    monkeypatch.chdir(root)
    assert book.main(["results"]) == results.ResultsError.exit_code
    err = capsys.readouterr().err
    assert "no metrics snapshot" in err and "--snapshot" in err


@pytest.mark.parametrize("page, text", [
    ("README.md", "# Demo\n\nNo markers here.\n"),
    ("README.md", "<!-- results:end -->\n<!-- results:begin -->\n"),
    ("book/intro.md", "# Intro\n<!-- landing:begin -->\n"),
    ("book/intro.md", "<!-- landing:begin -->\n<!-- landing:begin -->\n<!-- landing:end -->\n"),
])
def test_a_missing_marker_is_a_clear_error(tmp_path, monkeypatch, page, text):
    monkeypatch.delenv("AVLIB_ARTIFACTS", raising=False)
    root = _project(tmp_path)
    results.take_snapshot("cpu", root)
    (root / page).write_text(text)
    with pytest.raises(results.ResultsError, match=rf"{page}.*marker"):
        results.command("cpu", root=root)
    assert (root / page).read_text() == text, "a page without its markers is left alone"


def test_snapshot_of_the_repository_is_a_copy_of_metrics_files():
    """book/results/cpu/ holds metrics files as save_metrics writes them: sorted keys, indent 2."""
    for path in sorted(results.snapshot_dir("cpu", ROOT).glob("*.json")):
        record = json.loads(path.read_text())
        assert path.read_text() == json.dumps(record, indent=2, sort_keys=True) + "\n", path.name
