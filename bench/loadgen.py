"""The load generator: N connections, S senders, closed or open loop, and what they saw.

The work is split into shards, one per generator process (:class:`Generator`);
a :class:`Shard` is the part that runs in one event loop and can also be used
in-process (the smoke test does). Connection ``g`` (0 ≤ g < N) belongs to shard
``g % procs``; connections ``g < S`` are the senders (user ``s<g>``), the others
receive only (user ``r<g % users>``: receivers share a few user names so the
hub's join/leave traffic and the welcome's user list stay small); with a channels
layout (:attr:`LoadSpec.channel_size`, chathub only) each connection subscribes to
its channel after the welcome and the first member of each channel is its sender. Every
``sample_every``-th connection and every sender measures latency; the rest only
count frames.

Phases, each bounded in time: :meth:`Shard.ramp` opens the connections (at most
``concurrency`` opening at once), :meth:`Shard.run` sends for ``duration`` seconds
from an agreed start time and then drains (waits for the senders' own echoes and
for the receive counts to settle), :meth:`Shard.close` closes everything.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import resource
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .hist import Histogram
from .wsproto import ERROR_PREFIX, Conn, Sender, Tally, client_frame, connect

#: seconds the drain waits at most for senders' own echoes and settled counts after the
#: sending stopped (slow servers at N=10,000 queue many seconds of frames)
DRAIN_TIMEOUT = 30.0
#: the receive counts must stay unchanged this long for the drain to end
SETTLE = 0.3
#: seconds to wait for the server to close connections after we sent close
CLOSE_TIMEOUT = 5.0
#: seconds a generator process may take for one phase before the parent gives up on it
PHASE_TIMEOUT = 180.0
#: how long after the harness's command the generators start sending, ns
START_LEAD_NS = 200_000_000


@dataclass
class LoadSpec:
    """One load: how many connections, who sends, how, for how long."""

    host: str = "127.0.0.1"
    port: int = 0
    path: str = "/ws"
    #: connections in total
    n: int = 100
    #: senders among them (the first ``senders`` connections)
    senders: int = 1
    #: closed loop: messages each sender keeps in flight
    window: int = 4
    #: open loop: messages per second from all senders together (None: closed loop)
    rate: float | None = None
    #: seconds of sending
    duration: float = 2.0
    #: every sample_every-th receiver measures latency (senders always do)
    sample_every: int = 20
    #: distinct user names among the receivers
    users: int = 50
    #: connections opening at the same time during the ramp
    concurrency: int = 100
    #: seconds one connection may take to open and get its welcome
    connect_timeout: float = 10.0
    #: "chathub" (JSON frames, a welcome first) or "raw" (the Go hub; see bench.wsproto)
    proto: str = "chathub"
    #: most seconds the drain after the sending window takes
    drain_timeout: float = DRAIN_TIMEOUT
    #: channels layout (chathub only; 0: none, every chat goes to everyone): after its
    #: welcome each connection subscribes to one channel of ``channel_size`` members, the
    #: first ``big_channel`` connections to one channel of that many; the first member of
    #: each channel is its sender and chats in it, so ``senders`` is not used
    channel_size: int = 0
    big_channel: int = 0

    def channel_of(self, g: int) -> tuple[str, int, bool] | None:
        """Connection ``g``'s channel in the layout: (name, members, is its sender), or None."""
        if not self.channel_size:
            return None
        if g < self.big_channel:
            return "bigch", self.big_channel, g == 0
        k, i = divmod(g - self.big_channel, self.channel_size)
        members = min(self.channel_size, self.n - self.big_channel - k * self.channel_size)
        return f"ch{k}", members, i == 0

    def is_sender(self, g: int) -> bool:
        ch = self.channel_of(g)
        return g < self.senders if ch is None else ch[2]

    def ids(self, shard: int, procs: int) -> range:
        """The global connection ids of ``shard``."""
        return range(shard, self.n, procs)


