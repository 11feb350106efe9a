"""``chathub delete | purge``: take messages out of every hub's history and every screen.

Each command checks its input here (exit 2 with one line), asks the daemon once
over the admin socket and prints the answer (``--json`` for scripts). ``delete`` of
an id that names no message (or one already deleted) prints so and exits 1, as
``unban`` of someone not banned does.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ..protocol import canonical_id
from ..removal import MAX_PURGE_SECONDS
from .common import ConfigOpt, SocketOpt, admin_socket, check_channel, check_user, fail, run_admin
from .moderation import JSON_HELP, parse_duration

#: the commands; joined to the chathub command by cli/app.py
removal_app = typer.Typer()


def _channel(channel: str | None) -> None:
    if channel is not None:
        check_channel(channel)


@removal_app.command()
def delete(
    msg: Annotated[str, typer.Argument(metavar="ID", help="The message id, like 1732871234567-0.")],
    channel: Annotated[str | None, typer.Option(
        "--channel", help="The message's channel (ids are unique; this is a check).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
    config: ConfigOpt = None,
    socket: SocketOpt = None,
) -> None:
    """Delete message ID on every hub: clients showing it remove it, and history, paging
    and recovery never serve it again (PostgreSQL keeps the row, marked). Exit 1 when
    there is no such message (in --channel) or it was deleted before."""
    from ..admin.client import call

    mid = canonical_id(msg)
    if mid is None:
        fail(f"{msg[:60]!r} is not a message id (like 1732871234567-0)", 2)
    _channel(channel)
    fields = {"msg": mid} | ({"channel": channel} if channel is not None else {})
    reply = run_admin(call(admin_socket(config, socket), "delete", **fields))
    out = {k: reply[k] for k in ("msg", "channel", "deleted")}
    if as_json:
        typer.echo(json.dumps(out))
    elif out["deleted"]:
        where = f" in {out['channel']}" if out["channel"] else " (a whisper)"
        typer.echo(f"deleted {mid}{where}")
    else:
        typer.echo(f"no message {mid}" + (f" in {channel}" if channel else "")
                   + " (or it was deleted before)")
    if not out["deleted"]:
        raise typer.Exit(1)


@removal_app.command()
def purge(
    user: Annotated[str, typer.Argument(help="Whose messages.")],
    since: Annotated[str | None, typer.Option(
        "--since", help="How far back: 30s, 10m, 2h, 7d (required; at most 30d).")] = None,
    channel: Annotated[str | None, typer.Option(
        "--channel", help="Only this channel (default: every channel and whispers).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
    config: ConfigOpt = None,
    socket: SocketOpt = None,
) -> None:
    """Delete every message USER sent in the last --since, on every hub (a spammer
    cleanup); same effects as delete."""
    from ..admin.client import call

    check_user(user)
    if since is None:
        fail("--since: say how far back, such as 10m", 2)
    try:
        seconds = parse_duration(since)
    except ValueError as exc:
        fail(f"--since: {exc}", 2)
    if seconds > MAX_PURGE_SECONDS:
        fail("--since: at most 30d", 2)
    _channel(channel)
    fields = {"user": user, "seconds": seconds} | ({"channel": channel} if channel else {})
    reply = run_admin(call(admin_socket(config, socket), "purge", **fields))
    out = {k: reply[k] for k in ("user", "deleted", "ids")}
    if as_json:
        typer.echo(json.dumps(out))
        return
    where = f" in {channel}" if channel else ""
    typer.echo(f"deleted {out['deleted']} message{'s' if out['deleted'] != 1 else ''} "
               f"of {user}{where} from the last {since}")
