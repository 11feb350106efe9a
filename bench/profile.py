"""Profiling the daemon with py-spy during a scenario, and reading the result.

``py-spy record --format raw`` writes collapsed stacks (``frame;frame;... count``),
which speedscope and flamegraph.pl read too. :func:`summarize` turns them into the
functions with the largest self and inclusive shares of the samples.

    python -m bench.profile /tmp/chathub-fanout.txt
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
from collections import Counter
from pathlib import Path

#: samples per second
RATE = 200
_LINE = re.compile(r"\s*\((.*?):\d+\)$")


def _py_spy() -> str | None:
    """py-spy next to this Python or on the PATH; installed with pip on first use."""
    here = Path(sys.executable).parent / "py-spy"
    found = str(here) if here.exists() else shutil.which("py-spy")
    if found is None:
        import subprocess

        print("bench: installing py-spy (pip install py-spy) for --profile", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "py-spy"],
                       check=False, timeout=300)
        found = str(here) if here.exists() else shutil.which("py-spy")
    return found


async def start_py_spy(pid: int, out: str, duration: float) -> asyncio.subprocess.Process | None:
    """Start ``py-spy record`` on ``pid`` for ``duration`` seconds (None when not installed)."""
    exe = _py_spy()
    if exe is None:
        print("bench: py-spy could not be installed (pip install py-spy); no profile", file=sys.stderr)
        return None
    return await asyncio.create_subprocess_exec(
        exe, "record", "--pid", str(pid), "--duration", str(max(1, round(duration))),
        "--rate", str(RATE), "--nonblocking", "--format", "raw", "--output", out,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)


async def wait_py_spy(proc: asyncio.subprocess.Process, timeout: float = 60.0) -> None:
    """Wait for py-spy to write its file; stop it by its PID if it hangs."""
    try:
        _, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return
    if proc.returncode:
        print(f"bench: py-spy failed: {err.decode(errors='replace').strip()[-300:]}", file=sys.stderr)


def _frame(raw: str) -> str:
    """``func (path/file.py:123)`` -> ``func (file.py)``."""
    m = _LINE.search(raw)
    if not m:
        return raw.strip()
    return f"{raw[:m.start()].strip()} ({Path(m.group(1)).name})"


def _line(raw: str) -> str:
    """``func (path/file.py:123)`` -> ``func (file.py:123)``."""
    m = re.search(r"\((.*?):(\d+)\)\s*$", raw)
    if not m:
        return raw.strip()
    return f"{raw[:m.start()].strip()} ({Path(m.group(1)).name}:{m.group(2)})"


def summarize(path: str | Path, top: int = 15) -> dict[str, list[tuple[str, float]]]:
    """Top functions by self and by inclusive share, and top source lines (percent of samples).

    Frames on (nearly) every stack of the busiest thread — the CLI and event-loop
    entry points — are left out of the inclusive list: they say nothing.
    """
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    lines: Counter[str] = Counter()
    total = 0
    for line in Path(path).read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        raw = [f for f in stack.split(";")
               if not f.startswith("process ") and not f.startswith("thread ")]
        if not raw:
            continue
        frames = [_frame(f) for f in raw]
        total += n
        own[frames[-1]] += n
        lines[_line(raw[-1])] += n
        for f in set(frames):
            incl[f] += n
    if not total:
        return {"self": [], "inclusive": [], "lines": [], "samples": []}

    def pct(c: Counter[str]) -> list[tuple[str, float]]:
        return [(f, round(100 * n / total, 1)) for f, n in c.most_common(top)]

    root = max(incl.values())
    inner = Counter({f: n for f, n in incl.items() if n < 0.99 * root})
    return {"self": pct(own), "inclusive": pct(inner), "lines": pct(lines)[:8],
            "samples": [("total", float(total))]}


def render(summary: dict[str, list[tuple[str, float]]]) -> str:
    """The summary as small markdown tables."""
    out = [f"samples: {int(summary['samples'][0][1]) if summary['samples'] else 0}"]
    for key, title in (("self", "self %"), ("inclusive", "inclusive %"), ("lines", "self % by line")):
        out += ["", f"| {title} | function |", "|---:|---|"]
        out += [f"| {p} | `{f}` |" for f, p in summary[key]]
    return "\n".join(out)


if __name__ == "__main__":
    print(render(summarize(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 15)))
