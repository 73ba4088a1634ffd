"""Dataset adapters: list the clips of LRS2, LRS3, LRW, GRID, Acappella and the avlib corpus.

:func:`list_clips` turns a dataset folder (and optionally a split list) into
:class:`ClipItem` records: which media file to decode, the clip's split, speaker, transcript
and word timings. Nothing is decoded here; the preprocessing step reads ``ClipItem.video``.

On-disk layouts (``root`` is the folder passed to :func:`list_clips`)::

    lrs2       mvlrs_v1/main/<programme id>/<5-digit clip>.{mp4,txt}
               mvlrs_v1/pretrain/<programme id>/<5-digit clip>.{mp4,txt}
               mvlrs_v1/{pretrain,train,val,test}.txt    official lists, one <id>/<clip> a line
                   (test lines may carry tags after a space, e.g. "NF", "MV": kept in
                   extra["tags"]); pretrain.txt names clips of pretrain/, the others of main/
    lrs3       {pretrain,trainval,test}/<11-char YouTube id>/<5-digit clip>.{mp4,txt}
    lrw        lipread_mp4/<WORD>/{train,val,test}/<WORD>_<5 digits>.{mp4,txt}
               (the avlib corpus adds test_unseen/)
    grid       s<N>/video/<id>.mp4 (VCA-GAN processed / avlib corpus) or
               s<N>/video/mpg_6000/<id>.mpg (original), s<N>/align/<id>.align,
               optional s<N>/audio/<id>.{flac,wav}, optional splits/<split>.txt (avlib corpus)
    acappella  jpgs/<split>/<lang>/<gender>/<sample_id>/<frame>.jpg       (VocaLiST layout)
               splits_16k/<split>/audio/<lang>/<gender>/<sample_id>.wav
    corpus     an avlib corpus folder: manifest.json (its "clips"), sidecars, GRID/LRW layouts

Ids are unique within a dataset: LRS2 ``"<programme id>/<clip>"`` as in the official lists
(``"pretrain/<programme id>/<clip>"`` for pretrain clips, whose names may repeat main's),
LRS3 ``"<folder>/<YouTube id>/<clip>"``, LRW ``"<WORD>/<split>/<WORD>_<n>"``, GRID
``"s<N>/<id>"``, Acappella ``"<split>/<lang>/<gender>/<sample_id>"``, corpus
``"grid/s<N>/<id>"``, ``"lrw/<WORD>/<split>/<WORD>_<n>"`` and ``"sync/<split>/<id>"``.
Speakers are the GRID/corpus speaker, or a proxy: the LRS2 programme id, the LRS3 YouTube id,
the Acappella YouTube id (assuming one singer per video); LRW has none. Lists are sorted by
``(split, id)``, so the order does not depend on the file system.

Acappella frames are JPEG folders, not videos: its ``ClipItem.video`` is the frame folder and
``extra["frames_dir"]`` is True; read it with :func:`read_jpeg_folder` (RGB, numeric frame
order) instead of ``avlib.media.read_video``, and its audio from ``ClipItem.audio``.

Safety. Split lists are input from outside: an entry that is an absolute path, contains ``..``
or resolves (through a symlink) outside the dataset root is never opened. Such entries, and
entries whose files are missing, are *skipped* and recorded in ``ClipList.skipped`` with a
reason code (:data:`SKIP_REASONS`); ``strict=True`` raises :class:`DatasetError` at the first
one instead. Files found by scanning the folders go through the same containment check.
Non-fatal issues of a listed clip (missing or damaged transcript, missing audio...) go into
``ClipItem.problems`` as codes from :data:`PROBLEMS`; they never raise.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from avlib.cli import EXIT_INPUT
from avlib.corpus.speech import Segment
from avlib.data.formats import FormatError, read_grid_align, read_lrs_txt, read_lrw_txt

__all__ = [
    "ACAPPELLA_SPLITS",
    "DATASETS",
    "LRS2_SPLITS",
    "LRS3_SPLITS",
    "LRW_CLIP_S",
    "LRW_SPLITS",
    "PROBLEMS",
    "SKIP_REASONS",
    "ClipItem",
    "ClipList",
    "DatasetError",
    "SkippedEntry",
    "list_clips",
    "list_jpeg_frames",
    "read_jpeg_folder",
]

DATASETS = ("lrs2", "lrs3", "lrw", "grid", "acappella", "corpus")
LRS2_SPLITS = ("pretrain", "train", "val", "test")
LRS3_SPLITS = ("pretrain", "trainval", "test")
LRW_SPLITS = ("train", "val", "test")
# The avlib corpus adds an unseen-speaker test folder to the LRW layout.
_LRW_FOLDERS = LRW_SPLITS + ("test_unseen",)
ACAPPELLA_SPLITS = ("train", "val_seen", "test_seen", "test_unseen")
CORPUS_KINDS = ("grid", "lrw", "sync")
LRW_CLIP_S = 29 / 25
"""Length of an LRW clip (s): 29 frames at 25 fps, the word centred in it."""

#: Why an entry was left out of a listing (``SkippedEntry.reason``).
SKIP_REASONS = {
    "unsafe_path": "the entry is an absolute path or climbs out of the root with '..' (never opened)",
    "outside_root": "the entry resolves, through a symlink, outside the dataset root (never opened)",
    "bad_entry": "the entry does not name a clip in this dataset's layout",
    "video_missing": "the media file (or the Acappella frame folder) does not exist",
    "duplicate": "an earlier entry already listed this clip in this split",
    "no_frames": "the Acappella frame folder holds no numbered JPEG frames",
}

#: Non-fatal issues of a listed clip (``ClipItem.problems``).
PROBLEMS = {
    "transcript_missing": "the transcript file (.txt, .align) next to the video does not exist",
    "transcript_not_utf8": "the transcript has bytes that are not UTF-8; decoded with U+FFFD",
    "transcript_unreadable": "the transcript file is malformed (extra['transcript_error'] says how)",
    "transcript_outside_root": "the transcript file resolves outside the root; it was not read",
    "label_mismatch": "the LRW .txt names another word than its folder (the folder wins)",
    "audio_missing": "the separate audio file of an Acappella clip does not exist",
    "audio_outside_root": "the separate audio file resolves outside the root; audio is None",
    "frame_gaps": "the Acappella frame numbers are not consecutive (extra['n_frames'] counts files)",
    "sidecar_missing": "the corpus ground-truth sidecar does not exist",
    "sidecar_unreadable": "the corpus sidecar is not valid JSON",
    "sidecar_outside_root": "the corpus sidecar resolves outside the root; it was not read",
}

# Folder and file names of these datasets: ASCII letters, digits, '_', '-', '.' (never a
# leading '.', so '.' and '..' are not names). YouTube ids may start with '-' or '_'.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-]*$")
_GRID_SPEAKER = re.compile(r"^s\d+$")
_ACAPPELLA_SAMPLE = re.compile(r"^(?P<yt>.+)_(\d+)_(\d+)_to_(\d+)_(\d+)$")
_JPEG_FRAME = re.compile(r"^(\d+)\.jpe?g$", re.IGNORECASE)


class DatasetError(ValueError):
    """A dataset folder or split list cannot be listed (wrong root, empty, unsafe entry in strict mode)."""

    exit_code = EXIT_INPUT  # on the command line: a problem of the input dataset


@dataclass
class ClipItem:
    """One clip of a dataset.

    ``video`` is the media file to decode (an Acappella frame folder when
    ``extra["frames_dir"]``); ``words`` are word segments in seconds from the clip start.
    """

    id: str
    dataset: str
    video: Path
    split: str
    speaker: str | None
    transcript: str | None
    words: list[Segment]
    audio: Path | None = None
    extra: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SkippedEntry:
    """An entry left out of a listing: the list line or relative path, a reason code, details."""

    entry: str
    reason: str
    detail: str


class ClipList(list):
    """The clips of a listing (a plain ``list`` of :class:`ClipItem`), plus ``skipped``:
    the :class:`SkippedEntry` records of entries that were left out."""

    def __init__(self, items: Iterable[ClipItem] = (), skipped: Iterable[SkippedEntry] = ()):
        super().__init__(items)
        self.skipped: list[SkippedEntry] = list(skipped)


class _Unsafe(Exception):
    """A split-list entry that must not be turned into a path."""


# ---------------------------------------------------------------------------- shared machinery


class _Listing:
    """State of one listing: the root, the strictness, the skipped entries, the items."""

    def __init__(self, dataset: str, root: Path, strict: bool, allow_symlinks_outside: bool):
        self.dataset = dataset
        self.root = root
        self.real_root = root.resolve()
        self.strict = strict
        self.allow_symlinks_outside = allow_symlinks_outside
        self.skipped: list[SkippedEntry] = []
        self.items: dict[tuple[str, str], ClipItem] = {}

    def skip(self, entry: str, reason: str, detail: str) -> None:
        if self.strict:
            raise DatasetError(f"{self.dataset}: {detail} [{reason}: {SKIP_REASONS[reason]}]")
        self.skipped.append(SkippedEntry(entry, reason, detail))

    def contained(self, path: Path) -> bool:
        """Whether ``path`` (lexically under the root) also resolves under it.

        Resolving reads symlinks but opens nothing, so an escaping entry is never opened.
        """
        if self.allow_symlinks_outside:
            return True
        try:
            real = path.resolve()
        except (OSError, RuntimeError):  # symlink loops
            return False
        return real == self.real_root or real.is_relative_to(self.real_root)

    def usable(self, entry: str, path: Path, where: str) -> bool:
        """Check the media file of an entry: inside the root and present; skip it otherwise."""
        if not self.contained(path):
            self.skip(entry, "outside_root", f"{where}: {path} resolves outside {self.real_root}")
            return False
        if not path.exists():
            self.skip(entry, "video_missing", f"{where}: {path} does not exist")
            return False
        return True

    def add(self, item: ClipItem, entry: str, where: str,
            fill: Callable[["_Listing", ClipItem], None] | None = None) -> None:
        """Keep ``item`` unless its (split, id) is already listed; then ``fill`` it (read its
        text files), so that a duplicate entry opens nothing."""
        key = (item.split, item.id)
        if key in self.items:
            self.skip(entry, "duplicate", f"{where}: {item.id} is already listed in split {item.split}")
            return
        self.items[key] = item
        if fill is not None:
            fill(self, item)

    def result(self, layout: str) -> "ClipList":
        if not self.items:
            counts: dict[str, int] = {}
            for s in self.skipped:
                counts[s.reason] = counts.get(s.reason, 0) + 1
            why = f" ({len(self.skipped)} entries skipped: {counts})" if self.skipped else ""
            raise DatasetError(
                f"{self.dataset}: no clips found under {self.root}{why}; expected the layout\n"
                f"{layout}"
            )
        ordered = [self.items[key] for key in sorted(self.items)]
        return ClipList(ordered, self.skipped)


def _entry_parts(token: str) -> list[str]:
    """The relative path components of a split-list entry; raise _Unsafe for escaping ones."""
    if "\x00" in token:
        raise _Unsafe("contains a NUL byte")
    text = token.replace("\\", "/")
    if text.startswith(("/", "~")) or re.match(r"^[A-Za-z]:", text):
        raise _Unsafe("is an absolute path; entries must be relative to the dataset root")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise _Unsafe("contains '..'; entries must stay inside the dataset root")
    return parts


def _split_file_lines(path: Path) -> Iterator[tuple[int, str, list[str]]]:
    """``(line number, first field, further fields)`` of a split list; blanks and '#' skipped."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"split list {path} does not exist") from None
    except IsADirectoryError:
        raise DatasetError(f"split list {path} is a folder, not a text file") from None
    # A list with broken bytes still has usable lines; the broken ones simply match nothing.
    text = data.decode("utf-8", errors="replace").lstrip("\ufeff")
    for number, line in enumerate(re.split(r"\r\n|\r|\n", text), start=1):
        fields = line.split()
        if fields and not fields[0].startswith("#"):
            yield number, fields[0], fields[1:]


