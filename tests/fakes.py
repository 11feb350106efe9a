"""Stand-ins for a WebSocket connection, so the hub runs in a unit test with no socket.

:class:`FakeConnection` is what :class:`chathub.client.Client` needs of a websockets
connection: a transport it writes frames to, a protocol state, and ``close()``. The
frames written are decoded back to JSON (:meth:`FakeConnection.frames`).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.protocol import State

from chathub.peer import Client


class FakeTransport:
    """Collects what is written; ``stalled`` keeps it all as backlog (a reader that stopped)."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.stalled = False
        self.backlog = 0
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.data += data
        if self.stalled:
            self.backlog += len(data)

    def get_write_buffer_size(self) -> int:
        return self.backlog

    def abort(self) -> None:
        self.aborted = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class _Protocol:
    def __init__(self) -> None:
        self.state = State.OPEN


class FakeConnection:
    """Enough of a ServerConnection for a :class:`Client`."""

    def __init__(self) -> None:
        self.transport = FakeTransport()
        self.protocol = _Protocol()
        self.closed: tuple[int, str] | None = None
        self.closed_event = asyncio.Event()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if len(reason.encode()) > 123:  # as websockets does
            raise ValueError("close reason is too long")
        self.protocol.state = State.CLOSED
        self.closed = (int(code), reason)
        self.closed_event.set()

    def frames(self) -> list[dict[str, Any]]:
        """Every text frame written so far, decoded."""
        out, data, i = [], bytes(self.transport.data), 0
        while i < len(data):
            n = data[i + 1] & 0x7F
            i += 2
            if n == 126:
                n, i = int.from_bytes(data[i:i + 2], "big"), i + 2
            elif n == 127:
                n, i = int.from_bytes(data[i:i + 8], "big"), i + 8
            out.append(json.loads(data[i:i + n]))
            i += n
        return out

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.frames() if f["type"] == kind]


def fake_client(user: str) -> tuple[Client, FakeConnection]:
    ws = FakeConnection()
    return Client(ws, user, "127.0.0.1", "test"), ws  # type: ignore[arg-type]
