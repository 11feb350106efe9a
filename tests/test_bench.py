"""Smoke tests of the benchmark's load generators against real servers (no timing assertions)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict

import pytest
from websockets.asyncio.server import serve

from bench import peers, reference
from bench.loadgen import LoadSpec, ProcessGenerator, Shard, merge_runs, summarize_run
from bench.report import TARGETS, markdown_table
from bench.scenarios import per_delivery
from bench.servers import CHATHUB_ENV, chathub_env
from bench.wsproto import Conn, Tally


def _spec(port: int, **kw) -> LoadSpec:
    return LoadSpec(port=port, n=20, senders=2, window=4, duration=0.5, sample_every=5, **kw)


async def _load(port: int, **kw) -> tuple[dict, int]:
    """Run N=20, S=2 for half a second in-process; the run's summary and frames counted."""
    shard = Shard(_spec(port, **kw))
    try:
        ramp = await shard.ramp()
        assert ramp.connected == 20, ramp.errors
        res = await shard.run()
    finally:
        await shard.close()
    return summarize_run(merge_runs([asdict(res)]), 1), res.chats_total


def _go_generator() -> str:
    try:
        return str(peers.go_generator())
    except peers.Unavailable as exc:
        pytest.skip(f"Go generator unavailable: {exc}")


async def _go_load(port: int, **kw) -> dict:
    """The same load through the Go generator; the run's summary."""
    async with ProcessGenerator(_spec(port, **kw), 1, _go_generator()) as gen:
        ramp = await gen.ramp()
        assert ramp["connected"] == 20, ramp["errors"]
        run = await gen.run()
    return summarize_run(run, 1)


async def _raw_hub(ws) -> None:  # type: ignore[no-untyped-def]
    """A hub like the Go one: no welcome, each text echoed as is to everyone, joined by a
    newline with one more chat (no sender's) and sent in two fragments."""
    async for data in ws:
        joined = data + '\n{"type":"chat","text":"x"}'  # two deliveries in one message
        half = len(joined) // 2
        for peer in list(RAW_CLIENTS):
            try:
                await peer.send(iter([joined[:half], joined[half:]]))
            except Exception:
                continue


RAW_CLIENTS: set = set()


async def _raw_handler(ws) -> None:  # type: ignore[no-untyped-def]
    RAW_CLIENTS.add(ws)
    try:
        await _raw_hub(ws)
    finally:
        RAW_CLIENTS.discard(ws)


async def test_load_generator_counts_every_delivery_from_chathub(daemon_factory):
    """Every chat of the two senders reaches all 20 connections of a daemon, and is counted."""
    daemon = await daemon_factory(ratelimit={"chat_rate": 1e6, "chat_burst": 1000000})
    summary, delivered = await _load(daemon.port)
    assert delivered > 0 and summary["acked"] > 0
    assert summary["delivery_ratio"] == 1.0
    assert summary["samples"] > 0