def _list_entries(
    listing: _Listing, split_file: Path
) -> Iterator[tuple[str, list[str], list[str], str]]:
    """Safe entries of a split list: ``(raw entry, path parts, tags, where)``."""
    for number, token, tags in _split_file_lines(split_file):
        where = f"{split_file}:{number}"
        try:
            parts = _entry_parts(token)
        except _Unsafe as err:
            listing.skip(token, "unsafe_path", f"{where}: entry {token!r} {err}")
            continue
        if not parts:
            listing.skip(token, "bad_entry", f"{where}: entry {token!r} names no file")
            continue
        yield token, parts, tags, where


def _strip_suffix(name: str, suffixes: Sequence[str]) -> str:
    for suffix in suffixes:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _safe_names(parts: Sequence[str]) -> bool:
    return all(_SAFE_NAME.match(p) for p in parts)


def _sorted_dirs(path: Path) -> list[str]:
    """Names of the sub-folders of ``path`` (sorted; none if it is not a folder)."""
    try:
        with os.scandir(path) as entries:
            return sorted(e.name for e in entries if e.is_dir())
    except (FileNotFoundError, NotADirectoryError):
        return []


def _sorted_files(path: Path, suffix: str) -> list[str]:
    """Names of the files of ``path`` ending in ``suffix`` (sorted)."""
    try:
        with os.scandir(path) as entries:
            return sorted(e.name for e in entries if e.name.endswith(suffix) and not e.is_dir())
    except (FileNotFoundError, NotADirectoryError):
        return []


