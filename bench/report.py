"""Turning results into the human table, the JSON lines and the markdown for docs/performance.md."""

from __future__ import annotations

import datetime
import json
import os
import platform
from pathlib import Path
from typing import Any

Row = dict[str, Any]
#: the servers in the order of the table's columns
SERVERS = ("chathub", "reference", "node-ws", "go-hub")

_LOAD = [("server CPU, cores", "server_cpu"), ("Valkey+PG CPU, cores", "services_cpu"),
         ("deliveries per server CPU-second", "deliveries_per_cpu_s"),
         ("deliveries per CPU-second, server+Valkey+PG", "deliveries_per_cpu_s_all"),
         ("server CPU µs per delivery", "server_us_per_delivery"),
         ("of which system (kernel) µs", "server_sys_us_per_delivery"),
         ("generator CPU µs per delivery", "generator_us_per_delivery"),
         ("deliveries per generator read", "deliveries_per_read"),
         ("generator CPU share", "generator_cpu"), ("other processes' CPU, cores", "others_cpu")]
#: (label, key) of the figures shown per scenario kind; ``latency`` covers every rate
METRICS: dict[str, list[tuple[str, str]]] = {
    "idle": [("RSS per idle connection, KB (server)", "rss_per_conn_kb"),
             ("Valkey RSS per idle connection, KB", "valkey_per_conn_kb"),
             ("RSS per idle connection, KB (server+Valkey)", "total_per_conn_kb"),
             ("server RSS before, MB", "rss_before_mb"), ("server RSS after, MB", "rss_after_mb"),
             ("connections opened", "connected"), ("seconds held", "hold_s"),
             ("connections lost while held", "lost_in_hold")],
    "connect": [("seconds to open N", "ramp_s"), ("connections/s", "conns_per_s"),
                ("connect p50, ms", "connect_p50_ms"), ("connect p99, ms", "connect_p99_ms"),
                ("failures", "connect_failures"), ("server CPU ms per connection", "server_ms_per_conn"),
                ("generator CPU share", "generator_cpu"),
                ("other processes' CPU, cores", "others_cpu")],
    "latency": [("p50, ms", "p50_ms"), ("p90, ms", "p90_ms"), ("p99, ms", "p99_ms"), ("max, ms", "max_ms"),
                ("deliveries/s", "deliveries_per_s"), ("delivery ratio", "delivery_ratio"),
                ("server CPU, cores", "server_cpu"), ("other processes' CPU, cores", "others_cpu")],
    "fanout": [("messages/s accepted", "msgs_per_s"), ("deliveries/s", "deliveries_per_s"),
               ("delivery ratio", "delivery_ratio"), ("p50, ms", "p50_ms"),
               ("p99, ms", "p99_ms"), ("max, ms", "max_ms"),
               ("slow-consumer disconnects", "slow_consumer_disconnects"), *_LOAD],
    "ingest": [("messages/s accepted", "msgs_per_s"), ("deliveries/s", "deliveries_per_s"),
               ("delivery ratio", "delivery_ratio"), ("p99, ms", "p99_ms"), *_LOAD],
    "flush": [("rows/s into PostgreSQL", "rows_per_s"), ("backlog drained, rows", "backlog"),
              ("seconds from SIGTERM to empty", "drain_s"), ("push messages/s", "push_msgs_per_s"),
              ("other processes' CPU, cores", "others_cpu")],
    "channels_layout": [("channels (plus the big one)", "channels"),
                        ("messages/s accepted", "msgs_per_s"), ("deliveries/s", "deliveries_per_s"),
                        ("delivery ratio", "delivery_ratio"), ("p50, ms", "p50_ms"),
                        ("p99, ms", "p99_ms"), *_LOAD,
                        ("fanout at the same N: deliveries per server CPU-second",
                         "fanout_deliveries_per_cpu_s"),
                        ("fanout at the same N: server CPU µs per delivery",
                         "fanout_us_per_delivery"),
                        ("per-CPU deliveries, channels / fanout", "vs_fanout"),
                        ("ceiling of that ratio set by the kernel alone", "vs_fanout_kernel_ceiling")],
    "channels_churn": [("subscribe+unsubscribe pairs/s", "pairs_per_s"), ("pairs", "pairs"),
                       ("pairs per server CPU-second", "pairs_per_cpu_s"),
                       ("server CPU, cores", "server_cpu"), ("generator CPU share", "generator_cpu")],
    "channels_rss": [("subscriptions", "subscriptions"),
                     ("server RSS per idle subscription, KB", "rss_per_subscription_kb"),
                     ("Valkey used_memory per subscription, KB", "valkey_per_subscription_kb"),
                     ("server RSS before, MB", "rss_before_mb"), ("server RSS after, MB", "rss_after_mb")],
}


