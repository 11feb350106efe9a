"""``chathub serve`` where it cannot start: PostgreSQL or Valkey given by URL that cannot be
used, or a port it cannot listen on. One line naming the real cause, exit 1, no
traceback, and never a password from the URL."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from chathub.kv import redact
from chathub.listen import host_port
from tests.procs import free_port

#: seconds serve may take to give up on a refused connection (a few tries at most)
SERVE_TIMEOUT = 60


def serve(tmp_path, *args: str, port: int = 0) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATHUB_")}
    return subprocess.run(
        [sys.executable, "-m", "chathub.cli", "serve", "--data-dir", str(tmp_path / "d"),
         "--port", str(port), "--log-level", "WARNING", *args],
        capture_output=True, text=True, env=env, timeout=SERVE_TIMEOUT, cwd=tmp_path)


def last_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in result.stderr.splitlines() if "chathub.fdlimit" not in ln]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_refused_valkey_names_it_and_hides_the_password(tmp_path, database_url, workers):
    """A Valkey URL with a password, nobody listening: one line, the password as ***
    (with --workers the workers used to be restarted for ever, each saying so)."""
    url = f"redis://app:s3cret-pw@127.0.0.1:{free_port()}/0"
    result = serve(tmp_path, "--migrate", "--database-url", database_url, "--valkey-url", url,
                   "--workers", workers)
    assert result.returncode == 1, result.stderr
    line = last_line(result)
    assert line.startswith("chathub: cannot reach Valkey at redis://app:***@127.0.0.1:"), line
    assert "refused" in line.lower()
    assert "s3cret-pw" not in result.stderr + result.stdout


def test_refused_postgres_names_it_and_hides_the_password(tmp_path, valkey_url):
    """A PostgreSQL URL with a password, nobody listening: one line, no password."""
    url = f"postgresql://chat:pg-s3cret@127.0.0.1:{free_port()}/chat"
    result = serve(tmp_path, "--database-url", url, "--valkey-url", valkey_url)
    assert result.returncode == 1, result.stderr
    line = last_line(result)
    assert line.startswith("chathub: cannot reach PostgreSQL at 127.0.0.1:"), line
    assert line.endswith("connection refused"), line
    assert "pg-s3cret" not in result.stderr + result.stdout


@pytest.mark.parametrize("url, shown", [
    ("redis://app:pw@cache:6379/0", "redis://app:***@cache:6379/0"),
    ("rediss://:pw@cache", "rediss://:***@cache"),
    ("unix://:pw@/run/valkey.sock", "unix://:***@/run/valkey.sock"),
    ("unix:///run/valkey.sock?db=2&password=pw", "unix:///run/valkey.sock?db=2&password=***"),
    ("redis://cache:6379/0", "redis://cache:6379/0"),
    ("unix:///run/valkey.sock", "unix:///run/valkey.sock"),
])
def test_redact_hides_only_the_password(url, shown):
    """Where the URL points stays readable; the password never shows."""
    assert redact(url) == shown


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_in_use_is_one_line(tmp_path, database_url, valkey_url, workers):
    """Another program listens on the port: one line naming it, exit 1, no traceback (it
    was a traceback; with --workers the workers were restarted forever)."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        result = serve(tmp_path, "--migrate", "--database-url", database_url, "--valkey-url",
                       valkey_url, "--workers", workers, port=port)
    assert result.returncode == 1, result.stderr
    assert last_line(result) == (f"chathub: cannot listen on 127.0.0.1:{port}: the port is in "
                                 "use (another chathub, or another program)")


def test_a_host_that_is_not_here_is_one_line(tmp_path, database_url, valkey_url):
    """--host naming an address this machine does not have: one line, exit 1."""
    result = serve(tmp_path, "--migrate", "--database-url", database_url, "--valkey-url",
                   valkey_url, "--host", "192.0.2.1", port=0)
    assert result.returncode == 1, result.stderr
    assert last_line(result) == "chathub: cannot listen on 192.0.2.1:0: this machine has no such address"


def test_a_worker_socket_path_too_long_is_one_line(tmp_path):
    """serve --workers 10 where admin.sock fits in a Unix socket path but admin-9.sock does
    not: one line before anything starts (worker 9 used to die with a traceback, and be
    restarted for ever)."""
    base = str(tmp_path / "s")
    data = Path(base) / ("d" * (106 - len(base) - len("//admin.sock")))  # admin.sock: 106 bytes
    assert len(str(data / "admin.sock")) == 106 and len(str(data / "admin-9.sock")) == 108
    result = serve(tmp_path, "--data-dir", str(data), "--workers", "10",
                   "--database-url", "postgresql://u@127.0.0.1:1/x", "--valkey-url", "redis://127.0.0.1:1")
    assert result.returncode == 1, result.stderr
    assert last_line(result) == (
        f"chathub: the admin socket {data / 'admin-9.sock'} would be "
        f"{len(str(data / 'admin-9.sock'))} bytes long, and a Unix socket path may have 107: use a "
        "shorter data_dir, or set [admin] socket to a shorter path")


def test_an_ipv6_host_is_written_in_brackets(tmp_path, database_url, valkey_url):
    """``--host ::1`` on a port in use: the line names [::1]:PORT, as a URL writes it (the
    ready line likewise: ws://[::1]:PORT/ws, not ws://::1:PORT/ws)."""
    assert host_port("::1", 8080) == "[::1]:8080" and host_port("127.0.0.1", 80) == "127.0.0.1:80"
    with socket.socket(socket.AF_INET6) as other:
        other.bind(("::1", 0))
        other.listen()
        port = other.getsockname()[1]
        result = serve(tmp_path, "--migrate", "--database-url", database_url, "--valkey-url",
                       valkey_url, "--host", "::1", port=port)
    assert result.returncode == 1, result.stderr
    assert last_line(result) == (f"chathub: cannot listen on [::1]:{port}: the port is in use "
                                 "(another chathub, or another program)")
