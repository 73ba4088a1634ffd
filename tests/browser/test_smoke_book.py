"""Every page of the built smoke book, opened from file:// in headless Chromium, has no problem
(console errors, broken images or links, media that cannot play, maths MathJax did not typeset,
widgets not rendered, chapters without outputs). Screenshots: _build/browser/smoke/."""
from __future__ import annotations

import pytest

from avlib import book

from . import bookcheck

PROFILE = "smoke"
HTML = book.html_dir(PROFILE)
PAGES = ([p.relative_to(HTML).as_posix() for p in bookcheck.book_pages(HTML)]
         if HTML.is_dir() else [])


def test_the_book_is_built_with_every_chapter(book_html, book_results):
    chapters = bookcheck.chapter_pages(PROFILE, book_html)
    assert chapters and PAGES, "no chapters or no pages"
    missing = [c.relative_to(book_html).as_posix() for c in chapters if not c.is_file()]
    assert not missing, f"chapter pages missing from the book: {missing}"


@pytest.mark.parametrize("page", PAGES)
def test_page(page, book_results):
    result = book_results[page]
    if result.problems:
        pytest.fail(f"{page}:\n  " + "\n  ".join(result.problems), pytrace=False)
    assert result.screenshot, f"{page}: no screenshot"
