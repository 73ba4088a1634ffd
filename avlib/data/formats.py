"""Text formats of the audio-visual speech datasets: GRID ``.align``, LRW and LRS2/LRS3 ``.txt``.

GRID ``.align`` (one file per sentence, ``s<N>/align/<id>.align``): one segment per line,
``start end word``, with integer times in units of 1/25000 s (a 3-s sentence spans 0..75000).
Leading and trailing silences are ``sil``, pauses between words ``sp``::

    0 23750 sil
    23750 29500 bin
    ...
    57500 74500 now
    74500 75000 sil

LRW ``.txt`` (next to each ``<WORD>_<5-digit>.mp4``): ``Key: value`` lines, of which
``Text: <WORD>`` and ``Duration: <x.xx> seconds`` (the word's duration, centred in the 1.16-s
clip) are used; other lines (``Conf: ...``) are kept as they come.

LRS2/LRS3 ``.txt``: ``Text:  <TRANSCRIPT>`` and ``Conf:  <n>`` (LRS3 adds ``Ref:``), and for
the long ``pretrain`` clips a word table after a ``WORD START END ASDSCORE`` header, one
``WORD start end score`` line per word, times in seconds from the clip start.

Reading policy: all readers accept CRLF and LF line ends, a UTF-8 byte-order mark and blank
lines. Bytes that are not valid UTF-8 are decoded with the replacement character (U+FFFD)
rather than rejected, and the result says so (``"decode_errors": True`` for the LRW/LRS
readers; :func:`read_grid_align` raises instead, since GRID files are pure ASCII and broken
bytes there mean a damaged file). Missing or malformed required fields raise
:class:`FormatError` naming the file and the line. Writers are atomic: they write a
temporary file in the same folder and ``os.replace`` it onto the target.
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Sequence

from avlib.artifacts import atomic_write_text
from avlib.corpus.speech import Segment

GRID_TIME_UNITS_PER_S = 25000
"""GRID ``.align`` time unit: 1/25000 s."""
GRID_CLIP_S = 3.0
"""Length of a GRID sentence clip (s): the trailing ``sil`` of written files reaches it."""
GRID_SILENCE = "sil"
GRID_SHORT_PAUSE = "sp"
LRS_WORD_HEADER = ("WORD", "START", "END", "ASDSCORE")


class FormatError(ValueError):
    """A dataset text file is missing a field, is malformed, or cannot be written."""


# ---------------------------------------------------------------------------- shared helpers


def _atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomic write that refuses to create folders (a dataset file goes next to its media)."""
    try:
        return atomic_write_text(path, text, make_parents=False)
    except FileNotFoundError as err:
        raise FormatError(str(err)) from None


