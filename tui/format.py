"""Short human forms of the daemon's figures: durations, byte counts, rates, times."""

from __future__ import annotations

import time


def duration(seconds: float | None) -> str:
    """``42s``, ``3m 05s``, ``2h 07m``, ``4d 01h``; ``—`` when unknown."""
    if seconds is None:
        return "—"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m {s:02d}s"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h}h {m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d {h:02d}h"


def size(n: float | None) -> str:
    """Bytes as ``512 B``, ``1.5 KB``, ``12.0 MB`` (powers of 1024)."""
    if n is None:
        return "—"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if abs(value) < 1024 or unit == "GB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"  # pragma: no cover - the loop returns


def count(n: float | None) -> str:
    """An integer with thousands separators; ``—`` when unknown."""
    return "—" if n is None else f"{int(n):,}"


def counted(n: float | None, noun: str) -> str:
    """``count(n)`` and ``noun``, plural unless n is 1: "1 user", "3 users", "— users"."""
    return f"{count(n)} {noun}{'' if n == 1 else 's'}"


def rate(n: float | None) -> str:
    """A per-second figure with one decimal; ``—`` when unknown."""
    return "—" if n is None else f"{float(n):,.1f}"


def clock(ts_ms: int | float | None) -> str:
    """Epoch milliseconds as local ``HH:MM:SS`` (now when missing)."""
    seconds = ts_ms / 1000 if ts_ms else time.time()
    return time.strftime("%H:%M:%S", time.localtime(seconds))


def stamp(ts_ms: int | float | None, now: float | None = None) -> str:
    """Epoch milliseconds as local ``HH:MM:SS`` when on today's date, else
    ``YYYY-MM-DD HH:MM``; ``—`` when unknown. ``now`` is epoch seconds."""
    if not ts_ms:
        return "—"
    when = time.localtime(ts_ms / 1000)
    today = time.localtime(time.time() if now is None else now)
    if when[:3] == today[:3]:
        return clock(ts_ms)
    return time.strftime("%Y-%m-%d %H:%M", when)