def _read_text(listing: _Listing, item: ClipItem, path: Path,
               reader: Callable[[Path], dict]) -> dict | None:
    """Read a clip's text file with ``reader``, recording problems instead of raising."""
    if not listing.contained(path):
        item.problems.append("transcript_outside_root")
        return None
    if not path.is_file():
        item.problems.append("transcript_missing")
        return None
    try:
        info = reader(path)
    except FormatError as err:
        item.problems.append("transcript_unreadable")
        item.extra["transcript_error"] = str(err)
        return None
    if info.get("decode_errors"):
        item.problems.append("transcript_not_utf8")
    return info


# ---------------------------------------------------------------------------- LRS2

_LRS2_LAYOUT = (
    "  mvlrs_v1/main/<programme id>/<clip>.mp4 + .txt, mvlrs_v1/pretrain/<programme id>/<clip>.mp4"
    " + .txt,\n  split lists mvlrs_v1/{pretrain,train,val,test}.txt (one <id>/<clip> a line);"
    " pass the mvlrs_v1 folder as root"
)


def _lrs2_item(listing: _Listing, folder: str, pid: str, clip: str, split: str,
               tags: list[str]) -> ClipItem:
    video = listing.root / folder / pid / f"{clip}.mp4"
    cid = f"{pid}/{clip}" if folder == "main" else f"{folder}/{pid}/{clip}"
    item = ClipItem(cid, "lrs2", video, split, pid, None, [], extra={"folder": folder})
    if tags:
        item.extra["tags"] = list(tags)
    return item


def _lrs_text(listing: _Listing, item: ClipItem) -> None:
    """Transcript, Conf, pretrain word table (and LRS3 Ref) from the LRS2/LRS3 .txt."""
    info = _read_text(listing, item, item.video.with_suffix(".txt"), read_lrs_txt)
    if info is not None:
        item.transcript = info["text"]
        item.words = info["words"]
        item.extra["conf"] = info["conf"]
        if info["words"]:
            item.extra["word_scores"] = info["scores"]
        if "ref" in info["fields"]:
            item.extra["ref"] = info["fields"]["ref"]


def _list_lrs2(listing: _Listing, split: str | None, split_file: Path | None,
               read_text: bool) -> ClipList:
    root = listing.root
    if not (root / "main").is_dir() and not (root / "pretrain").is_dir():
        hint = " (found mvlrs_v1 inside: pass that folder)" if (root / "mvlrs_v1").is_dir() else ""
        raise DatasetError(f"lrs2: {root} has no main/ or pretrain/ folder{hint}; expected\n{_LRS2_LAYOUT}")
    if split_file is not None:
        sources = [(split or split_file.stem, split_file)]
    elif split is not None:
        if split not in LRS2_SPLITS + ("main",):
            raise DatasetError(f"lrs2: unknown split {split!r}; choose one of {LRS2_SPLITS + ('main',)}")
        listed = root / f"{split}.txt"
        if listed.is_file():
            sources = [(split, listed)]
        elif split in ("pretrain", "main"):
            sources = [(split, None)]  # the folder itself is the split
        else:
            raise DatasetError(
                f"lrs2: split list {listed} does not exist; LRS2 ships {split}.txt next to main/ "
                "(or pass split_file=)")
    else:
        sources = [(s, root / f"{s}.txt") for s in LRS2_SPLITS if (root / f"{s}.txt").is_file()]
        if not sources:  # no official lists: each folder is its own split
            sources = [(folder, None) for folder in ("main", "pretrain") if (root / folder).is_dir()]

    fill = _lrs_text if read_text else None
    for label, path in sources:
        if path is None:
            for pid in _sorted_dirs(root / label):
                for name in _sorted_files(root / label / pid, ".mp4"):
                    entry = f"{label}/{pid}/{name}"
                    if not _safe_names([pid, name]):
                        listing.skip(entry, "bad_entry", f"{entry}: not an LRS2 file name")
                        continue
                    if listing.usable(entry, root / label / pid / name, entry):
                        item = _lrs2_item(listing, label, pid, name[:-4], label, [])
                        listing.add(item, entry, entry, fill)
            continue
        for token, parts, tags, where in _list_entries(listing, path):
            parts = parts[:-1] + [_strip_suffix(parts[-1], (".mp4", ".txt"))]
            if parts[0] in ("main", "pretrain"):
                folder, parts = parts[0], parts[1:]
            else:
                folder = "pretrain" if label == "pretrain" else "main"
            if len(parts) != 2 or not _safe_names(parts):
                listing.skip(token, "bad_entry", f"{where}: expected '<programme id>/<clip>', got {token!r}")
                continue
            pid, clip = parts
            if listing.usable(token, root / folder / pid / f"{clip}.mp4", where):
                listing.add(_lrs2_item(listing, folder, pid, clip, label, tags), token, where, fill)
    return listing.result(_LRS2_LAYOUT)


