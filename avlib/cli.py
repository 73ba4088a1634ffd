"""The ``avlib`` command line.

Sub-commands (each delegates to the module that owns the concept)::

    avlib book run|build|inspect|list   the book runner            (avlib.book)
    avlib book results [--snapshot]     README and landing results (avlib.results)
    avlib corpus make                   the embedded corpus        (avlib.corpus.make)
    avlib preprocess --dataset ...      videos -> clip store       (avlib.data.preprocess)
    avlib sync check|fix|filter ...     measure / correct AV sync  (avlib.sync.tool)
    avlib lipsync --face --audio -o     lip-sync a face to new speech (avlib.lipsync.infer)
    avlib lipread VIDEO                 read the words of a video from the lips (avlib.vsr.infer)
    avlib lip2speech VIDEO -o OUT.wav   speak a silent video from the lips (avlib.lip2speech.infer)
    avlib env                           this machine and its packages (avlib.envinfo)

Errors. Every sub-command runs inside one wrapper (:func:`run_command`) that turns the ordinary
failures (a missing input, a full disk, a read-only folder, an existing output, an unknown
profile, Ctrl-C) into one line on stderr, ``avlib <command>: <what happened>: <remedy>``, naming
the user's path (never a hidden temporary), and an exit code per class:

====  =====================  ==============================================================
code  name                   meaning
====  =====================  ==============================================================
0     ``EXIT_OK``            done
1     ``EXIT_BUG``           an unexpected error (a bug): the traceback is printed
2     ``EXIT_USAGE``         bad arguments or settings: unknown profile, invalid option value,
                             a store written with other settings, ``--out`` inside ``--root``
3     ``EXIT_INPUT``         an input cannot be used: missing, unreadable, not a folder/file,
                             not media, damaged, no face; weights that do not load
4     ``EXIT_OUTPUT``        an output cannot be written: disk full, quota, read-only file
                             system, permission denied, the output exists (``--force``), a
                             folder where a file belongs; work already finished is kept
5     ``EXIT_INTERRUPTED``   Ctrl-C or SIGTERM; rerun the same command to resume
6     ``EXIT_INCOMPLETE``    the run finished, but some items failed for a reason other than
                             their content (an I/O error); rerun the same command to retry them
7     ``EXIT_BUSY``          another process is writing the same output folder
====  =====================  ==============================================================

Modules choose the class of their own exceptions with an ``exit_code`` attribute (e.g.
:class:`avlib.media.MediaError` is an input problem); OS errors are classed by their errno and
by whether their file lies in the command's output (``--out``/``--output``/``--plot``/``--mux``).
Set ``AVLIB_TRACEBACK=1`` to get the traceback of every error.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import json
import os
import signal
import sys
import traceback
from pathlib import Path

EXIT_OK = 0
EXIT_BUG = 1
EXIT_USAGE = 2
EXIT_INPUT = 3
EXIT_OUTPUT = 4
EXIT_INTERRUPTED = 5
EXIT_INCOMPLETE = 6
EXIT_BUSY = 7

#: sub-command -> (module, help). Modules expose ``add_arguments(parser)`` and
#: ``main_from_args(args) -> int``; they are imported only when their command runs.
COMMANDS = {
    "book": ("avlib.book", "execute chapters under a profile and build the HTML book"),
    "corpus": ("avlib.corpus.make", "generate the embedded talking-face corpus"),
    "preprocess": ("avlib.data.preprocess", "preprocess a dataset's videos into a clip store"),
    "sync": ("avlib.sync.tool", "check, fix or filter the audio-visual sync of videos (LSE-D/C)"),
    "lipsync": ("avlib.lipsync.infer", "lip-sync a face video or image to new speech (Wav2Lip)"),
    "lipread": ("avlib.vsr.infer", "read the words of a video from the lips (SyncVSR, MMAB)"),
    "lip2speech": ("avlib.lip2speech.infer", "speak a silent video from the lips (VCA-GAN)"),
}

#: errnos that are about writing whatever the file: space, quota, read-only, too big.
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}
#: args attributes that name what a command writes.
_OUTPUT_ARGS = ("out", "output", "plot", "mux")


class CommandError(Exception):
    """A command cannot run on this input or with these options; the message says why and what
    to do. ``exit_code`` is its command-line class: an input problem unless said otherwise.
    Each command subclasses it (``LipreadError``, ``LipsyncError``, ...)."""

    def __init__(self, message: str, exit_code: int = EXIT_INPUT):
        super().__init__(message)
        self.exit_code = exit_code

    def __reduce__(self):
        return (type(self), (str(self), self.exit_code))


def torch_device(device, error: type[Exception] = ValueError):
    """``torch.device(device)``, checked: an unknown name or CUDA without a GPU raises
    ``error(message, EXIT_USAGE)`` (each command passes its own error class)."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise error(f"unknown device {device!r}: use 'cpu', 'cuda' or 'cuda:N'", EXIT_USAGE) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise error(f"device {str(dev)!r} was asked for but torch sees no CUDA GPU; use "
                    "--device cpu", EXIT_USAGE)
    return dev


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="avlib", description="Lips & Voices command line")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_, help_) in COMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    sub.add_parser("env", help="print this machine, package versions and git commit as JSON")
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in (*COMMANDS, "env"):
        parser.parse_args(argv)  # prints help or the usage error
        return EXIT_USAGE
    command, rest = argv[0], argv[1:]
    if command == "env":
        from avlib import envinfo

        print(json.dumps(envinfo.report(), indent=2))
        return EXIT_OK
    module = importlib.import_module(COMMANDS[command][0])
    sub_parser = argparse.ArgumentParser(prog=f"avlib {command}", description=COMMANDS[command][1])
    module.add_arguments(sub_parser)
    args = sub_parser.parse_args(rest)
    action = next((getattr(args, name) for name in ("action", "corpus_command", "book_command")
                   if isinstance(getattr(args, name, None), str)), None)
    return run_command(f"avlib {command}" + (f" {action}" if action else ""), module.main_from_args, args)


