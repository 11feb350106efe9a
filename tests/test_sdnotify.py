"""systemd's notify protocol: READY=1 once listening, STOPPING=1 on SIGTERM, to a real socket."""

from __future__ import annotations

import asyncio
import socket
import uuid
from pathlib import Path

import pytest

from chathub import sdnotify
from tests.procs import _healthy, free_port

#: seconds to wait for a datagram
RECV_TIMEOUT = 30.0


def _dgram(address: str | bytes) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(address)
    s.setblocking(False)
    return s


async def _recv(s: socket.socket) -> dict[str, str]:
    data = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(s, 4096), RECV_TIMEOUT)
    return dict(line.split("=", 1) for line in data.decode().splitlines())


async def test_notify_to_a_path_and_an_abstract_socket(short_dir: Path):
    with _dgram(str(short_dir / "notify")) as s:
        assert sdnotify.notify("READY=1", "STATUS=hi", environ={"NOTIFY_SOCKET": str(short_dir / "notify")})
        assert await _recv(s) == {"READY": "1", "STATUS": "hi"}
    name = f"chathub-test-{uuid.uuid4().hex}"
    with _dgram(b"\0" + name.encode()) as s:
        assert sdnotify.notify("STOPPING=1", environ={"NOTIFY_SOCKET": "@" + name})
        assert await _recv(s) == {"STOPPING": "1"}


def test_without_notify_socket_nothing_is_sent(short_dir: Path):
    assert sdnotify.notify("READY=1", environ={}) is False
    # a socket that is gone is a logged failure, never an exception
    assert sdnotify.notify("READY=1", environ={"NOTIFY_SOCKET": str(short_dir / "gone")}) is False


async def test_serve_reports_ready_when_listening_and_stopping_on_sigterm(spawn, short_dir: Path,
                                                                           monkeypatch: pytest.MonkeyPatch):
    """A real ``chathub serve`` subprocess with NOTIFY_SOCKET pointing at a socket the test binds."""
    path = short_dir / "notify"
    with _dgram(str(path)) as s:
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        port = free_port()
        starting = asyncio.create_task(spawn(port=port))
        first = await _recv(s)
        # READY comes only once the listener is up: /healthz answers at that moment
        assert first["READY"] == "1" and first["STATUS"] == f"listening on 127.0.0.1:{port}"
        assert await _healthy(port)
        proc = await starting
        waiting = asyncio.create_task(proc.terminate())
        second = await _recv(s)
        assert second["STOPPING"] == "1"
        assert await waiting == 0
