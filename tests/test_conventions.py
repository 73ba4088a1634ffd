"""Repository conventions: notebook skeleton, parameters cell, profiles, environment files."""
from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import jupytext
import pytest
import yaml

from avlib import book

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = book.find_chapters(ROOT)
SKELETON = ("overview", "setup", "parameters", "results", "summary", "exercises", "references")


def test_there_are_chapters():
    assert CHAPTERS, "the book has no chapter under notebooks/"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda c: c.name)
def test_notebook_header_and_parameters(chapter):
    nb = jupytext.read(chapter.path)
    ks = nb.metadata.get("kernelspec", {})
    assert ks.get("name") == "python3" and ks.get("language") == "python", \
        "papermill needs a kernelspec (name python3, language python) in the jupytext header"
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell must be tagged 'parameters'"
    params = chapter.parameters()
    for name in book.REQUIRED_PARAMETERS:
        assert name in params, f"the parameters cell must declare {name}"
    # derived values come after the parameters cell, so it must hold plain assignments only
    for line in tagged[0].source.splitlines():
        stripped = line.split("#", 1)[0].strip()
        assert not stripped or re.match(r"^[A-Za-z_]\w*\s*=", stripped), \
            f"the parameters cell holds only assignments, got {line!r}"
    meta = chapter.metadata
    for profile in ("smoke", "cpu", "gpu"):
        assert meta.get("expected_seconds", {}).get(profile), \
            f"declare expected_seconds.{profile} under jupyter.avlib in the header"
    assert meta["expected_seconds"]["smoke"] <= 60, "a smoke run must take at most 60 s"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda c: c.name)
def test_notebook_skeleton(chapter):
    nb = jupytext.read(chapter.path)
    md = [c.source for c in nb.cells if c.cell_type == "markdown"]
    assert md and md[0].lstrip().startswith("# "), "the first cell is the title"
    assert len([ln for ln in md[0].strip().splitlines() if ln.strip()]) >= 2, \
        "title followed by a one-line subtitle"
    headings = [ln[3:].strip().lower() for cell in md for ln in cell.splitlines()
                if ln.startswith("## ")]
    positions = []
    for part in SKELETON:
        hits = [i for i, h in enumerate(headings) if h.startswith(part)]
        assert hits, f"missing '## {part.title()}' section"
        positions.append(hits[0])
    assert positions == sorted(positions), f"sections must come in the order {SKELETON}"
    text = "\n".join(md)
    assert re.search(r"\{(foot)?cite(:\w+)?\}`", text), "cite the papers where they are introduced"
    assert ":filter: docname in docnames" in text, "end with the chapter's own reference list"


def test_chapters_have_unique_numbers():
    numbers = [c.name[:2] for c in CHAPTERS]
    assert len(numbers) == len(set(numbers))


def test_needs_refer_to_earlier_chapters():
    names = [c.name for c in CHAPTERS]
    for i, c in enumerate(CHAPTERS):
        for need in c.needs:
            assert need in names[:i], f"{c.name} needs {need}, which is not an earlier chapter"


@pytest.mark.parametrize("profile", ["smoke", "cpu", "gpu"])
def test_profiles_match_chapters(profile):
    prof = book.load_profile(profile, ROOT)
    names = {c.name: c for c in CHAPTERS}
    for chapter_name, section in prof["chapters"].items():
        assert chapter_name in names, f"profile {profile} configures unknown chapter {chapter_name}"
    for chapter in CHAPTERS:
        declared = chapter.parameters()
        params = book.chapter_parameters(chapter, declared, profile, prof, {}, ROOT / "_build")
        assert params["profile"] == profile


def test_every_chapter_in_toc():
    toc = (ROOT / "book" / "_toc.yml").read_text()
    for chapter in CHAPTERS:
        assert f"notebooks/{chapter.name}" in toc
    for page in ("book/status", "book/bibliography"):
        assert page in toc


def test_no_tracked_ipynb():
    tracked = subprocess.run(["git", "ls-files", "*.ipynb"], cwd=ROOT, capture_output=True,
                             text=True).stdout.split()
    assert tracked == [], f"executed/paired notebooks are artifacts, never tracked: {tracked}"


def _req_name(req: str) -> str:
    return re.split(r"[<>=!~ ;\[]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        wanted.update(extra)
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    listed = {p for p in pip if not p.startswith("-")}
    norm = lambda reqs: {_req_name(r): r.replace(" ", "").replace("_", "-").lower() for r in reqs}
    assert norm(listed) == norm(wanted), "environment.yml and pyproject.toml name different dependencies"


def test_bibliography_has_every_paper():
    bib = (ROOT / "book" / "references.bib").read_text()
    keys = set(re.findall(r"@\w+\{([^,]+),", bib))
    for key in ("chung2016syncnet", "prajwal2020wav2lip", "kadandale2022vocalist",
                "chen2024mtdvocalist", "kim2021vcagan", "ahn2024syncvsr", "kim2021mmab",
                "afouras2018lrs2", "afouras2018lrs3", "chung2016lrw", "cooke2006grid",
                "montesinos2021acappella"):
        assert key in keys


def test_cited_keys_exist():
    bib = (ROOT / "book" / "references.bib").read_text()
    keys = set(re.findall(r"@\w+\{([^,]+),", bib))
    sources = [c.path.read_text() for c in CHAPTERS] + [p.read_text() for p in (ROOT / "book").glob("*.md")]
    for text in sources:
        for group in re.findall(r"\{(?:foot)?cite(?::\w+)?\}`([^`]+)`", text):
            for key in group.split(","):
                assert key.strip() in keys, f"unknown citation key {key!r}"


def test_ci_calls_make_test():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make book" in readme