# ---------------------------------------------------------------------------- LRS3

_LRS3_LAYOUT = "  {pretrain,trainval,test}/<11-char YouTube id>/<5-digit clip>.mp4 + .txt"


def _lrs3_item(listing: _Listing, folder: str, ytid: str, clip: str, split: str) -> ClipItem:
    video = listing.root / folder / ytid / f"{clip}.mp4"
    return ClipItem(f"{folder}/{ytid}/{clip}", "lrs3", video, split, ytid, None, [],
                    extra={"folder": folder})


def _list_lrs3(listing: _Listing, split: str | None, split_file: Path | None,
               read_text: bool) -> ClipList:
    root = listing.root
    fill = _lrs_text if read_text else None
    present = [f for f in LRS3_SPLITS if (root / f).is_dir()]
    if not present:
        raise DatasetError(f"lrs3: {root} has none of the folders {LRS3_SPLITS}; expected\n{_LRS3_LAYOUT}")
    if split_file is None:
        if split is not None and split not in present:
            raise DatasetError(f"lrs3: no folder {root / split}; the splits are the folders {present}")
        for folder in [split] if split else present:
            for ytid in _sorted_dirs(root / folder):
                for name in _sorted_files(root / folder / ytid, ".mp4"):
                    entry = f"{folder}/{ytid}/{name}"
                    if not _safe_names([ytid, name]):
                        listing.skip(entry, "bad_entry", f"{entry}: not an LRS3 file name")
                    elif listing.usable(entry, root / folder / ytid / name, entry):
                        listing.add(_lrs3_item(listing, folder, ytid, name[:-4], folder),
                                    entry, entry, fill)
        return listing.result(_LRS3_LAYOUT)

    label = split or split_file.stem
    for token, parts, _tags, where in _list_entries(listing, split_file):
        parts = parts[:-1] + [_strip_suffix(parts[-1], (".mp4", ".txt"))]
        if len(parts) == 3 and parts[0] in LRS3_SPLITS:
            folders, parts = [parts[0]], parts[1:]
        elif len(parts) == 2:
            # A list naming '<id>/<clip>' without the folder: look in each folder.
            folders = [label] if label in LRS3_SPLITS else ["trainval", "pretrain", "test"]
        else:
            folders = []
        if not folders or not _safe_names(parts):
            listing.skip(token, "bad_entry",
                         f"{where}: expected '[<folder>/]<YouTube id>/<clip>', got {token!r}")
            continue
        ytid, clip = parts
        found = next((f for f in folders if (root / f / ytid / f"{clip}.mp4").exists()), folders[0])
        if listing.usable(token, root / found / ytid / f"{clip}.mp4", where):
            listing.add(_lrs3_item(listing, found, ytid, clip, label), token, where, fill)
    return listing.result(_LRS3_LAYOUT)


# ---------------------------------------------------------------------------- LRW

_LRW_LAYOUT = ("  lipread_mp4/<WORD>/{train,val,test}/<WORD>_<5 digits>.mp4 + .txt "
               "(pass the lipread_mp4 folder as root)")


def _lrw_word_segment(word: str, duration: float) -> Segment:
    """The word as a segment centred in the 1.16-s LRW clip (LRW centres the target word)."""
    half = min(max(duration, 0.0), LRW_CLIP_S) / 2
    centre = LRW_CLIP_S / 2
    return Segment(word, centre - half, centre + half)


def _lrw_item(listing: _Listing, word: str, folder: str, name: str, split: str) -> ClipItem:
    video = listing.root / word / folder / f"{name}.mp4"
    # The folder is LRW's class label, so it is the transcript even without the .txt.
    return ClipItem(f"{word}/{folder}/{name}", "lrw", video, split, None, word, [],
                    extra={"folder": folder, "word": word})


def _lrw_text(listing: _Listing, item: ClipItem) -> None:
    """Word duration (and the centred word segment) from the LRW .txt."""
    word = item.extra["word"]
    info = _read_text(listing, item, item.video.with_suffix(".txt"), read_lrw_txt)
    if info is not None:
        item.extra["word_duration"] = info["duration"]
        item.extra["conf"] = info["conf"]
        item.words = [_lrw_word_segment(word, info["duration"])]
        if info["text"].strip().upper() != word.upper():
            item.problems.append("label_mismatch")
            item.extra["txt_text"] = info["text"]


