"""Hostile clients against a live daemon: it never crashes or leaks, and others keep receiving."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import threading

import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.client import connect as connect_sync

from chathub import closecodes
from chathub.admin.client import call
from tests.helpers import Chatter, wait_for

DOCUMENTED_ERRORS = {"bad_request", "unknown_type", "too_long", "unknown_user", "rate_limited",
                     "blocked", "unavailable", "not_subscribed", "forbidden", "too_many_channels",
                     "unknown_channel"}
REPLY_TYPES = {"error", "chat", "whisper", "users", "history", "join", "leave", "subscribed",
               "unsubscribed", "channels"}
HANDSHAKE = (b"GET /ws?user=raw HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20)
field_values = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=3000),
                         st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers()))
#: channel names at, inside and past every limit, private ones (refused in auth mode none)
channel_values = st.one_of(field_values, st.sampled_from(
    ["general", "c" * 64, "c" * 65, "$ops", "$", "", "a b", "général", "x:y.z-_"]),
    st.text(alphabet="abc$:.-_", min_size=1, max_size=70))
typed_frames = st.fixed_dictionaries(
    {"type": st.sampled_from(["chat", "whisper", "users", "history", "subscribe", "unsubscribe",
                              "channels", "nope", ""])},
    optional={"text": field_values, "to": field_values, "ref": field_values, "before": field_values,
              "limit": field_values, "from": field_values, "channel": channel_values,
              "since": field_values})
text_frames = st.one_of(
    json_values.map(json.dumps),
    typed_frames.map(json.dumps),
    st.text(max_size=200),
    st.integers(1, 3000).map(lambda n: "[" * n + "]" * n),
    st.integers(1, 3000).map(lambda n: '{"a":' * n + "1" + "}" * n),
    st.integers(33_000, 40_000).map(lambda n: json.dumps({"type": "chat", "text": "x" * n})),
)
frames = st.one_of(text_frames, st.binary(max_size=300))


def client_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """A masked client frame, built by hand (for what a library client refuses to send)."""
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class Bystanders:
    """20 well-behaved clients: one sends numbered chats, all must get every one in order."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sent = 0
        self.stop = asyncio.Event()

    async def __aenter__(self) -> Bystanders:
        self.clients = [await Chatter.connect(self.port, f"good{i}") for i in range(20)]
        self.sender = self.clients[0]
        self.task = asyncio.create_task(self._send())
        return self

    async def _send(self) -> None:
        while not self.stop.is_set():
            await self.sender.chat(f"n{self.sent}")
            self.sent += 1
            await asyncio.sleep(0.01)  # a steady trickle, not synchronisation

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        await self.task
        for c in self.clients:
            seen = []
            while len(seen) < self.sent:
                f = await c.recv_type("chat", timeout=20)
                if f["from"] == "good0":
                    seen.append(f["text"])
            assert seen == [f"n{i}" for i in range(self.sent)]
        await asyncio.gather(*(c.close() for c in self.clients))