def _kind(scenario: str) -> str:
    for k in ("latency", "fanout"):
        if scenario.startswith(k):
            return k
    return scenario


class Target:
    """One goal: chathub's figure against a bound, or against a peer's figure times a factor."""

    def __init__(self, text: str, bound: float | None = None, peer: str | None = None,
                 factor: float = 1.0, higher: bool = True) -> None:
        self.text, self.bound, self.peer, self.factor, self.higher = text, bound, peer, factor, higher

    def check(self, row: dict[str, Row | None], key: str) -> tuple[bool | None, str]:
        """(met, detail): None when chathub's or the peer's figure is missing."""
        ch = (row.get("chathub") or {}).get(key)
        if ch is None:
            return None, ""
        if self.peer is None:
            limit = self.bound
            detail = ""
        else:
            ref = (row.get(self.peer) or {}).get(key)
            if ref is None:
                return None, f"no {self.peer} figure"
            limit = ref * self.factor
            detail = f"{ch / ref:.2f}×" if ref else ""
        assert limit is not None
        met = ch >= limit if self.higher else ch <= limit
        return met, detail


#: (scenario, key) -> goal (from issue 20)
TARGETS: dict[tuple[str, str], Target] = {
    **{(f"fanout_n{n}", "deliveries_per_cpu_s"): Target("≥ 1.2× go-hub", peer="go-hub", factor=1.2)
       for n in (1000, 10000)},
    **{(f"fanout_n{n}", "delivery_ratio"): Target("= 1.0", bound=1.0) for n in (1000, 10000)},
    **{(f"fanout_n{n}", "slow_consumer_disconnects"): Target("= 0", bound=0, higher=False)
       for n in (1000, 10000)},
    ("latency_r20", "p99_ms"): Target("≤ 50 ms", bound=50, higher=False),
    ("latency_r50", "p99_ms"): Target("≤ node-ws", peer="node-ws", higher=False),
    ("idle", "total_per_conn_kb"): Target("≤ 10 KB", bound=10, higher=False),
    ("idle", "lost_in_hold"): Target("= 0", bound=0, higher=False),
    ("connect", "connect_failures"): Target("= 0", bound=0, higher=False),
    ("flush", "rows_per_s"): Target("≥ 20,000", bound=20000),
    # from issue 16 (channels)
    ("channels_layout", "vs_fanout"): Target("≥ 0.9", bound=0.9),
    ("channels_layout", "delivery_ratio"): Target("= 1.0", bound=1.0),
    ("channels_churn", "pairs_per_s"): Target("≥ 5,000", bound=5000),
    ("channels_rss", "rss_per_subscription_kb"): Target("≤ 0.5 KB", bound=0.5, higher=False),
}
# "= 1.0" for the delivery ratio: at least 1.0 (more would be a counting error, seen as such)


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v == int(v) and abs(v) >= 100:
            return f"{int(v):,}"
        return f"{v:,.3f}".rstrip("0").rstrip(".") if abs(v) < 10 else f"{v:,.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def ratio(ch: Any, ref: Any) -> float | None:
    """chathub / peer, or None when not both numbers (or the peer's is 0)."""
    if isinstance(ch, bool) or isinstance(ref, bool):
        return None
    if isinstance(ch, (int, float)) and isinstance(ref, (int, float)) and ref:
        return round(ch / ref, 3)
    return None


