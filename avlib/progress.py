"""Progress bars for long work, readable in a terminal, a live notebook and the static book.

Text bars (``tqdm.std``) everywhere: notebook widget bars are saved in their initial empty state
and would show "0/N" in the published HTML, while a text bar's last line is its final state.
"""
from __future__ import annotations

import sys

from tqdm.std import tqdm


def progress_bar(total: int | None = None, desc: str | None = None, unit: str = "it",
                 disable: bool = False, **kwargs) -> tqdm:
    """A text progress bar on stdout (so notebooks keep it with the cell's output)."""
    kwargs.setdefault("file", sys.stdout)
    # A notebook or a CI log keeps every update: refresh rarely there, often in a terminal.
    kwargs.setdefault("mininterval", 1.0 if sys.stdout.isatty() else 15.0)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(total=total, desc=desc, unit=unit, disable=disable, **kwargs)
