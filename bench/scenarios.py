"""The scenarios: each takes a running server and returns its figures as a flat dict.

| scenario | what it measures |
|---|---|
| ``idle`` | server RSS per idle connection (chathub: plus its Valkey's), held with keepalive |
| ``connect`` | time to open N connections, each up to its welcome; connections/s |
| ``latency`` | open loop at R msgs/s to N connections: send→receipt p50/p90/p99/max |
| ``fanout`` | closed loop, S senders × W in flight to N connections (a row per N): deliveries/s, per server CPU-second |
| ``ingest`` | many senders, few receivers: msgs/s through ids, rate-limit check and flush |
| ``flush`` | rows/s from the Valkey stream into PostgreSQL (chathub only) |
| ``channels`` | chathub only, see :mod:`bench.channels`: deliveries/s and per CPU-second with N connections in many small channels and one big one; subscribe+unsubscribe pairs/s; RSS per idle subscription |

Every figure is measured the same way for chathub and for each peer (the
reference, Node ``ws``, the Go hub), except ``flush`` and ``channels``, which only
chathub has.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from typing import Any

from .hist import Histogram
from .loadgen import (
    START_LEAD_NS,
    Generator,
    LoadSpec,
    ProcessGenerator,
    machine_busy_s,
    summarize_run,
)
from .servers import ServerProc


@dataclass
class Sizes:
    """The parameters of a run: the full one, or ``--quick``."""

    duration: float = 10.0
    #: one fanout row per N
    fanout_ns: tuple[int, ...] = (1000, 10000)
    fanout_senders: int = 10
    fanout_window: int = 4
    latency_n: int = 1000
    latency_senders: int = 10
    latency_rates: tuple[float, ...] = (20.0, 50.0)
    idle_n: int = 15000
    #: seconds the idle connections are held (keepalive pings and pongs go on meanwhile)
    idle_hold: float = 60.0
    connect_n: int = 15000
    ingest_senders: int = 200
    ingest_receivers: int = 10
    ingest_window: int = 4
    flush_senders: int = 20
    flush_window: int = 8
    #: most seconds the flush scenario waits for the backlog to drain after pushing
    flush_drain_timeout: float = 60.0
    #: channels layout: N connections, the first ``channels_big`` in one channel, the others
    #: in channels of ``channels_size`` (the issue's 1,000 channels of 10 plus one of 1,000)
    channels_n: int = 11000
    channels_size: int = 10
    channels_big: int = 1000
    #: chats each channel's sender keeps in flight
    channels_window: int = 4
    #: subscribe/unsubscribe churn: clients, and pairs each (a bound on the loop)
    churn_clients: int = 100
    churn_rounds: int = 200
    #: RSS per subscription: idle clients, extra channels each, members per such channel
    #: (few, so that the join frames each subscribe sends stay few)
    rss_clients: int = 1000
    rss_per_client: int = 20
    rss_members: int = 10


FULL = Sizes()
QUICK = Sizes(duration=2.0, fanout_ns=(100, 1000), latency_n=100, idle_n=500, idle_hold=3.0,
              connect_n=500,
              ingest_senders=40, ingest_receivers=5, flush_senders=10, flush_drain_timeout=20.0,
              channels_n=1100, channels_big=100, churn_clients=20, churn_rounds=50,
              rss_clients=200, rss_per_client=10)


@dataclass
class Ctx:
    """What every scenario needs besides its server."""

    sizes: Sizes
    procs: int
    gen_cpus: int
    concurrency: int = 100
    #: py-spy output path for the chathub daemon during ``fanout`` (None: no profile)
    profile: str | None = None
    #: an external generator executable (the Go one), or None for the Python generator
    generator: str | None = None


def make_generator(spec: LoadSpec, ctx: Ctx, procs: int | None = None) -> Generator | ProcessGenerator:
    """The generator of this run for ``spec``: the Go one when built, else the Python one."""
    procs = ctx.procs if procs is None else procs
    if ctx.generator:
        return ProcessGenerator(spec, procs, ctx.generator)
    return Generator(spec, procs)


# -- shared pieces ---------------------------------------------------------------------------


async def _settle(srv: ServerProc) -> None:
    """Wait (bounded) until the server dropped every connection of the previous scenario
    and answers /healthz with 200 again (see the note on Valkey in docs/performance.md)."""
    await srv.wait_connections(0, timeout=30.0)
    await srv.wait_healthy()


def _ramp_figures(ramp: dict[str, Any]) -> dict[str, Any]:
    hist: Histogram = ramp["connect_hist"]
    s = hist.summary_ms()
    return {"connected": ramp["connected"], "connect_failures": ramp["attempted"] - ramp["connected"],
            "connect_errors": ramp["errors"], "ramp_s": round(ramp["seconds"], 3),
            "connect_p50_ms": s["p50_ms"], "connect_p99_ms": s["p99_ms"]}


async def _window_cpu(srv: ServerProc, start_ns: int,
                      duration: float) -> tuple[float, float, float, float]:
    """CPU seconds of the server and of its services over the sending window, its length,
    and the server's system (kernel) share of its CPU seconds."""
    await asyncio.sleep(max(0.0, (start_ns - time.monotonic_ns()) / 1e9))
    cpu0, sys0, svc0, t0 = srv.cpu_s(), srv.sys_s(), srv.services_cpu_s(), time.monotonic()
    await asyncio.sleep(duration)
    return (srv.cpu_s() - cpu0, srv.services_cpu_s() - svc0, time.monotonic() - t0,
            srv.sys_s() - sys0)


