"""Versioned plain-SQL migrations shipped in ``chathub/db/migrations/NNNN_name.sql``.

Each migration runs in its own transaction and is recorded in
``schema_migrations`` (version, name, checksum, applied_at). A PostgreSQL advisory
lock serialises concurrent runs: the second waits, then finds nothing to do. An
applied migration whose file changed since is refused with :class:`MigrationError`.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

from ..errors import MigrationError
from . import pool as dbpool

log = logging.getLogger("chathub.db.migrate")

#: the advisory lock key that serialises migration runs ("chathub" in ASCII)
LOCK_KEY = 0x63686174687562

_NAME_RE = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class Migration:
    """One migration file."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """SHA-256 of the file's text."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True)
class Status:
    """Where a database stands: what is applied and what is pending."""

    applied: list[tuple[int, str, str]]  # (version, name, applied_at)
    pending: list[Migration]


def available() -> list[Migration]:
    """Every migration shipped with this version of chathub, in order."""
    out = []
    for entry in resources.files("chathub.db").joinpath("migrations").iterdir():
        m = _NAME_RE.fullmatch(entry.name)
        if m:
            out.append(Migration(int(m.group(1)), m.group(2), entry.read_text()))
    out.sort(key=lambda m: m.version)
    return out


async def _applied(conn: asyncpg.Connection) -> dict[int, asyncpg.Record]:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return {}
    rows = await conn.fetch(
        "SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version")
    return {r["version"]: r for r in rows}


def _check(applied: dict[int, asyncpg.Record], migrations: list[Migration]) -> list[Migration]:
    """Return the pending migrations; refuse changed ones."""
    by_version = {m.version: m for m in migrations}
    for version, row in applied.items():
        m = by_version.get(version)
        if m is None:
            continue  # applied by a newer chathub; nothing to check
        if row["checksum"] != m.checksum:
            raise MigrationError(
                f"migration {version:04d}_{m.name} was changed after it was applied "
                f"(checksum {row['checksum'][:12]} in the database, {m.checksum[:12]} now); "
                "add a new migration instead of editing an applied one")
    return [m for m in migrations if m.version not in applied]


async def status(conn: asyncpg.Connection) -> Status:
    """What is applied and what is pending on ``conn``'s database."""
    applied = await _applied(conn)
    pending = _check(applied, available())
    return Status(
        applied=[(v, r["name"], r["applied_at"].isoformat()) for v, r in applied.items()],
        pending=pending,
    )


async def migrate(conn: asyncpg.Connection, target: int | None = None) -> list[Migration]:
    """Apply every pending migration (up to version ``target`` when given); return those
    applied (empty: already up to date).

    Raises:
        MigrationError: a migration failed (its transaction is rolled back) or an
            applied one was changed.
    """
    await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
    try:
        await conn.execute(_CREATE_TABLE)
        pending = [m for m in _check(await _applied(conn), available())
                   if target is None or m.version <= target]
        done = []
        for m in pending:
            try:
                async with conn.transaction():
                    await conn.execute(m.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                        m.version, m.name, m.checksum)
            except asyncpg.PostgresError as exc:
                raise MigrationError(f"migration {m.version:04d}_{m.name} failed: {exc}") from None
            done.append(m)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)


async def prepare(url: str, timeout: float, apply: bool) -> None:
    """Make the schema at ``url`` ready for a daemon: apply what is pending when ``apply``
    (the embedded database, or ``[database] migrate``), logging each, else refuse a
    schema that is behind. ``serve`` and the ``serve --workers`` supervisor both start
    here. ``timeout``: seconds to connect.

    Raises:
        DatabaseUnavailable: PostgreSQL cannot be reached.
        MigrationError: ``apply`` is False and migrations are pending (one line telling
            to run ``chathub migrate``), or a migration failed or was changed.
    """
    conn = await dbpool.connect(url, timeout)
    try:
        if apply:
            for m in await migrate(conn):
                log.info("applied migration %04d_%s", m.version, m.name)
            return
        st = await status(conn)
        if st.pending:
            raise MigrationError(
                f"the database schema is behind ({len(st.pending)} pending migrations): "
                "run 'chathub migrate' or start with --migrate")
    finally:
        await conn.close()
