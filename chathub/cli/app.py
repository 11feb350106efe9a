"""The ``chathub`` command: a thin Typer layer over the library. No logic lives here."""

from __future__ import annotations

import inspect
import json
import sys
from typing import Annotated, Any

import typer

from .bans import bans_app
from .channels import channel_app, list_channels
from .common import (
    ConfigOpt,
    DataDirOpt,
    SocketOpt,
    admin_socket,
    check_channel,
    check_user,
    fail,
    load_config,
    run_admin,
)
from .moderation import moderation_app
from .removal import removal_app

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="chathub: a WebSocket chat server with an operator's console.")

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
    if workers < 0:
        fail(f"--workers: must be 0 (one per core) or more, got {workers}", 2)
    cfg = load_config(config, overrides, serving=True)
    setup_logging(cfg.log)
    if workers != 1:
        from ..cluster.workers import serve_workers

        sys.exit(serve_workers(cfg, workers, config))
    from ..loop import install as install_loop
    from ..loop import tune_gc
    from ..reload import ConfigSource

    install_loop(cfg.server.uvloop)
    tune_gc()
    run_admin(run(cfg, source=ConfigSource.resolve(config, overrides)))


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

    cfg = load_config(config, {"data_dir": data_dir, "database": {"url": database_url}})
    run_admin(run_migrate(cfg, status=status, dry_run=dry_run, echo=typer.echo))


@app.command()
def kick(
    user: Annotated[str, typer.Argument(help="User to disconnect.")],
    reason: Annotated[str, typer.Option(
        help="Told to the user (without it: 'kicked by an operator' for a disconnect, "
             "nothing more than 'kicked' for --channel).")] = "",
    channel: Annotated[str | None, typer.Option(
        "--channel", help="Only take USER out of this channel (they get 'unsubscribed' with "
                          "reason 'kicked' and stay connected).")] = None,
    config: ConfigOpt = None,
    socket: SocketOpt = None,
) -> None:
    """Close every connection of USER, or with --channel take USER out of one channel
    (exit 0); exit 1 when USER is not connected (or not in the channel)."""
    from ..admin.client import call

    check_user(user)
    fields: dict[str, Any] = {"user": user, "reason": reason}
    if channel is not None:
        check_channel(channel)
        fields["channel"] = channel
    reply = run_admin(call(admin_socket(config, socket), "kick", **fields))
    closed = reply["closed"]
    plural = "s" if closed != 1 else ""
    if channel is not None:
        typer.echo(f"unsubscribed {closed} connection{plural} of {user} from {channel}")
    else:
        typer.echo(f"closed {closed} connection{plural} of {user}")
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
        async with AdminClient(admin_socket(config, socket)) as admin:
            stats = await admin.request("stats")
            if cluster:
                stats["cluster"] = (await admin.request("cluster"))["nodes"]
            return stats

    stats = run_admin(fetch())
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
        fail(f"the dashboard is not installed: {exc}", 1)
    DashApp(str(admin_socket(config, socket))).run()


@app.command()
def token(
    user: Annotated[str, typer.Argument(help="The token's subject (user name).")],
    ttl: Annotated[str, typer.Option(help="Lifetime: 30s, 15m, 1h, 7d, 1w.")] = "1h",
    channel: Annotated[list[str] | None, typer.Option(
        "--channel", help="A private channel ($name) or pattern ($team-*) the token may "
                          "subscribe to; repeat for more.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Mint an HS256 token for USER with the configured secret."""
    from ..durations import parse_duration
    from ..edge.auth import TokenError, mint

    cfg = load_config(config)
    try:
        seconds = parse_duration(ttl)
    except ValueError as exc:
        fail(f"--ttl: {exc}", 2)
    if len(cfg.auth.secret.encode()) < 32:
        fail("auth.secret must be set (at least 32 bytes) to mint tokens; "
              "set CHATHUB_AUTH_SECRET or [auth] secret", 2)
    try:
        typer.echo(mint(user, cfg.auth.secret, seconds, tuple(channel or ())))
    except TokenError as exc:
        fail(str(exc), 2)


app.add_typer(channel_app, name="channel")
app.add_typer(moderation_app)
app.add_typer(bans_app)
app.add_typer(removal_app)
app.command("channels")(list_channels)


def _one_line_summaries(typer_app: typer.Typer) -> None:
    """Give every command a ``short_help``: its docstring's first paragraph on one line.

    The command list of ``chathub --help`` prints that paragraph with the line breaks
    of the source, so a summary wrapped in the docstring came out cut mid-sentence.
    """
    for info in typer_app.registered_commands:
        if info.short_help is None and info.callback is not None:
            doc = inspect.getdoc(info.callback) or ""
            info.short_help = " ".join(doc.split("\n\n", 1)[0].split()) or None
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _one_line_summaries(group.typer_instance)


_one_line_summaries(app)



if __name__ == "__main__":  # pragma: no cover
    app()