def _list_lrw(listing: _Listing, split: str | None, split_file: Path | None, read_text: bool,
              words: Iterable[str] | None = None) -> ClipList:
    root = listing.root
    fill = _lrw_text if read_text else None
    vocab = [w for w in _sorted_dirs(root)
             if any((root / w / s).is_dir() for s in _LRW_FOLDERS)]
    if not vocab:
        hint = " (found lipread_mp4 inside: pass that folder)" if (root / "lipread_mp4").is_dir() else ""
        raise DatasetError(f"lrw: {root} has no <WORD>/{{train,val,test}} folders{hint}; expected\n{_LRW_LAYOUT}")
    wanted = None
    if words is not None:
        if isinstance(words, str):
            raise DatasetError("lrw: words= takes a list of words, e.g. words=['ABOUT'], not a string")
        wanted = {w.upper() for w in words}
        unknown = sorted(wanted - {w.upper() for w in vocab})
        if unknown:
            raise DatasetError(f"lrw: words {unknown} have no folder under {root}")
    if split_file is None:
        if split is not None and split not in _LRW_FOLDERS:
            raise DatasetError(f"lrw: unknown split {split!r}; choose one of {_LRW_FOLDERS}")
        for word in vocab:
            if wanted is not None and word.upper() not in wanted:
                continue
            for folder in [split] if split else _LRW_FOLDERS:
                for name in _sorted_files(root / word / folder, ".mp4"):
                    entry = f"{word}/{folder}/{name}"
                    if not _safe_names([word, name]):
                        listing.skip(entry, "bad_entry", f"{entry}: not an LRW file name")
                    elif listing.usable(entry, root / word / folder / name, entry):
                        listing.add(_lrw_item(listing, word, folder, name[:-4], folder),
                                    entry, entry, fill)
        return listing.result(_LRW_LAYOUT)

    label = split or split_file.stem
    for token, parts, _tags, where in _list_entries(listing, split_file):
        parts = parts[:-1] + [_strip_suffix(parts[-1], (".mp4", ".txt"))]
        if len(parts) == 1 and "_" in parts[0] and label in _LRW_FOLDERS:
            # A bare clip name '<WORD>_<n>': the word is its prefix, the folder the split.
            parts = [parts[0].rsplit("_", 1)[0], label, parts[0]]
        if len(parts) != 3 or parts[1] not in _LRW_FOLDERS or not _safe_names(parts):
            listing.skip(token, "bad_entry", f"{where}: expected '<WORD>/<split>/<WORD>_<n>', got {token!r}")
            continue
        word, folder, name = parts
        if wanted is not None and word.upper() not in wanted:
            continue
        if listing.usable(token, root / word / folder / f"{name}.mp4", where):
            listing.add(_lrw_item(listing, word, folder, name, label), token, where, fill)
    return listing.result(_LRW_LAYOUT)


# ---------------------------------------------------------------------------- GRID

_GRID_LAYOUT = ("  s<N>/video/<id>.mp4 (processed) or s<N>/video/mpg_6000/<id>.mpg (original),\n"
                "  s<N>/align/<id>.align, optional s<N>/audio/<id>.{flac,wav}, optional splits/<split>.txt")
_GRID_VIDEO_PLACES = (("video", ".mp4"), ("video/mpg_6000", ".mpg"), ("video", ".mpg"))


def _speaker_number(name: str) -> int:
    return int(name[1:])


def _grid_item(listing: _Listing, speaker: str, cid: str, video: Path, split: str) -> ClipItem:
    base = listing.root / speaker
    item = ClipItem(f"{speaker}/{cid}", "grid", video, split, speaker, None, [],
                    extra={"align": base / "align" / f"{cid}.align"})
    for suffix in (".flac", ".wav"):  # VCA-GAN keeps 16-kHz audio in a parallel audio/ tree
        audio = base / "audio" / f"{cid}{suffix}"
        if listing.contained(audio) and audio.is_file():
            item.audio = audio
            break
    return item


def _grid_text(listing: _Listing, item: ClipItem) -> None:
    """Words (without sil/sp) and the transcript from the GRID .align."""
    def words_of(path: Path) -> dict:
        return {"words": read_grid_align(path, keep_silence=False)}

    info = _read_text(listing, item, item.extra["align"], words_of)
    if info is not None:
        item.words = info["words"]
        item.transcript = " ".join(w.label for w in info["words"])


def _grid_video(root: Path, speaker: str, cid: str) -> Path:
    """The video of a GRID sentence: the first existing candidate (else the mp4 path)."""
    candidates = [root / speaker / folder / f"{cid}{suffix}" for folder, suffix in _GRID_VIDEO_PLACES]
    return next((p for p in candidates if p.exists()), candidates[0])


