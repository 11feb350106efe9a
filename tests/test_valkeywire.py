"""Packing Valkey commands in C: the same bytes as valkey-py's Python packing, the
same errors, and the right connection class for each kind of URL."""

from __future__ import annotations

import pytest
from valkey.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from valkey.exceptions import DataError

from chathub.valkeywire import (
    PackedConnection,
    PackedSSLConnection,
    PackedUnixConnection,
    pool_options,
)

COMMANDS = [
    ("PING",),
    ("FCALL", "chathub_accept_chat", 7, "chathub:stream:general", "chathub:queue",
     "chathub:ids", "chathub:rate:chat:ann", "h", "ht", "chathub:deleted:general",
     0, 4, "ann", "héllo wörld ✓ 🐍", "general", "chathub:", "node-1", 3_600_000),
    ("CONFIG GET", "maxmemory"),
    (b"CLIENT SETNAME", b"x"),
    ("SET", b"\x00\xffbinary", 1.5),
    ("ZADD", "k", 1e20, "m", -0.25, "n", 2**62, "o"),
    ("SET", "empty", ""),
]


@pytest.mark.parametrize("args", COMMANDS, ids=[str(c[0]) for c in COMMANDS])
def test_same_bytes_as_python_packing(args):
    """Each command packs to exactly what valkey-py's own asyncio connection sends."""
    python = b"".join(Connection().pack_command(*args))
    assert b"".join(PackedConnection().pack_command(*args)) == python


@pytest.mark.parametrize("bad", [True, None, object()])
def test_unpackable_argument_is_a_data_error(bad):
    """An argument Python packing refuses with DataError is refused the same way."""
    with pytest.raises(DataError):
        Connection().pack_command("SET", "k", bad)
    with pytest.raises(DataError):
        PackedConnection().pack_command("SET", "k", bad)


@pytest.mark.parametrize(("url", "cls", "where"), [
    ("valkey://127.0.0.1:6390/2", PackedConnection, {"host": "127.0.0.1", "port": 6390, "db": 2}),
    ("redis://h", PackedConnection, {"host": "h"}),
    ("valkeys://h:7000", PackedSSLConnection, {"host": "h", "port": 7000}),
    ("unix:///tmp/v.sock?db=1", PackedUnixConnection, {"path": "/tmp/v.sock", "db": 1}),
])
def test_pool_options_keep_the_urls_kind_and_pack_in_c(url, cls, where):
    """TCP, TLS and Unix-socket URLs each get the C-packing subclass of their own class."""
    opts = pool_options(url)
    assert opts["connection_class"] is cls
    assert issubclass(cls, (Connection, SSLConnection, UnixDomainSocketConnection))
    for key, value in where.items():
        assert opts[key] == value


def test_unknown_scheme_is_refused():
    with pytest.raises(ValueError, match="scheme"):
        pool_options("http://127.0.0.1:6379")


async def test_kv_round_trips_through_c_packing(valkey_url):
    """A real Valkey answers commands packed in C, unicode and binary included."""
    from chathub.kv import KV

    kv = KV(valkey_url, timeout=2.0, prefix="wiretest:")
    try:
        packed = (PackedConnection, PackedUnixConnection, PackedSSLConnection)
        assert kv.client.connection_pool.connection_class in packed
        text = "héllo ✓ 🐍 " * 100
        await kv.client.set("wiretest:k", text)
        assert await kv.client.get("wiretest:k") == text
        pipe = kv.client.pipeline(transaction=False)
        for i in range(50):
            pipe.rpush("wiretest:l", f"{i}:{text[:i]}")
        pipe.lrange("wiretest:l", 0, -1)
        replies = await pipe.execute()
        assert replies[-1] == [f"{i}:{text[:i]}" for i in range(50)]
        await kv.client.delete("wiretest:k", "wiretest:l")
    finally:
        await kv.close()
