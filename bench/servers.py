"""The servers under test, started and stopped by the harness itself.

:class:`ServerProc` runs one server as a subprocess on a loopback port: chathub
(``chathub serve`` with a fresh temporary data dir, limits raised so that they
never trigger), or a peer: the reference (:mod:`bench.reference`, a bare
``websockets`` server), Node ``ws`` (``bench/peers/ws_server.cjs``) or the Go hub
(gorilla/websocket's chat example; see :mod:`bench.peers`). It is pinned to its
CPUs with ``taskset`` when asked, reads its RSS and CPU time from ``/proc``, and
is stopped by its PID (SIGTERM, then SIGKILL after a bound). The embedded
Valkey and PostgreSQL that chathub starts are found through their pid files, so
their CPU time can be reported and, should the daemon die without stopping
them, they can be stopped by PID too.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import peers

#: the repository root (bench/ lives in it)
ROOT = Path(__file__).resolve().parent.parent
#: seconds a server has to answer /healthz after it was started
START_TIMEOUT = 90.0
#: seconds a server has to exit after SIGTERM before it is killed
STOP_TIMEOUT = 40.0

#: chathub settings for benchmarking: nothing that throttles the load on purpose
CHATHUB_ENV = {
    "CHATHUB_RATELIMIT_CHAT_RATE": "1000000",
    "CHATHUB_RATELIMIT_CHAT_BURST": "1000000",
    "CHATHUB_RATELIMIT_WHISPER_RATE": "1000000",
    "CHATHUB_RATELIMIT_WHISPER_BURST": "1000000",
    "CHATHUB_RATELIMIT_REQUEST_RATE": "1000000",
    "CHATHUB_RATELIMIT_REQUEST_BURST": "1000000",
    "CHATHUB_MODERATION_FLOOD_REPEATS": "0",
    "CHATHUB_SERVER_MAX_CONNECTIONS": "100000",
    "CHATHUB_SERVER_MAX_CONNECTIONS_PER_IP": "100000",
    "CHATHUB_SERVER_CONNECT_RATE_PER_IP": "100000",
    "CHATHUB_SERVER_CONNECT_BURST_PER_IP": "100000",
    "CHATHUB_SERVER_DRAIN_TIMEOUT": "30",
    "CHATHUB_SERVER_MAX_FRAMES_PER_SECOND": "0",
}


def chathub_env(src: str | None) -> dict[str, str]:
    """:data:`CHATHUB_ENV`, less the settings an older tree in ``src`` does not know.

    chathub refuses an unknown setting (exit 2), so a before/after run against a commit
    older than a setting would not start. A setting counts as known when its key (the
    part after the section, lower case) appears as a whole word in ``src``'s
    ``chathub/config.py`` (``max_connections`` is not found in ``max_connections_per_ip``).
    """
    config = Path(src, "chathub", "config.py") if src else None
    if config is None or not config.exists():
        return dict(CHATHUB_ENV)
    text = config.read_text()
    return {k: v for k, v in CHATHUB_ENV.items()
            if re.search(rf"\b{k.split('_', 2)[2].lower()}\b", text)}


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (bound and released; fine for a benchmark)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _prepare_child() -> None:
    """In the server subprocess before exec: raise its open-files limit to the hard limit,
    and ask Linux to send it SIGTERM should the harness die without stopping it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def rss_kb(pid: int) -> int:
    """VmRSS of ``pid`` in kB (0 when the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of ``pid`` ((0, 0) when gone). System time is the
    kernel working for it: its socket reads and writes, and on loopback the delivery
    into the receiving socket that a write sets off."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0, 0.0
    # after the command: state is field 3, utime 14, stime 15 (1-based in proc(5))
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (0 when gone)."""
    return sum(cpu_split(pid))


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc; no psutil needed)."""
    out = []
    try:
        tasks = Path(f"/proc/{pid}/task").iterdir()
        for t in tasks:
            try:
                out += [int(c) for c in (t / "children").read_text().split()]
            except OSError:
                continue
    except OSError:
        pass
    return out


async def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """A one-shot HTTP/1.1 GET to 127.0.0.1; (status, body)."""
    async def go() -> tuple[int, bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                         "Connection: close\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = await reader.readexactly(length) if length else b""
            return status, body
        finally:
            writer.close()

    return await asyncio.wait_for(go(), timeout)


#: every kind of server the harness runs, in the order it runs them per scenario
KINDS = ("reference", "node-ws", "go-hub", "chathub")
#: seconds a server without a connection count gets to drop closed connections
SETTLE_BLIND = 1.0


class ServerProc:
    """One server under test: ``prepare()``, ``await start()``, measure, ``await stop()``."""

    def __init__(self, kind: str, cpus: str | None = None, env: dict[str, str] | None = None,
                 log_level: str = "INFO", chathub_src: str | None = None, workers: int = 1) -> None:
        assert kind in KINDS, kind
        self.kind = kind
        #: what was built or installed for a peer (version line), for the report
        self.note = ""
        #: the Go hub's binary; the folder holding Node's ``ws``
        self._exe: Path | None = None
        self._node_dir: Path | None = None
        #: hub processes (``chathub serve --workers``)
        self.workers = workers
        #: a folder holding a ``chathub`` package to run instead of the installed one
        self.chathub_src = chathub_src
        self.cpus = cpus
        self.extra_env = env or {}
        self.log_level = log_level
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.data_dir: Path | None = None
        self.log_path: Path | None = None
        #: PIDs of the embedded services (chathub only): valkey, postmaster
        self.service_pids: list[int] = []

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def counts_connections(self) -> bool:
        """Whether the server reports its open connections (the Go hub does not)."""
        return self.kind != "go-hub"

    def prepare(self) -> None:
        """Install or build what a peer needs (before :meth:`start`).

        Raises:
            peers.Unavailable: the peer cannot run here; the message says why.
        """
        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix=f"chb{self.kind[0]}", dir="/tmp"))
        try:
            if self.kind == "node-ws":
                self._node_dir = peers.node_ws()
                self.note = f"ws {peers.WS_VERSION}"
            elif self.kind == "go-hub":
                self._exe, version = peers.gorilla_chat(self.data_dir)
                self.note = f"gorilla/websocket examples/chat ({version})"
        except peers.Unavailable:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None
            raise

    def _command(self) -> list[str]:
        if self.kind == "reference":
            cmd = [sys.executable, "-m", "bench.reference", "--port", str(self.port)]
        elif self.kind == "node-ws":
            cmd = ["node", str(peers.HERE / "ws_server.cjs"), "--port", str(self.port)]
        elif self.kind == "go-hub":
            cmd = [str(self._exe), "-addr", f"127.0.0.1:{self.port}"]
        else:
            cmd = [sys.executable, "-c", "from chathub.cli import app; app()", "serve", "--data-dir", str(self.data_dir), "--port", str(self.port),
                   "--host", "127.0.0.1", "--log-level", self.log_level]
            if self.workers != 1:
                cmd += ["--workers", str(self.workers)]
        if self.cpus and shutil.which("taskset"):
            cmd = ["taskset", "-c", self.cpus, *cmd]
        return cmd

    async def start(self) -> None:
        """Start the server and wait until /healthz answers 200.

        Raises:
            RuntimeError: it exited or did not answer in time (with its log's tail).
        """
        self.port = free_port()
        if self.data_dir is None:
            self.prepare()
        assert self.data_dir is not None
        self.log_path = self.data_dir / "server.log"
        env = dict(os.environ)
        env = {k: v for k, v in env.items() if not k.startswith("CHATHUB_")}
        if self.kind == "chathub":
            env.update(chathub_env(self.chathub_src))
        if self._node_dir is not None:
            env["CHATHUB_BENCH_NODE_DIR"] = str(self._node_dir)
        env.update(self.extra_env)
        first = str(ROOT) if self.kind == "reference" else (self.chathub_src or "")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (first, env.get("PYTHONPATH", "")) if p)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self._command(), cwd=str(self.data_dir), env=env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, preexec_fn=_prepare_child,
                start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                status, _ = await http_get(self.port, "/healthz", 2.0)
                if status == 200 or not self.counts_connections:  # the Go hub: any answer
                    break
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
                pass
            if time.monotonic() > deadline:
                await self.stop()
                raise RuntimeError(f"{self.kind} did not answer /healthz in {START_TIMEOUT:.0f}s")
            await asyncio.sleep(0.1)
        if self.kind == "chathub":
            self.service_pids = self._find_services()

    def _find_services(self) -> list[int]:
        assert self.data_dir is not None
        pids = []
        for f in (self.data_dir / "valkey" / "valkey.pid", self.data_dir / "pg" / "data" / "postmaster.pid"):
            try:
                pids.append(int(f.read_text().split()[0]))
            except (OSError, ValueError, IndexError):
                continue
        return pids

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace") if self.log_path else ""
        except OSError:
            return "no log"
        return " | ".join(text.strip().splitlines()[-lines:])

    def rss_kb(self) -> int:
        """The server process's own VmRSS in kB (not its services)."""
        return rss_kb(self.pid)

    def cpu_s(self) -> float:
        """CPU seconds of the server process itself."""
        return cpu_s(self.pid)

    def sys_s(self) -> float:
        """System (kernel) CPU seconds of the server process itself."""
        return cpu_split(self.pid)[1]

    def valkey_rss_kb(self) -> int:
        """VmRSS of chathub's embedded Valkey in kB (0 for other servers)."""
        assert self.data_dir is not None
        try:
            pid = int((self.data_dir / "valkey" / "valkey.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return 0
        return rss_kb(pid)

    def services_cpu_s(self) -> float:
        """CPU seconds of the embedded Valkey and PostgreSQL (postmaster and its backends)."""
        total = 0.0
        for pid in self.service_pids:
            total += cpu_s(pid)
            for child in _children(pid):
                total += cpu_s(child)
        return total

    async def connections(self) -> int | None:
        """Open connections as /healthz reports them (None: unknown)."""
        if not self.counts_connections:
            return None
        try:
            _, body = await http_get(self.port, "/healthz", 5.0)
            return int(json.loads(body).get("connections", 0))
        except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError):
            return None

    async def wait_connections(self, target: int, timeout: float = 30.0) -> bool:
        """Wait (bounded) until the server counts at most ``target`` connections
        (a server that does not count them gets :data:`SETTLE_BLIND` seconds)."""
        if not self.counts_connections:
            await asyncio.sleep(SETTLE_BLIND)
            return True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            n = await self.connections()
            if n is not None and n <= target:
                return True
            await asyncio.sleep(0.1)
        return False

    async def wait_healthy(self, timeout: float = 15.0) -> bool:
        """Wait (bounded) until /healthz answers 200 (chathub: Valkey and PostgreSQL up)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                status, _ = await http_get(self.port, "/healthz", 5.0)
                if status == 200 or not self.counts_connections:
                    return True
            except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError):
                pass
            await asyncio.sleep(0.1)
        return False

    async def metrics(self) -> dict[str, float]:
        """chathub's /metrics as {name: value} for unlabelled samples."""
        _, body = await http_get(self.port, "/metrics", 5.0)
        out: dict[str, float] = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#") and "{" not in line:
                name, _, value = line.rpartition(" ")
                try:
                    out[name] = float(value)
                except ValueError:
                    continue
        return out

    async def admin_stats(self) -> dict[str, Any]:
        """chathub's admin ``stats`` reply."""
        from chathub.admin.client import call

        assert self.data_dir is not None
        return await call(self.data_dir / "admin.sock", "stats")

    def terminate(self) -> None:
        """Send SIGTERM by PID without waiting (chathub then drains and stops)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    async def stop(self) -> None:
        """SIGTERM by PID, wait, SIGKILL after STOP_TIMEOUT; then leftover services by PID."""
        if self.proc is None:  # prepared but never started
            if self.data_dir is not None:
                shutil.rmtree(self.data_dir, ignore_errors=True)
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.proc.wait, STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                await asyncio.to_thread(self.proc.wait, 10)
        for pid in self.service_pids:  # normally the daemon stopped them already
            if Path(f"/proc/{pid}").exists() and self._ours(pid):
                try:
                    os.kill(pid, signal.SIGTERM)
                except OSError:
                    pass
        deadline = time.monotonic() + 10.0  # let them finish writing into the data dir
        while time.monotonic() < deadline and any(
                Path(f"/proc/{pid}").exists() and self._ours(pid) for pid in self.service_pids):
            await asyncio.sleep(0.1)
        if self.data_dir is not None:
            await asyncio.sleep(0.2)
            shutil.rmtree(self.data_dir, ignore_errors=True)
            if self.data_dir.exists():  # something wrote into it meanwhile: once more
                await asyncio.sleep(1.0)
                shutil.rmtree(self.data_dir, ignore_errors=True)

    def _ours(self, pid: int) -> bool:
        """True when ``pid`` still works in our data dir (Valkey and PostgreSQL chdir there)."""
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            return False
        return self.data_dir is not None and cwd.startswith(str(self.data_dir.resolve()))