@dataclass
class RampResult:
    """How opening the connections went in one shard."""

    attempted: int = 0
    connected: int = 0
    seconds: float = 0.0
    cpu_s: float = 0.0
    #: busy CPU seconds of the whole machine during the ramp
    machine_s: float = 0.0
    connect_hist: dict = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)


@dataclass
class RunResult:
    """What one shard measured while sending."""

    connections: int = 0
    senders: int = 0
    sent: int = 0
    acked: int = 0
    refused: int = 0
    in_flight_left: int = 0
    #: deliveries the accepted chats should make (members of their channels; channels layout)
    expected: int = 0
    #: chat frames received in the sending window, and in window + drain
    chats_window: int = 0
    chats_total: int = 0
    seconds: float = 0.0
    drain_s: float = 0.0
    cpu_s: float = 0.0
    #: busy CPU seconds of the whole machine during the sending window
    machine_s: float = 0.0
    latency: dict = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    unexpected_close: int = 0


async def subscribe(conn: Conn, channel: str, timeout: float) -> bool:
    """Subscribe ``conn`` to ``channel`` and wait (at most ``timeout`` s) for ``subscribed``;
    whether it came (an error frame or the timeout: False)."""
    done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def listen(payload: bytes) -> None:  # other frames (join, leave) pass by
        if done.done():
            return
        if payload.startswith(b'{"type":"subscribed"'):
            done.set_result(True)
        elif payload.startswith(ERROR_PREFIX):
            done.set_result(False)

    conn.listener = listen
    conn._write(client_frame(json.dumps({"type": "subscribe", "channel": channel}).encode()))
    try:
        return await asyncio.wait_for(done, timeout)
    except TimeoutError:
        return False
    finally:
        conn.listener = None


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def machine_busy_s() -> float:
    """CPU seconds all processes of the machine ran so far (user + nice + system in /proc/stat),
    for deltas. Interrupt time is left out: loopback traffic is ours but shows up there."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:4]]
    except (OSError, ValueError):
        return 0.0
    return sum(ticks) / os.sysconf("SC_CLK_TCK")


def raise_nofile() -> int:
    """Raise this process's open-files soft limit to the hard limit; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class Shard:
    """The connections of one generator process."""

    def __init__(self, spec: LoadSpec, shard: int = 0, procs: int = 1) -> None:
        self.spec = spec
        self.ids = spec.ids(shard, procs)
        self.procs = procs
        self.tally = Tally(Histogram())
        self.conns: list[Conn] = []
        self.senders: list[Sender] = []

    def _user(self, g: int) -> str:
        return f"s{g}" if self.spec.is_sender(g) else f"r{g % max(1, self.spec.users)}"

    async def ramp(self) -> RampResult:
        """Open this shard's connections; failures are counted, not raised."""
        spec = self.spec
        res = RampResult(attempted=len(self.ids))
        hist = Histogram()
        gate = asyncio.Semaphore(spec.concurrency)
        tally = Tally(Histogram())  # connect errors only
        cpu0, busy0, t0 = cpu_seconds(), machine_busy_s(), time.perf_counter()
        opened: dict[int, Conn] = {}

        async def one(g: int) -> None:
            async with gate:
                parse = spec.is_sender(g) or g % spec.sample_every == 0
                started = time.perf_counter()
                try:
                    conn = await connect(spec.host, spec.port, f"{spec.path}?user={self._user(g)}",
                                         self.tally, parse, spec.connect_timeout,
                                         spec.proto == "raw")
                except TimeoutError:
                    tally.error("connect_timeout")
                    return
                except ConnectionError as exc:
                    tally.error(str(exc) or type(exc).__name__)
                    return
                except OSError as exc:
                    tally.error(f"os_{exc.errno}")
                    return
                ch = spec.channel_of(g)
                if ch is not None and not await subscribe(conn, ch[0], spec.connect_timeout):
                    tally.error("subscribe_failed")
                    conn.closing = True
                    if conn.transport is not None:
                        conn.transport.abort()
                    return
                hist.add(int((time.perf_counter() - started) * 1e6))
                opened[g] = conn

        await asyncio.gather(*(one(g) for g in self.ids))
        res.seconds = time.perf_counter() - t0
        res.cpu_s = cpu_seconds() - cpu0
        res.machine_s = machine_busy_s() - busy0
        for g in self.ids:
            conn = opened.get(g)
            if conn is None:
                continue
            self.conns.append(conn)
            if spec.is_sender(g):
                ch = spec.channel_of(g)
                name, members = (ch[0].encode(), ch[1]) if ch else (b"", 0)
                conn.sender = Sender(conn, f"s{g}".encode(), spec.window, spec.rate is None,
                                     name, members)
                self.senders.append(conn.sender)
        res.connected = len(self.conns)
        res.connect_hist = hist.to_dict()
        res.errors = tally.errors
        return res

    def _chats(self) -> int:
        return sum(c.chats for c in self.conns)

    async def run(self, start_ns: int | None = None, duration: float | None = None) -> RunResult:
        """Send from ``start_ns`` (monotonic ns) for ``duration`` seconds, then drain."""
        spec = self.spec
        duration = spec.duration if duration is None else duration
        loop_now = time.monotonic_ns
        if start_ns is not None:
            await asyncio.sleep(max(0.0, (start_ns - loop_now()) / 1e9))
        self.tally.latency = Histogram()  # latencies of this run only
        self.tally.errors.clear()
        res = RunResult(connections=len(self.conns), senders=len(self.senders))
        cpu0, busy0 = cpu_seconds(), machine_busy_s()
        chats0 = self._chats()
        t0 = loop_now()
        stop_ns = t0 + int(duration * 1e9)
        for s in self.senders:
            s.start(stop_ns)
        if spec.rate is not None and self.senders and duration > 0:
            await self._open_loop(t0, stop_ns)
        else:
            await asyncio.sleep(max(0.0, (stop_ns - loop_now()) / 1e9))
        t1 = loop_now()
        for s in self.senders:
            s.stop_ns = 0
        res.chats_window = self._chats() - chats0
        res.seconds = (t1 - t0) / 1e9
        res.cpu_s = cpu_seconds() - cpu0
        res.machine_s = machine_busy_s() - busy0
        await self._drain()
        res.drain_s = (loop_now() - t1) / 1e9
        res.chats_total = self._chats() - chats0
        for s in self.senders:
            res.sent += s.sent
            res.acked += s.acked
            res.refused += s.refused
            res.in_flight_left += s.in_flight
            res.expected += (s.sent - s.refused) * s.members
            s.sent = s.acked = s.refused = 0
        res.latency = self.tally.latency.to_dict()
        res.errors = dict(self.tally.errors)
        res.unexpected_close = self.tally.unexpected_close
        return res

    async def _open_loop(self, t0: int, stop_ns: int) -> None:
        """Send at the shard's share of ``spec.rate``, round-robin over its senders.

        Each message carries its intended send time, so a late generator shows as
        latency instead of hiding it.
        """
        spec = self.spec
        assert spec.rate is not None
        share = spec.rate * len(self.senders) / max(1, min(spec.senders, spec.n))
        step = int(1e9 / share)
        k = 0
        senders = self.senders
        while True:
            due = t0 + k * step
            if due >= stop_ns:
                return
            wait = (due - time.monotonic_ns()) / 1e9
            if wait > 0:
                await asyncio.sleep(wait)
            senders[k % len(senders)].send(due)
            k += 1

    async def _drain(self) -> None:
        deadline = time.monotonic() + self.spec.drain_timeout
        while time.monotonic() < deadline and any(
                s.in_flight > 0 and not s.conn.transport.is_closing() for s in self.senders):
            await asyncio.sleep(0.02)
        last, stable_since = self._chats(), time.monotonic()
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            now_count = self._chats()
            if now_count != last:
                last, stable_since = now_count, time.monotonic()
            elif time.monotonic() - stable_since >= SETTLE:
                break

    async def close(self) -> None:
        """Close every connection and wait (bounded) for the server to drop them."""
        for c in self.conns:
            c.close()
        pending = [c.lost for c in self.conns if not c.lost.done()]
        if pending:
            _, still = await asyncio.wait(pending, timeout=CLOSE_TIMEOUT)
            for c in self.conns:
                if not c.lost.done() and c.transport is not None:
                    c.transport.abort()
        self.conns.clear()
        self.senders.clear()