def _list_grid(listing: _Listing, split: str | None, split_file: Path | None,
               read_text: bool) -> ClipList:
    root = listing.root
    fill = _grid_text if read_text else None
    speakers = [d for d in _sorted_dirs(root) if _GRID_SPEAKER.match(d)]
    if not speakers:
        raise DatasetError(f"grid: {root} has no s<N> speaker folders; expected\n{_GRID_LAYOUT}")
    speakers.sort(key=_speaker_number)
    splits_dir = root / "splits"

    if split_file is not None:
        sources = [(split_file, split)]
    elif split is not None:
        listed = splits_dir / f"{split}.txt"
        if not listed.is_file():
            have = sorted(p.stem for p in splits_dir.glob("*.txt")) if splits_dir.is_dir() else []
            raise DatasetError(
                f"grid: no split list {listed} (lists here: {have or 'none'}); GRID has no official "
                "split: pass split_file= (e.g. VCA-GAN's test_4.txt) or leave split=None")
        sources = [(listed, split)]
    elif splits_dir.is_dir() and any(splits_dir.glob("*.txt")):
        sources = [(p, p.stem) for p in sorted(splits_dir.glob("*.txt"))]
    else:
        sources = []

    if not sources:  # scan: every sentence with a video, split "all"
        for speaker in speakers:
            found: dict[str, Path] = {}
            for folder, suffix in _GRID_VIDEO_PLACES:
                for name in _sorted_files(root / speaker / folder, suffix):
                    found.setdefault(name[: -len(suffix)], root / speaker / folder / name)
            for cid, video in sorted(found.items()):
                entry = f"{speaker}/{cid}"
                if not _safe_names([cid]):
                    listing.skip(entry, "bad_entry", f"{video}: not a GRID file name")
                elif listing.usable(entry, video, entry):
                    listing.add(_grid_item(listing, speaker, cid, video, "all"), entry, entry, fill)
            # Sentences with an alignment but no video (s21 of the real GRID has none at all).
            for name in _sorted_files(root / speaker / "align", ".align"):
                cid = name[: -len(".align")]
                if cid not in found:
                    listing.skip(f"{speaker}/{cid}", "video_missing",
                                 f"{speaker}/{cid}: alignment {root / speaker / 'align' / name} has no video")
        return listing.result(_GRID_LAYOUT)

    for path, wanted in sources:
        for token, parts, _tags, where in _list_entries(listing, path):
            # Accepted forms: 's1/bbaf2n' (avlib), 's1/video/bbaf2n.mp4', 's14/video/mpg_6000/bbaq7n'
            # (VCA-GAN lists) and 'val/s20/prwo5p' (VCA-GAN unseen_splits.txt: split first).
            index = max((i for i, p in enumerate(parts[:-1]) if _GRID_SPEAKER.match(p)), default=None)
            cid = _strip_suffix(parts[-1], (".mp4", ".mpg", ".align", ".flac", ".wav"))
            if index is None or not _safe_names([cid]):
                listing.skip(token, "bad_entry", f"{where}: expected '[<split>/]s<N>/[...]/<id>', got {token!r}")
                continue
            prefix = parts[:index]
            line_split = prefix[0] if len(prefix) == 1 else None
            if wanted is not None and line_split is not None and line_split != wanted:
                continue  # a line of another split in a multi-split list
            label = wanted or line_split or path.stem
            speaker = parts[index]
            video = _grid_video(root, speaker, cid)
            if listing.usable(token, video, where):
                listing.add(_grid_item(listing, speaker, cid, video, label), token, where, fill)
    return listing.result(_GRID_LAYOUT)


# ---------------------------------------------------------------------------- Acappella

_ACAPPELLA_LAYOUT = ("  jpgs/<split>/<lang>/<gender>/<sample_id>/<frame>.jpg and\n"
                     "  splits_16k/<split>/audio/<lang>/<gender>/<sample_id>.wav "
                     f"(splits {ACAPPELLA_SPLITS})")


