"""``chathub serve --workers N``: N hub processes on one machine, serving one port.

The parent starts the embedded PostgreSQL and Valkey once (when no URLs are
configured), migrates the schema (or refuses one that is behind) and checks that
Valkey answers, as a single ``serve`` would before listening, then runs N ``chathub serve`` children that
share the port (SO_REUSEPORT: the kernel spreads new connections over them) and
the services, and form a cluster through Valkey like hubs on different machines
(docs/scaling.md). Worker 0 answers on the usual admin socket, worker i on
``admin-<i>.sock`` beside it; every one of them sees the whole cluster.

The parent restarts a worker that dies (after a pause that grows while it keeps
dying), forwards SIGTERM/SIGINT for a graceful stop of all, then stops the services.

The data dir is locked by the parent before anything else (:mod:`chathub.datadir`);
a second ``serve`` on it refuses and touches nothing. Workers do not lock it again:
each inherits the parent's lock descriptor (``pass_fds`` plus
``CHATHUB_LOCK_FD``) and checks that it holds the lock through it, so a worker may
start only as a child of the process tree that owns the data dir.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from ..config import Config
from ..configcheck import socket_path_too_long
from ..datadir import ENV_FD, DataDirLock
from ..db import migrate as migrations
from ..errors import ChathubError
from ..kv import KV
from ..listen import check_port
from ..loop import install as install_loop
from ..services import EmbeddedPostgres, EmbeddedValkey

log = logging.getLogger("chathub.cluster.workers")

#: first pause before restarting a worker that died; doubles up to MAX_RESTART_DELAY
MIN_RESTART_DELAY = 0.5
#: longest pause between restarts of a worker that keeps dying
MAX_RESTART_DELAY = 10.0
#: a worker that ran this long before dying is restarted without delay growth
STABLE_AFTER = 30.0
#: seconds between checks of the workers
POLL_INTERVAL = 0.2


def worker_socket(cfg: Config, index: int) -> Path:
    """Admin socket of worker ``index``."""
    base = cfg.admin_socket
    return base if index == 0 else base.with_name(f"{base.stem}-{index}{base.suffix}")


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class Supervisor:
    """Starts, watches and stops the worker processes."""

    def __init__(self, cfg: Config, workers: int, config_path: Path | None) -> None:
        self.cfg = cfg
        self.count = workers if workers > 0 else (os.cpu_count() or 1)
        self.config_path = config_path
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * self.count
        self.started_at = [0.0] * self.count
        self.delay = [MIN_RESTART_DELAY] * self.count
        self.next_start = [0.0] * self.count
        self.stopping = False
        self.port = cfg.server.port or _free_port(cfg.server.host)
        self.env: dict[str, str] = {}
        #: the parent's data-dir lock descriptor, handed to every worker (None: not passed)
        self.lock_fd: int | None = None

    def _args(self) -> list[str]:
        args = [sys.executable, "-m", "chathub.cli", "serve"]
        if self.config_path is not None:
            args += ["--config", str(self.config_path)]
        return args

    def start_worker(self, i: int) -> None:
        env = {**os.environ, **self.env, "CHATHUB_ADMIN_SOCKET": str(worker_socket(self.cfg, i))}
        fds: tuple[int, ...] = ()
        if self.lock_fd is not None:
            env[ENV_FD] = str(self.lock_fd)
            fds = (self.lock_fd,)
        # A session of its own: Ctrl-C reaches only the parent, which forwards one SIGTERM.
        self.procs[i] = subprocess.Popen(self._args(), env=env, start_new_session=True,
                                         pass_fds=fds)
        self.started_at[i] = time.monotonic()
        log.info("worker %d started (pid %d)", i, self.procs[i].pid)  # type: ignore[union-attr]

    def watch_once(self) -> None:
        """Restart workers that died, with a growing pause while they keep dying."""
        now = time.monotonic()
        for i, p in enumerate(self.procs):
            if p is None or p.poll() is None:
                if p is None and now >= self.next_start[i]:
                    self.start_worker(i)
                continue
            ran = now - self.started_at[i]
            log.warning("worker %d (pid %d) exited with %s after %.1fs; restarting",
                        i, p.pid, p.returncode, ran)
            self.delay[i] = MIN_RESTART_DELAY if ran > STABLE_AFTER else min(self.delay[i] * 2, MAX_RESTART_DELAY)
            self.next_start[i] = now + self.delay[i]
            self.procs[i] = None

    def signal_all(self, sig: int) -> None:
        for p in self.procs:
            if p is not None and p.poll() is None:
                p.send_signal(sig)

    def wait_all(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for p in self.procs:
            if p is None:
                continue
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker pid %d did not stop in time; killing it", p.pid)
                p.kill()
                p.wait()


async def _reach_valkey(url: str, timeout: float) -> None:
    """Valkey answers (and takes this version's functions), as a single ``serve`` checks
    before it listens: an unreachable one stops the supervisor with that line.

    Raises:
        CacheUnavailable: Valkey cannot be reached now.
    """
    kv = KV(url, timeout)
    try:
        await kv.connect()
    finally:
        await kv.close()


def serve_workers(cfg: Config, workers: int, config_path: Path | None) -> int:
    """Run the workers until SIGTERM/SIGINT; returns the exit code (1: refused or failed)."""
    lock = DataDirLock(cfg.data_dir)
    try:
        lock.acquire()
    except ChathubError as exc:
        print(f"chathub: {exc}", file=sys.stderr)
        return 1
    try:
        return _serve_locked(cfg, workers, config_path, lock)
    finally:
        lock.release()


def _serve_locked(cfg: Config, workers: int, config_path: Path | None, lock: DataDirLock) -> int:
    sup = Supervisor(cfg, workers, config_path)
    sup.lock_fd = lock.fd
    too_long = socket_path_too_long(worker_socket(cfg, sup.count - 1))  # admin-<i>.sock is longer
    if too_long is not None:
        print(f"chathub: {too_long}", file=sys.stderr)
        return 1
    try:
        check_port(cfg.server.host, sup.port)  # before anything starts: workers could not
    except ChathubError as exc:
        print(f"chathub: {exc}", file=sys.stderr)
        return 1
    pg = EmbeddedPostgres(cfg.data_dir) if not cfg.database.url else None
    kv = EmbeddedValkey(cfg.data_dir) if not cfg.valkey.url else None
    try:
        db_url = pg.start() if pg else cfg.database.url
        kv_url = kv.start() if kv else cfg.valkey.url
        install_loop(cfg.server.uvloop)  # the workers' loop: the same errors, in the same words
        # as a single serve does, before any worker starts: a schema that is behind stops
        # the supervisor with one line instead of failing every worker again and again
        asyncio.run(migrations.prepare(db_url, cfg.database.timeout,
                                       pg is not None or cfg.database.migrate))
        asyncio.run(_reach_valkey(kv_url, cfg.valkey.timeout))
    except ChathubError as exc:
        print(f"chathub: {exc}", file=sys.stderr)
        for svc in (kv, pg):
            if svc is not None:
                svc.stop()
        return 1
    sup.env = {
        "CHATHUB_DATABASE_URL": db_url, "CHATHUB_VALKEY_URL": kv_url,
        "CHATHUB_DATA_DIR": str(Path(cfg.data_dir).resolve()),
        "CHATHUB_SERVER_HOST": cfg.server.host, "CHATHUB_SERVER_PORT": str(sup.port),
        "CHATHUB_SERVER_REUSE_PORT": "true",
        "CHATHUB_LOG_LEVEL": cfg.log.level, "CHATHUB_LOG_FORMAT": cfg.log.format,
    }
    stop = {"signals": 0}

    def on_signal(signum: int, frame: object) -> None:
        stop["signals"] += 1
        sup.stopping = True
        sup.signal_all(signal.SIGKILL if stop["signals"] > 1 else signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # reload: each worker re-reads the configuration itself (docs/operations.md)
    signal.signal(signal.SIGHUP, lambda signum, frame: sup.signal_all(signal.SIGHUP))
    log.info("starting %d workers on %s:%d", sup.count, cfg.server.host, sup.port)
    try:
        while not sup.stopping:
            sup.watch_once()
            time.sleep(POLL_INTERVAL)
        sup.wait_all(cfg.server.drain_timeout + 5)
    finally:
        sup.signal_all(signal.SIGTERM)
        sup.wait_all(5)
        for svc in (kv, pg):
            if svc is not None:
                svc.stop()
    log.info("all workers stopped")
    return 0