def per_delivery(deliveries: int, server_cpu_s: float, services_cpu_s: float,
                 generator_cpu_s: float, server_sys_s: float = 0.0) -> dict[str, Any]:
    """Deliveries per server CPU-second (and with Valkey+PostgreSQL), CPU µs per delivery
    (the server's in all and its kernel share, ``server_sys_s`` of its seconds)."""
    def div(a: float, b: float, scale: float = 1.0) -> float | None:
        return round(scale * a / b, 3 if scale != 1.0 else 1) if b > 0 and a > 0 else None

    return {"deliveries_per_cpu_s": div(deliveries, server_cpu_s),
            "deliveries_per_cpu_s_all": div(deliveries, server_cpu_s + services_cpu_s),
            "server_us_per_delivery": div(server_cpu_s, deliveries, 1e6),
            "server_sys_us_per_delivery": div(server_sys_s, deliveries, 1e6),
            "generator_us_per_delivery": div(generator_cpu_s, deliveries, 1e6)}


async def _load(srv: ServerProc, spec: LoadSpec, ctx: Ctx, profile: str | None = None) -> dict[str, Any]:
    """Ramp, run once, close; the run's figures plus the ramp's and the server's CPU over the
    sending window (sampled by the harness from the agreed start time for ``duration``)."""
    async with make_generator(spec, ctx) as gen:
        ramp = await gen.ramp()
        spy = None
        if profile is not None:
            from .profile import start_py_spy

            spy = await start_py_spy(srv.pid, profile, spec.duration)
        start_ns = time.monotonic_ns() + START_LEAD_NS
        window = asyncio.create_task(_window_cpu(srv, start_ns, spec.duration))
        run = await gen.run(start_ns=start_ns)
        server_s, services_s, wall, server_sys_s = await window
        if spy is not None:
            from .profile import wait_py_spy

            await wait_py_spy(spy)
    out = summarize_run(run, ctx.gen_cpus)
    if srv.kind == "go-hub":  # it drops a client whose queue is full with a close without code
        out["slow_consumer_disconnects"] = run["errors"].get("close_1005", 0)
    out.update(_ramp_figures(ramp))
    wall = wall or 1e-9
    out["server_cpu"] = round(server_s / wall, 3)
    out["services_cpu"] = round(services_s / wall, 3)
    out.update(per_delivery(run["chats_window"], server_s, services_s, run["cpu_s"], server_sys_s))
    out["others_cpu"] = others_cpu(out["machine_cpu"], out["server_cpu"], out["services_cpu"],
                                   run["cpu_s"] / (run["seconds"] or 1e-9))
    await _settle(srv)
    return out


def others_cpu(machine: float, *ours: float) -> float:
    """Cores used by processes that are not part of the benchmark (other work on the machine)."""
    return round(max(0.0, machine - sum(ours)), 3)


def _spec(srv: ServerProc, ctx: Ctx, **kw: Any) -> LoadSpec:
    proto = "raw" if srv.kind == "go-hub" else "chathub"
    return replace(LoadSpec(port=srv.port, concurrency=ctx.concurrency,
                            duration=ctx.sizes.duration, proto=proto), **kw)


from .channels import channels  # noqa: E402 - it uses the pieces above

# -- scenarios --------------------------------------------------------------------------------