def _servers(results: dict[str, dict[str, Row]]) -> list[str]:
    return [t for t in SERVERS if t in results]


def table_rows(results: dict[str, dict[str, Row]]) -> tuple[list[str], list[list[str]]]:
    """(header, rows): [scenario, figure, one column per server, target, met]."""
    names = _servers(results)
    header = ["scenario", "figure", *names, "target", "met"]
    scenarios = list(dict.fromkeys(s for t in names for s in results[t]))
    out = []
    for scen in scenarios:
        row = {t: results[t].get(scen) for t in names}
        params = next(r for r in row.values() if r)
        title = scen + "".join(f" {k.upper()}={params[k]:g}" for k in ("n", "s", "w", "rate") if k in params)
        for label, key in METRICS.get(_kind(scen), []):
            tgt = TARGETS.get((scen, key))
            met, detail = tgt.check(row, key) if tgt else (None, "")
            cells = [_fmt((row[t] or {}).get(key)) if row[t] else "" for t in names]
            verdict = "" if met is None else ("ok" if met else "MISSED")
            if detail:
                verdict = f"{verdict} ({detail})" if verdict else detail
            out.append([title, label, *cells, tgt.text if tgt else "", verdict])
            title = ""
        notes = [f"{t}: generator-bound (generator CPU ≥ 90 %)" for t in names
                 if row[t] and row[t].get("generator_bound")]
        notes += [f"{t}: disturbed — other processes used {row[t]['others_cpu']:.2f} cores meanwhile"
                  for t in names if row[t] and (row[t].get("others_cpu") or 0) >= DISTURBED]
        notes += [f"{t} errors {row[t]['errors']}" for t in names if row[t] and row[t].get("errors")]
        notes += [f"{t} connect errors {row[t]['connect_errors']}" for t in names
                  if row[t] and row[t].get("connect_errors")]
        notes += [f"{t} errors while held {row[t]['hold_errors']}" for t in names
                  if row[t] and row[t].get("hold_errors")]
        for note in notes:
            out.append(["", "note", note] + [""] * (len(header) - 3))
    return header, out


#: cores used by other processes during a run above which its figures are marked as disturbed
DISTURBED = 0.25


def text_table(results: dict[str, dict[str, Row]]) -> str:
    header, body = table_rows(results)
    rows = [header, *body]
    ncol = len(header)
    widths = [max(len(r[i]) for r in rows if r[1] != "note" or i < 2) for i in range(ncol)]
    lines = []
    for k, r in enumerate(rows):
        if r[1] == "note":
            lines.append(f"{'':<{widths[0]}}  ! {r[2]}")
            continue
        lines.append("  ".join(c.rjust(w) if 2 <= i < ncol - 2 else c.ljust(w)
                               for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(results: dict[str, dict[str, Row]]) -> str:
    header, body = table_rows(results)
    ncol = len(header)
    lines = ["| " + " | ".join(header) + " |",
             "|---|---|" + "---:|" * (ncol - 4) + "---|---|"]
    for r in body:
        if r[1] == "note":
            lines.append(f"| | *note* | {r[2]} |" + " |" * (ncol - 3))
        else:
            lines.append("| " + " | ".join(r) + " |")
    return "\n".join(lines)


def json_lines(results: dict[str, dict[str, Row]], meta: dict[str, Any]) -> list[str]:
    """One JSON object per scenario: every server's figures and the targets met."""
    names = _servers(results)
    lines = []
    for scen in list(dict.fromkeys(s for t in names for s in results[t])):
        row = {t: results[t].get(scen) for t in names}
        met = {key: tgt.check(row, key)[0] for (s, key), tgt in TARGETS.items() if s == scen}
        lines.append(json.dumps({"scenario": scen, **row, "targets_met": met, **meta},
                                sort_keys=False, default=str))
    return lines


def machine() -> dict[str, Any]:
    """nproc, CPU model, kernel, Python, date."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "nproc": os.cpu_count(), "cpu": model, "kernel": platform.release(),
            "python": platform.python_version()}
