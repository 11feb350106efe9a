"""``chathub ban | unban | bans | mute | unmute``: keep users (or addresses) out, or quiet.

Each command checks its input here (exit 2 with one line), asks the daemon once
over the admin socket and prints the answer (``bans --json`` for scripts).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ..bandesk import target
from .common import ConfigOpt, SocketOpt, admin_socket, fail, run_admin
from .moderation import JSON_HELP, parse_duration

#: the commands; joined to the chathub command by cli/app.py
bans_app = typer.Typer()

UserArg = Annotated[str | None, typer.Argument(help="The user (leave out with --ip).")]
ChannelOpt = Annotated[str | None, typer.Option(
    "--channel", help="Only this channel (the user may still connect).")]
IpOpt = Annotated[str | None, typer.Option(
    "--ip", help="An address or range (203.0.113.0/24) instead of a user.")]


def _checked(user: str | None, ip: str | None, channel: str | None,
             mute: bool = False) -> dict[str, Any]:
    try:
        target(user, channel, ip, mute)
    except ValueError as exc:
        fail(str(exc), 2)
    return {k: v for k, v in (("user", user), ("ip", ip), ("channel", channel)) if v is not None}


def _seconds(duration: str | None) -> float | None:
    if duration is None:
        return None
    try:
        return parse_duration(duration)
    except ValueError as exc:
        fail(f"--for: {exc}", 2)


def _until(ms: int | None) -> str:
    if ms is None:
        return "until lifted"
    return "until " + datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _what(fields: dict[str, Any]) -> str:
    if "ip" in fields:
        return fields["ip"]
    return fields["user"] + (f" in {fields['channel']}" if "channel" in fields else "")


@bans_app.command()
def ban(
    user: UserArg = None,
    duration: Annotated[str | None, typer.Option(
        "--for", help="How long: 30s, 10m, 2h, 7d (default: until 'chathub unban').")] = None,
    reason: Annotated[str, typer.Option(help="Told to the user.")] = "",
    channel: ChannelOpt = None,
    ip: IpOpt = None,
    config: ConfigOpt = None,
    socket: SocketOpt = None,
) -> None:
    """Ban USER (or --ip RANGE) on every hub: open connections close with 4004 and new
    ones are refused (403); with --channel, only from that channel."""
    from ..admin.client import call

    fields = _checked(user, ip, channel)
    seconds = _seconds(duration)
    reply = run_admin(call(admin_socket(config, socket), "ban", seconds=seconds, reason=reason,
                           **fields))
    typer.echo(f"banned {_what(fields)} {_until(reply['ban']['until'])}")


@bans_app.command()
def unban(
    user: UserArg = None,
    channel: ChannelOpt = None,
    ip: IpOpt = None,
    config: ConfigOpt = None,
    socket: SocketOpt = None,
) -> None:
    """Lift a ban on every hub (exit 1 when none was in force)."""
    from ..admin.client import call

    fields = _checked(user, ip, channel)
    reply = run_admin(call(admin_socket(config, socket), "unban", **fields))
    if not reply["lifted"]:
        typer.echo(f"{_what(fields)} was not banned")
        raise typer.Exit(1)
    typer.echo(f"lifted the ban on {_what(fields)}")


@bans_app.command()
def mute(
    user: Annotated[str, typer.Argument(help="The user.")],
    duration: Annotated[str | None, typer.Option(
        "--for", help="How long: 30s, 10m, 2h, 7d (required).")] = None,
    reason: Annotated[str, typer.Option(
        help="Told to the user (frame 'muted') and recorded in the audit trail.")] = "",
    config: ConfigOpt = None,
    socket: SocketOpt = None,
) -> None:
    """Mute USER on every hub: still connected and reading, but chat and whisper are
    refused (error 'muted' with retry_after_ms). USER's connections are told (frame
    'muted'), and told again when it is lifted early (frame 'unmuted')."""
    from ..admin.client import call

    fields = _checked(user, None, None, mute=True)
    if duration is None:
        fail("--for: a mute needs a duration, such as 10m", 2)
    seconds = _seconds(duration)
    reply = run_admin(call(admin_socket(config, socket), "mute", seconds=seconds, reason=reason,
                           **fields))
    typer.echo(f"muted {user} {_until(reply['ban']['until'])}")


@bans_app.command()
def unmute(
    user: Annotated[str, typer.Argument(help="The user.")],
    config: ConfigOpt = None,
    socket: SocketOpt = None,
) -> None:
    """Lift a mute on every hub (exit 1 when none was in force)."""
    from ..admin.client import call

    fields = _checked(user, None, None, mute=True)
    reply = run_admin(call(admin_socket(config, socket), "unmute", **fields))
    if not reply["lifted"]:
        typer.echo(f"{user} was not muted")
        raise typer.Exit(1)
    typer.echo(f"lifted the mute on {user}")


@bans_app.command()
def bans(
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
    config: ConfigOpt = None,
    socket: SocketOpt = None,
) -> None:
    """List the bans and mutes in force on every hub."""
    from ..admin.client import call

    result = run_admin(call(admin_socket(config, socket), "bans"))
    result = {k: v for k, v in result.items() if k not in ("id", "ok")}
    if as_json:
        typer.echo(json.dumps(result, indent=2, ensure_ascii=False))
        return
    console = Console()
    table = Table(title="bans and mutes in force")
    for col in ("kind", "user", "channel", "address", "until", "reason", "by"):
        table.add_column(col, overflow="fold")
    for b in result["bans"]:
        table.add_row("mute" if b["scope"] == "mute" else "ban", b["user"] or "",
                      b["channel"] or "", b["ip"] or "", _until(b["until"]).removeprefix("until "),
                      b["reason"], b["by"] or "")
    console.print(table)
    if not result.get("valkey", True):
        console.print("Valkey is unavailable: this is the list the daemon last read")
