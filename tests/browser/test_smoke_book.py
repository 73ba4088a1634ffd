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


@pytest.mark.parametrize("chapter", ["00_corpus", "02_syncnet"])
def test_the_chapters_widgets_show_their_saved_state(chapter, book_html, book_results):
    """The scrubber (00) and the audio-shift slider (02) reach the page and render from their
    embedded state, not as a bare "VBox(...)" text or a gap."""
    page = next((p for p in book_results if p.endswith(f"{chapter}.html")), None)
    assert page, f"no page for {chapter}"
    stats = book_results[page].stats
    assert stats.get("widgets", 0) >= 1, f"{page}: no widget view on the page"
    assert stats.get("widgets_unrendered") == 0, f"{page}: {stats}"
    assert stats.get("widget_errors") == 0, f"{page}: {stats}"
