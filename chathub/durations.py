"""Durations as operators type them: ``30s``, ``10m``, ``2h``, ``7d``, ``1w``.

Shared by the CLI (``--for``, ``--since``) and the dashboard's ban, mute and purge
dialogs, so both read the same text the same way. No I/O.
"""

from __future__ import annotations

import re

#: a number (decimals allowed) and one unit letter
DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
#: seconds per unit letter
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """A duration (30s, 10m, 2h, 7d, 1w) in seconds, more than zero.

    Raises:
        ValueError: not a duration, or zero (one line, quoting ``text``).
    """
    m = DURATION_RE.fullmatch(text.strip())
    if not m:
        raise ValueError(f"cannot read {text!r}; use a duration such as 30s, 10m, 2h, 7d")
    seconds = float(m.group(1)) * UNITS[m.group(2)]
    if seconds <= 0:
        raise ValueError(f"{text!r} is no time at all; use a duration such as 30s, 10m, 2h, 7d")
    return seconds