async def fanout(srv: ServerProc, ctx: Ctx) -> list[dict[str, Any]]:
    """N connections, S senders in closed loop with W in flight each; one row per N."""
    z = ctx.sizes
    rows = []
    for k, n in enumerate(z.fanout_ns):
        spec = _spec(srv, ctx, n=n, senders=z.fanout_senders, window=z.fanout_window)
        prof = ctx.profile if srv.kind == "chathub" else None
        if prof and k:
            prof = f"{prof}.n{n}"
        out = await _load(srv, spec, ctx, profile=prof)
        rows.append({"scenario": f"fanout_n{n}", "n": spec.n, "s": spec.senders, "w": spec.window, **out})
    return rows


async def latency(srv: ServerProc, ctx: Ctx) -> list[dict[str, Any]]:
    """N connections, open loop at each rate R (one row per rate)."""
    z = ctx.sizes
    rows = []
    for rate in z.latency_rates:
        spec = _spec(srv, ctx, n=z.latency_n, senders=z.latency_senders, rate=rate)
        out = await _load(srv, spec, ctx)
        rows.append({"scenario": f"latency_r{rate:g}", "n": spec.n, "s": spec.senders,
                     "rate": rate, **out})
    return rows


async def ingest(srv: ServerProc, ctx: Ctx) -> list[dict[str, Any]]:
    """Many senders (closed loop), a few receive-only connections."""
    z = ctx.sizes
    spec = _spec(srv, ctx, n=z.ingest_senders + z.ingest_receivers, senders=z.ingest_senders,
                 window=z.ingest_window)
    out = await _load(srv, spec, ctx)
    return [{"scenario": "ingest", "n": spec.n, "s": spec.senders, "w": spec.window, **out}]


async def connect(srv: ServerProc, ctx: Ctx) -> list[dict[str, Any]]:
    """Open N connections (``concurrency`` at a time), each until its welcome."""
    z = ctx.sizes
    spec = _spec(srv, ctx, n=z.connect_n, senders=0, duration=0.0)
    cpu0 = srv.cpu_s()
    async with make_generator(spec, ctx) as gen:
        ramp = await gen.ramp()
        server_cpu = srv.cpu_s() - cpu0
    out = _ramp_figures(ramp)
    secs = ramp["seconds"] or 1e-9
    out["conns_per_s"] = round(ramp["connected"] / secs, 1)
    out["server_cpu_s"] = round(server_cpu, 3)
    # like deliveries per CPU-second: comparable even when the server did not get a whole CPU
    out["server_ms_per_conn"] = round(1000 * server_cpu / ramp["connected"], 3) if ramp["connected"] else None
    out["generator_cpu"] = round(ramp["cpu_s"] / secs / max(1, ctx.gen_cpus), 3)
    out["generator_bound"] = out["generator_cpu"] >= 0.9
    out["others_cpu"] = others_cpu(ramp["machine_s"] / secs, server_cpu / secs, ramp["cpu_s"] / secs)
    await _settle(srv)
    return [{"scenario": "connect", "n": spec.n, "concurrency": spec.concurrency, **out}]


async def idle(srv: ServerProc, ctx: Ctx) -> list[dict[str, Any]]:
    """RSS per idle connection, and whether N idle connections hold for ``idle_hold`` s.

    VmRSS of the server process before and after opening N idle connections, and
    for chathub also that of its Valkey (presence and session entries; the daemon's
    only Valkey, so all of its growth is the daemon's share). Then the connections
    stay open while the server's keepalive pings them; any the server closes or
    loses is counted.
    """
    z = ctx.sizes
    # warm up the code paths once (imports, caches) so "before" is a fair baseline
    warm = _spec(srv, ctx, n=50, senders=0, duration=0.0)
    async with make_generator(warm, ctx, 1) as gen:
        await gen.ramp()
    await _settle(srv)
    await asyncio.sleep(1.0)
    before, vk_before = srv.rss_kb(), srv.valkey_rss_kb()
    spec = _spec(srv, ctx, n=z.idle_n, senders=0, duration=0.0)
    async with make_generator(spec, ctx) as gen:
        ramp = await gen.ramp()
        await asyncio.sleep(2.0)
        after, vk_after = srv.rss_kb(), srv.valkey_rss_kb()
        held_now = await srv.connections()
        hold = await gen.run(duration=z.idle_hold)
        held_after = await srv.connections()
    conns = ramp["connected"] or 1
    out = _ramp_figures(ramp)
    daemon_kb = (after - before) / conns
    valkey_kb = (vk_after - vk_before) / conns
    out.update(rss_before_mb=round(before / 1024, 1), rss_after_mb=round(after / 1024, 1),
               rss_per_conn_kb=round(daemon_kb, 2), valkey_per_conn_kb=round(valkey_kb, 2),
               total_per_conn_kb=round(daemon_kb + valkey_kb, 2), server_connections=held_now,
               hold_s=round(hold["seconds"], 1), lost_in_hold=hold["unexpected_close"],
               held=ramp["connected"] - hold["unexpected_close"],
               server_connections_after_hold=held_after, hold_errors=hold["errors"])
    await _settle(srv)
    return [{"scenario": "idle", "n": spec.n, **out}]


