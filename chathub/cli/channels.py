"""``chathub channels`` and ``chathub channel create|delete|info``: channels over the
admin socket.

Each command checks its input here (exit 2 with one line), asks the daemon one
question and prints the answer for people (rich) or as JSON (``--json``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ..protocol import is_private, valid_channel
from .common import ConfigOpt, SocketOpt, admin_socket, fail, run_admin

channel_app = typer.Typer(no_args_is_help=True, help="Create, inspect and delete channels.")

NAME_HELP = "Channel name; a leading $ makes it private (quote it in the shell: '$ops')."
JSON_HELP = "Print JSON."


def check_name(name: str) -> None:
    """Exit 2 with one line unless ``name`` is a valid channel name."""
    if not valid_channel(name):
        fail(f"invalid channel name {name!r}: 1-64 of A-Z a-z 0-9 _ - . : after an optional $", 2)


def _strip(reply: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in reply.items() if k not in ("id", "ok")}


def _many(n: int | None, noun: str) -> str:
    """``3 users``, ``1 user``; ``— users`` when unknown."""
    return f"{'—' if n is None else n} {noun}{'' if n == 1 else 's'}"


def _nodes(nodes: dict[str, int]) -> str:
    return ", ".join(f"{n} {c}" for n, c in sorted(nodes.items())) or "—"


def list_channels(
    config: ConfigOpt = None,
    socket: SocketOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """List every channel (private ones too): users, subscriptions per node, messages
    per minute, messages held in Valkey."""
    from ..admin.client import call

    reply = run_admin(call(admin_socket(config, socket), "channels"))
    if as_json:
        typer.echo(json.dumps(reply["channels"]))
        return
    table = Table("channel", "private", "users", "subscriptions (per node)", "msgs/min",
                  "in Valkey")
    for ch in reply["channels"]:
        history = ch.get("history")
        table.add_row(ch["name"], "yes" if ch["private"] else "", str(ch["users"]),
                      f"{ch.get('subscriptions', 0)} ({_nodes(ch.get('nodes') or {})})",
                      f"{ch.get('messages_per_min', 0.0):.1f}",
                      "—" if history is None else str(history))
    Console().print(table)


@channel_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help=NAME_HELP)],
    private: Annotated[bool, typer.Option("--private", help="Private (the name must start "
                                                            "with $).")] = False,
    config: ConfigOpt = None,
    socket: SocketOpt = None,
) -> None:
    """Create channel NAME (needed when channels.auto_create is false)."""
    from ..admin.client import call

    check_name(name)
    if private and not is_private(name):
        fail("a private channel's name starts with $ (quote it in the shell: '$ops')", 2)
    reply = run_admin(call(admin_socket(config, socket), "channel_create", name=name,
                           private=private))
    typer.echo(f"created {name}" if reply["created"] else f"{name} exists already")


@channel_app.command("delete")
def delete(
    name: Annotated[str, typer.Argument(help=NAME_HELP)],
    force: Annotated[bool, typer.Option("--force", help="Delete it even with members: "
                                                        "everyone is unsubscribed (reason "
                                                        "'deleted').")] = False,
    config: ConfigOpt = None,
    socket: SocketOpt = None,
) -> None:
    """Delete channel NAME (refused while it has members, unless --force).

    The channel leaves the channel list and its history in Valkey is dropped;
    PostgreSQL keeps its messages (search still finds them)."""
    from ..admin.client import call

    check_name(name)
    reply = run_admin(call(admin_socket(config, socket), "channel_delete", name=name,
                           force=force))
    n = reply["unsubscribed"]
    typer.echo(f"deleted {name}" + (f" ({n} connection{'s' if n != 1 else ''} unsubscribed)"
                                     if n else ""))


@channel_app.command("info")
def info(
    name: Annotated[str, typer.Argument(help=NAME_HELP)],
    recent: Annotated[int, typer.Option(help="How many recent messages to show (0-200).",
                                        min=0, max=200)] = 10,
    config: ConfigOpt = None,
    socket: SocketOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """One channel in detail: its members, subscriptions per node, rate and recent messages."""
    from ..admin.client import call

    check_name(name)
    reply = _strip(run_admin(call(admin_socket(config, socket), "channel", name=name,
                                  recent=recent)))
    if as_json:
        typer.echo(json.dumps(reply, indent=2, sort_keys=True))
        return
    console = Console()
    history = reply.get("history")
    console.print(f"[bold]{reply['name']}[/bold]{' (private)' if reply['private'] else ''}: "
                  f"{_many(reply['users'], 'user')}, "
                  f"{_many(reply['subscriptions'], 'subscription')} "
                  f"({_nodes(reply.get('nodes') or {})}), "
                  f"{reply['messages_per_min']:.1f} messages/min, "
                  f"{_many(history, 'message')} in Valkey")
    console.print("members: " + (", ".join(reply["members"]) or "none"), highlight=False)
    if reply["messages"]:
        table = Table("time (UTC)", "from", "text", title="recent messages, oldest first")
        for m in reply["messages"]:
            when = datetime.fromtimestamp(int(m.get("ts", 0)) / 1000, UTC)
            table.add_row(when.strftime("%Y-%m-%d %H:%M:%S"), m.get("from", ""), m.get("text", ""))
        console.print(table)
