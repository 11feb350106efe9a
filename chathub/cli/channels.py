"""``chathub channels`` and ``chathub channel create``: channels over the admin socket."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ..protocol import is_private, valid_channel
from .common import ConfigOpt, SocketOpt, admin_socket, fail, run_admin

channel_app = typer.Typer(no_args_is_help=True, help="Create and inspect channels.")


def list_channels(
    config: ConfigOpt = None,
    socket: SocketOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List every channel with its member count (private ones too)."""
    from ..admin.client import call

    reply = run_admin(call(admin_socket(config, socket), "channels"))
    if as_json:
        typer.echo(json.dumps(reply["channels"]))
        return
    table = Table("channel", "users", "private")
    for ch in reply["channels"]:
        table.add_row(ch["name"], str(ch["users"]), "yes" if ch["private"] else "")
    Console().print(table)


@channel_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Channel name; a leading $ makes it private.")],
    private: Annotated[bool, typer.Option("--private", help="Private (the name must start "
                                                            "with $).")] = False,
    config: ConfigOpt = None,
    socket: SocketOpt = None,
) -> None:
    """Create channel NAME (needed when channels.auto_create is false)."""
    from ..admin.client import call

    if not valid_channel(name):
        fail(f"invalid channel name {name!r}: 1-64 of A-Z a-z 0-9 _ - . : after an optional $", 2)
    if private and not is_private(name):
        fail("a private channel's name starts with $ (quote it in the shell: '$ops')", 2)
    reply = run_admin(call(admin_socket(config, socket), "channel_create", name=name,
                           private=private))
    typer.echo(f"created {name}" if reply["created"] else f"{name} exists already")
