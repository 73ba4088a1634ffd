"""Progress bars for long work: live in a terminal and a live notebook, one line in the book.

Two modes, chosen by the ``AVLIB_PROGRESS`` environment variable:

- ``live`` (the default): a text bar (``tqdm.std``) on stdout. Notebook widget bars are saved in
  their initial empty state and would show "0/N" in the published HTML, while a text bar's last
  line is its final state.
- ``summary``: set by the book runner (``avlib book run``) for the kernels it starts. The bar
  draws nothing while it runs and prints one line when it closes, e.g.
  ``training: 1400 steps in 385 s (3.6 step/s) · loss=0.3680``, so the executed book shows one
  line per long step instead of a wall of bar updates.

Either way :func:`progress_bar` returns a ``tqdm`` object: ``update``, ``set_postfix``,
``set_postfix_str``, iteration and ``close`` work the same in both modes.
"""
from __future__ import annotations

import io
import os
import sys

from tqdm.std import tqdm

#: Environment variable selecting the mode; the book runner sets it to ``summary``.
PROGRESS_ENV = "AVLIB_PROGRESS"
MODES = ("live", "summary")


def progress_mode() -> str:
    """``"live"`` or ``"summary"`` (from ``$AVLIB_PROGRESS``; anything else counts as live)."""
    mode = os.environ.get(PROGRESS_ENV, "live").strip().lower()
    return mode if mode in MODES else "live"


def live_bars() -> bool:
    """Whether bars draw live (a terminal or a live notebook). A cell that prints its own
    one-line summary of a long step passes ``progress=live_bars()``, so the executed book
    shows that line alone while readers still watch a bar."""
    return progress_mode() == "live"


def _plural(unit: str, n: float) -> str:
    if n == 1 or unit in ("it", "B") or unit.endswith("s"):
        return unit
    return unit + "s"


def _seconds(s: float) -> str:
    return f"{s:.1f} s" if s < 10 else f"{s:.0f} s"


def summary_line(desc: str | None, n: int, total: int | None, elapsed: float, unit: str = "it",
                 initial: int = 0, postfix: str | None = None) -> str:
    """The one line a finished bar prints in summary mode.

    ``n`` counts from ``initial`` (work done before a resume): the rate covers this run only.
    """
    done = n - initial
    text = f"{desc}: " if desc else ""
    text += f"{done} {_plural(unit, done)} in {_seconds(elapsed)}"
    if done > 0 and elapsed > 0:
        rate = done / elapsed
        if rate >= 100:
            text += f" ({rate:,.0f} {unit}/s)"
        elif rate >= 1:
            text += f" ({rate:.3g} {unit}/s)"
        else:
            text += f" ({1 / rate:.3g} s/{unit})"
    notes = []
    if initial:
        notes.append(f"resumed at {initial}")
    if total is not None and n < total:
        notes.append(f"stopped at {n} of {total}")
    if notes:
        text += f" [{'; '.join(notes)}]"
    if postfix:
        text += f" · {postfix}"
    return text


class SummaryBar(tqdm):
    """A ``tqdm`` that draws nothing while running and prints :func:`summary_line` on close."""

    def __init__(self, *args, summary_file=None, **kwargs):
        self._summary_file = summary_file or sys.stdout
        self._summarised = False
        kwargs["file"] = io.StringIO()  # the live drawing goes nowhere
        kwargs["mininterval"] = kwargs.get("mininterval", 3600.0)
        super().__init__(*args, **kwargs)

    def close(self):
        if self.disable or self._summarised:
            return super().close()
        self._summarised = True
        d = self.format_dict
        postfix = d.get("postfix") or None
        line = summary_line(d.get("prefix"), d["n"], d.get("total"), d["elapsed"], d["unit"],
                            d.get("initial") or 0, postfix)
        super().close()
        print(line, file=self._summary_file, flush=True)


def progress_bar(total: int | None = None, desc: str | None = None, unit: str = "it",
                 disable: bool = False, **kwargs) -> tqdm:
    """A progress bar on stdout (so notebooks keep it with the cell's output).

    Live text bar, or one summary line on close when ``$AVLIB_PROGRESS`` is ``summary`` (the
    executed book). ``kwargs`` go to ``tqdm`` (``initial``, ``iterable``, ...).
    """
    if progress_mode() == "summary":
        summary_file = kwargs.pop("file", None)
        kwargs.pop("dynamic_ncols", None)
        return SummaryBar(total=total, desc=desc, unit=unit, disable=disable,
                          summary_file=summary_file, **kwargs)
    kwargs.setdefault("file", sys.stdout)
    # A notebook or a CI log keeps every update: refresh rarely there, often in a terminal.
    kwargs.setdefault("mininterval", 1.0 if sys.stdout.isatty() else 15.0)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(total=total, desc=desc, unit=unit, disable=disable, **kwargs)