def _read_lines(path: str | os.PathLike) -> tuple[list[str], bool]:
    """Lines of a text file without line ends, and whether any bytes were not valid UTF-8."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FormatError(f"{path}: file not found") from None
    try:
        text = data.decode("utf-8")
        bad_bytes = False
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
        bad_bytes = True
    if text.startswith("\ufeff"):
        text = text[1:]
    # splitlines() would also split on form feeds and other separators; only CR/LF count here.
    return re.split(r"\r\n|\r|\n", text), bad_bytes


def _check_word(word: str, what: str) -> str:
    if not isinstance(word, str) or not word.strip():
        raise FormatError(f"{what} must be a non-empty string, got {word!r}")
    if any(ch in word for ch in "\r\n"):
        raise FormatError(f"{what} must be a single line, got {word!r}")
    return word.strip()


# ---------------------------------------------------------------------------- GRID .align


def write_grid_align(
    path: str | os.PathLike, words: Sequence[Segment], duration_s: float | None = None
) -> Path:
    """Write a GRID ``.align`` file for word segments (seconds), filling the silences.

    Times are rounded to 1/25000 s. A ``sil`` segment runs from 0 to the first word and from
    the last word to ``duration_s`` (default: the GRID clip length of 3 s, or the last word's
    end if that is later); gaps between words become ``sp``. Words must be in time order
    without overlaps and contain no whitespace.
    """
    if not words:
        raise FormatError("write_grid_align needs at least one word segment")
    units = GRID_TIME_UNITS_PER_S
    rows: list[tuple[int, int, str]] = []
    cursor = 0
    for seg in words:
        label = _check_word(seg.label, "GRID word")
        if any(ch.isspace() for ch in label):
            raise FormatError(f"GRID words cannot contain spaces, got {label!r}")
        if not (math.isfinite(seg.start) and math.isfinite(seg.end)) or seg.start < 0:
            raise FormatError(f"word {label!r} has invalid times {seg.start}..{seg.end}")
        start, end = round(seg.start * units), round(seg.end * units)
        if end <= start:
            raise FormatError(f"word {label!r} must end after it starts ({seg.start}..{seg.end} s)")
        if start < cursor:
            raise FormatError(
                f"word {label!r} starts at {seg.start} s, before the previous word ends; "
                "sort the words and remove overlaps"
            )
        if start > cursor:
            rows.append((cursor, start, GRID_SILENCE if not rows else GRID_SHORT_PAUSE))
        rows.append((start, end, label))
        cursor = end
    clip_end = round((GRID_CLIP_S if duration_s is None else duration_s) * units)
    if duration_s is not None and clip_end < cursor:
        raise FormatError(
            f"duration_s={duration_s} ends before the last word ({cursor / units} s)"
        )
    clip_end = max(clip_end, cursor)
    if clip_end > cursor:
        rows.append((cursor, clip_end, GRID_SILENCE))
    text = "".join(f"{start} {end} {label}\n" for start, end, label in rows)
    return _atomic_write_text(path, text)


def read_grid_align(path: str | os.PathLike, keep_silence: bool = True) -> list[Segment]:
    """Read a GRID ``.align`` file into segments with times in seconds.

    With ``keep_silence=False`` the ``sil`` and ``sp`` segments are left out, leaving the words.
    """
    lines, bad_bytes = _read_lines(path)
    if bad_bytes:
        raise FormatError(f"{path}: not a GRID .align file (bytes that are not UTF-8 text)")
    segments = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 3:
            raise FormatError(f"{path}:{number}: expected 'start end word', got {line!r}")
        try:
            start, end = int(fields[0]), int(fields[1])
        except ValueError:
            raise FormatError(
                f"{path}:{number}: times must be integers in 1/25000 s, got {line!r}"
            ) from None
        if end < start:
            raise FormatError(f"{path}:{number}: segment ends before it starts: {line!r}")
        label = fields[2]
        if keep_silence or label not in (GRID_SILENCE, GRID_SHORT_PAUSE):
            segments.append(
                Segment(label, start / GRID_TIME_UNITS_PER_S, end / GRID_TIME_UNITS_PER_S)
            )
    if not segments and keep_silence:
        raise FormatError(f"{path}: empty GRID .align file")
    return segments


# ---------------------------------------------------------------------------- LRW / LRS .txt

_KEY_VALUE = re.compile(r"^\s*([A-Za-z][A-Za-z ]*?)\s*:\s?(.*)$")
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(?:s|sec|secs|seconds?)?\s*$")


def _parse_header(path, lines: list[str], strict: bool) -> tuple[dict[str, str], int]:
    """``Key: value`` lines until the LRS word table (or the end): (fields, index after).

    strict: raise on a line that is not ``Key: value``; otherwise skip it.
    """
    fields: dict[str, str] = {}
    for index, line in enumerate(lines):
        if line.split() == list(LRS_WORD_HEADER):
            return fields, index + 1
        if not line.strip():
            continue
        match = _KEY_VALUE.match(line)
        if match is None:
            if not strict:
                continue
            raise FormatError(
                f"{path}:{index + 1}: expected 'Key: value' or the "
                f"'{' '.join(LRS_WORD_HEADER)}' header, got {line!r}"
            )
        fields[match.group(1).strip().lower()] = match.group(2).strip()
    return fields, len(lines)


def write_lrw_txt(
    path: str | os.PathLike, word: str, duration_s: float, conf: float | None = None
) -> Path:
    """Write an LRW metadata file: ``Text: WORD``, optional ``Conf:``, ``Duration: x seconds``."""
    word = _check_word(word, "LRW word")
    try:
        duration_s = float(duration_s)
    except (TypeError, ValueError):
        raise FormatError(f"duration_s must be a number of seconds, got {duration_s!r}") from None
    if not math.isfinite(duration_s) or duration_s <= 0:
        raise FormatError(f"duration_s must be a positive number of seconds, got {duration_s!r}")
    lines = [f"Text: {word}"]
    if conf is not None:
        lines.append(f"Conf: {conf:g}")
    lines.append(f"Duration: {duration_s:.2f} seconds")
    return _atomic_write_text(path, "\n".join(lines) + "\n")


def read_lrw_txt(path: str | os.PathLike) -> dict:
    """Read an LRW metadata file.

    Returns ``{"text": str, "duration": float seconds, "conf": float | None,
    "fields": {key: raw value}, "decode_errors": bool}``.
    """
    lines, bad_bytes = _read_lines(path)
    # LRW metadata may carry more lines than we use: skip what is not 'Key: value'.
    fields, _ = _parse_header(path, lines, strict=False)
    if not fields.get("text"):
        raise FormatError(f"{path}: missing 'Text:' line (the LRW word label)")
    if "duration" not in fields:
        raise FormatError(f"{path}: missing 'Duration: <x> seconds' line")
    match = _DURATION.match(fields["duration"])
    if match is None:
        raise FormatError(
            f"{path}: cannot read the duration {fields['duration']!r}; expected e.g. '0.33 seconds'"
        )
    return {
        "text": fields["text"],
        "duration": float(match.group(1)),
        "conf": _optional_float(path, fields, "conf"),
        "fields": fields,
        "decode_errors": bad_bytes,
    }


def _optional_float(path, fields: dict[str, str], key: str) -> float | None:
    if key not in fields or fields[key] == "":
        return None
    try:
        return float(fields[key])
    except ValueError:
        raise FormatError(
            f"{path}: '{key.capitalize()}:' must be a number, got {fields[key]!r}"
        ) from None


def write_lrs_txt(
    path: str | os.PathLike,
    text: str,
    conf: float = 4,
    words: Sequence[Segment] | None = None,
    scores: Sequence[float] | None = None,
) -> Path:
    """Write an LRS2/LRS3-style transcript: ``Text:``, ``Conf:`` and, if ``words`` is given,
    the pretrain word table (``WORD START END ASDSCORE``, times in seconds, 2 decimals).

    scores: one ASD (active speaker) score per word; default 0.0 each.
    """
    text = _check_word(text, "LRS text")
    lines = [f"Text:  {text}", f"Conf:  {conf:g}"]
    if words:
        if scores is not None and len(scores) != len(words):
            raise FormatError(f"got {len(scores)} scores for {len(words)} words")
        lines += ["", " ".join(LRS_WORD_HEADER)]
        for k, seg in enumerate(words):
            label = _check_word(seg.label, "LRS word")
            if seg.end < seg.start:
                raise FormatError(f"word {label!r} ends before it starts ({seg.start}..{seg.end})")
            score = 0.0 if scores is None else float(scores[k])
            lines.append(f"{label} {seg.start:.2f} {seg.end:.2f} {score:.1f}")
    return _atomic_write_text(path, "\n".join(lines) + "\n")


def read_lrs_txt(path: str | os.PathLike) -> dict:
    """Read an LRS2/LRS3 transcript.

    Returns ``{"text": str, "conf": float | None, "words": list[Segment] (empty unless the
    file has a word table), "scores": list[float], "fields": {key: raw value},
    "decode_errors": bool}``.
    """
    lines, bad_bytes = _read_lines(path)
    fields, table_start = _parse_header(path, lines, strict=True)
    if "text" not in fields:
        raise FormatError(f"{path}: missing 'Text:' line (the transcript)")
    words: list[Segment] = []
    scores: list[float] = []
    for number in range(table_start, len(lines)):
        line = lines[number]
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 4:
            raise FormatError(
                f"{path}:{number + 1}: expected 'WORD START END ASDSCORE', got {line!r}"
            )
        try:
            start, end, score = float(parts[1]), float(parts[2]), float(parts[3])
        except ValueError:
            raise FormatError(
                f"{path}:{number + 1}: times and score must be numbers: {line!r}"
            ) from None
        if end < start:
            raise FormatError(f"{path}:{number + 1}: word ends before it starts: {line!r}")
        words.append(Segment(parts[0], start, end))
        scores.append(score)
    return {
        "text": fields["text"],
        "conf": _optional_float(path, fields, "conf"),
        "words": words,
        "scores": scores,
        "fields": fields,
        "decode_errors": bad_bytes,
    }


__all__ = [
    "FormatError",
    "GRID_CLIP_S",
    "GRID_SHORT_PAUSE",
    "GRID_SILENCE",
    "GRID_TIME_UNITS_PER_S",
    "LRS_WORD_HEADER",
    "read_grid_align",
    "read_lrs_txt",
    "read_lrw_txt",
    "write_grid_align",
    "write_lrs_txt",
    "write_lrw_txt",
]
