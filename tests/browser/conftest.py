"""The built smoke book checked in headless Chromium (``bookcheck.py`` here says what is checked).

These tests need the smoke book built (``make smoke-book``) and a Chromium on the PATH (or
``$CHROMIUM``), so the unit stage does not collect them: files in this folder are collected only
when the pytest command line names this folder or a file in it. ``make unit`` (``pytest -q``,
``testpaths = ["tests"]``) and ``pytest tests`` leave them out; ``make browser-check`` runs
``pytest tests/browser``, in ``make test`` after ``make smoke-book``. There they fail, never skip,
when the book or the browser is missing.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from . import bookcheck


PROFILE = "smoke"



@pytest.fixture(scope="session")
def browser():
    try:
        with bookcheck.SyncBrowser() as b:
            yield b
    except bookcheck.BrowserError as err:
        pytest.fail(str(err))


@pytest.fixture(scope="session")
def book_html() -> Path:
    from avlib import book

    html = book.html_dir(PROFILE)
    if not (html / "index.html").is_file():
        pytest.fail(f"no smoke book at {html}: run `make smoke-book` first")
    return html


@pytest.fixture(scope="session")
def book_results(browser, book_html) -> dict[str, bookcheck.PageResult]:
    """Every page of the smoke book, checked once; screenshots in _build/browser/smoke/."""
    results = bookcheck.check_profile(PROFILE, browser=browser)
    print("\n" + bookcheck.summary(results))
    return {r.page: r for r in results}
