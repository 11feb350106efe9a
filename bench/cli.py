"""``python -m bench``: start the servers, run the scenarios against each, print the figures.

chathub and its peers (the reference, Node ``ws``, the Go hub; a peer that cannot
run here is skipped with a line saying why) are started by the harness as
subprocesses on loopback ports, pinned to CPU 0 when the machine has two or more;
the harness and its generator processes then run on the other CPUs. Each scenario
runs in turn against every server, so the figures of a row are taken close
together. Everything is stopped by PID at the end, also on errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from . import peers, report
from .loadgen import raise_nofile
from .scenarios import FULL, QUICK, SCENARIOS, Ctx
from .servers import KINDS, ServerProc

TARGETS = KINDS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", default=",".join(SCENARIOS),
                    help=f"comma-separated, from: {', '.join(SCENARIOS)} (default: all)")
    ap.add_argument("--targets", default=",".join(TARGETS),
                    help=f"comma-separated, from: {', '.join(TARGETS)} (default: all; a peer "
                         "that cannot run here is skipped with a line saying why)")
    ap.add_argument("--generator", choices=("auto", "go", "python"), default="auto",
                    help="load generator: the Go one (bench/gen, built with go) or the Python one; "
                         "auto: Go when it builds, else Python")
    ap.add_argument("--quick", action="store_true", help="small N and 2 s runs: a smoke test")
    ap.add_argument("--duration", type=float, help="seconds of sending per run (overrides)")
    ap.add_argument("--window", type=int,
                    help="fanout: messages each sender keeps in flight (default 4)")
    ap.add_argument("--channels-n", type=int, metavar="N",
                    help="channels: N connections in the layout, N/11 of them in the big channel "
                         "(default 11,000: 1,000 channels of 10 plus one of 1,000)")
    ap.add_argument("--procs", type=int,
                    help="generator processes (default: the generator's CPUs for the Python "
                         "generator, 1 for the Go one, which uses every generator CPU)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run each scenario this many times per server and keep the run least "
                         "disturbed by other processes (for shared machines)")
    ap.add_argument("--concurrency", type=int, default=100, help="connections opening at once")
    ap.add_argument("--no-pin", action="store_true", help="do not pin server and generator to CPUs")
    ap.add_argument("--profile", metavar="PATH",
                    help="py-spy the chathub daemon during fanout; collapsed stacks to PATH")
    ap.add_argument("--json", metavar="PATH", help="also append the JSON lines to PATH")
    ap.add_argument("--markdown", metavar="PATH", help="write the results as markdown to PATH")
    ap.add_argument("--server-log-level", default="INFO", help="chathub's log level (default INFO)")
    ap.add_argument("--chathub-src", metavar="DIR",
                    help="run the chathub package found in DIR (e.g. an exported commit) "
                         "instead of the installed one")
    ap.add_argument("--workers", type=int, default=1,
                    help="run chathub as 'serve --workers N' (combine with --no-pin so the "
                         "workers can use every CPU; per-process figures then cover the parent only)")
    args = ap.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    for s in args.scenarios:
        if s not in SCENARIOS:
            ap.error(f"unknown scenario {s!r}; choose from {', '.join(SCENARIOS)}")
    for t in args.targets:
        if t not in TARGETS:
            ap.error(f"unknown target {t!r}; choose from {', '.join(TARGETS)}")
    return args


def pin(no_pin: bool) -> tuple[str | None, int]:
    """Pin this process (and so its generators) away from CPU 0; (server CPUs, generator CPUs)."""
    cpus = sorted(os.sched_getaffinity(0))
    if no_pin or len(cpus) < 2:
        return None, len(cpus)
    os.sched_setaffinity(0, set(cpus[1:]))
    return str(cpus[0]), len(cpus) - 1


def _log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _calmer(row: dict[str, Any], kept: dict[str, Any]) -> bool:
    """Whether ``row`` was less disturbed by other processes than ``kept``."""
    return (row.get("others_cpu") or 0.0) < (kept.get("others_cpu") or 0.0)


def _brief(row: dict[str, Any]) -> str:
    keys = ("msgs_per_s", "deliveries_per_s", "deliveries_per_cpu_s", "delivery_ratio", "p50_ms",
            "p99_ms", "rss_per_conn_kb", "total_per_conn_kb", "lost_in_hold", "ramp_s", "conns_per_s",
            "connect_failures", "rows_per_s", "generator_cpu", "generator_us_per_delivery",
            "server_cpu", "others_cpu", "vs_fanout", "vs_fanout_kernel_ceiling", "pairs_per_s", "rss_per_subscription_kb",
            "valkey_per_subscription_kb")
    return " ".join(f"{k}={row[k]}" for k in keys if k in row)


def choose_generator(kind: str) -> tuple[str | None, str]:
    """(executable or None for the Python generator, a line saying which and why)."""
    if kind == "python":
        return None, "Python generator (--generator python)"
    try:
        exe = peers.go_generator()
    except peers.Unavailable as exc:
        if kind == "go":
            raise SystemExit(f"bench: the Go generator cannot be built: {exc}") from None
        return None, f"Python generator: the Go one is unavailable ({exc})"
    return str(exe), f"Go generator {exe.name}"


async def run(args: argparse.Namespace) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Run the scenarios; (results by server, lines about peers skipped and the generator)."""
    raise_nofile()
    server_cpus, gen_cpus = pin(args.no_pin)
    sizes = QUICK if args.quick else FULL
    if args.duration:
        sizes = replace(sizes, duration=args.duration)
    if args.window:
        sizes = replace(sizes, fanout_window=args.window)
    if args.channels_n:
        sizes = replace(sizes, channels_n=args.channels_n, channels_big=args.channels_n // 11)
    exe, why = choose_generator(args.generator)
    procs = args.procs or (1 if exe else gen_cpus)
    ctx = Ctx(sizes=sizes, procs=procs, gen_cpus=gen_cpus, concurrency=args.concurrency,
              profile=args.profile, generator=exe)
    notes = [why]
    _log(f"server CPUs {server_cpus or 'any'}, generator CPUs {gen_cpus}, "
         f"{ctx.procs} generator process(es); {why}")
    src = str(Path(args.chathub_src).resolve()) if args.chathub_src else None
    servers: dict[str, ServerProc] = {}
    for t in TARGETS:
        if t not in args.targets:
            continue
        srv = ServerProc(t, server_cpus, log_level=args.server_log_level, chathub_src=src,
                         workers=args.workers if t == "chathub" else 1)
        try:
            await asyncio.to_thread(srv.prepare)
        except peers.Unavailable as exc:
            notes.append(f"{t} skipped: {exc}")
            _log(notes[-1])
            continue
        if srv.note:
            notes.append(f"{t}: {srv.note}")
        servers[t] = srv
    results: dict[str, dict[str, Any]] = {t: {} for t in servers}
    try:
        for t, srv in servers.items():
            await srv.start()
            _log(f"{t} pid {srv.pid} on 127.0.0.1:{srv.port}")
        for name in args.scenarios:
            for k in range(max(1, args.repeat)):
                for t, srv in servers.items():
                    _log(f"{name} on {t} ..." + (f" (run {k + 1} of {args.repeat})" if args.repeat > 1 else ""))
                    for row in await SCENARIOS[name](srv, ctx):
                        _log(f"  {row['scenario']} {t}: {_brief(row)}")
                        kept = results[t].get(row["scenario"])
                        if kept is None or _calmer(row, kept):
                            results[t][row["scenario"]] = row
    finally:
        for t, srv in servers.items():
            await srv.stop()
            _log(f"{t} stopped")
    return results, notes


def sizes_of(args: argparse.Namespace):  # noqa: ANN201 - a Sizes
    return QUICK if args.quick else FULL


def profile_paths(path: str, sizes) -> list[str]:  # noqa: ANN001
    """Where fanout writes its profiles: ``path`` for the first N, ``path.n<N>`` for the others."""
    return [path if k == 0 else f"{path}.n{n}" for k, n in enumerate(sizes.fanout_ns)]


def command_line(argv: list[str]) -> str:
    return " ".join(["python -m bench", *map(shlex.quote, argv)])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    started = time.monotonic()
    try:
        import uvloop
    except ImportError:
        results, notes = asyncio.run(run(args))
    else:
        results, notes = uvloop.run(run(args))
    meta = {"machine": report.machine(), "command": command_line(argv),
            "quick": args.quick, "elapsed_s": round(time.monotonic() - started, 1)}
    print(f"chathub benchmark — {meta['machine']['date']} — nproc {meta['machine']['nproc']}, "
          f"{meta['machine']['cpu']} — {meta['command']}")
    for note in notes:
        print(note)
    print(report.text_table(results))
    lines = report.json_lines(results, meta)
    for line in lines:
        print(line)
    if args.json:
        with open(args.json, "a") as f:
            f.write("\n".join(lines) + "\n")
    if args.markdown:
        md = [f"Measured {meta['machine']['date']} on nproc={meta['machine']['nproc']}, "
              f"`{meta['machine']['cpu']}`, Linux {meta['machine']['kernel']}, "
              f"Python {meta['machine']['python']}, in {meta['elapsed_s']} s, with:", "",
              f"    {meta['command']}", "", *[f"- {n}" for n in notes], "",
              report.markdown_table(results), ""]
        if args.profile:
            from .profile import render, summarize

            for n, path in zip(sizes_of(args).fanout_ns, profile_paths(args.profile, sizes_of(args)), strict=True):
                if Path(path).exists():
                    md += [f"py-spy profile of the chathub daemon during fanout N={n} ({path}):", "",
                           render(summarize(path)), ""]
        Path(args.markdown).write_text("\n".join(md))
    print(json.dumps({"elapsed_s": meta["elapsed_s"]}), file=sys.stderr)
    return 0
