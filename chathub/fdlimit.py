"""Open files: room for every connection ``max_connections`` allows, checked at start.

Each WebSocket connection holds one file descriptor. A process past its open-files
limit cannot accept: the kernel's backlog fills, new clients hang without an answer,
and ``/healthz`` and the admin socket stop answering too. So at start the daemon
raises its soft limit toward the hard one (as nginx's ``worker_rlimit_nofile`` and
systemd's ``LimitNOFILE`` do) and, when even that cannot hold ``max_connections``
plus what the daemon itself needs, lowers ``max_connections`` with a warning that
names both numbers: connections past it are then refused with HTTP 503.
"""

from __future__ import annotations

import logging
import resource

from .errors import ConfigError

log = logging.getLogger("chathub.fdlimit")

#: descriptors the daemon keeps for itself besides its clients' connections: the
#: listening sockets, the admin socket and its clients, the PostgreSQL pool and
#: embedded servers' pipes, the Valkey pool, log files, the event loop's own (epoll,
#: self-pipe) and headroom for connections being accepted or closed
RESERVED = 256


def ensure_room(max_connections: int, reserved: int = RESERVED) -> int:
    """Raise the soft open-files limit for ``max_connections``; return the number the
    process can hold (``max_connections`` or fewer, with a warning).

    Raises:
        ConfigError: not even one connection fits (the hard limit is below ``reserved``).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max_connections + reserved
    if soft != resource.RLIM_INFINITY and soft < want:
        target = want if hard == resource.RLIM_INFINITY else min(want, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:  # some sandboxes refuse; keep what we have
            log.warning("could not raise the open-files limit from %d to %d: %s", soft, target, exc)
    if soft == resource.RLIM_INFINITY or soft >= want:
        return max_connections
    room = soft - reserved
    if room < 1:
        raise ConfigError(
            f"server.max_connections: the open-files limit ({soft}) leaves no room for "
            f"connections after the {reserved} the daemon keeps; raise it (ulimit -n, LimitNOFILE)")
    log.warning("server.max_connections = %d does not fit the open-files limit of %d "
                "(hard limit %d, %d kept for the daemon); using %d: raise the limit "
                "(ulimit -n, LimitNOFILE) to allow more", max_connections, soft,
                hard, reserved, room)
    return room
