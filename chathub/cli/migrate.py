"""``chathub migrate``: bring the configured (or embedded) database up to date.

Against the embedded database, migrate takes the data-dir lock first
(:mod:`chathub.datadir`): while a daemon runs on the data dir it refuses with one
line naming the daemon's pid (the daemon migrates its own database at start).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ..config import Config
from ..datadir import DataDirLock
from ..db import migrate as migrations
from ..db import pool as dbpool
from ..errors import DataDirLocked
from ..services import EmbeddedPostgres


async def run_migrate(cfg: Config, *, status: bool = False, dry_run: bool = False,
                      echo: Callable[[str], None] = print) -> int:
    """Apply (or list, or print) migrations; returns how many were applied.

    Raises:
        DataDirLocked: the database is the embedded one and a daemon holds the data dir.
        DatabaseUnavailable: one line naming the host and the reason.
        MigrationError: a migration failed or an applied one was changed.
    """
    if cfg.database.url:
        return await _migrate(cfg, cfg.database.url, status, dry_run, echo)
    try:
        lock = DataDirLock(cfg.data_dir).acquire()
    except DataDirLocked as exc:
        raise DataDirLocked(f"{exc}; that daemon migrated the embedded database when it started "
                            "(stop it to run migrate)") from None
    try:
        pg = EmbeddedPostgres(cfg.data_dir)
        # Left running by a daemon that was killed: use it and leave it for the next serve.
        started_here = not await asyncio.to_thread(pg.is_running)
        url = await asyncio.to_thread(pg.start)
        try:
            return await _migrate(cfg, url, status, dry_run, echo)
        finally:
            if started_here:
                await asyncio.to_thread(pg.stop)
    finally:
        lock.release()


async def _migrate(cfg: Config, url: str, status: bool, dry_run: bool,
                   echo: Callable[[str], None]) -> int:
    conn = await dbpool.connect(url, cfg.database.timeout)
    try:
        st = await migrations.status(conn)
        if status:
            for version, name, applied_at in st.applied:
                echo(f"applied  {version:04d}_{name}  {applied_at}")
            for m in st.pending:
                echo(f"pending  {m.version:04d}_{m.name}")
            if not st.pending:
                echo("schema is up to date")
            return 0
        if dry_run:
            if not st.pending:
                echo("-- nothing to apply: schema is up to date")
            for m in st.pending:
                echo(f"-- {m.version:04d}_{m.name}.sql\n{m.sql.rstrip()}\n")
            return 0
        done = await migrations.migrate(conn)
        for m in done:
            echo(f"applied {m.version:04d}_{m.name}")
        if not done:
            echo("nothing to do: schema is up to date")
        return len(done)
    finally:
        await conn.close()