async def flush(srv: ServerProc, ctx: Ctx) -> list[dict[str, Any]]:
    """Rows/s from the Valkey stream into PostgreSQL, with the flusher running alone.

    A second chathub is started with a flush interval of an hour, so that after its
    first (empty) flush its flusher sleeps and the backlog only grows while S
    senders push for ``duration`` seconds. Then SIGTERM makes the daemon drain: it
    writes batch after batch with nothing else to do, and the backlog is watched
    through the admin socket (``stats`` → ``flush_backlog``) until it is empty.
    ``rows_per_s`` is the backlog's fall over that time.
    """
    if srv.kind != "chathub":
        return []
    from chathub.admin.client import AdminClient

    z = ctx.sizes
    own = ServerProc("chathub", srv.cpus, log_level=srv.log_level, chathub_src=srv.chathub_src,
                     env={"CHATHUB_CACHE_FLUSH_INTERVAL": "3600", "CHATHUB_SERVER_DRAIN_TIMEOUT": "120"})
    await own.start()
    try:
        spec = _spec(own, ctx, n=z.flush_senders, senders=z.flush_senders, window=z.flush_window)
        pushed = await _load(own, spec, ctx)  # (flush has no peers to compare)
        assert own.data_dir is not None
        samples: list[tuple[float, int]] = []
        async with AdminClient(own.data_dir / "admin.sock") as admin:
            # the daemon may count Valkey as down for a moment after many sessions
            # closed at once (see docs/performance.md); wait for a real figure
            backlog = None
            until = time.monotonic() + 15.0
            while backlog is None and time.monotonic() < until:
                backlog = (await admin.request("stats")).get("flush_backlog")
                if backlog is None:
                    await asyncio.sleep(0.2)
            backlog = int(backlog or 0)
            samples.append((time.monotonic(), backlog))
            busy0, cpu0 = machine_busy_s(), own.cpu_s() + own.services_cpu_s()
            own.terminate()
            deadline = time.monotonic() + z.flush_drain_timeout
            while time.monotonic() < deadline:
                try:
                    b = int((await admin.request("stats")).get("flush_backlog") or 0)
                except Exception:
                    # the admin socket closes only after the message flusher drained
                    samples.append((time.monotonic(), 0))
                    break
                samples.append((time.monotonic(), b))
                if b == 0:
                    break
                await asyncio.sleep(0.005)
            busy1, cpu1 = machine_busy_s(), own.cpu_s() + own.services_cpu_s()
    finally:
        await own.stop()
    span = max(1e-9, samples[-1][0] - samples[0][0])
    return [{"scenario": "flush", "n": spec.n, "s": spec.senders, "w": spec.window,
             "push_msgs_per_s": pushed["msgs_per_s"], **flush_figures(samples),
             "others_cpu": others_cpu((busy1 - busy0) / span, max(0.0, cpu1 - cpu0) / span),
             "generator_bound": pushed["generator_bound"], "errors": pushed["errors"]}]


def flush_figures(samples: list[tuple[float, int]]) -> dict[str, Any]:
    """Rows/s from (time, backlog) samples taken while the backlog drains.

    The rate is taken from the first sample where the backlog fell (one batch was
    written) to the last one before it was empty, or to the empty one when there
    is no other in between.
    """
    start = samples[0][1] if samples else 0
    out: dict[str, Any] = {"backlog": start, "rows_per_s": None,
                           "drained": bool(samples) and samples[-1][1] == 0}
    falling = [(t, b) for t, b in samples if b < start]
    if not falling or not out["drained"]:
        return out
    (t0, b0), nonzero = falling[0], [(t, b) for t, b in falling if b > 0]
    t1, b1 = nonzero[-1] if len(nonzero) >= 2 else falling[-1]
    if t1 > t0:
        out["rows_per_s"] = round((b0 - b1) / (t1 - t0), 1)
    out["drain_s"] = round(samples[-1][0] - samples[0][0], 3)
    return out


#: scenario name -> function, in the order a full run takes them (idle first: a fresh heap)
SCENARIOS = {
    "idle": idle,
    "connect": connect,
    "latency": latency,
    "fanout": fanout,
    "ingest": ingest,
    "flush": flush,
    "channels": channels,
}
