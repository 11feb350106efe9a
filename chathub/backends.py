"""What the hub needs from its backends, as Protocols, and the values that cross them.

The hub is built with a :class:`MessageCache` and a :class:`Presence`; the daemon
hands it the Valkey implementations (:class:`chathub.cache.MessageCache`,
:class:`chathub.cluster.presence.Presence`) and a unit test the in-memory ones in
:mod:`chathub.memory`, so join/leave, whisper routing, slow consumers and batching
are tested in milliseconds without a server. The model is centrifuge's ``Broker``
and ``PresenceManager`` interfaces, each with a memory and a Redis implementation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from .protocol import Message


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A chat or whisper waiting for an id."""

    sender: str
    text: str
    to: str | None = None


@dataclass(frozen=True, slots=True)
class Accepted:
    """The cache stamped the message: deliver ``message``."""

    message: Message


@dataclass(frozen=True, slots=True)
class UnknownUser:
    """The whisper's recipient is online on no hub: nothing stored."""


@dataclass(frozen=True, slots=True)
class Failed:
    """Valkey refused this one message (an error reply): nothing stored."""

    error: str


@dataclass(frozen=True, slots=True)
class Recent:
    """A welcome's history: ``messages`` oldest first; ``top`` the stream's last id when
    read; ``partial`` when older messages that PostgreSQL holds were left out."""

    messages: list[Message]
    top: str
    partial: bool


@dataclass(frozen=True, slots=True)
class Limited:
    """Over the sender's budget: nothing stored; try again after ``retry_after_ms``."""

    retry_after_ms: int


Stamped = Accepted | Limited | UnknownUser | Failed


class MessageCache(Protocol):
    """Ids, recent history and rate limits. Every method may raise
    :class:`~chathub.errors.CacheUnavailable`, which the hub answers ``unavailable``."""

    async def accept(self, batch: Sequence[Outgoing]) -> list[Stamped]:
        """Rate-limit and stamp ``batch`` in one round trip; results in the same order.
        Accepted messages are also published to the other hubs, in id order."""
        ...

    async def recent(self) -> Recent:
        """A welcome's history (no wait on PostgreSQL: the hub loop calls it)."""
        ...

    async def prepare_welcome(self) -> None:
        """Wait, bounded, for what welcomes need from slower storage (not in the hub loop)."""
        ...

    async def recover(self, since: str, user: str) -> tuple[list[Message] | None, str]:
        """What ``user`` missed after ``since`` (None when it cannot be told), and the last id."""
        ...

    async def history(self, before: str | None, limit: int) -> list[Message]:
        """Public messages older than ``before``, oldest first (not in the hub loop)."""
        ...

    async def last_id(self) -> str:
        """The id of the newest message ever stamped ("0-0" before the first)."""
        ...

    async def since(self, after: str, limit: int) -> list[tuple[str, Message]]:
        """Up to ``limit`` messages after ``after``, oldest first, as (origin node, message)."""
        ...


class Presence(Protocol):
    """Who is online on any hub. Every method may raise
    :class:`~chathub.errors.CacheUnavailable`; the hub then falls back to what it knows."""

    async def connect(self, users: list[str]) -> tuple[list[bool], list[str] | None]:
        """Record one new connection per entry; for each, whether it is that user's first
        anywhere (a ``join`` is due); and everyone online when other hubs exist, else None."""
        ...

    async def disconnect(self, user: str, reason: str) -> bool:
        """Record a closed connection; whether it was the user's last anywhere."""
        ...

    async def users(self) -> list[str]:
        """Everyone online on any hub, sorted."""
        ...

    async def resync(self, counts: dict[str, int]) -> list[str]:
        """Replace this hub's presence with ``counts``; everyone online, sorted."""
        ...
