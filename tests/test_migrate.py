"""chathub migrate against a real PostgreSQL: apply, no-op, concurrency, tampering, output."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from chathub.db import migrate as m
from chathub.errors import MigrationError


async def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess."""
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "chathub.cli", *args],
        capture_output=True, text=True, timeout=60)


async def test_migrate_empty_database_creates_schema(database_url, db):
    """A first run applies every migration and records it."""
    res = await cli("migrate", "--database-url", database_url)
    assert res.returncode == 0, res.stderr
    assert "applied 0001_initial" in res.stdout
    rows = await db.fetch("SELECT version, name, checksum FROM schema_migrations")
    assert [(r["version"], r["name"]) for r in rows] == [(x.version, x.name) for x in m.available()]
    assert await db.fetchval("SELECT to_regclass('sessions') IS NOT NULL")
    assert await db.fetchval("SELECT to_regclass('messages') IS NOT NULL")


async def test_second_run_is_a_noop(database_url, db):
    """Migrating an up-to-date database changes nothing and says so."""
    assert (await cli("migrate", "--database-url", database_url)).returncode == 0
    before = await db.fetch("SELECT * FROM schema_migrations")
    res = await cli("migrate", "--database-url", database_url)
    assert res.returncode == 0 and "nothing to do" in res.stdout
    assert await db.fetch("SELECT * FROM schema_migrations") == before


async def test_concurrent_runs_apply_once(database_url, db):
    """Two processes migrating at once: both succeed, each migration is applied once."""
    a, b = await asyncio.gather(cli("migrate", "--database-url", database_url),
                                cli("migrate", "--database-url", database_url))
    assert a.returncode == 0 and b.returncode == 0, (a.stderr, b.stderr)
    outputs = sorted([a.stdout, b.stdout])
    assert "nothing to do" in outputs[1] and "applied 0001_initial" in outputs[0]
    assert await db.fetchval("SELECT count(*) FROM schema_migrations") == len(m.available())


async def test_tampered_checksum_is_refused(database_url, db):
    """An applied migration whose recorded checksum differs stops with a clear error."""
    assert (await cli("migrate", "--database-url", database_url)).returncode == 0
    await db.execute("UPDATE schema_migrations SET checksum = 'deadbeef' WHERE version = 1")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        await m.migrate(db)
    res = await cli("migrate", "--database-url", database_url)
    assert res.returncode == 1
    assert res.stderr.count("\n") == 1 and "0001_initial" in res.stderr and "Traceback" not in res.stderr


async def test_status_and_dry_run(database_url, db):
    """--status lists pending then applied; --dry-run prints SQL and applies nothing."""
    res = await cli("migrate", "--database-url", database_url, "--status")
    assert "pending  0001_initial" in res.stdout
    res = await cli("migrate", "--database-url", database_url, "--dry-run")
    assert "CREATE TABLE sessions" in res.stdout
    assert not await db.fetchval("SELECT to_regclass('sessions') IS NOT NULL")
    await cli("migrate", "--database-url", database_url)
    res = await cli("migrate", "--database-url", database_url, "--status")
    assert "applied  0001_initial" in res.stdout and "up to date" in res.stdout


async def test_unreachable_database_is_one_line_exit_1():
    """No server there: exit 1, one line naming the host and the reason, no traceback."""
    res = await cli("migrate", "--database-url", "postgresql://u@127.0.0.1:1/nope")
    assert res.returncode == 1
    assert res.stderr.strip().count("\n") == 0
    assert "127.0.0.1:1" in res.stderr and "refused" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_serve_refuses_external_schema_that_is_behind(database_url, valkey_url, short_dir,
                                                             workers):
    """serve (and serve --workers 2, whose supervisor used to restart the refusing workers
    for ever) against an unmigrated external database exits 1 telling to run chathub migrate."""
    res = await cli("serve", "--database-url", database_url, "--valkey-url", valkey_url,
                    "--port", "0", "--data-dir", str(short_dir), "--workers", workers)
    assert res.returncode == 1, res.stderr
    assert res.stderr.strip().splitlines()[-1] == (
        f"chathub: the database schema is behind ({len(m.available())} pending migrations): "
        "run 'chathub migrate' or start with --migrate")
    assert "restarting" not in res.stderr and "Traceback" not in res.stderr


async def test_serve_with_unreachable_database_is_one_line(valkey_url, short_dir):
    """serve with PostgreSQL unreachable: one line, exit 1."""
    res = await cli("serve", "--database-url", "postgresql://u@127.0.0.1:1/x", "--valkey-url", valkey_url,
                    "--port", "0", "--data-dir", str(short_dir))
    assert res.returncode == 1
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("chathub:")]
    assert len(lines) == 1 and "127.0.0.1:1" in lines[0] and "Traceback" not in res.stderr


async def test_migrations_are_ordered_and_named():
    """Shipped migrations have increasing versions and valid names."""
    versions = [x.version for x in m.available()]
    assert versions == sorted(set(versions)) and versions[0] == 1
