"""What the code ran on: package versions, CPU and GPU model, git commit.

Every executed chapter records this (``run.json``) and the book's status page shows it.
"""
from __future__ import annotations

import os
import platform
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

#: Packages whose versions decide results: recorded with every run.
KEY_PACKAGES = (
    "avlib", "torch", "numpy", "scipy", "librosa", "av", "mediapipe",
    "opencv-contrib-python", "papermill", "jupyter-book",
)


def package_versions(names=KEY_PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution in ``names`` (``None`` when absent)."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


@lru_cache(maxsize=1)
def cpu_model() -> str:
    """Human-readable CPU model, e.g. 'AMD EPYC 7B13'."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_model() -> str | None:
    """Name of the first CUDA device, or ``None`` when torch sees no GPU."""
    try:
        import torch
    except ImportError:
        return None
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return None


def memory_gib() -> float | None:
    """Total physical memory in GiB (Linux), ``None`` elsewhere."""
    try:
        pages = os.sysconf("SC_PHYS_PAGES")
        page = os.sysconf("SC_PAGE_SIZE")
        return round(pages * page / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def git_commit(root: str | os.PathLike | None = None) -> str | None:
    """Commit hash of the checkout at ``root`` with a ``+dirty`` mark, or ``None`` outside git."""
    root = Path(root or Path.cwd())
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return sha + ("+dirty" if dirty else "")


def machine() -> dict:
    """A compact description of this machine for run records."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": memory_gib(),
        "gpu": gpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }


def report(root: str | os.PathLike | None = None) -> dict:
    """Machine, package versions and git commit in one dict."""
    return {"machine": machine(), "packages": package_versions(), "git_commit": git_commit(root)}