class SyncBystanders:
    """:class:`Bystanders` on an event loop in a thread of their own, for a synchronous test."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.sent = 0

    def __enter__(self) -> SyncBystanders:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(30), "bystanders did not connect"
        if self.error is not None:
            raise self.error
        return self

    def _run(self) -> None:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            self.stop = asyncio.Event()
            b = Bystanders(self.port)
            b.stop = self.stop
            async with b:
                self.ready.set()
                await self.stop.wait()
            self.sent = b.sent

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported by __exit__
            self.error = exc
            self.ready.set()

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(60)
        if self.error is not None:
            raise self.error
        assert self.sent > 0


def _in_thread(coro) -> None:
    """Run ``coro`` to completion on a fresh loop in another thread (this one has the suite's)."""
    box: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(coro)
        except BaseException as exc:
            box.append(exc)

    t = threading.Thread(target=target)
    t.start()
    t.join(90)
    if box:
        raise box[0]


@pytest.fixture
async def hostile_daemon(daemon_factory):
    """A daemon whose keepalive cuts stalled connections within about a second."""
    return await daemon_factory(server={"ping_interval": 0.5, "ping_timeout": 0.5})


@pytest.fixture
def fuzz_daemon(database_url, valkey_url, key_prefix, short_dir):
    """A daemon subprocess, for the synchronous fuzz test (hypothesis runs sync functions)."""
    from tests.procs import DaemonProcess, free_port, write_config

    cfg = write_config(short_dir / "fuzz.toml", short_dir / "fuzz", {
        "database": {"url": database_url, "migrate": True},
        "valkey": {"url": valkey_url, "key_prefix": key_prefix},
        "ratelimit": {"chat_rate": 10000.0, "chat_burst": 10000, "whisper_rate": 10000.0,
                      "whisper_burst": 10000, "request_rate": 10000.0, "request_burst": 10000},
        "moderation": {"flood_repeats": 0},
        "server": {"ping_interval": 1.0, "ping_timeout": 1.0},
    })
    proc = DaemonProcess(cfg, free_port(), short_dir / "fuzz.log")
    _in_thread(proc.start())
    yield proc
    proc.stop()


def _sync_probe(ws, n: int) -> list[dict]:
    """Send a users request and collect every frame up to its reply."""
    ws.send(json.dumps({"type": "users", "ref": f"probe{n}"}))
    seen = []
    while True:
        f = json.loads(ws.recv(timeout=10))
        if f.get("ref") == f"probe{n}" and f["type"] == "users":
            return seen
        seen.append(f)


#: tasks in flight (timers, admin requests) a daemon may show above its idle count
TASK_SLACK = 2


def test_fuzzed_frames_get_errors_and_others_keep_receiving(fuzz_daemon):
    """Arbitrary JSON, wrong types, deep nesting, huge strings, binary: errors or 1009, never a crash."""
    port = fuzz_daemon.port
    state = {"ws": None, "n": 0, "closes": 0}
    admin = fuzz_daemon.config.parent / "fuzz" / "admin.sock"
    # what the daemon runs with no client (hub loop, deliverers, flushers, bus, watches,
    # the admin connection asking): the count the fuzzing must come back to
    idle_tasks = asyncio.run(call(admin, "stats"))["tasks"] + TASK_SLACK
    stack = contextlib.ExitStack()

    def connection():
        if state["ws"] is None:
            state["ws"] = stack.enter_context(
                connect_sync(f"ws://127.0.0.1:{port}/ws?user=fuzz", max_queue=None))
            state["ws"].recv(timeout=10)  # welcome
        return state["ws"]

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(frame=frames)
    def one(frame):
        ws = connection()
        state["n"] += 1
        try:
            ws.send(frame)
            replies = _sync_probe(ws, state["n"])
        except websockets.ConnectionClosed:
            assert ws.close_code == closecodes.MESSAGE_TOO_BIG
            assert len(frame) > 16 * 1024
            state["ws"] = None
            state["closes"] += 1
            return
        for r in replies:
            assert r["type"] in REPLY_TYPES
            if r["type"] == "error":
                assert r["code"] in DOCUMENTED_ERRORS and r["message"]

    with SyncBystanders(port), stack:
        one()
    assert state["closes"] >= 1  # the oversized strategy was exercised
    assert fuzz_daemon.proc.poll() is None, "the daemon died"

    async def settled() -> None:
        async def idle() -> bool:
            stats = await call(admin, "stats")
            return stats["connections"] == 0 and stats["tasks"] <= idle_tasks

        await wait_for(idle, timeout=20, what="connections closed and tasks back to idle")

    _in_thread(settled())


async def _raw_session(port: int, payload: bytes) -> bytes:
    """Handshake on a raw socket, write ``payload``, return what the server sends back."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(HANDSHAKE)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 101")
        writer.write(payload)
        data = b""
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), 10)
            if not chunk:
                return data
            data += chunk
    finally:
        writer.close()


def close_code_in(data: bytes) -> int | None:
    """The code of the first close frame (opcode 8) in server bytes."""
    i = 0
    while i + 2 <= len(data):
        opcode, n = data[i] & 0x0F, data[i + 1] & 0x7F
        j = i + 2
        if n == 126:
            n, j = int.from_bytes(data[j:j + 2], "big"), j + 2
        elif n == 127:
            n, j = int.from_bytes(data[j:j + 8], "big"), j + 8
        if opcode == 8:
            return int.from_bytes(data[j:j + 2], "big")
        i = j + n
    return None


async def test_invalid_utf8_closes_with_1007(hostile_daemon):
    """A text frame that is not UTF-8 closes the connection with 1007."""
    data = await _raw_session(hostile_daemon.port, client_frame(0x1, b'{"type":"chat","text":"\xff\xfe"}'))
    assert close_code_in(data) == closecodes.INVALID_DATA


async def test_fragmented_frame_is_reassembled(hostile_daemon):
    """A message split into fragments is handled like one frame."""
    msg = b'{"type":"users","ref":"frag"}'
    data = await asyncio.wait_for(_raw_until(hostile_daemon.port, client_frame(0x1, msg[:10], fin=False)
                                             + client_frame(0x0, msg[10:]), b'"ref":"frag"'), 10)
    assert b'"type":"users"' in data


async def _raw_until(port: int, payload: bytes, needle: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(HANDSHAKE)
        await reader.readuntil(b"\r\n\r\n")
        writer.write(payload)
        data = b""
        while needle not in data:
            chunk = await reader.read(65536)
            assert chunk, "connection closed before the reply"
            data += chunk
        return data
    finally:
        writer.close()


async def test_random_bytes_after_handshake_never_hurt_others(hostile_daemon):
    """Garbage after the handshake ends only that connection, with a protocol close or a drop."""
    d = hostile_daemon
    baseline = len(asyncio.all_tasks())
    rng = random.Random(1234)
    async with Bystanders(d.port):
        for _ in range(40):
            junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400)))
            data = await _raw_session(d.port, junk)
            # a frame header promising more bytes than sent waits for keepalive to cut it (1011)
            assert close_code_in(data) in (None, closecodes.PROTOCOL_ERROR, closecodes.MESSAGE_TOO_BIG,
                                           closecodes.INVALID_DATA, closecodes.INTERNAL_ERROR)
    assert d.figures().hub_running, "a daemon task died"
    await wait_for(lambda: d.node.hub.connection_count == 0, what="raw clients gone")
    await wait_for(lambda: len(asyncio.all_tasks()) <= baseline, what="no task leaked")
