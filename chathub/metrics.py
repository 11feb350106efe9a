"""/metrics: the admin ``stats`` figures in Prometheus text format, plus two histograms.

Gauges and counters are read from the hub's own counters at scrape time (a
custom collector), so the hot path pays nothing for them.

Channels appear as totals only (channels with subscribers here, subscriptions,
messages by channel type): no series is labelled with a channel name, since
channel names are chosen by users and an unbounded label set breaks Prometheus.
Per-channel figures are on the admin socket (``chathub channels``). Only the fan-out and
PostgreSQL-write histograms are observed as things happen: one ``observe`` per
broadcast (not per recipient) and per batch written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .figures import Figures

#: fan-out latency buckets, seconds (one broadcast to every local connection)
FANOUT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
#: PostgreSQL batch write buckets, seconds
PG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class _FiguresCollector:
    def __init__(self, figures: Callable[[], Figures]) -> None:
        self.figures = figures

    def collect(self) -> Iterator[Metric]:
        f = self.figures()
        s = f.stats

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"chathub_{name}", doc, value=value)

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(f"chathub_{name}", doc, value=value)

        yield gauge("connections", "Open WebSocket connections on this node", f.connections)
        yield gauge("users", "Users online on this node", f.users)
        yield gauge("broadcast_queue_depth", "Broadcasts waiting for fan-out", f.broadcast_queue)
        yield gauge("whisper_queue_depth", "Whispers waiting for delivery", f.whisper_queue)
        yield gauge("inbox_depth", "Events waiting for the hub loop", f.inbox)
        yield gauge("max_client_backlog_bytes", "Largest outgoing backlog of a client", f.max_backlog)
        yield gauge("valkey_up", "1 when Valkey answers", 1 if f.valkey_up else 0)
        yield gauge("postgres_up", "1 when PostgreSQL answers its probe and took the last write",
                    1 if f.postgres_up else 0)
        if f.postgres_round_trip_s is not None:
            yield gauge("postgres_probe_seconds", "Seconds the last PostgreSQL probe (SELECT 1) took",
                        f.postgres_round_trip_s)
        yield gauge("sessions_unsent", "Finished sessions held in memory while Valkey is down",
                    f.sessions_unsent)
        yield counter("messages_in", "Chat and whisper messages accepted", s.messages_in)
        yield counter("deliveries_out", "Frames delivered to clients", s.deliveries_out)
        yield counter("rate_limit_hits", "Messages refused by the rate limit on this node", s.rate_limit_hits)
        yield counter("slow_consumer_disconnects", "Clients closed as slow consumers", s.slow_consumers)
        yield counter("kicks", "Connections closed by kick", s.kicks)
        yield counter("bus_resubscribes", "Times the bus subscription was lost and made again",
                      f.bus_resubscribes)
        yield counter("connects", "Connections registered", s.connects)
        yield counter("messages_flushed", "Messages written to PostgreSQL", f.messages_flushed)
        yield counter("sessions_written", "Sessions written to PostgreSQL", f.sessions_written)
        yield _labelled("messages_accepted", "Messages accepted, by type", "type", s.by_type)
        yield gauge("channels", "Channels with at least one subscriber on this node", f.channels)
        yield gauge("subscriptions", "Channel subscriptions of this node's connections",
                    f.subscriptions)
        yield _labelled("channel_messages", "Channel messages accepted on this node, by channel "
                        "type (public, private)", "type", s.channel_messages())
        yield _labelled("errors", "Error frames sent, by code", "code", s.by_error)
        yield _labelled("refusals", "Connections refused, by reason", "reason", f.refusals)
        yield _labelled("closes", "Connections ended, by close reason", "reason", s.by_close)


def _labelled(name: str, doc: str, label: str, counts: dict[str, int]) -> CounterMetricFamily:
    """A counter family with one series per key of ``counts``."""
    family = CounterMetricFamily(f"chathub_{name}", doc, labels=[label])
    for key, n in sorted(counts.items()):
        family.add_metric([key], n)
    return family


class Metrics:
    """The daemon's Prometheus registry."""

    def __init__(self, figures: Callable[[], Figures]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_FiguresCollector(figures))  # type: ignore[arg-type]
        self.fanout = Histogram("chathub_fanout_seconds", "Time to fan one broadcast out to local clients",
                                buckets=FANOUT_BUCKETS, registry=self.registry)
        self.pg_write = Histogram("chathub_pg_write_seconds", "Time to write one batch to PostgreSQL",
                                  buckets=PG_BUCKETS, registry=self.registry)

    def observe_fanout(self, seconds: float) -> None:
        self.fanout.observe(seconds)

    def observe_pg_write(self, seconds: float, rows: int) -> None:
        self.pg_write.observe(seconds)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