async def test_load_generator_counts_every_delivery_from_reference():
    """The reference server's frames are counted the same way as chathub's."""
    async with serve(reference.handler, "127.0.0.1", 0, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        summary, delivered = await _load(port)
    assert delivered > 0 and summary["delivery_ratio"] == 1.0


async def test_go_generator_counts_every_delivery_from_chathub(daemon_factory):
    """The Go generator sees the same: every chat to every connection, latency sampled."""
    daemon = await daemon_factory(ratelimit={"chat_rate": 1e6, "chat_burst": 1000000})
    summary = await _go_load(daemon.port)
    assert summary["acked"] > 0 and summary["delivery_ratio"] == 1.0
    assert summary["samples"] > 0 and summary["errors"] == {}


async def test_both_generators_count_lines_of_fragmented_raw_messages():
    """With proto "raw" each line of a (fragmented) chat message is one delivery."""
    RAW_CLIENTS.clear()
    async with serve(_raw_handler, "127.0.0.1", 0, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        summary, delivered = await _load(port, proto="raw")
        # each message comes back as two deliveries to each of the 20 connections
        assert delivered == 2 * 20 * summary["sent"] > 0
        go = await _go_load(port, proto="raw")
    assert go["deliveries"] == 2 * 20 * go["sent"] > 0
    assert go["samples"] > 0


def test_python_connection_walks_split_frames():
    """Frames split across reads at any byte are counted once each."""
    async def go() -> Conn:
        conn = Conn("h", 1, "/ws", Tally(None))
        conn.upgraded = True
        frame = b'{"type":"chat","id":"1","from":"s0","text":"x","ts":1}'
        data = (bytes((0x81, len(frame))) + frame) * 3
        for i in range(len(data)):
            conn.data_received(data[i:i + 1])
        return conn

    assert asyncio.run(go()).chats == 3


def test_settings_an_older_tree_does_not_know_are_left_out(tmp_path):
    """A before/after run against a commit older than a bench setting still starts: the
    settings its config.py does not name are dropped, the others kept."""
    (tmp_path / "chathub").mkdir()
    (tmp_path / "chathub" / "config.py").write_text(
        "chat_rate = 1\nchat_burst = 1\nmax_connections_per_ip = 1\n")
    kept = chathub_env(str(tmp_path))
    assert kept["CHATHUB_RATELIMIT_CHAT_RATE"] == CHATHUB_ENV["CHATHUB_RATELIMIT_CHAT_RATE"]
    assert "CHATHUB_SERVER_MAX_CONNECTIONS_PER_IP" in kept
    assert "CHATHUB_SERVER_MAX_CONNECTIONS" not in kept  # a whole word, not a prefix
    assert "CHATHUB_SERVER_MAX_FRAMES_PER_SECOND" not in kept
    assert "CHATHUB_MODERATION_FLOOD_REPEATS" not in kept
    assert chathub_env(None) == CHATHUB_ENV  # the installed chathub knows them all


def test_deliveries_per_cpu_second_and_targets():
    """Per-CPU figures divide as documented; a goal against a peer needs the peer's figure."""
    fig = per_delivery(2_000_000, server_cpu_s=1.6, services_cpu_s=0.4, generator_cpu_s=0.5,
                       server_sys_s=0.6)
    assert fig == {"deliveries_per_cpu_s": 1_250_000.0, "deliveries_per_cpu_s_all": 1_000_000.0,
                   "server_us_per_delivery": 0.8, "server_sys_us_per_delivery": 0.3,
                   "generator_us_per_delivery": 0.25}
    target = TARGETS[("fanout_n1000", "deliveries_per_cpu_s")]
    ch = {"deliveries_per_cpu_s": 1_300_000.0}
    assert target.check({"chathub": ch, "go-hub": {"deliveries_per_cpu_s": 1_000_000.0}},
                        "deliveries_per_cpu_s") == (True, "1.30×")
    assert target.check({"chathub": ch, "go-hub": {"deliveries_per_cpu_s": 1_100_000.0}},
                        "deliveries_per_cpu_s")[0] is False
    assert target.check({"chathub": ch}, "deliveries_per_cpu_s") == (None, "no go-hub figure")
    table = markdown_table({"chathub": {"fanout_n1000": {"n": 1000, **ch}}})
    assert "≥ 1.2× go-hub" in table and json.dumps(table)


class _InProcess:
    """What the channels scenario reads of a ServerProc, for a daemon in this process."""

    kind = "chathub"
    data_dir = None  # no Valkey socket to ask: its figure is left out

    def __init__(self, port: int) -> None:
        self.port = port

    def cpu_s(self) -> float:
        from bench.loadgen import cpu_seconds

        return cpu_seconds()

    def sys_s(self) -> float:
        import os

        from bench.servers import cpu_split

        return cpu_split(os.getpid())[1]

    def services_cpu_s(self) -> float:
        return 0.0

    def rss_kb(self) -> int:
        import os

        from bench.servers import rss_kb

        return rss_kb(os.getpid())

    async def wait_connections(self, target: int, timeout: float = 30.0) -> bool:
        return True

    async def wait_healthy(self, timeout: float = 15.0) -> bool:
        return True


async def test_channels_scenario_reports_its_figures(daemon_factory):
    """A tiny channels run: every row present, deliveries only to each channel's members."""
    from bench.scenarios import SCENARIOS, Ctx, Sizes

    daemon = await daemon_factory(ratelimit={"chat_rate": 1e6, "chat_burst": 1000000,
                                             "request_rate": 1e6, "request_burst": 1000000})
    sizes = Sizes(duration=0.5, fanout_senders=2, channels_n=45, channels_size=10,
                  channels_big=5, channels_window=2, churn_clients=4, churn_rounds=10,
                  rss_clients=10, rss_per_client=3, rss_members=2)
    rows = await SCENARIOS["channels"](_InProcess(daemon.port), Ctx(sizes=sizes, procs=1, gen_cpus=1))
    by = {r["scenario"]: r for r in rows}
    lay, churn, rss = by["channels_layout"], by["channels_churn"], by["channels_rss"]
    assert lay["connected"] == 45 and lay["channels"] == 4 and lay["senders"] == 5
    assert lay["acked"] > 0 and lay["delivery_ratio"] == 1.0 and lay["errors"] == {}
    assert lay["deliveries_per_s"] > 0 and lay["fanout_deliveries_per_cpu_s"] > 0
    assert lay["vs_fanout"] > 0
    assert 0 < lay["server_sys_us_per_delivery"] < lay["server_us_per_delivery"]
    assert lay["vs_fanout_kernel_ceiling"] > 0
    assert churn["pairs"] == 40 and churn["pairs_per_s"] > 0 and churn["errors"] == {}
    assert rss["subscriptions"] == 30 and "rss_per_subscription_kb" in rss
    assert "valkey_per_subscription_kb" not in rss
