"""Chat clients for a chaos run: bounded-rate chat and whispers, and a log of what they saw.

Each :class:`ChaosClient` keeps one connection at a time to one of the hubs. It sends a
chat or a whisper (each text unique in the run) every ``interval`` seconds, records
every message frame it receives, and when its connection ends it records the close
code and reconnects — to the next hub when its own does not answer — with
``?since=`` the newest id it has seen. :class:`Conn` is what the checker reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import websockets
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from tests.helpers import ws_url

#: seconds a connection attempt may take
OPEN_TIMEOUT = 5.0
#: seconds between reconnection attempts (a hub that was killed needs a moment)
RECONNECT_MIN, RECONNECT_MAX = 0.2, 1.0


def id_key(mid: str) -> tuple[int, int]:
    ms, _, seq = mid.partition("-")
    return int(ms), int(seq)


@dataclass
class Conn:
    """One connection as its client saw it."""

    user: str
    hub: int
    since: str | None
    opened: float
    session: str = ""
    recovered: bool | None = None
    history_partial: bool = False
    #: ids of the welcome's history, then of every chat/whisper frame, in arrival order
    welcome_ids: list[str] = field(default_factory=list)
    live_ids: list[str] = field(default_factory=list)
    #: seconds into the run each of ``live_ids`` arrived
    live_at: list[float] = field(default_factory=list)
    #: (id, text, ref) of this client's own messages echoed back to it
    echoed: list[tuple[str, str, str]] = field(default_factory=list)
    #: error codes received (unavailable, rate_limited, ...)
    errors: dict[str, int] = field(default_factory=dict)
    #: refs of this client's messages answered ``unavailable`` ("nothing was sent")
    unavailable_refs: list[str] = field(default_factory=list)
    #: refs answered ``unavailable`` with an unknown outcome ("may have been sent"), resent
    unsure_refs: list[str] = field(default_factory=list)
    #: echoes that answered a resend of a message this connection had already
    repeated_answers: int = 0
    close_code: int | None = None
    closed: float = 0.0
    #: wall-clock time of the close (compared with Valkey's clock in the checker)
    closed_wall: float = 0.0
    #: the runner dropped this connection on purpose (a client_drop fault)
    dropped: bool = False
    #: the runner closed it at the end of the run
    ended: bool = False
    #: the handshake failed: the HTTP status (503 while a hub stops) or 0 for no answer
    refused: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class ChaosClient:
    """One user: connects, chats at a bounded rate, reconnects with ``since``."""

    def __init__(self, index: int, users: list[str], ports: list[int], interval: float,
                 rng: random.Random, log: list[Conn], t0: float) -> None:
        self.user = users[index]
        self.others = [u for u in users if u != self.user]
        self.ports = ports
        self.home = index % len(ports)
        self.interval = interval
        self.rng = rng
        self.log = log
        self.t0 = t0
        self.sent = 0
        self.last_seen: str | None = None
        self.ws: websockets.ClientConnection | None = None
        self.conn: Conn | None = None
        self._stop = asyncio.Event()
        #: refs whose echo arrived; frames sent, by ref (for resends); pending resends
        self._answered: set[str] = set()
        self._frames: dict[str, dict[str, Any]] = {}
        self._resends: set[asyncio.Future[None]] = set()

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def run(self) -> None:
        hub = self.home
        while not self._stop.is_set():
            conn = Conn(self.user, hub, self.last_seen, self.now())
            try:
                await self._session(conn)
            except (OSError, TimeoutError, InvalidHandshake) as exc:  # no hub there, or it died mid-handshake
                conn.refused = exc.response.status_code if isinstance(exc, InvalidStatus) else 0
                conn.closed = self.now()
                self.log.append(conn)
                hub = (hub + 1) % len(self.ports)  # try another hub next
            if not self._stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(),
                                           self.rng.uniform(RECONNECT_MIN, RECONNECT_MAX))

    async def _session(self, conn: Conn) -> None:
        q = {"user": self.user}
        if conn.since:
            q["since"] = conn.since
        ws = await websockets.connect(ws_url(self.ports[conn.hub], **q), open_timeout=OPEN_TIMEOUT,
                                      max_queue=None, close_timeout=2)
        self.ws, self.conn = ws, conn
        self.log.append(conn)
        sender = asyncio.create_task(self._send_loop(ws))
        try:
            async for data in ws:
                self._frame(conn, json.loads(data))
        except ConnectionClosed:
            pass
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
            rcvd, sent = ws.protocol.close_rcvd, ws.protocol.close_sent
            conn.close_code = rcvd.code if rcvd is not None else 1006
            if sent is not None and rcvd is None and conn.ended:
                conn.close_code = sent.code
            conn.closed = self.now()
            conn.closed_wall = time.time()
            self.ws = None

    def _frame(self, conn: Conn, f: dict[str, Any]) -> None:
        t = f.get("type")
        if t == "welcome":
            conn.session = f["session"]
            conn.recovered = f.get("recovered")
            conn.history_partial = bool(f.get("history_partial"))
            conn.welcome_ids = [m["id"] for m in f.get("history", [])]
            for mid in conn.welcome_ids:
                self._seen(mid)
        elif t in ("chat", "whisper"):
            mine = bool(f.get("ref")) and f.get("from") == self.user
            if mine and f["ref"] in self._answered:
                conn.repeated_answers += 1  # the answer to a resend: not a second delivery
                return
            conn.live_ids.append(f["id"])
            conn.live_at.append(self.now())
            self._seen(f["id"])
            if mine:
                self._answered.add(f["ref"])
                conn.echoed.append((f["id"], f["text"], f["ref"]))
        elif t == "error":
            conn.errors[f["code"]] = conn.errors.get(f["code"], 0) + 1
            ref = f.get("ref")
            if f["code"] == "unavailable" and ref:
                if "may have been sent" in f.get("message", ""):
                    # the outcome is unknown: resend with the same ref, as docs/protocol.md says
                    conn.unsure_refs.append(ref)
                    self._resend(ref, f.get("retry_after_ms") or 1000)
                else:
                    conn.unavailable_refs.append(ref)

    def _resend(self, ref: str, after_ms: int) -> None:
        frame = self._frames.get(ref)
        ws = self.ws
        if frame is None or ws is None:
            return

        async def later() -> None:
            await asyncio.sleep(after_ms / 1000)
            if ref not in self._answered and self.ws is ws:
                with contextlib.suppress(ConnectionClosed):
                    await ws.send(json.dumps(frame))

        self._resends.add(task := asyncio.ensure_future(later()))
        task.add_done_callback(self._resends.discard)

    def _seen(self, mid: str) -> None:
        if self.last_seen is None or id_key(mid) > id_key(self.last_seen):
            self.last_seen = mid

    async def _send_loop(self, ws: websockets.ClientConnection) -> None:
        while True:
            await asyncio.sleep(self.rng.uniform(0.5, 1.5) * self.interval)
            self.sent += 1
            ref = f"{self.user}#{self.sent}"
            if self.rng.random() < 0.25:
                frame = {"type": "whisper", "to": self.rng.choice(self.others), "text": ref, "ref": ref}
            else:
                frame = {"type": "chat", "text": ref, "ref": ref}
            self._frames[ref] = frame
            await ws.send(json.dumps(frame))

    def drop(self) -> bool:
        """Abort this client's TCP connection (no close frame); it reconnects by itself."""
        if self.ws is None or self.conn is None:
            return False
        self.conn.dropped = True
        self.ws.transport.abort()
        return True

    async def stop(self) -> None:
        """Close normally (1000) and stop reconnecting."""
        self._stop.set()
        if self.ws is not None and self.conn is not None:
            self.conn.ended = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 5)