def list_jpeg_frames(path: str | os.PathLike) -> list[tuple[int, Path]]:
    """The numbered JPEG frames of a folder, ``[(frame number, path), ...]`` in numeric order.

    Frame files are ``<n>.jpg`` (or ``.jpeg``); other files (``audio.wav`` in the Wav2Lip
    layout) are ignored. A ``.jpg`` without a number, or two files with the same number
    (``1.jpg`` and ``01.jpg``), raise :class:`DatasetError`: the order would be ambiguous.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise DatasetError(f"{folder} is not a folder of JPEG frames")
    frames: dict[int, Path] = {}
    for name in _sorted_files(folder, ""):
        if not name.lower().endswith((".jpg", ".jpeg")):
            continue
        match = _JPEG_FRAME.match(name)
        if match is None:
            raise DatasetError(f"{folder / name}: frame files must be named <number>.jpg for a numeric order")
        number = int(match.group(1))
        if number in frames:
            raise DatasetError(f"{folder}: {frames[number].name} and {name} have the same frame number")
        frames[number] = folder / name
    return sorted(frames.items())


def read_jpeg_folder(path: str | os.PathLike, max_frames: int | None = None) -> np.ndarray:
    """Decode a folder of numbered JPEG frames into RGB ``uint8`` ``(T, H, W, 3)``.

    Frames come in numeric order (``2.jpg`` before ``10.jpg``); gaps in the numbering are not
    filled (see :func:`list_jpeg_frames`). The result is RGB like every avlib decoder, also for
    crops saved by Wav2Lip/VocaLiST (their code holds BGR arrays in memory, but the JPEG files
    are ordinary): models that want BGR convert at their crop step. ``max_frames`` keeps the
    first frames only.
    """
    import cv2  # imported here: listing clips needs no OpenCV

    frames = list_jpeg_frames(path)
    if max_frames is not None:
        if max_frames < 1:
            raise ValueError(f"max_frames must be a positive number of frames, got {max_frames}")
        frames = frames[:max_frames]
    if not frames:
        raise DatasetError(f"{path}: no numbered JPEG frames (<n>.jpg) to read")
    images = []
    for _, frame_path in frames:
        # imdecode on bytes, because cv2.imread fails silently on non-ASCII paths on some systems.
        bgr = cv2.imdecode(np.fromfile(frame_path, dtype=np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise DatasetError(f"{frame_path}: not a readable JPEG image")
        if images and bgr.shape != images[0].shape:
            raise DatasetError(
                f"{frame_path}: frame size {bgr.shape[1]}x{bgr.shape[0]} differs from the first "
                f"frame's {images[0].shape[1]}x{images[0].shape[0]}")
        images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return np.stack(images)


def _list_acappella(listing: _Listing, split: str | None, split_file: Path | None) -> ClipList:
    root = listing.root
    if split_file is not None:
        raise DatasetError("acappella: the splits are the folders under jpgs/; pass split=, not split_file=")
    present = sorted(set(_sorted_dirs(root / "jpgs")) | set(_sorted_dirs(root / "splits_16k")))
    if not (root / "jpgs").is_dir() or not present:
        raise DatasetError(f"acappella: {root} has no jpgs/<split> folders; expected\n{_ACAPPELLA_LAYOUT}")
    if split is not None and split not in present:
        raise DatasetError(f"acappella: no folder {root / 'jpgs' / split}; splits here: {present}")
    for folder in [split] if split else present:
        for lang in _sorted_dirs(root / "jpgs" / folder):
            for gender in _sorted_dirs(root / "jpgs" / folder / lang):
                for sample in _sorted_dirs(root / "jpgs" / folder / lang / gender):
                    _add_acappella(listing, folder, lang, gender, sample)
        # Audio without frames: listed as skipped so a half-extracted dataset is visible.
        for lang in _sorted_dirs(root / "splits_16k" / folder / "audio"):
            for gender in _sorted_dirs(root / "splits_16k" / folder / "audio" / lang):
                for name in _sorted_files(root / "splits_16k" / folder / "audio" / lang / gender, ".wav"):
                    frames = root / "jpgs" / folder / lang / gender / name[:-4]
                    if not frames.is_dir():
                        entry = f"{folder}/{lang}/{gender}/{name[:-4]}"
                        listing.skip(entry, "video_missing", f"{entry}: audio without frame folder {frames}")
    return listing.result(_ACAPPELLA_LAYOUT)


def _add_acappella(listing: _Listing, folder: str, lang: str, gender: str, sample: str) -> None:
    root = listing.root
    entry = f"{folder}/{lang}/{gender}/{sample}"
    frames_dir = root / "jpgs" / folder / lang / gender / sample
    if not _safe_names([folder, lang, gender, sample]):
        listing.skip(entry, "bad_entry", f"{frames_dir}: not an Acappella folder name")
        return
    if not listing.usable(entry, frames_dir, entry):
        return
    try:
        frames = list_jpeg_frames(frames_dir)
    except DatasetError as err:
        listing.skip(entry, "bad_entry", str(err))
        return
    if not frames:
        listing.skip(entry, "no_frames", f"{frames_dir}: no <n>.jpg frames")
        return
    match = _ACAPPELLA_SAMPLE.match(sample)
    item = ClipItem(entry, "acappella", frames_dir, folder, match.group("yt") if match else None,
                    None, [], extra={"frames_dir": True, "language": lang, "gender": gender,
                                     "sample_id": sample, "n_frames": len(frames),
                                     "first_frame": frames[0][0]})
    if match:
        start_m, start_s, end_m, end_s = (int(match.group(k)) for k in (2, 3, 4, 5))
        item.extra["youtube_id"] = match.group("yt")
        item.extra["start_s"], item.extra["end_s"] = 60 * start_m + start_s, 60 * end_m + end_s
    if frames[-1][0] - frames[0][0] + 1 != len(frames):
        item.problems.append("frame_gaps")
    audio = root / "splits_16k" / folder / "audio" / lang / gender / f"{sample}.wav"
    if not listing.contained(audio):
        item.problems.append("audio_outside_root")
    elif not audio.is_file():
        item.problems.append("audio_missing")
    else:
        item.audio = audio
    listing.add(item, entry, entry)


# ---------------------------------------------------------------------------- avlib corpus

_CORPUS_LAYOUT = ("  an avlib corpus folder with manifest.json (make one with "
                  "`avlib corpus make --out DIR`)")


def _list_corpus(listing: _Listing, split: str | None, split_file: Path | None, read_text: bool,
                 kind: str | None = None) -> ClipList:
    from avlib.corpus.make import MANIFEST  # the corpus layout is defined there

    root = listing.root
    if split_file is not None:
        raise DatasetError("corpus: the splits come from manifest.json; pass split=, not split_file=")
    if kind is not None and kind not in CORPUS_KINDS:
        raise DatasetError(f"corpus: unknown kind {kind!r}; choose one of {CORPUS_KINDS} or None")
    manifest_path = root / MANIFEST
    if not manifest_path.is_file() or not listing.contained(manifest_path):
        raise DatasetError(f"corpus: {root} has no {MANIFEST}; expected\n{_CORPUS_LAYOUT}")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        clips = manifest["clips"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
        raise DatasetError(f"corpus: {manifest_path} is not an avlib corpus manifest ({err})") from None
    for number, entry in enumerate(clips):
        where = f"{manifest_path}: clips[{number}]"
        if not isinstance(entry, dict) or not all(
                isinstance(entry.get(k), str) for k in ("id", "kind", "split", "video")):
            listing.skip(str(entry)[:80], "bad_entry", f"{where}: needs string id, kind, split, video")
            continue
        if (kind is not None and entry["kind"] != kind) or (split is not None and entry["split"] != split):
            continue
        token = entry["video"]
        try:
            parts = _entry_parts(token)
            sidecar_parts = _entry_parts(entry["sidecar"]) if isinstance(entry.get("sidecar"), str) else None
        except _Unsafe as err:
            listing.skip(token, "unsafe_path", f"{where}: {err}")
            continue
        video = root.joinpath(*parts)
        if not parts or not listing.usable(token, video, where):
            continue
        _add_corpus_item(listing, entry, video, sidecar_parts, read_text, token, where)
    if not listing.items and (kind or split):
        raise DatasetError(f"corpus: no clips of kind={kind!r}, split={split!r} in {manifest_path}")
    return listing.result(_CORPUS_LAYOUT)


def _add_corpus_item(listing: _Listing, entry: dict, video: Path, sidecar_parts: list[str] | None,
                     read_text: bool, token: str, where: str) -> None:
    if entry["kind"] == "grid":
        cid = f"grid/{entry.get('speaker')}/{entry['id']}"
    else:
        cid = PurePosixPath(*_entry_parts(token)).with_suffix("").as_posix()
    item = ClipItem(cid, "corpus", video, entry["split"], entry.get("speaker"), entry.get("text"), [],
                    extra={"kind": entry["kind"], "shift_frames": entry.get("shift_frames", 0),
                           "n_frames": entry.get("n_frames")})
    if sidecar_parts is not None:
        item.extra["sidecar"] = listing.root.joinpath(*sidecar_parts)
    listing.add(item, token, where, _corpus_sidecar if read_text else _corpus_sidecar_check)


def _corpus_sidecar_check(listing: _Listing, item: ClipItem) -> Path | None:
    """The clip's sidecar if it can be read, else None with a problem recorded."""
    sidecar = item.extra.get("sidecar")
    if sidecar is None:
        item.problems.append("sidecar_missing")
    elif not listing.contained(sidecar):
        item.problems.append("sidecar_outside_root")
    elif not sidecar.is_file():
        item.problems.append("sidecar_missing")
    else:
        return sidecar
    return None


