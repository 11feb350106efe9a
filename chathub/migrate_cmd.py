"""``chathub migrate``: bring the configured (or embedded) database up to date."""

from __future__ import annotations

from collections.abc import Callable

from .config import Config
from .db import migrate as migrations
from .db import pool as dbpool
from .services import EmbeddedPostgres


async def run_migrate(cfg: Config, *, status: bool = False, dry_run: bool = False,
                      echo: Callable[[str], None] = print) -> int:
    """Apply (or list, or print) migrations; returns how many were applied.

    Raises:
        DatabaseUnavailable: one line naming the host and the reason.
        MigrationError: a migration failed or an applied one was changed.
    """
    import asyncio

    url = cfg.database.url
    embedded = None
    if not url:
        embedded = EmbeddedPostgres(cfg.data_dir)
        was_running = await asyncio.to_thread(embedded.is_running)
        url = await asyncio.to_thread(embedded.start)
        if was_running:
            embedded = None  # a daemon owns it; leave it running
    try:
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
    finally:
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
