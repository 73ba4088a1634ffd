"""Peak-memory helpers shared by the benchmarks (Linux ``/proc``): a benchmark's child process
resets its high-water mark after its set-up, then reads it after the measured run."""
from __future__ import annotations

from pathlib import Path


def rss_kib(field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process in KiB; -1 where unavailable."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False