def _corpus_sidecar(listing: _Listing, item: ClipItem) -> None:
    """Words, transcript, speaker and offsets from the corpus ground-truth sidecar."""
    sidecar = _corpus_sidecar_check(listing, item)
    if sidecar is None:
        return
    try:
        truth = json.loads(sidecar.read_text(encoding="utf-8"))
        # Sync clips carry their source's word timings (before the audio shift).
        words = [Segment(str(w["label"]), float(w["start"]), float(w["end"]))
                 for w in truth.get("words", [])]
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, KeyError, TypeError,
            ValueError):
        item.problems.append("sidecar_unreadable")
        return
    item.words = words
    item.transcript = truth.get("text", item.transcript)
    item.speaker = truth.get("speaker", item.speaker)
    for key in ("av_offset_frames", "word_duration", "source_id", "shift_frames"):
        if key in truth:
            item.extra[key] = truth[key]


# ---------------------------------------------------------------------------- entry point

_OPTIONS = {
    "lrs2": {"read_text"},
    "lrs3": {"read_text"},
    "lrw": {"read_text", "words"},
    "grid": {"read_text"},
    "acappella": set(),
    "corpus": {"read_text", "kind"},
}


def list_clips(
    dataset: str,
    root: str | os.PathLike,
    split: str | None = None,
    split_file: str | os.PathLike | None = None,
    *,
    strict: bool = False,
    allow_symlinks_outside: bool = False,
    **options,
) -> ClipList:
    """List the clips of a dataset folder, sorted by ``(split, id)``.

    Args:
        dataset: one of :data:`DATASETS`.
        root: the dataset folder (``mvlrs_v1`` for LRS2, ``lipread_mp4`` for LRW, the folder of
            the ``s<N>`` speakers for GRID, the corpus folder for ``"corpus"``). For ``"grid"``
            and ``"lrw"`` an avlib corpus folder also works: its ``grid/`` or ``lrw/`` part is used.
        split: keep this split only. LRS2: a list name (``pretrain``/``train``/``val``/``test``,
            read from ``<root>/<split>.txt``) or ``main``; LRS3, LRW, Acappella: a folder;
            GRID: ``<root>/splits/<split>.txt``; corpus: the manifest's split. ``None``: all
            (LRS2: every official list present, else the main/pretrain folders; GRID: every
            ``splits/*.txt``, else every sentence as split ``"all"``).
        split_file: a split list to use instead (LRS2, LRS3, LRW, GRID). Its clips get the split
            ``split`` if given, else the file name without extension; GRID lines that start
            with a split folder (``val/s20/prwo5p``) keep their own split, and ``split``
            filters them.
        strict: raise :class:`DatasetError` at the first skipped entry (unsafe, outside the
            root, missing, malformed) instead of recording it in ``ClipList.skipped``.
        allow_symlinks_outside: accept files that resolve outside the root through symlinks
            (for a dataset whose sub-folders are links to other disks). ``..`` and absolute
            entries are refused even then.
        **options: ``read_text=False`` (LRS2/LRS3/LRW/GRID/corpus) skips opening transcripts,
            alignments and sidecars, for fast listing of large sets; ``words=[...]`` (LRW)
            keeps those words; ``kind="grid"|"lrw"|"sync"`` (corpus) keeps one kind of clip.

    Returns:
        A :class:`ClipList` (a list of :class:`ClipItem`) whose ``skipped`` attribute holds the
        entries left out.

    Raises:
        DatasetError: unknown dataset/split/option, a root that does not have the dataset's
        layout, a missing split list, no clips at all, or (``strict``) any skipped entry.
    """
    name = str(dataset).lower()
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {dataset!r}; choose one of {DATASETS}")
    unknown = set(options) - _OPTIONS[name]
    if unknown:
        raise DatasetError(f"{name}: unknown options {sorted(unknown)}; "
                           f"accepted: {sorted(_OPTIONS[name]) or 'none'}")
    if split is not None and (not isinstance(split, str) or not _SAFE_NAME.match(split)):
        raise DatasetError(f"split must be a plain name such as 'train', got {split!r}")
    root_path = Path(root).expanduser().absolute()
    if not root_path.is_dir():
        raise DatasetError(f"{name}: root {root_path} is not a folder")
    if name in ("grid", "lrw") and (root_path / "manifest.json").is_file() \
            and (root_path / name).is_dir():
        root_path = root_path / name  # an avlib corpus folder: its GRID or LRW part
    listing = _Listing(name, root_path, strict, allow_symlinks_outside)
    file_path = None if split_file is None else Path(split_file).expanduser().absolute()
    if name == "acappella":
        return _list_acappella(listing, split, file_path)
    listers = {"lrs2": _list_lrs2, "lrs3": _list_lrs3, "lrw": _list_lrw, "grid": _list_grid,
               "corpus": _list_corpus}
    read_text = bool(options.pop("read_text", True))
    return listers[name](listing, split, file_path, read_text, **options)
