"""Turning results into the human table, the JSON lines and the markdown for docs/performance.md."""

from __future__ import annotations

import datetime
import json
import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

Row = dict[str, Any]
#: (label, key) of the figures shown per scenario; ``latency`` covers every rate
METRICS: dict[str, list[tuple[str, str]]] = {
    "idle": [("RSS per idle connection, KB", "rss_per_conn_kb"), ("server RSS before, MB", "rss_before_mb"),
             ("server RSS after, MB", "rss_after_mb"), ("connections held", "connected")],
    "connect": [("seconds to open N", "ramp_s"), ("connections/s", "conns_per_s"),
                ("connect p50, ms", "connect_p50_ms"), ("connect p99, ms", "connect_p99_ms"),
                ("failures", "connect_failures"), ("other processes' CPU, cores", "others_cpu")],
    "latency": [("p50, ms", "p50_ms"), ("p90, ms", "p90_ms"), ("p99, ms", "p99_ms"), ("max, ms", "max_ms"),
                ("deliveries/s", "deliveries_per_s"), ("delivery ratio", "delivery_ratio"),
                ("server CPU, cores", "server_cpu"), ("other processes' CPU, cores", "others_cpu")],
    "fanout": [("messages/s accepted", "msgs_per_s"), ("deliveries/s", "deliveries_per_s"),
               ("delivery ratio", "delivery_ratio"), ("p50, ms", "p50_ms"), ("p90, ms", "p90_ms"),
               ("p99, ms", "p99_ms"), ("max, ms", "max_ms"),
               ("slow-consumer disconnects", "slow_consumer_disconnects"),
               ("server CPU, cores", "server_cpu"), ("Valkey+PG CPU, cores", "services_cpu"),
               ("generator CPU share", "generator_cpu"), ("other processes' CPU, cores", "others_cpu")],
    "ingest": [("messages/s accepted", "msgs_per_s"), ("deliveries/s", "deliveries_per_s"),
               ("delivery ratio", "delivery_ratio"), ("p99, ms", "p99_ms"),
               ("server CPU, cores", "server_cpu"), ("Valkey+PG CPU, cores", "services_cpu"),
               ("generator CPU share", "generator_cpu"), ("other processes' CPU, cores", "others_cpu")],
    "flush": [("rows/s into PostgreSQL", "rows_per_s"), ("backlog drained, rows", "backlog"),
              ("seconds from SIGTERM to empty", "drain_s"), ("push messages/s", "push_msgs_per_s"),
              ("other processes' CPU, cores", "others_cpu")],
}


def _kind(scenario: str) -> str:
    return "latency" if scenario.startswith("latency") else scenario


def _ref_le(ch: Any, ref: Any) -> bool | None:
    return None if ch is None or ref is None else ch <= ref


#: (scenario, key) -> (target text, check(chathub value, reference value))
TARGETS: dict[tuple[str, str], tuple[str, Callable[[Any, Any], bool | None]]] = {
    ("fanout", "deliveries_per_s"): ("≥ 0.9× ref", lambda c, r: None if c is None or not r else c >= 0.9 * r),
    ("fanout", "delivery_ratio"): ("= 1.0", lambda c, r: None if c is None else c == 1.0),
    ("fanout", "slow_consumer_disconnects"): ("= 0", lambda c, r: None if c is None else c == 0),
    ("latency_r20", "p99_ms"): ("≤ 50 ms", lambda c, r: None if c is None else c <= 50),
    ("latency_r50", "p99_ms"): ("≤ ref", _ref_le),
    ("idle", "rss_per_conn_kb"): ("≤ 15 KB", lambda c, r: None if c is None else c <= 15),
    ("connect", "ramp_s"): ("≤ 2 s (N=1000)", lambda c, r: None if c is None else c <= 2),
    ("flush", "rows_per_s"): ("≥ 20,000", lambda c, r: None if c is None else c >= 20000),
}


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
    """chathub / reference, or None when not both numbers (or the reference is 0)."""
    if isinstance(ch, bool) or isinstance(ref, bool):
        return None
    if isinstance(ch, (int, float)) and isinstance(ref, (int, float)) and ref:
        return round(ch / ref, 3)
    return None


