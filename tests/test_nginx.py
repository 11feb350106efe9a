"""chathub behind Debian's nginx with TLS, as docs/deploy.md sets it up.

The nginx site is the block in docs/deploy.md, with only ports, certificate and log
paths replaced. nginx runs as a process of the test's own (``-p PREFIX -c CONF``,
``daemon off``), on loopback, with a self-signed certificate made by ``openssl``;
clients connect with ``wss://`` from 127.0.0.2 and 127.0.0.3.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import urlencode

import pytest
import websockets

from chathub.admin.client import call
from chathub.api import APIClient, AsyncAPIClient
from chathub.client.errors import NotConnected
from tests.helpers import RECV_TIMEOUT, wait_for
from tests.procs import free_port

ROOT = Path(__file__).resolve().parent.parent
#: seconds nginx has to start answering
NGINX_START_TIMEOUT = 15.0


def _nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("nginx is not installed; .ci/run installs it with apt-get")
        pytest.skip("nginx is not installed (apt-get install nginx)")
    return found


def site_from_docs(upstream: int, tls: int, plain: int, cert: Path, key: Path, logs: Path) -> str:
    """The ```nginx block of docs/deploy.md, pointed at this test's ports and files."""
    text = (ROOT / "docs" / "deploy.md").read_text()
    (site,) = re.findall(r"```nginx\n(.*?)```", text, re.S)
    subs = [
        (r"server 127\.0\.0\.1:8080;", f"server 127.0.0.1:{upstream};"),
        (r"listen \[::\]:\d+( ssl)?;\n", ""),
        (r"listen 443 ssl;", f"listen 127.0.0.1:{tls} ssl;"),
        (r"listen 80;", f"listen 127.0.0.1:{plain};"),
        (r"ssl_certificate\s+\S+;", f"ssl_certificate {cert};"),
        (r"ssl_certificate_key\s+\S+;", f"ssl_certificate_key {key};"),
        (r"access_log\s+\S+", f"access_log {logs / 'access.log'}"),
        (r"error_log\s+\S+;", f"error_log {logs / 'error.log'} info;"),
    ]
    for pattern, repl in subs:
        site, n = re.subn(pattern, repl, site)
        assert n, f"docs/deploy.md's nginx site no longer has {pattern!r}"
    return site


class Nginx:
    """One nginx master process of the test's own, stopped by its PID."""

    def __init__(self, prefix: Path, upstream: int) -> None:
        self.prefix = prefix
        self.port = free_port()
        self.plain_port = free_port()
        self.cert, self.key = prefix / "cert.pem", prefix / "key.pem"
        self.logs = prefix / "logs"
        self.logs.mkdir(parents=True)
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", str(self.key), "-out", str(self.cert), "-days", "2",
             "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
            check=True, capture_output=True, timeout=30)
        site = prefix / "chathub.conf"
        site.write_text(site_from_docs(upstream, self.port, self.plain_port, self.cert, self.key, self.logs))
        temp = "\n".join(f"    {kind}_temp_path {prefix / kind};"
                         for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        self.conf = prefix / "nginx.conf"
        self.conf.write_text(
            f"worker_processes 1;\nerror_log {self.logs / 'main-error.log'} info;\n"
            "events { worker_connections 256; }\n"
            f"http {{\n{temp}\n    include {site};\n}}\n")
        self.proc: subprocess.Popen[bytes] | None = None
        self.ssl = ssl.create_default_context(cafile=str(self.cert))

    def start(self) -> Nginx:
        binary = _nginx_binary()
        args = [binary, "-p", str(self.prefix), "-c", str(self.conf), "-e", str(self.logs / "stderr.log"),
                "-g", f"daemon off; pid {self.prefix / 'nginx.pid'};"]
        test = subprocess.run([*args, "-t"], capture_output=True, text=True, timeout=30)
        assert test.returncode == 0, test.stderr
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + NGINX_START_TIMEOUT
        while not self._answers():
            assert self.proc.poll() is None, self.proc.stderr.read().decode()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.05)
        return self

    def _answers(self) -> bool:
        try:
            self.get("/healthz")
        except urllib.error.HTTPError:
            return True  # nginx answers (502 while chathub is down)
        except OSError:
            return False
        return True

    def get(self, path: str) -> tuple[int, bytes]:
        with urllib.request.urlopen(f"https://127.0.0.1:{self.port}{path}", context=self.ssl, timeout=5) as r:
            return r.status, r.read()

    def get_from(self, local: str, path: str) -> tuple[int, bytes]:
        """GET ``path`` over TLS from the address ``local`` (any status, no exception)."""
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ssl, timeout=5,
                                           source_address=(local, 0))
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def stop(self) -> None:
        """SIGQUIT (graceful) to the master, SIGKILL if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGQUIT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def access_log(self) -> str:
        f = self.logs / "access.log"
        return f.read_text() if f.exists() else ""

    async def connect(self, user: str, local: str, headers: dict[str, str] | None = None,
                      **query: str) -> tuple[websockets.ClientConnection, dict]:
        """A ``wss://`` client from ``local`` through nginx; returns it and its welcome."""
        url = f"wss://127.0.0.1:{self.port}/ws?{urlencode({'user': user, **query})}"
        ws = await websockets.connect(url, ssl=self.ssl, local_addr=(local, 0), open_timeout=10,
                                      max_queue=None, additional_headers=headers)
        welcome = json.loads(await asyncio.wait_for(ws.recv(), RECV_TIMEOUT))
        assert welcome["type"] == "welcome", welcome
        return ws, welcome


@pytest.fixture
async def nginx(short_dir: Path) -> AsyncIterator[Callable[[int], Awaitable[Nginx]]]:
    """Start nginx in front of a chathub port: ``await nginx(port)``."""
    started: list[Nginx] = []

    async def start(upstream: int) -> Nginx:
        n = Nginx(short_dir / f"nginx{len(started)}", upstream)
        started.append(n)
        return await asyncio.to_thread(n.start)

    yield start
    for n in started:
        await asyncio.to_thread(n.stop)


async def _frame(ws: websockets.ClientConnection, kind: str) -> dict:
    deadline = time.monotonic() + RECV_TIMEOUT
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic())))
        if frame["type"] == kind:
            return frame


async def test_wss_through_nginx_end_to_end(daemon_factory, nginx):
    """The browser's path: https:// page, wss:// chat, through nginx's TLS to plain chathub."""
    d = await daemon_factory(server={"trusted_proxies": ["127.0.0.1"]})
    n = await nginx(d.port)
    status, page = await asyncio.to_thread(n.get, "/")
    assert status == 200 and b"<html" in page.lower()
    status, health = await asyncio.to_thread(n.get, "/healthz")
    assert status == 200 and json.loads(health)["status"] == "ok"
    alice, _ = await n.connect("alice", "127.0.0.2")
    bob, welcome = await n.connect("bob", "127.0.0.3")
    assert "alice" in welcome["users"]
    await alice.send(json.dumps({"type": "chat", "text": "over TLS"}))
    got = await _frame(bob, "chat")
    assert got["text"] == "over TLS" and got["from"] == "alice"
    reply = await call(d.cfg.admin_socket, "clients")
    assert {c["user"]: c["remote_addr"] for c in reply["clients"]} == \
        {"alice": "127.0.0.2", "bob": "127.0.0.3"}
    await alice.close()
    await bob.close()


async def test_metrics_through_nginx_only_from_this_machine(daemon_factory, nginx):
    """The site keeps /metrics for a local scraper: 200 from 127.0.0.1, 403 from any other
    address, while the page and /healthz stay public."""
    d = await daemon_factory(server={"trusted_proxies": ["127.0.0.1"]})
    n = await nginx(d.port)
    status, body = await asyncio.to_thread(n.get_from, "127.0.0.1", "/metrics")
    assert status == 200 and b"chathub_connections" in body
    status, body = await asyncio.to_thread(n.get_from, "127.0.0.2", "/metrics")
    assert status == 403 and b"chathub_" not in body
    for path in ("/healthz", "/"):
        status, _ = await asyncio.to_thread(n.get_from, "127.0.0.2", path)
        assert status == 200, path


async def test_the_python_api_clients_over_https_through_nginx(daemon_factory, nginx):
    """An application on another host reaches the API through the TLS site: APIClient and
    AsyncAPIClient take https:// (they used to refuse it), the publish reaches a wss://
    client, and a certificate that does not verify is NotConnected, not a traceback."""
    key = "a" * 24
    d = await daemon_factory(server={"trusted_proxies": ["127.0.0.1"]}, api={"keys": [key]})
    n = await nginx(d.port)
    bob, _ = await n.connect("bob", "127.0.0.3")
    url = f"https://127.0.0.1:{n.port}"
    sent = await asyncio.to_thread(
        APIClient(url, key=key, ssl_context=n.ssl).publish, "general", "shipped", "system")
    got = await _frame(bob, "chat")
    assert (got["id"], got["from"], got["text"]) == (sent["id"], "system", "shipped")
    assert "bob" in await AsyncAPIClient(url, key=key, ssl_context=n.ssl).users()
    with pytest.raises(NotConnected, match="CERTIFICATE_VERIFY_FAILED"):
        await AsyncAPIClient(url, key=key).users()  # the system's CAs know no test certificate
    await bob.close()


async def test_per_ip_limits_see_the_real_client_addresses(daemon_factory, nginx):
    """max_connections_per_ip = 2 behind nginx: 127.0.0.2 and 127.0.0.3 get two each,
    a third from 127.0.0.2 is refused, and a forged X-Forwarded-For buys nothing."""
    d = await daemon_factory(server={"max_connections_per_ip": 2, "trusted_proxies": ["127.0.0.1"]})
    n = await nginx(d.port)
    conns = [(await n.connect(f"u{i}", local))[0]
             for i, local in enumerate(["127.0.0.2", "127.0.0.2", "127.0.0.3", "127.0.0.3"])]
    with pytest.raises(websockets.InvalidStatus) as info:
        await n.connect("u9", "127.0.0.2", headers={"X-Forwarded-For": "203.0.113.50"})
    assert info.value.response.status_code == 429
    assert b"your address" in info.value.response.body
    reply = await call(d.cfg.admin_socket, "clients")
    assert sorted(c["remote_addr"] for c in reply["clients"]) == \
        ["127.0.0.2", "127.0.0.2", "127.0.0.3", "127.0.0.3"]
    for ws in conns:
        await ws.close()
    # nginx saw the same addresses as $remote_addr (a WebSocket is logged when it ends)
    await wait_for(lambda: n.access_log().count("GET /ws") >= 5, what="nginx access log")
    seen = [line.split()[0] for line in n.access_log().splitlines() if "GET /ws" in line]
    assert sorted(seen) == ["127.0.0.2"] * 3 + ["127.0.0.3"] * 2


async def test_daemon_restart_behind_nginx_clients_recover_with_since(spawn, nginx):
    """SIGTERM the daemon behind nginx, start it again on the same port: a client that
    reconnects through nginx with ?since= gets every message it missed."""
    proc = await spawn(server={"trusted_proxies": ["127.0.0.1"]})
    n = await nginx(proc.port)
    alice, _ = await n.connect("alice", "127.0.0.2")
    bob, _ = await n.connect("bob", "127.0.0.3")
    await bob.send(json.dumps({"type": "chat", "text": "before"}))
    last = (await _frame(alice, "chat"))["id"]
    assert await proc.terminate() == 0
    await asyncio.wait_for(alice.wait_closed(), RECV_TIMEOUT)
    assert alice.close_code == 1001
    with pytest.raises(urllib.error.HTTPError) as info:  # nginx has nothing to forward to
        await asyncio.to_thread(n.get, "/healthz")
    assert info.value.code == 502
    await proc.start()
    bob, _ = await n.connect("bob", "127.0.0.3")
    for text in ("missed 1", "missed 2"):
        await bob.send(json.dumps({"type": "chat", "text": text}))
        await _frame(bob, "chat")
    alice, welcome = await n.connect("alice", "127.0.0.2", since=last)
    assert welcome["recovered"] is True
    assert [m["text"] for m in welcome["history"]] == ["missed 1", "missed 2"]
    await alice.close()
    await bob.close()
