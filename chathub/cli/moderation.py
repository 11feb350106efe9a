"""``chathub search | audit | limits | reload``: moderation over the admin socket.

Each command checks its input here (exit 2 with one line), asks the daemon one
question and prints the answer for people (rich) or as JSON (``--json``).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..durations import DURATION_RE, UNITS, parse_duration  # noqa: F401 (used by cli/bans.py)
from ..protocol import ID_RE
from .common import ConfigOpt, SocketOpt, admin_socket, check_channel, check_user, fail, run_admin

#: search, audit, limits and reload; joined to the chathub command by cli/app.py
moderation_app = typer.Typer()

JSON_HELP = "Print JSON."
def parse_since(text: str, now: float | None = None) -> int:
    """``--since``: a duration back from now (30s, 15m, 2h, 7d, 1w) or an ISO date/time
    (2024-05-01, 2024-05-01T12:00, UTC unless it names an offset); epoch ms.

    Raises:
        ValueError: neither.
    """
    now = time.time() if now is None else now
    m = DURATION_RE.fullmatch(text.strip())
    if m:
        ms = int((now - float(m.group(1)) * UNITS[m.group(2)]) * 1000)
    else:
        try:
            when = datetime.fromisoformat(text.strip())
        except ValueError:
            raise ValueError(f"cannot read {text!r}; use a duration (30m, 2h, 7d) "
                             "or a date (2024-05-01, 2024-05-01T12:00)") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        ms = int(when.timestamp() * 1000)
    if ms < 0:  # no message is older, and PostgreSQL's timestamps stop somewhere
        raise ValueError(f"{text!r} reaches back before 1970")
    return ms


def _since_ms(since: str | None) -> int | None:
    if since is None:
        return None
    try:
        return parse_since(since)
    except ValueError as exc:
        fail(f"--since: {exc}", 2)


def _strip(reply: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in reply.items() if k not in ("id", "ok")}


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


# -- search -------------------------------------------------------------------------------


def render_hits(result: dict[str, Any], console: Console) -> None:
    """Hits as a table, matched words in bold; then what is not searchable yet."""
    hits = result["hits"]
    table = Table(title=f"{len(hits)} hit{'s' if len(hits) != 1 else ''}, newest first")
    for col in ("id", "channel", "from", "time (UTC)", "text"):
        table.add_column(col, overflow="fold")
    for h in hits:
        text = Text(h["text"])
        for a, b in h["marks"]:
            text.stylize("bold", a, b)
        sender = h["from"] + (f" → {h['to']}" if h.get("to") else "")
        table.add_row(h["id"], h["channel"], sender, _when(h["ts"]), text)
    console.print(table)
    if result.get("next_before"):
        console.print(f"more: --before {result['next_before']}")
    unflushed = result.get("unflushed")
    if unflushed is None:
        console.print("messages not yet written to PostgreSQL are not searchable "
                      "(how many is unknown: Valkey is unavailable)")
    elif unflushed:
        console.print(f"{unflushed} newest message{'s are' if unflushed != 1 else ' is'} "
                      "not yet searchable (not yet written to PostgreSQL)")
    else:
        console.print("every message is written to PostgreSQL; newer ones are not yet searchable "
                      "until they are (about a second)")


@moderation_app.command()
def search(
    words: Annotated[str, typer.Argument(help='Words to find: all must occur; "a phrase", '
                                              "a or b, -excluded.")],
    user: Annotated[str | None, typer.Option(help="Only messages sent by USER.")] = None,
    channel: Annotated[str | None, typer.Option(help="Only messages in CHANNEL.")] = None,
    since: Annotated[str | None, typer.Option(help="Only newer: 30m, 2h, 7d or 2024-05-01.")] = None,
    limit: Annotated[int, typer.Option(help="Hits per page, 1-200.")] = 20,
    before: Annotated[str | None, typer.Option(help="Only older than this message id (next page).")] = None,
    whispers: Annotated[bool, typer.Option("--whispers", help="Also search whispers.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
    config: ConfigOpt = None,
    socket: SocketOpt = None,
) -> None:
    """Search the message history in PostgreSQL, newest first."""
    from ..admin.client import call

    if not words.strip():
        fail("WORDS: give at least one word", 2)
    if not 1 <= limit <= 200:
        fail(f"--limit: must be 1-200, got {limit}", 2)
    if before is not None and not ID_RE.fullmatch(before):
        fail(f"--before: {before!r} is not a message id (like 1717000000000-0)", 2)
    if user is not None:
        check_user(user, "--user")
    if channel is not None:
        check_channel(channel)
    fields: dict[str, Any] = {"words": words, "limit": limit, "whispers": whispers}
    for name, value in (("user", user), ("channel", channel), ("before", before),
                        ("since", _since_ms(since))):
        if value is not None:
            fields[name] = value
    result = _strip(run_admin(call(admin_socket(config, socket), "search", **fields)))
    if as_json:
        typer.echo(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        render_hits(result, Console())


# -- audit --------------------------------------------------------------------------------


@moderation_app.command()
def audit(
    since: Annotated[str | None, typer.Option(help="Only newer: 30m, 2h, 7d or 2024-05-01.")] = None,
    limit: Annotated[int, typer.Option(help="Actions to list, 1-1000.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
    config: ConfigOpt = None,
    socket: SocketOpt = None,
) -> None:
    """List the operator actions recorded (kick, bans, mutes, limits, reload), newest first."""
    from ..admin.client import call

    if not 1 <= limit <= 1000:
        fail(f"--limit: must be 1-1000, got {limit}", 2)
    fields: dict[str, Any] = {"limit": limit}
    since_ms = _since_ms(since)
    if since_ms is not None:
        fields["since"] = since_ms
    result = _strip(run_admin(call(admin_socket(config, socket), "audit", **fields)))
    if as_json:
        typer.echo(json.dumps(result, indent=2, ensure_ascii=False))
        return
    console = Console()
    table = Table(title="admin actions, newest first")
    for col in ("time (UTC)", "action", "target", "by", "arguments"):
        table.add_column(col, overflow="fold")
    for a in result["actions"]:
        by = f"{a.get('by_user') or '?'} ({a['by_uid']})" if a.get("by_uid") is not None \
            else str(a.get("by_user") or "?")
        args = json.dumps(a["arguments"], ensure_ascii=False)
        if a.get("waiting"):
            args += "  [not yet in PostgreSQL]"
        table.add_row(_when(a["at"]), a["action"], a.get("target") or "", by, args)
    console.print(table)
    if not result.get("postgres", True):
        console.print("PostgreSQL is unavailable: only actions not yet written there are listed")


# -- limits -------------------------------------------------------------------------------

limits_app = typer.Typer(help="Show or change the rate budgets and the flood filter on every hub.",
                         invoke_without_command=True, no_args_is_help=False)
moderation_app.add_typer(limits_app, name="limits")


def render_limits(result: dict[str, Any], console: Console) -> None:
    table = Table(title="limits (every hub)")
    for col in ("limit", "in force", "config", "override"):
        table.add_column(col)
    for key, value in result["limits"].items():
        over = result["override"].get(key)
        table.add_row(key, f"{value:g}", f"{result['config'][key]:g}",
                      "" if over is None else f"{over:g}")
    console.print(table)
    slow = result.get("channels") or {}
    if not slow:
        console.print("no channel is in slow mode")
        return
    table = Table(title="channels in slow mode (each sender passes these and the chat budget)")
    for col in ("channel", "chat_rate", "chat_burst", "one message every"):
        table.add_column(col)
    for name, b in slow.items():
        table.add_row(name, f"{b['chat_rate']:g}", str(b["chat_burst"]),
                      f"{1 / b['chat_rate']:g} s")
    console.print(table)


def _show(reply: dict[str, Any], as_json: bool) -> None:
    result = _strip(reply)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        render_limits(result, Console())


@limits_app.callback()
def limits_show(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
    config: ConfigOpt = None,
    socket: SocketOpt = None,
) -> None:
    """Show the chat, whisper and request budgets, the flood filter and the channels in
    slow mode."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = {"json": as_json, "config": config, "socket": socket}
        return
    from ..admin.client import call

    _show(run_admin(call(admin_socket(config, socket), "limits")), as_json)


