"""Messages between the feed worker and the main screen.

The worker (:mod:`chathub.tui.feed`, run by :class:`chathub.tui.screens.main.DashScreen`) only
posts these; the screen's handlers update the widgets. Nothing here does I/O.
"""

from __future__ import annotations

import enum
from typing import Any

from textual.message import Message


class LinkState(enum.Enum):
    """Where the dashboard stands with the daemon's admin socket."""

    CONNECTING = "connecting"
    """First attempt, nothing known yet."""
    CONNECTED = "connected"
    """Subscribed: stats and events are flowing."""
    RECONNECTING = "reconnecting"
    """The connection was lost a moment ago; trying again."""
    DOWN = "daemon not running"
    """Nothing answers on the socket; retrying with backoff."""


class LinkChanged(Message):
    """The admin connection came up, went away, or a retry was scheduled."""

    def __init__(self, state: LinkState, *, detail: str = "",
                 hello: dict[str, Any] | None = None, retry_in: float | None = None) -> None:
        super().__init__()
        self.state = state
        #: one line saying why (the error, or "node X, pid Y")
        self.detail = detail
        #: the daemon's ``hello`` reply when ``state`` is CONNECTED
        self.hello = hello
        #: seconds until the next attempt, when one is scheduled
        self.retry_in = retry_in


class StatsReceived(Message):
    """A ``stats`` snapshot: pushed every second by the subscription, or requested."""

    def __init__(self, stats: dict[str, Any]) -> None:
        super().__init__()
        self.stats = stats


class ClientsReceived(Message):
    """The reply to a ``clients`` request: every connection on the node."""

    def __init__(self, clients: list[dict[str, Any]]) -> None:
        super().__init__()
        self.clients = clients


class ChannelsReceived(Message):
    """The reply to a ``channels`` request: every channel with its figures."""

    def __init__(self, channels: list[dict[str, Any]]) -> None:
        super().__init__()
        self.channels = channels


class ChannelReceived(Message):
    """The reply to a ``channel`` request (the channel screen's poll), or ``error``."""

    def __init__(self, channel: dict[str, Any] | None, error: str | None = None) -> None:
        super().__init__()
        self.channel = channel
        self.error = error


class DaemonEvent(Message):
    """One pushed event other than ``stats`` (connect, disconnect, kick, ...)."""

    def __init__(self, event: dict[str, Any]) -> None:
        super().__init__()
        self.event = event


class FeedProblem(Message):
    """A request failed while the connection stayed up (an error reply, a timeout)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class KickDone(Message):
    """A ``kick`` request finished: ``closed`` connections, or ``error``; ``channel`` when
    the user was only taken out of that channel."""

    def __init__(self, user: str, *, closed: int | None = None, error: str | None = None,
                 channel: str | None = None) -> None:
        super().__init__()
        self.user = user
        self.closed = closed
        self.error = error
        self.channel = channel


class SearchAnswered(Message):
    """A ``search`` request finished (the moderation screen's worker).

    ``seq`` is the query's number: the screen drops an answer whose query the operator
    has since changed. ``before`` is None for a first page, else the id it continued
    from. ``reply`` is the daemon's reply, or None with ``error`` (one line).
    """

    def __init__(self, seq: int, before: str | None, reply: dict[str, Any] | None,
                 error: str | None = None) -> None:
        super().__init__()
        self.seq = seq
        self.before = before
        self.reply = reply
        self.error = error


class BansReceived(Message):
    """The reply to a ``bans`` request (every ban and mute in force), or ``error``."""

    def __init__(self, bans: list[dict[str, Any]] | None, error: str | None = None) -> None:
        super().__init__()
        self.bans = bans
        self.error = error


class ActionDone(Message):
    """A moderation request (``delete``, ``purge``, ``ban``, ``mute``, ``unban``,
    ``unmute``) finished: the daemon's ``reply``, or None with ``error`` (one line).
    ``what`` names the target for the screen ("bob", "message 17-0")."""

    def __init__(self, cmd: str, what: str, reply: dict[str, Any] | None,
                 error: str | None = None) -> None:
        super().__init__()
        self.cmd = cmd
        self.what = what
        self.reply = reply
        self.error = error