# -- several processes ----------------------------------------------------------------


def _use_uvloop() -> str:
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def _worker(spec: LoadSpec, shard: int, procs: int, pipe: Any) -> None:
    """Body of one generator process: ramp, wait for go, run, wait, close."""
    raise_nofile()
    _use_uvloop()
    asyncio.run(_worker_main(spec, shard, procs, pipe))


async def _worker_main(spec: LoadSpec, shard: int, procs: int, pipe: Any) -> None:
    sh = Shard(spec, shard, procs)
    loop = asyncio.get_running_loop()

    async def recv() -> Any:
        ok = await loop.run_in_executor(None, pipe.poll, PHASE_TIMEOUT)
        return pipe.recv() if ok else ("close",)

    try:
        pipe.send(("ramped", asdict(await sh.ramp())))
        while True:
            msg = await recv()
            if msg[0] == "run":
                pipe.send(("result", asdict(await sh.run(msg[1], msg[2]))))
            else:
                break
    finally:
        await sh.close()
        pipe.send(("closed",))


class Generator:
    """``procs`` generator processes sharing one :class:`LoadSpec`.

    Use as ``async with Generator(spec, procs) as gen:`` then ``await gen.ramp()``,
    ``await gen.run()`` (any number of times), and leaving the block closes all.
    """

    def __init__(self, spec: LoadSpec, procs: int = 1) -> None:
        self.spec = spec
        self.procs = max(1, min(procs, spec.n))
        self._ctx = multiprocessing.get_context("spawn")
        self._workers: list[tuple[Any, Any]] = []

    async def __aenter__(self) -> Generator:
        for k in range(self.procs):
            parent, child = self._ctx.Pipe()
            p = self._ctx.Process(target=_worker, args=(self.spec, k, self.procs, child),
                                  name=f"bench-gen-{k}", daemon=True)
            p.start()
            self._workers.append((p, parent))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for _, pipe in self._workers:
            try:
                pipe.send(("close",))
            except (BrokenPipeError, OSError):
                pass
        for p, pipe in self._workers:
            await self._until_closed(pipe, CLOSE_TIMEOUT + 10)
            await asyncio.to_thread(p.join, 10)
            if p.is_alive():  # a stuck generator of ours: stop it by its pid
                p.kill()
                await asyncio.to_thread(p.join, 5)
        self._workers.clear()

    @staticmethod
    async def _until_closed(pipe: Any, timeout: float) -> None:
        """Read (and drop) what a process still sends until its ``closed``, EOF or ``timeout``."""
        deadline = time.monotonic() + timeout
        for _ in range(10):
            left = deadline - time.monotonic()
            if left <= 0 or not await asyncio.to_thread(pipe.poll, left):
                return
            try:
                if pipe.recv()[0] == "closed":
                    return
            except (EOFError, OSError):
                return

    async def _expect(self, pipe: Any, kind: str, timeout: float) -> Any:
        if not await asyncio.to_thread(pipe.poll, timeout):
            raise TimeoutError(f"a generator process sent no {kind!r} within {timeout:.0f}s")
        try:
            msg = pipe.recv()
        except EOFError:
            raise RuntimeError("a generator process died") from None
        if msg[0] != kind:
            raise RuntimeError(f"generator sent {msg[0]!r}, expected {kind!r}")
        return msg[1] if len(msg) > 1 else None

    async def ramp(self) -> dict[str, Any]:
        """Wait for every process to open its connections; the merged :class:`RampResult`."""
        parts = [await self._expect(pipe, "ramped", PHASE_TIMEOUT) for _, pipe in self._workers]
        return merge_ramps(parts)

    async def run(self, duration: float | None = None, start_ns: int | None = None) -> dict[str, Any]:
        """Send in every process from one start time (monotonic ns; default: 0.2 s from now);
        the merged :class:`RunResult`."""
        duration = self.spec.duration if duration is None else duration
        start_ns = start_ns or time.monotonic_ns() + START_LEAD_NS
        for _, pipe in self._workers:
            pipe.send(("run", start_ns, duration))
        parts = [await self._expect(pipe, "result", duration + self.spec.drain_timeout + 30)
                 for _, pipe in self._workers]
        return merge_runs(parts)


