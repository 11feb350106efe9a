"""The listening port: why it could not be opened, in words an operator acts on, and a
check that ``serve --workers N`` makes before it starts anything.

A port in use, a privileged port or a host that is not this machine's used to end
``chathub serve`` with a traceback (and ``--workers`` restarted its workers forever).
"""

from __future__ import annotations

import errno
import socket

from .errors import ServiceError


def listen_failure(exc: OSError) -> str:
    """Why a listener on a host and port could not open (one short phrase)."""
    if isinstance(exc, socket.gaierror):
        return "no such host or address"
    if exc.errno == errno.EADDRINUSE:
        return "the port is in use (another chathub, or another program)"
    if exc.errno == errno.EACCES:
        return "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "this machine has no such address"
    return (exc.strerror or str(exc)).lower()


def host_port(host: str, port: int) -> str:
    """``host:port`` as it goes in a URL: an IPv6 address in brackets (``[::1]:8080``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def page_url(host: str, port: int) -> str:
    """The browser page's address on a listener bound to ``host:port``, for a person to open.

    A wildcard host (``0.0.0.0``, ``::``, empty) is not an address a browser should be
    pointed at, so the page is then named on loopback (``http://127.0.0.1:8080/``).
    """
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://{host_port(host, port)}/"


def cannot_listen(host: str, port: int, exc: OSError) -> ServiceError:
    """The error ``serve`` stops with: ``cannot listen on HOST:PORT: why``."""
    return ServiceError(f"cannot listen on {host_port(host, port)}: {listen_failure(exc)}")


def check_port(host: str, port: int) -> None:
    """Bind ``host:port`` as the workers will (SO_REUSEPORT) and let it go again.

    Raises:
        ServiceError: the workers could not listen there (one line).
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, addr = infos[0]
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind(addr)
    except OSError as exc:
        raise cannot_listen(host, port, exc) from None
