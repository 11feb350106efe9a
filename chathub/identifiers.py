"""User names, channel names and message ids as the wire protocol allows them.

Pure functions over strings, no I/O: names and ids that arrive from outside (a frame,
a query parameter, an admin or API request) are checked with these before use.
Shapes (docs/protocol.md: ids in its opening, user names under "Connecting", channel
names under "Channels"):

- a user name: 1-32 of ``A-Z a-z 0-9 _ - .``
- a channel name: 1-64 of ``A-Z a-z 0-9 _ - . :`` after an optional ``$`` (private)
- a message id: a Valkey stream id ``"<ms>-<seq>"``, each part an unsigned 64-bit integer
"""

from __future__ import annotations

import re

#: user names: 1-32 of A-Z a-z 0-9 _ - .
USER_RE = re.compile(r"[A-Za-z0-9_.\-]{1,32}")
#: channel names: 1-64 of A-Z a-z 0-9 _ - . : after an optional "$" (private channels)
CHANNEL_RE = re.compile(r"\$?[A-Za-z0-9_.:\-]{1,64}")
#: message ids are Valkey stream ids: "<ms>-<seq>", each part an unsigned 64-bit integer
ID_RE = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")
#: the largest value of either part of an id (Valkey's streamID is two uint64_t)
ID_PART_MAX = 2**64 - 1
#: the lowest id Valkey ever issues: XADD refuses 0-0, so nothing is older than 0-1
FIRST_ID = (0, 1)


def valid_channel(name: str | None) -> bool:
    """Whether ``name`` is an acceptable channel name (``$`` first for a private one)."""
    return name is not None and CHANNEL_RE.fullmatch(name) is not None


def is_private(channel: str) -> bool:
    """Private channels start with ``$``: only tokens that name them may subscribe."""
    return channel.startswith("$")


def valid_user(name: str | None) -> bool:
    """Whether ``name`` is an acceptable user name."""
    return name is not None and USER_RE.fullmatch(name) is not None


def parse_id(value: str) -> tuple[int, int]:
    """Split a message id into its two integers, for ordering.

    Every id that comes from outside (``before``, ``since``, admin commands) passes
    through here: both parts must fit in an unsigned 64-bit integer, as Valkey's do.

    Returns:
        ``(ms, seq)``: the id's time in epoch milliseconds and its sequence number;
        tuples compare in the order Valkey issued the ids.

    Raises:
        ValueError: when ``value`` is not an id or a part is out of range.
    """
    if not isinstance(value, str) or not ID_RE.fullmatch(value):
        raise ValueError(f"not a message id: {str(value)[:60]!r}")
    ms, seq = value.split("-")
    parts = int(ms), int(seq)
    if parts[0] > ID_PART_MAX or parts[1] > ID_PART_MAX:
        raise ValueError(f"message id out of range (each part at most 2^64-1): {value!r}")
    return parts


def canonical_id(value: str) -> str | None:
    """``value`` as Valkey writes it (no leading zeros), or None when it is not a valid id."""
    try:
        ms, seq = parse_id(value)
    except ValueError:
        return None
    return f"{ms}-{seq}"


def before_first(value: str) -> bool:
    """Whether nothing can be older than id ``value`` (it is at or below :data:`FIRST_ID`).

    Raises:
        ValueError: as :func:`parse_id`.
    """
    return parse_id(value) <= FIRST_ID