class ProcessGenerator:
    """The same load as :class:`Generator`, run by an external generator executable (the
    Go one in ``bench/gen``): ``procs`` processes, each one shard, driven over stdin and
    stdout with JSON lines (see ``bench/gen/main.go``). Same interface and results."""

    def __init__(self, spec: LoadSpec, procs: int, exe: str) -> None:
        self.spec = spec
        self.procs = max(1, min(procs, spec.n))
        self.exe = exe
        self._procs: list[asyncio.subprocess.Process] = []
        self._errs: list[Any] = []

    async def __aenter__(self) -> ProcessGenerator:
        import tempfile

        for k in range(self.procs):
            arg = json.dumps({"spec": asdict(self.spec), "shard": k, "procs": self.procs})
            err = tempfile.TemporaryFile()
            p = await asyncio.create_subprocess_exec(
                self.exe, arg, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=err, limit=1 << 24, preexec_fn=raise_nofile)
            self._procs.append(p)
            self._errs.append(err)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for p in self._procs:
            if p.stdin is not None and not p.stdin.is_closing():
                try:
                    p.stdin.write(b"close\n")
                    p.stdin.close()
                except (BrokenPipeError, ConnectionResetError):
                    pass
        for p in self._procs:
            try:
                await asyncio.wait_for(p.wait(), CLOSE_TIMEOUT + 10)
            except TimeoutError:  # a stuck generator of ours: stop it by its pid
                p.kill()
                await p.wait()
        for err in self._errs:
            err.close()
        self._procs.clear()
        self._errs.clear()

    def _stderr(self, k: int) -> str:
        err = self._errs[k]
        err.seek(0)
        return err.read().decode(errors="replace").strip()[-300:]

    async def _expect(self, k: int, kind: str, timeout: float) -> dict[str, Any]:
        p = self._procs[k]
        assert p.stdout is not None
        try:
            line = await asyncio.wait_for(p.stdout.readline(), timeout)
        except TimeoutError:
            raise TimeoutError(f"a generator process sent no {kind!r} within {timeout:.0f}s") from None
        if not line:
            await p.wait()
            raise RuntimeError(f"a generator process died ({p.returncode}): {self._stderr(k)}")
        msg = json.loads(line)
        if msg.pop("kind", None) != kind:
            raise RuntimeError(f"generator sent {line[:80]!r}, expected {kind!r}")
        return msg

    async def ramp(self) -> dict[str, Any]:
        return merge_ramps([await self._expect(k, "ramped", PHASE_TIMEOUT) for k in range(self.procs)])

    async def run(self, duration: float | None = None, start_ns: int | None = None) -> dict[str, Any]:
        duration = self.spec.duration if duration is None else duration
        start_ns = start_ns or time.monotonic_ns() + START_LEAD_NS
        for p in self._procs:
            assert p.stdin is not None
            p.stdin.write(f"run {start_ns} {duration}\n".encode())
        return merge_runs([await self._expect(k, "result", duration + self.spec.drain_timeout + 30)
                           for k in range(self.procs)])


