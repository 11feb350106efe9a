"""Who is on the other end of an admin connection: the Unix user read with ``SO_PEERCRED``.

The audit trail records it with every operator action (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import contextvars
import pwd
import socket
import struct
from dataclasses import dataclass


@dataclass(frozen=True)
class Peer:
    """Who is on the other end of an admin connection (None: unknown)."""

    uid: int | None = None
    user: str | None = None
    pid: int | None = None


#: a peer whose credentials could not be read
NOBODY = Peer()
#: the peer of the admin connection whose request is being served (set per connection)
PEER: contextvars.ContextVar[Peer] = contextvars.ContextVar("chathub_admin_peer", default=NOBODY)


def peer_of(writer: asyncio.StreamWriter) -> Peer:
    """The credentials of a Unix socket's peer (``SO_PEERCRED``; Linux)."""
    sock = writer.get_extra_info("socket")
    opt = getattr(socket, "SO_PEERCRED", None)
    if sock is None or opt is None:
        return Peer()
    try:
        pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, opt,
                                                             struct.calcsize("3i")))
    except OSError:
        return Peer()
    try:
        name: str | None = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = None
    return Peer(uid, name, pid)
