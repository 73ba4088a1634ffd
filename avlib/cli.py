"""The ``avlib`` command line.

Sub-commands (each delegates to the module that owns the concept)::

    avlib book run|build|inspect|list   the book runner            (avlib.book)
    avlib corpus make                   the embedded corpus        (avlib.corpus.make)
    avlib preprocess --dataset ...      videos -> clip store       (avlib.data.preprocess)
    avlib sync check|fix VIDEO          measure / correct AV sync  (avlib.sync.tool)
    avlib env                           this machine and its packages (avlib.envinfo)
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys

#: sub-command -> (module, help). Modules expose ``add_arguments(parser)`` and
#: ``main_from_args(args) -> int``; they are imported only when their command runs.
COMMANDS = {
    "book": ("avlib.book", "execute chapters under a profile and build the HTML book"),
    "corpus": ("avlib.corpus.make", "generate the embedded talking-face corpus"),
    "preprocess": ("avlib.data.preprocess", "preprocess a dataset's videos into a clip store"),
    "sync": ("avlib.sync.tool", "check or fix the audio-visual offset of a video"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="avlib", description="Lips & Voices command line")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_, help_) in COMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    sub.add_parser("env", help="print this machine, package versions and git commit as JSON")
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in (*COMMANDS, "env"):
        parser.parse_args(argv)  # prints help or the usage error
        return 2
    command, rest = argv[0], argv[1:]
    if command == "env":
        from avlib import envinfo

        print(json.dumps(envinfo.report(), indent=2))
        return 0
    module = importlib.import_module(COMMANDS[command][0])
    sub_parser = argparse.ArgumentParser(prog=f"avlib {command}", description=COMMANDS[command][1])
    module.add_arguments(sub_parser)
    return module.main_from_args(sub_parser.parse_args(rest))


if __name__ == "__main__":
    sys.exit(main())