# ---------------------------------------------------------------------------------------------
# the error wrapper
# ---------------------------------------------------------------------------------------------
class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that cleanup code (temporaries, locks) runs."""


def _on_sigterm(signum, frame):
    raise _Terminated()


def run_command(prog: str, func, args: argparse.Namespace) -> int:
    """Run ``func(args)`` and return its exit code, turning errors into one line and a code
    (see the module docstring). SIGTERM is handled like Ctrl-C while it runs."""
    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):  # not the main thread
        pass
    try:
        return int(func(args) or 0)
    except BaseException as err:  # noqa: BLE001 - classified below, bugs re-shown in full
        if isinstance(err, SystemExit):
            raise
        code, message = classify(err, _outputs(args))
        if code == EXIT_BUG or os.environ.get("AVLIB_TRACEBACK"):
            traceback.print_exception(type(err), err, err.__traceback__, file=sys.stderr)
        print(f"{prog}: {message}", file=sys.stderr)
        return code
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _outputs(args) -> list[Path]:
    found = []
    for name in _OUTPUT_ARGS:
        value = getattr(args, name, None)
        if isinstance(value, (str, os.PathLike)) and str(value):
            found.append(Path(value).expanduser().absolute())
    return found


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _user_path(filename, outputs: list[Path]) -> tuple[str, bool]:
    """(the path to name, whether it belongs to an output). Files inside an output's hidden
    temporaries, and temporaries next to an output file, are named by the output itself."""
    if filename is None:
        return "", False
    path = Path(os.fsdecode(filename)).expanduser().absolute()
    for out in outputs:
        if _within(path, out):
            hidden = any(part.startswith(".") and part not in (".", "..")
                         for part in path.relative_to(out).parts)
            return str(out if hidden else path), True
        if path.parent == out.parent and path.name.startswith(f".{out.name}"):
            return str(out), True  # a temporary of the output file
        if _within(out, path):  # the output's folder itself (missing, read-only, a file ...)
            return str(path), True
    return str(path), False


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def classify(err: BaseException, outputs: list[Path] = ()) -> tuple[int, str]:
    """The exit code and the one-line message for an error raised by a command."""
    if isinstance(err, KeyboardInterrupt):
        what = "terminated" if isinstance(err, _Terminated) else "interrupted"
        return EXIT_INTERRUPTED, (f"{what}; finished work is kept: rerun the same command to "
                                  "continue where it stopped")
    code = getattr(err, "exit_code", None)
    if isinstance(code, int):
        return code, f"error: {err}"
    from avlib.profiles import ProfileError

    if isinstance(err, ProfileError):
        return EXIT_USAGE, f"error: {err}"
    if type(err).__name__ == "LibsndfileError":  # soundfile hides the errno ("System error")
        return EXIT_OUTPUT, (f"error: writing audio failed ({_first_line(err)}); the disk may be "
                             "full or the folder not writable: free space or choose another output")
    if isinstance(err, OSError):
        return _classify_os_error(err, outputs)
    if isinstance(err, ValueError):
        return EXIT_USAGE, f"error: {_first_line(err)}"
    return EXIT_BUG, f"internal error ({type(err).__name__}: {_first_line(err)}); please report it"


def _classify_os_error(err: OSError, outputs: list[Path]) -> tuple[int, str]:
    path, is_output = _user_path(err.filename, outputs)
    if not path and outputs and err.errno in _WRITE_ERRNOS:
        path, is_output = str(outputs[0]), True
    named = f"{path}: " if path else ""
    reason = err.strerror or _first_line(err)
    # A message written for the user (our own OSErrors) is kept whole.
    own = str(err) if err.strerror is None and err.errno is None else None
    if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return EXIT_OUTPUT, (f"cannot write {named}{reason}; free disk space (or raise the quota) "
                             "and rerun the same command: finished work is kept")
    if err.errno == errno.EROFS:
        return EXIT_OUTPUT, (f"cannot write {named}the file system is read-only; choose a "
                             "writable output folder")
    if isinstance(err, FileExistsError):
        return EXIT_OUTPUT, own or (f"{named}already exists; pass --force to replace it, or "
                                    "choose a new name")
    code = EXIT_OUTPUT if is_output else EXIT_INPUT
    if isinstance(err, PermissionError):
        verb = "write" if is_output else "read"
        return code, (f"cannot {verb} {named}permission denied; fix its permissions or choose "
                      f"another {'output' if is_output else 'input'}")
    if isinstance(err, IsADirectoryError):
        return code, own or f"{named}is a folder; give a file path"
    if isinstance(err, NotADirectoryError):
        return code, own or f"{named}a part of this path is a file, not a folder; fix the path"
    if isinstance(err, FileNotFoundError):
        if own:
            return code, f"error: {own}"
        what = "the output folder does not exist; create it first" if is_output else "not found"
        return code, f"{named}{what}"
    if own:
        return code, f"error: {own}"
    return code, (f"{'cannot write' if is_output else 'cannot read'} {named}{reason} "
                  f"(errno {err.errno}); check the disk or network file system and rerun")


if __name__ == "__main__":
    sys.exit(main())
