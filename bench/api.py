"""HTTP API benchmark: ``publish`` requests a second and their p99 with N concurrent callers.

    python -m bench.api [--callers 50] [--seconds 10]

Starts ``chathub serve`` (bench.servers.ServerProc, limits raised, one API key)
on a loopback port, then runs ``callers`` tasks that each publish through
:class:`chathub.api.AsyncAPIClient` one request after another (one connection
per request, as the daemon answers ``Connection: close``) for ``seconds``, and
prints requests/s and the latency percentiles. The figure is in docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import time

from chathub.api import AsyncAPIClient

from .servers import ServerProc


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(p / 100 * len(sorted_values)))]


async def run(callers: int, seconds: float, cpus: str | None) -> dict[str, float]:
    key = secrets.token_hex(16)
    server = ServerProc("chathub", cpus, env={"CHATHUB_API_KEYS": key,
                                              "CHATHUB_API_RATE": "1000000",
                                              "CHATHUB_API_BURST": "1000000"})
    await server.start()
    try:
        api = AsyncAPIClient(f"http://127.0.0.1:{server.port}", key)
        await api.publish("bench", "warm-up")
        latencies: list[float] = []
        errors = 0
        deadline = time.monotonic() + seconds

        async def caller(i: int) -> None:
            nonlocal errors
            n = 0
            while time.monotonic() < deadline:
                t0 = time.perf_counter()
                try:
                    await api.publish("bench", f"caller {i} message {n}", sender=f"bench{i}")
                    latencies.append(time.perf_counter() - t0)
                except Exception:
                    errors += 1
                n += 1

        t0 = time.monotonic()
        await asyncio.gather(*[caller(i) for i in range(callers)])
        elapsed = time.monotonic() - t0
        latencies.sort()
        return {"callers": callers, "seconds": round(elapsed, 1),
                "requests_per_s": round(len(latencies) / elapsed, 1), "errors": errors,
                "p50_ms": round(percentile(latencies, 50) * 1000, 1),
                "p99_ms": round(percentile(latencies, 99) * 1000, 1)}
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.api", description=__doc__.split("\n")[0])
    ap.add_argument("--callers", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--cpus", default=None, help="taskset CPU list for the daemon")
    args = ap.parse_args(argv)
    print(json.dumps(asyncio.run(run(args.callers, args.seconds, args.cpus))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
