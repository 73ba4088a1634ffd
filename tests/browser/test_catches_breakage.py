"""The browser check fails when the book is broken: each test breaks one thing in a copy of the
built smoke book, checks the pages concerned, and expects the matching problem, one the same
page of the intact book does not have."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from . import bookcheck

PROFILE = "smoke"


@pytest.fixture
def copy(tmp_path, book_html) -> Path:
    """A private copy of the built HTML book to break."""
    return Path(shutil.copytree(book_html, tmp_path / "html"))


def chapter(html: Path, number: str) -> Path:
    (page,) = [p for p in bookcheck.chapter_pages(PROFILE, html) if p.name.startswith(number)]
    return page


def check(browser, html: Path, *pages: Path, chapters=()) -> dict[str, bookcheck.PageResult]:
    results = bookcheck.check_book(html, list(chapters), None, pages=list(pages), browser=browser)
    return {r.page: r for r in results}


def expect(results, book_results, page: str, *patterns: str) -> None:
    """Each pattern (a regex) matches a problem of ``page`` and none of the intact book's."""
    found, before = results[page].problems, book_results.get(page)
    print(f"{page}:", *found, sep="\n  ")  # shown by pytest -rP
    before = before.problems if before else []
    for pattern in patterns:
        assert any(re.search(pattern, p) for p in found), \
            f"{page}: no problem matches {pattern!r}; problems: {found}"
        assert not any(re.search(pattern, p) for p in before), \
            f"{page}: the intact book already has a problem matching {pattern!r}"


def edit(path: Path, old: str | re.Pattern, new: str, count: int = 1) -> None:
    text = path.read_text(encoding="utf8")
    changed = (old.sub(new, text, count) if isinstance(old, re.Pattern)
               else text.replace(old, new, count))
    assert changed != text, f"nothing to replace in {path}"
    path.write_text(changed, encoding="utf8")


def test_a_missing_image_fails(browser, copy, book_results):
    page = chapter(copy, "02")
    src = re.search(r'<img[^>]+src="([^"]*_images/[^"]+)"', page.read_text()).group(1)
    (page.parent / src).unlink()
    name = Path(src).name
    results = check(browser, copy, page)
    expect(results, book_results, page.relative_to(copy).as_posix(),
           rf"broken image: .*{name}", rf"broken link: <img src> .*{name}: no such file",
           r"console error: .*ERR_FILE_NOT_FOUND")


def test_a_script_error_fails(browser, copy, book_results):
    page = copy / "book" / "intro.html"
    edit(page, "</body>", '<script>throw new Error("bookcheck-x")</script></body>')
    results = check(browser, copy, page)
    expect(results, book_results, "book/intro.html", r"console error: uncaught Error: bookcheck-x")


def test_a_console_error_fails(browser, copy, book_results):
    page = copy / "book" / "bibliography.html"
    edit(page, "</body>", '<script>console.error("bookcheck-y")</script></body>')
    results = check(browser, copy, page)
    expect(results, book_results, "book/bibliography.html",
           r"console error: console\.error: bookcheck-y")


def test_broken_links_fail(browser, copy, book_results):
    page = copy / "book" / "intro.html"
    edit(page, "</main>", '<a href="no-such-page.html">x</a>'
                          '<a href="bibliography.html#no-such-anchor">y</a>'
                          '<a href="#no-such-id">z</a></main>')
    results = check(browser, copy, page)
    expect(results, book_results, "book/intro.html",
           r"broken link: <a href> book/no-such-page\.html: no such file",
           r"broken link: <a href> book/bibliography\.html#no-such-anchor: no id",
           r"broken link: <a href> book/intro\.html#no-such-id: no id")


def test_a_missing_chapter_page_fails(browser, copy, book_results):
    chapters = bookcheck.chapter_pages(PROFILE, copy)
    gone = chapter(copy, "07")
    gone.unlink()
    intro = copy / "book" / "intro.html"
    results = check(browser, copy, intro, chapters=chapters)
    gone_rel = gone.relative_to(copy).as_posix()
    assert results[gone_rel].problems == ["chapter page missing from the book"]
    expect(results, book_results, "book/intro.html",
           rf"broken link: <a href> {re.escape(gone_rel)}: no such file")


def test_media_that_cannot_play_fail(browser, copy, book_results):
    page = chapter(copy, "00")
    text = page.read_text()
    assert "<audio" in text and "<video" in text
    edit(page, re.compile(r"(data:(?:audio|video)/[a-z0-9.-]+;base64,)[A-Za-z0-9+/=]+"),
         r"\1AAAAAAAAAAAAAAAAAAAAAAAA", count=0)
    results = check(browser, copy, page, chapters=[page])
    rel = page.relative_to(copy).as_posix()
    expect(results, book_results, rel, r"<audio> cannot play", r"<video> cannot play")


def test_a_chapter_without_outputs_fails(browser, copy, book_results):
    from bs4 import BeautifulSoup

    page = chapter(copy, "01")
    soup = BeautifulSoup(page.read_text(encoding="utf8"), "html.parser")
    outputs = soup.select(".cell_output")
    assert outputs
    for node in outputs:
        node.decompose()
    page.write_text(str(soup), encoding="utf8")
    results = check(browser, copy, page, chapters=[page])
    expect(results, book_results, page.relative_to(copy).as_posix(),
           r"chapter page without executed outputs")


def test_a_tex_error_fails(browser, copy, book_results):
    page = chapter(copy, "02")
    edit(page, re.compile(r'(<span class="math notranslate nohighlight">)\\\(.*?\\\)'),
         r"\1\\(\\frac{1}\\)")  # \frac without its second argument
    results = check(browser, copy, page)
    expect(results, book_results, page.relative_to(copy).as_posix(),
           r"MathJax error: Missing argument for \\frac")


def test_missing_mathjax_fails(browser, copy, book_results):
    (copy / "_static" / "vendor" / "mathjax" / "tex-svg.js").unlink()
    page = chapter(copy, "02")
    results = check(browser, copy, page)
    expect(results, book_results, page.relative_to(copy).as_posix(),
           r"maths not typeset by MathJax", r"console error: .*ERR_FILE_NOT_FOUND",
           r"broken link: <script src> _static/vendor/mathjax/tex-svg\.js")


def test_missing_widget_manager_fails(browser, copy, book_results):
    (copy / "_static" / "vendor" / "html-manager" / "embed.js").unlink()
    page = chapter(copy, "04")
    assert "application/vnd.jupyter.widget-view+json" in page.read_text()
    results = check(browser, copy, page)
    expect(results, book_results, page.relative_to(copy).as_posix(),
           r"widget views not rendered")
