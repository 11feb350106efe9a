"""The ``chathub`` command: a thin Typer layer over the library. No logic lives here."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from .. import config as config_mod
from ..errors import AdminError, ChathubError, ConfigError, DatabaseUnavailable

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="chathub: a WebSocket chat server with an operator's console.")

CONFIG_HELP = "TOML config file (default: ./chathub.toml when present)."
SOCKET_HELP = "Admin socket of the daemon (default: <data_dir>/admin.sock)."
DATA_DIR_HELP = "Where embedded PostgreSQL/Valkey and the admin socket live."

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help=CONFIG_HELP)]
SocketOpt = Annotated[Path | None, typer.Option("--socket", help=SOCKET_HELP)]
DataDirOpt = Annotated[str | None, typer.Option("--data-dir", help=DATA_DIR_HELP)]


def _print_version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"chathub {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="Print the version and exit.")] = False) -> None:
    pass


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"chathub: {message}", err=True)
    raise typer.Exit(code)


def _load(path: Path | None, overrides: dict[str, Any] | None = None) -> config_mod.Config:
    try:
        return config_mod.load(path, overrides=overrides)
    except ConfigError as exc:
        _fail(str(exc), 2)


def _socket(cfg_path: Path | None, socket: Path | None, data_dir: str | None = None) -> Path:
    if socket is not None:
        return socket
    return _load(cfg_path, {"data_dir": data_dir}).admin_socket


def _run(coro: Any) -> Any:
    try:
        return asyncio.run(coro)
    except ConfigError as exc:
        _fail(str(exc), 2)
    except AdminError as exc:
        _fail(str(exc), 2)
    except (DatabaseUnavailable, ChathubError) as exc:
        _fail(str(exc), 1)


@app.command()
def serve(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (0: any free port).")] = None,
    data_dir: DataDirOpt = None,
    database_url: Annotated[str | None, typer.Option(help="PostgreSQL URL (default: embedded).")] = None,
    valkey_url: Annotated[str | None, typer.Option(help="Valkey URL (default: embedded).")] = None,
    migrate: Annotated[bool, typer.Option("--migrate", help="Apply pending migrations first.")] = False,
    workers: Annotated[int, typer.Option(help="Hub processes sharing the port (0: one per core).")] = 1,
    log_level: Annotated[str | None, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = None,
    log_format: Annotated[str | None, typer.Option(help="text or json.")] = None,
) -> None:
    """Run the chat daemon until SIGTERM or Ctrl-C."""
    from ..logs import setup_logging
    from ..server import run

    overrides = {
        "data_dir": data_dir,
        "server": {"host": host, "port": port},
        "database": {"url": database_url, "migrate": migrate or None},
        "valkey": {"url": valkey_url},
        "log": {"level": log_level, "format": log_format},
    }
    cfg = _load(config, overrides)
    setup_logging(cfg.log)
    if workers != 1:
        from ..cluster.workers import serve_workers

        sys.exit(serve_workers(cfg, workers, config))
    from ..loop import install as install_loop
    from ..reload import ConfigSource

    install_loop(cfg.server.uvloop)
    _run(run(cfg, source=ConfigSource.resolve(config, overrides)))


@app.command(name="migrate")
def migrate_cmd(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: Annotated[str | None, typer.Option(help="PostgreSQL URL (default: embedded).")] = None,
    status: Annotated[bool, typer.Option("--status", help="List applied and pending migrations.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the SQL that would run.")] = False,
) -> None:
    """Bring the database schema up to date."""
    from .migrate import run_migrate

    cfg = _load(config, {"data_dir": data_dir, "database": {"url": database_url}})
    _run(run_migrate(cfg, status=status, dry_run=dry_run, echo=typer.echo))


@app.command()
def kick(
    user: Annotated[str, typer.Argument(help="User to disconnect.")],
    reason: Annotated[str, typer.Option(help="Told to the user.")] = "kicked by an operator",
    config: ConfigOpt = None,
    socket: SocketOpt = None,
) -> None:
    """Close every connection of USER (exit 0), or exit 1 when USER is not connected."""
    from ..admin.client import call

    reply = _run(call(_socket(config, socket), "kick", user=user, reason=reason))
    closed = reply["closed"]
    typer.echo(f"closed {closed} connection{'s' if closed != 1 else ''} of {user}")
    raise typer.Exit(0 if closed else 1)


@app.command()
def status(
    config: ConfigOpt = None,
    socket: SocketOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    cluster: Annotated[bool, typer.Option("--cluster", help="Also list every node.")] = False,
) -> None:
    """Print one snapshot of the daemon's figures."""
    from ..admin.client import AdminClient
    from .status import render_status

    async def fetch() -> dict[str, Any]:
        async with AdminClient(_socket(config, socket)) as admin:
            stats = await admin.request("stats")
            if cluster:
                stats["cluster"] = (await admin.request("cluster"))["nodes"]
            return stats

    stats = _run(fetch())
    stats.pop("id", None)
    stats.pop("ok", None)
    if as_json:
        typer.echo(json.dumps(stats, indent=2, sort_keys=True))
    else:
        render_status(stats)


@app.command()
def dash(config: ConfigOpt = None, socket: SocketOpt = None) -> None:
    """The live dashboard (Textual), attached over the admin socket."""
    try:
        from chathub.tui.app import DashApp
    except ImportError as exc:  # pragma: no cover - tui ships with chathub
        _fail(f"the dashboard is not installed: {exc}", 1)
    DashApp(str(_socket(config, socket))).run()


@app.command()
def token(
    user: Annotated[str, typer.Argument(help="The token's subject (user name).")],
    ttl: Annotated[str, typer.Option(help="Lifetime: 30s, 15m, 1h, 7d.")] = "1h",
    config: ConfigOpt = None,
) -> None:
    """Mint an HS256 token for USER with the configured secret."""
    from ..edge.auth import TokenError, mint

    cfg = _load(config)
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        seconds = float(ttl[:-1]) * units[ttl[-1]] if ttl[-1] in units else float(ttl)
    except (ValueError, IndexError):
        _fail(f"--ttl: cannot read {ttl!r}; use e.g. 30s, 15m, 1h, 7d", 2)
    if len(cfg.auth.secret.encode()) < 32:
        _fail("auth.secret must be set (at least 32 bytes) to mint tokens; "
              "set CHATHUB_AUTH_SECRET or [auth] secret", 2)
    try:
        typer.echo(mint(user, cfg.auth.secret, seconds))
    except TokenError as exc:
        _fail(str(exc), 2)


from . import moderation as _moderation  # noqa: E402,F401  (search, audit, limits, reload)

if __name__ == "__main__":  # pragma: no cover
    app()