def parse_assignments(pairs: list[str], per_channel: bool = False) -> dict[str, Any]:
    """``["chat_rate=2", "chat_burst=4"]`` as a mapping, each value checked; with
    ``per_channel`` only the keys slow mode takes (``chat_rate``, ``chat_burst``).

    Raises:
        ValueError: not KEY=VALUE, an unknown key (for slow mode: any other key) or an
            impossible value (one line).
    """
    from ..limits import parse_value
    from ..slowmode import check_values

    raw: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{pair!r} is not KEY=VALUE (e.g. chat_rate=2)")
        raw[key.strip()] = value
    if per_channel:
        return check_values(raw)
    return {key: parse_value(key, value) for key, value in raw.items()}


@limits_app.command("set")
def limits_set(
    ctx: typer.Context,
    pairs: Annotated[list[str], typer.Argument(
        help="KEY=VALUE: chat_rate, chat_burst, whisper_rate, whisper_burst, request_rate, "
             "request_burst, flood_repeats, flood_window.")],
    channel: Annotated[str | None, typer.Option(
        "--channel", help="Slow mode: this channel's own chat budget (chat_rate, chat_burst "
                          "only), on top of the chat budget.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
    config: ConfigOpt = None,
    socket: SocketOpt = None,
) -> None:
    """Apply limits on every hub now; they survive restarts until 'chathub limits reset'.

    With --channel NAME, slow mode: that channel gets its own chat budget per user
    (e.g. chat_rate=0.2 chat_burst=1, one message every 5 s), on top of the chat budget.
    """
    from ..admin.client import call

    parent = ctx.obj or {}
    try:
        if channel is not None:
            from ..slowmode import check_channel

            check_channel(channel)
        values = parse_assignments(pairs, per_channel=channel is not None)
    except ValueError as exc:
        fail(str(exc), 2)
    sock = admin_socket(config or parent.get("config"), socket or parent.get("socket"))
    fields: dict[str, Any] = {"values": values} if channel is None \
        else {"values": values, "channel": channel}
    _show(run_admin(call(sock, "limits_set", **fields)), as_json or parent.get("json", False))


@limits_app.command("reset")
def limits_reset(
    ctx: typer.Context,
    channel: Annotated[str | None, typer.Option(
        "--channel", help="Take this channel out of slow mode (the global override stays).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
    config: ConfigOpt = None,
    socket: SocketOpt = None,
) -> None:
    """Drop the override: every hub returns to the limits of its configuration (with
    --channel, only that channel leaves slow mode)."""
    from ..admin.client import call

    parent = ctx.obj or {}
    if channel is not None:
        from ..slowmode import check_channel

        try:
            check_channel(channel)
        except ValueError as exc:
            fail(str(exc), 2)
    sock = admin_socket(config or parent.get("config"), socket or parent.get("socket"))
    fields = {} if channel is None else {"channel": channel}
    _show(run_admin(call(sock, "limits_reset", **fields)), as_json or parent.get("json", False))


# -- reload -------------------------------------------------------------------------------


@moderation_app.command()
def reload(
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
    config: ConfigOpt = None,
    socket: SocketOpt = None,
) -> None:
    """Re-read the daemon's configuration file (as SIGHUP does); say what applied."""
    from ..admin.client import call

    result = _strip(run_admin(call(admin_socket(config, socket), "reload")))
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo("applied: " + (", ".join(result["applied"]) or "nothing changed that can change live"))
    if result["ignored"]:
        typer.echo("left as they were (restart to apply): " + ", ".join(result["ignored"]))
    if "supervisor" in result:
        typer.echo("this was one worker of 'serve --workers'; the others keep their configuration: "
                   f"kill -HUP {result['supervisor']} (the supervisor) reloads every worker")
