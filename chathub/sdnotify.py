"""Tell systemd how ``serve`` is doing (``Type=notify`` units), through ``$NOTIFY_SOCKET``.

systemd passes the path of a datagram Unix socket in ``NOTIFY_SOCKET`` (a name
starting with ``@`` is an abstract socket). :func:`notify` sends one datagram of
``KEY=VALUE`` lines: ``READY=1`` once the listener is up, ``STOPPING=1`` when
graceful shutdown begins, ``STATUS=...`` for ``systemctl status``. Outside
systemd the variable is unset and :func:`notify` does nothing. A failure to
send is logged once and never stops the daemon.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger("chathub.sdnotify")

_failed = False


def socket_address(value: str) -> str | bytes:
    """``$NOTIFY_SOCKET`` → an address for ``socket.connect`` (``@name`` → abstract ``\\0name``)."""
    if value.startswith("@"):
        return b"\0" + os.fsencode(value[1:])
    return value


def notify(*fields: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``fields`` (e.g. ``"READY=1"``, ``"STATUS=listening"``) as one datagram.

    Returns:
        True when a datagram was sent; False when there is no ``$NOTIFY_SOCKET`` or it failed.
    """
    global _failed
    env = os.environ if environ is None else environ
    target = env.get("NOTIFY_SOCKET")
    if not target or not fields:
        return False
    payload = "\n".join(fields).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(socket_address(target))
            s.sendall(payload)
    except OSError as exc:
        if not _failed:
            log.warning("cannot notify systemd at %s: %s", target, exc)
            _failed = True
        return False
    return True


def ready(status: str) -> bool:
    """``READY=1``: the daemon accepts connections."""
    return notify("READY=1", f"STATUS={status}")


def stopping(status: str = "draining connections") -> bool:
    """``STOPPING=1``: graceful shutdown has begun."""
    return notify("STOPPING=1", f"STATUS={status}")
