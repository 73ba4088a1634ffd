"""The built book renders its maths and widgets offline: MathJax and the ipywidgets manager come
from files vendored under book/_static/vendor/ (see its README), not from CDNs, and no page
declares sphinx-thebe's THEBE_JS_URL twice.

Static checks of _config.yml and the vendored files, then a tiny jupyter-book (one markdown page
with maths, one notebook with a saved widget state) built with the project's _config.yml."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
SPHINX = CONFIG["sphinx"]["config"]
VENDOR = ROOT / "book" / "_static" / "vendor"
#: What must never be fetched at read time (HTML of the built pages).
CDN_MARKERS = ("cdn.jsdelivr", "cdnjs", "unpkg.com", "mathjax@", "require.min.js",
               "html-manager@", "thebe@")
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def static_file(relative: str) -> Path:
    """The source file behind a `_static/`-relative path, searched in html_static_path."""
    for folder in SPHINX["html_static_path"]:
        path = ROOT / folder / relative
        if path.is_file():
            return path
    raise AssertionError(f"{relative} is in no html_static_path folder {SPHINX['html_static_path']}")


# --------------------------------------------------------------------------------------------
# Configuration and vendored files
# --------------------------------------------------------------------------------------------
def test_mathjax_is_served_from_the_build():
    path = SPHINX["mathjax_path"]
    assert "://" not in path and not path.startswith("/"), "mathjax_path must be a local _static path"
    script = static_file(path)
    assert script.name == "tex-svg.js" and script.stat().st_size > 1_000_000
    assert b"3.2.2" in script.read_bytes(), "the README records MathJax 3.2.2"
    # TeX extensions MathJax autoloads from next to its script ([mathjax]/input/tex/extensions)
    ext = script.parent / "input" / "tex" / "extensions"
    for name in ("cancel", "boldsymbol", "color", "mathtools", "mhchem", "ams", "bbox"):
        assert (ext / f"{name}.js").is_file(), f"MathJax extension {name} is not vendored"
    assert (script.parent / "LICENSE").read_text().lstrip().startswith("Apache License")


def test_widget_manager_is_served_from_the_build():
    entries = SPHINX["nb_ipywidgets_js"]
    assert entries, "nb_ipywidgets_js must replace myst-nb's CDN defaults"
    for url, attrs in entries.items():
        assert "://" not in url and not url.startswith("/"), f"{url} must be a local _static path"
        assert "crossorigin" not in attrs and "integrity" not in attrs, \
            "crossorigin makes the load a CORS request, which fails from file://"
        assert not any(k.startswith("data-jupyter-widgets-cdn") for k in attrs)
    (url,) = entries  # the non-AMD bundle: no require.js, no module loader, no CDN fallback
    embed = static_file(url)
    assert embed.name == "embed.js" and embed.stat().st_size > 1_000_000
    text = embed.read_text(encoding="utf8")
    # the bundle renders the page's widget state itself, without a loader
    assert "_jupyter_widget_embedder" in text and WIDGET_STATE in text
    # the icon fonts webpack resolves next to embed.js: the WOFF2 ones are vendored
    woff2 = set(re.findall(r"[0-9a-f]{20}\.woff2", text))
    assert woff2, "embed.js references no WOFF2 font"
    for name in woff2:
        assert (embed.parent / name).is_file(), f"font {name} used by embed.js is not vendored"
    assert "Project Jupyter Contributors" in (embed.parent / "LICENSE").read_text()  # BSD-3


def test_vendored_assets_are_documented_and_small():
    readme = (VENDOR / "README.md").read_text()
    for what in ("mathjax", "3.2.2", "Apache-2.0", "@jupyter-widgets/html-manager", "1.0.15",
                 "BSD-3-Clause"):
        assert what in readme, f"book/_static/vendor/README.md does not mention {what}"
    total = sum(p.stat().st_size for p in VENDOR.rglob("*") if p.is_file())
    assert 3_000_000 < total < 5_500_000, f"vendored assets weigh {total / 1e6:.1f} MB"


def test_shim_for_widget_labels_is_loaded():
    (shim,) = SPHINX["html_js_files"]
    assert "MathJax.Hub" in static_file(shim).read_text()


def test_extensions_are_jupyter_books_without_thebe():
    config = pytest.importorskip("jupyter_book.config")
    defaults = config.get_default_sphinx_config()["extensions"]
    assert "sphinx_thebe" in defaults
    expected = [e for e in defaults if e != "sphinx_thebe"] + ["sphinxcontrib.bibtex"]
    assert SPHINX["extensions"] == expected, \
        "sphinx.config.extensions replaces jupyter-book's list: keep it equal to its defaults " \
        "without sphinx_thebe (plus sphinxcontrib.bibtex for bibtex_bibfiles)"
    final, _ = config.get_final_config(user_yaml=ROOT / "_config.yml",
                                       cli_config={"latex_individualpages": False},
                                       sourcedir=ROOT)
    assert "sphinx_thebe" not in final["extensions"]
    assert final["mathjax_path"] == SPHINX["mathjax_path"]
    # jupyter-book adds every .js under html_static_path to every page when a top-level _static/
    # exists: that would load all vendored files (MathJax extensions included) everywhere
    assert final.get("html_js_files") == SPHINX["html_js_files"]


def test_widget_protocol_matches_the_vendored_manager():
    """html-manager 1.0.x reads ipywidgets 8 state (protocol 2): update both together."""
    embed = pytest.importorskip("ipywidgets.embed")
    import ipywidgets

    data = embed.embed_data(views=[ipywidgets.IntSlider(value=3)])
    assert data["manager_state"]["version_major"] == 2
    assert data["view_specs"][0]["version_major"] == 2


# --------------------------------------------------------------------------------------------
# A tiny book built with the project's configuration
# --------------------------------------------------------------------------------------------
def widget_notebook() -> dict:
    """A notebook whose one output is an IntSlider with its state saved, as papermill leaves it."""
    import ipywidgets
    import nbformat
    from ipywidgets.embed import embed_data

    data = embed_data(views=[ipywidgets.IntSlider(value=3, min=0, max=10, description="shift")])
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata.widgets = {WIDGET_STATE: data["manager_state"]}
    cell = nbformat.v4.new_code_cell("slider", execution_count=1)
    cell.outputs = [nbformat.v4.new_output("execute_result", execution_count=1, data={
        WIDGET_VIEW: data["view_specs"][0], "text/plain": "IntSlider(value=3)"})]
    nb.cells = [nbformat.v4.new_markdown_cell("# Widgets\n\n$$ y = x^2 $$"), cell]
    return nb


def scripts(page: Path) -> list[str]:
    return re.findall(r"<script\b[^>]*\bsrc=\"([^\"]+)\"", page.read_text())


def local_target(page: Path, src: str) -> Path:
    return (page.parent / src.split("?", 1)[0]).resolve()


@pytest.fixture(scope="module")
def tiny_book(tmp_path_factory) -> Path:
    pytest.importorskip("jupyter_book")
    pytest.importorskip("ipywidgets")
    import nbformat

    root = tmp_path_factory.mktemp("offline") / "book_root"
    (root / "book").mkdir(parents=True)
    shutil.copy(ROOT / "_config.yml", root / "_config.yml")
    for folder in SPHINX["html_static_path"]:
        shutil.copytree(ROOT / folder, root / folder)
    for bib in CONFIG.get("bibtex_bibfiles", []):
        shutil.copy(ROOT / bib, root / bib)
    (root / "book" / "intro.md").write_text("# Intro\n\nInline maths: $x^2$.\n")
    nbformat.write(widget_notebook(), root / "book" / "widgets.ipynb")
    (root / "book" / "_toc.yml").write_text(
        "format: jb-book\nroot: book/intro\nchapters:\n  - file: book/widgets\n")
    cmd = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(root),
           "--toc", str(root / "book" / "_toc.yml"), "--config", str(root / "_config.yml"),
           "-W", "-n", "--keep-going", "-q"]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"jupyter-book failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return root / "_build" / "html"


def pages(html: Path) -> list[Path]:
    return [p for p in html.rglob("*.html") if "_static" not in p.relative_to(html).parts]


def test_tiny_book_has_no_cdn_and_one_thebe_at_most(tiny_book):
    found = pages(tiny_book)
    assert len(found) >= 3  # index, intro, widgets (+ genindex, search)
    for page in found:
        text = page.read_text()
        for marker in CDN_MARKERS:
            assert marker not in text, f"{page.name} still refers to {marker}"
        assert text.count("THEBE_JS_URL") <= 1, f"{page.name} declares THEBE_JS_URL twice"
        for src in scripts(page):
            assert "://" not in src, f"{page.name} loads a remote script {src}"
            assert local_target(page, src).is_file(), f"{page.name}: {src} is not in the build"


def test_tiny_book_loads_the_vendored_mathjax(tiny_book):
    static = (tiny_book / "_static").resolve()
    for name in ("intro.html", "widgets.html"):
        page = tiny_book / "book" / name
        targets = [local_target(page, s) for s in scripts(page)]
        assert static / "vendor" / "mathjax" / "tex-svg.js" in targets, name
    assert (static / "vendor" / "mathjax" / "input" / "tex" / "extensions" / "cancel.js").is_file()


def test_tiny_book_renders_the_saved_widget_with_the_vendored_manager(tiny_book):
    page = tiny_book / "book" / "widgets.html"
    text = page.read_text()
    targets = [local_target(page, s) for s in scripts(page)]
    static = (tiny_book / "_static").resolve()
    embed = static / "vendor" / "html-manager" / "embed.js"
    assert embed in targets and static / "widgets-mathjax3.js" in targets
    assert not any(t.name.startswith("require") for t in targets), "embed.js needs no require.js"
    # the state in the head and the view where the output was: what embed.js renders at load
    state = re.search(r'<script type="%s">(.*?)</script>' % re.escape(WIDGET_STATE), text, re.S)
    assert state and json.loads(state.group(1))["version_major"] == 2
    assert f'<script type="{WIDGET_VIEW}">' in text
    assert text.index(WIDGET_STATE) < text.index(WIDGET_VIEW)
    for font in embed.parent.glob("*.woff2"):
        assert font.stat().st_size > 1000