def table_rows(results: dict[str, dict[str, Row]]) -> list[list[str]]:
    """[scenario, figure, chathub, reference, ratio, target, met] rows."""
    ch, ref = results.get("chathub", {}), results.get("reference", {})
    out = []
    for scen in list(dict.fromkeys([*ch, *ref])):
        c, r = ch.get(scen, {}), ref.get(scen, {})
        params = c or r
        title = scen + "".join(f" {k.upper()}={params[k]:g}" for k in ("n", "s", "w", "rate") if k in params)
        for label, key in METRICS.get(_kind(scen), []):
            cv, rv = c.get(key), r.get(key)
            tgt = TARGETS.get((scen, key))
            met = tgt[1](cv, rv) if tgt and c else None
            rt = None if key in NO_RATIO else ratio(cv, rv)
            out.append([title, label, _fmt(cv), _fmt(rv), _fmt(rt),
                        tgt[0] if tgt else "", "" if met is None else ("ok" if met else "MISSED")])
            title = ""
        notes = [f"{name}: generator-bound (generator CPU ≥ 90 %)"
                 for name, row in (("chathub", c), ("reference", r)) if row.get("generator_bound")]
        notes += [f"{name}: disturbed — other processes used {row['others_cpu']:.2f} cores meanwhile"
                  for name, row in (("chathub", c), ("reference", r))
                  if (row.get("others_cpu") or 0) >= DISTURBED]
        errs = [f"{name} errors {row['errors']}" for name, row in (("chathub", c), ("reference", r))
                if row.get("errors")]
        errs += [f"{name} connect errors {row['connect_errors']}"
                 for name, row in (("chathub", c), ("reference", r)) if row.get("connect_errors")]
        for note in notes + errs:
            out.append(["", "note", note, "", "", "", ""])
    return out


#: figures whose chathub/reference ratio means nothing
NO_RATIO = {"others_cpu", "connected"}
#: cores used by other processes during a run above which its figures are marked as disturbed
DISTURBED = 0.25

HEADER = ["scenario", "figure", "chathub", "reference", "ratio", "target", "met"]


def text_table(results: dict[str, dict[str, Row]]) -> str:
    rows = [HEADER, *table_rows(results)]
    widths = [max(len(r[i]) for r in rows if r[1] != "note" or i < 2) for i in range(len(HEADER))]
    lines = []
    for k, r in enumerate(rows):
        if r[1] == "note":
            lines.append(f"{'':<{widths[0]}}  ! {r[2]}")
            continue
        lines.append("  ".join(c.rjust(w) if 2 <= i <= 4 else c.ljust(w)
                               for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(results: dict[str, dict[str, Row]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|---|---|---:|---:|---:|---|---|"]
    for r in table_rows(results):
        if r[1] == "note":
            lines.append(f"| | *note* | {r[2]} | | | | |")
        else:
            lines.append("| " + " | ".join(r) + " |")
    return "\n".join(lines)


def json_lines(results: dict[str, dict[str, Row]], meta: dict[str, Any]) -> list[str]:
    """One JSON object per scenario: both targets' figures, the ratios and the targets met."""
    ch, ref = results.get("chathub", {}), results.get("reference", {})
    lines = []
    for scen in list(dict.fromkeys([*ch, *ref])):
        c, r = ch.get(scen), ref.get(scen)
        ratios = {k: ratio(c.get(k), r.get(k)) for k in c if ratio(c.get(k), r.get(k)) is not None} \
            if c and r else {}
        met = {key: tgt[1](c.get(key), (r or {}).get(key))
               for (s, key), tgt in TARGETS.items() if s == scen and c}
        lines.append(json.dumps({"scenario": scen, "chathub": c, "reference": r, "ratio": ratios,
                                 "targets_met": met, **meta}, sort_keys=False, default=str))
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
