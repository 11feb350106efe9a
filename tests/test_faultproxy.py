"""The test helper FaultProxy: pass-through, latency, stall/resume and cut, in-loop and threaded."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import pytest

from tests.faultproxy import FaultProxy

#: seconds a test waits for bytes that should arrive
WAIT = 5.0


@pytest.fixture
async def echo() -> AsyncIterator[tuple[str, int]]:
    """A loopback echo server."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield "127.0.0.1", server.sockets[0].getsockname()[1]
    server.close()


async def _roundtrip(port: int, payload: bytes, timeout: float = WAIT) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        return await asyncio.wait_for(reader.readexactly(len(payload)), timeout)
    finally:
        writer.close()


async def test_forwards_both_ways(echo):
    """Bytes reach the target and its answer comes back, unchanged."""
    async with FaultProxy(*echo) as proxy:
        data = bytes(range(256)) * 1000
        assert await _roundtrip(proxy.port, data) == data
        assert proxy.accepted == 1 and proxy.forwarded["up"] == len(data)


async def test_latency_delays_each_direction(echo):
    """0.2 s up and 0.2 s down make one small round trip take at least 0.4 s."""
    async with FaultProxy(*echo) as proxy:
        proxy.set_latency(up=0.2, down=0.2)
        started = time.monotonic()
        assert await _roundtrip(proxy.port, b"ping") == b"ping"
        assert time.monotonic() - started >= 0.4
        proxy.set_latency()
        started = time.monotonic()
        await _roundtrip(proxy.port, b"ping")
        assert time.monotonic() - started < 0.4


async def test_stall_holds_bytes_until_resume(echo):
    """While stalled nothing arrives; after resume the held bytes do, in order."""
    async with FaultProxy(*echo) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        try:
            proxy.stall()
            writer.write(b"held")
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(reader.readexactly(4), 0.3)
            proxy.resume()
            assert await asyncio.wait_for(reader.readexactly(4), WAIT) == b"held"
        finally:
            writer.close()


async def test_cut_resets_open_connections_and_accepts_new_ones(echo):
    """cut() ends every open connection; a new connection works again."""
    async with FaultProxy(*echo) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"x")
        await asyncio.wait_for(reader.readexactly(1), WAIT)
        proxy.cut()
        try:
            assert await asyncio.wait_for(reader.read(1), WAIT) == b""
        except ConnectionError:
            pass  # a reset is as good as an end of stream
        writer.close()
        assert await _roundtrip(proxy.port, b"again") == b"again"


def _blocking_roundtrip(port: int, payload: bytes, timeout: float) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        return got


async def test_in_thread_from_blocking_code(echo):
    """In its own thread the proxy serves blocking clients, and stall/resume work from here."""
    with FaultProxy(*echo).in_thread() as proxy:
        assert await asyncio.to_thread(_blocking_roundtrip, proxy.port, b"hello", WAIT) == b"hello"
        proxy.stall()
        with pytest.raises(TimeoutError):
            await asyncio.to_thread(_blocking_roundtrip, proxy.port, b"stuck", 0.3)
        proxy.resume()
        assert await asyncio.to_thread(_blocking_roundtrip, proxy.port, b"free", WAIT) == b"free"
