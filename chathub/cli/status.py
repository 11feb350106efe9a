"""``chathub status``: a stats snapshot as a table for people."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

ROWS = [
    ("node", "node"), ("uptime_s", "uptime (s)"), ("connections", "connections"),
    ("users", "users"), ("messages_per_s", "messages/s in"), ("deliveries_per_s", "deliveries/s out"),
    ("broadcast_queue", "broadcast queue"), ("whisper_queue", "whisper queue"),
    ("max_backlog", "largest client backlog (bytes)"), ("rate_limit_hits", "rate-limit hits"),
    ("rate_limit_hits_last_minute", "rate-limit hits, last minute"),
    ("slow_consumers", "slow-consumer disconnects"), ("flush_backlog", "cache flush backlog"),
    ("sessions_waiting", "sessions waiting for PostgreSQL"), ("valkey_up", "Valkey up"),
    ("postgres_up", "PostgreSQL up"),
]


def render_status(stats: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title="chathub status", show_header=False)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, label in ROWS:
        table.add_row(label, str(stats.get(key, "-")))
    console.print(table)
    cluster = stats.get("cluster")
    if cluster:
        nodes = Table(title="cluster")
        for col in ("node", "connections", "last heartbeat (ms ago)"):
            nodes.add_column(col)
        import time

        now = int(time.time() * 1000)
        for n in cluster:
            nodes.add_row(str(n["node"]), str(n["connections"]), str(now - int(n["last"])))
        nodes.add_row("total", str(sum(int(n["connections"]) for n in cluster)), "")
        console.print(nodes)