def merge_ramps(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Add up the :class:`RampResult` of each process."""
    hist = Histogram()
    out: dict[str, Any] = {"attempted": 0, "connected": 0, "seconds": 0.0, "cpu_s": 0.0,
                           "machine_s": 0.0, "errors": {}}
    for p in parts:
        out["attempted"] += p["attempted"]
        out["connected"] += p["connected"]
        out["seconds"] = max(out["seconds"], p["seconds"])
        out["cpu_s"] += p["cpu_s"]
        out["machine_s"] = max(out["machine_s"], p["machine_s"])
        hist.merge(p["connect_hist"])
        for k, v in p["errors"].items():
            out["errors"][k] = out["errors"].get(k, 0) + v
    out["connect_hist"] = hist
    return out


def merge_runs(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Add up the :class:`RunResult` of each process (latency histograms merged)."""
    hist = Histogram()
    out: dict[str, Any] = {k: 0 for k in ("connections", "senders", "sent", "acked", "refused",
                                          "in_flight_left", "chats_window", "chats_total",
                                          "unexpected_close", "expected")}
    out.update(seconds=0.0, drain_s=0.0, cpu_s=0.0, machine_s=0.0, errors={}, reads=None)
    for p in parts:
        if p.get("reads") is not None:  # the Go generator counts its reads in the window
            out["reads"] = (out["reads"] or 0) + p["reads"]
        for k in ("connections", "senders", "sent", "acked", "refused", "in_flight_left",
                  "chats_window", "chats_total", "unexpected_close"):
            out[k] += p[k]
        out["expected"] += p.get("expected", 0)  # (the Go generator has no channels)
        out["seconds"] = max(out["seconds"], p["seconds"])
        out["drain_s"] = max(out["drain_s"], p["drain_s"])
        out["cpu_s"] += p["cpu_s"]
        out["machine_s"] = max(out["machine_s"], p["machine_s"])
        hist.merge(p["latency"])
        for k, v in p["errors"].items():
            out["errors"][k] = out["errors"].get(k, 0) + v
    out["latency"] = hist
    return out


def summarize_run(r: dict[str, Any], gen_cpus: int) -> dict[str, Any]:
    """The figures of a merged run: rates, delivery ratio, latency, generator CPU share."""
    secs = r["seconds"] or 1e-9
    conns = r["connections"]
    delivered_expected = r.get("expected") or (r["sent"] - r["refused"]) * conns
    gen_cpu = r["cpu_s"] / secs / max(1, gen_cpus)
    out = {
        "connections": conns,
        "senders": r["senders"],
        "msgs_per_s": round(r["acked"] / secs, 1),
        "deliveries_per_s": round(r["chats_window"] / secs, 1),
        "delivery_ratio": round(r["chats_total"] / delivered_expected, 4) if delivered_expected else None,
        "sent": r["sent"],
        "acked": r["acked"],
        "deliveries": r["chats_total"],
        **r["latency"].summary_ms(),
        "errors": r["errors"],
        "slow_consumer_disconnects": r["errors"].get("close_4002", 0),
        "generator_cpu": round(gen_cpu, 3),
        "deliveries_per_read": round(r["chats_window"] / r["reads"], 2) if r.get("reads") else None,
        "generator_bound": gen_cpu >= 0.9,
        "machine_cpu": round(r["machine_s"] / secs, 3),
        "seconds": round(secs, 2),
        "drain_s": round(r["drain_s"], 2),
    }
    return out


def generator_cpus() -> int:
    """CPUs this process may run on (the generator's share of the machine)."""
    return len(os.sched_getaffinity(0))
