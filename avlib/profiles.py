"""Profiles: named parameter sets (``profiles/<name>.yml``) for the book's chapters and commands.

A profile holds values shared by every chapter (``shared``) and per-chapter sections
(``chapters.<name>``). The book runner (:mod:`avlib.book`) injects them into chapters; commands
such as ``avlib corpus make --profile cpu`` read their own section. ``-p key=value`` /
``--set key=value`` overrides are parsed here with YAML typing.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from avlib.artifacts import project_root
from avlib.cli import EXIT_USAGE

__all__ = ["ProfileError", "load_profile", "parse_overrides"]


class ProfileError(RuntimeError):
    """A profile or an override the user has to fix (unknown name, bad key, malformed pair)."""

    exit_code = EXIT_USAGE  # the command line reports it as a usage error


def load_profile(name: str, root: Path | None = None) -> dict:
    """Read ``profiles/<name>.yml`` into ``{"shared": {...}, "chapters": {...}, ...}``."""
    root = Path(root or project_root())
    path = root / "profiles" / f"{name}.yml"
    if not path.is_file():
        known = sorted(p.stem for p in (root / "profiles").glob("*.yml"))
        raise ProfileError(f"unknown profile {name!r}; profiles are: {', '.join(known)}")
    data = yaml.safe_load(path.read_text()) or {}
    unknown = set(data) - {"description", "shared", "chapters"}
    if unknown:
        raise ProfileError(f"{path}: unknown top-level keys {sorted(unknown)}; "
                        "use 'description', 'shared' and 'chapters'")
    data.setdefault("shared", {})
    data.setdefault("chapters", {})
    return data


def parse_overrides(pairs: list[str] | None) -> dict:
    """``["epochs=3", "device=cuda"]`` -> ``{"epochs": 3, "device": "cuda"}`` (YAML-typed values)."""
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ProfileError(f"parameter override {pair!r} must look like key=value")
        key, value = pair.split("=", 1)
        out[key.strip()] = yaml.safe_load(value) if value.strip() else None
    return out
