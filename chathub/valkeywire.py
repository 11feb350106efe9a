"""Valkey connections that pack commands in C (``libvalkey``) instead of Python.

valkey-py's *sync* connections pack a command with ``libvalkey.pack_command`` when
the extension is installed, but its *asyncio* connections always pack in Python
(``Encoder.encode`` per argument). chathub stamps every chat with one ``FCALL`` of
about 17 arguments from the hub loop; measured here, packing one took 13 µs in
Python and 1.5 µs in C, and in the channels layout (many small channels, one
``FCALL`` per chat) Python packing was 14 % of the daemon's CPU.

:func:`pool_options` turns a Valkey URL into keyword arguments for a valkey-py
connection pool whose connection class (TCP, TLS or Unix socket, as the URL says)
packs in C. The bytes on the wire are the same; arguments libvalkey does not take
(a ``bool``, ``None``) raise valkey-py's ``DataError``, as Python packing does.
Without libvalkey (it comes with ``valkey[libvalkey]``, a dependency) the plain
classes are used.
"""

from __future__ import annotations

from typing import Any

from valkey.asyncio.connection import (
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
    parse_url,
)
from valkey.exceptions import DataError

try:
    import libvalkey
except ImportError:  # pragma: no cover - libvalkey is a declared dependency
    libvalkey = None


class _PackedInC:
    """``pack_command`` of valkey-py's asyncio connections, done by ``libvalkey``."""

    def pack_command(self, *args: Any) -> list[bytes]:
        # valkey-py splits a command name with spaces ("CONFIG GET") into words
        first = args[0]
        if isinstance(first, str):
            args = (*first.encode().split(), *args[1:])
        elif b" " in first:
            args = (*first.split(), *args[1:])
        try:
            return [libvalkey.pack_command(args)]
        except TypeError as exc:
            raise DataError(str(exc)) from None


class PackedConnection(_PackedInC, Connection):
    """A TCP connection (``valkey://``) packing in C."""


class PackedSSLConnection(_PackedInC, SSLConnection):
    """A TLS connection (``valkeys://``, ``rediss://``) packing in C."""


class PackedUnixConnection(_PackedInC, UnixDomainSocketConnection):
    """A Unix-socket connection (``unix://``) packing in C."""


_PACKED: dict[type, type] = {
    Connection: PackedConnection,
    SSLConnection: PackedSSLConnection,
    UnixDomainSocketConnection: PackedUnixConnection,
}


def pool_options(url: str) -> dict[str, Any]:
    """The keyword arguments a valkey-py asyncio pool needs for ``url``, with a connection
    class that packs in C: ``{"host": ..., "port": ..., "connection_class": ...}``.

    Raises:
        ValueError: the URL's scheme is not one valkey-py knows.
    """
    options = parse_url(url)
    plain = options.get("connection_class", Connection)
    if libvalkey is not None:
        options["connection_class"] = _PACKED.get(plain, plain)
    return options
