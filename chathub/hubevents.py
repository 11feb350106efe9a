"""The events the hub loop consumes, one queue of them in arrival order.

Connection handlers, the admin socket, the HTTP API and the bus put these on the
hub's queue (:meth:`chathub.hub.Hub.register` and the like); the loop handles them in
order, taking runs of one kind in :data:`BATCHED` as one batch (one Valkey round
trip each).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from . import closecodes, protocol
from .errors import RegistrationFailed
from .peer import Client
from .protocol import Chat, Message, ProtocolError, Whisper


@dataclass(slots=True)
class Register:
    """A new connection to welcome; ``done`` completes once its welcome was written."""

    client: Client
    since: str | None
    done: asyncio.Future[None]


@dataclass(slots=True)
class Subscribe:
    """A ``subscribe`` frame (or an auto-join)."""

    client: Client
    channel: str
    since: str | None
    ref: str | None


@dataclass(slots=True)
class Unsubscribe:
    """An ``unsubscribe`` frame, or the server taking a connection out of a channel."""

    client: Client
    channel: str
    ref: str | None
    #: why, when the server removes the client: ``kicked``, ``banned`` or ``deleted``
    reason: str | None = None
    #: the operator's words (a kick's or a channel ban's reason), told to the client
    message: str | None = None
    #: when a channel ban ends (epoch ms; None: until lifted)
    until: int | None = None


@dataclass(slots=True)
class Unregister:
    """A connection ended; ``done`` completes once everything it sent was handled."""

    client: Client
    done: asyncio.Future[None]


@dataclass(slots=True)
class Inbound:
    """A validated chat or whisper, from a connection or from the HTTP API."""

    #: the sending connection; None for a message from the HTTP API, answered by ``done``
    client: Client | None
    message: Chat | Whisper
    #: the stamped message or the refusal (:class:`~chathub.protocol.ProtocolError`)
    done: asyncio.Future[Message] | None = None
    #: the sender's name when there is no client
    sender: str = ""


@dataclass(slots=True)
class Remote:
    """A payload from another hub (see :mod:`chathub.cluster.bus`)."""

    payload: dict[str, Any]


@dataclass(slots=True)
class Watching:
    """The bus now listens to ``channel``: deliver what other hubs stamped there meanwhile."""

    channel: str


@dataclass(slots=True)
class EchoDue:
    """Own messages held for their echo may be past their deadline (:mod:`chathub.cluster.echo`)."""


@dataclass(slots=True)
class Resync:
    """Valkey or the bus came back: write this node's presence again; after the bus
    resubscribed, also deliver what other hubs published during the gap."""

    gap: bool = False


Event = (Register | Subscribe | Unsubscribe | Unregister | Inbound | Remote | Watching
          | EchoDue | Resync)
#: event kinds taken in runs as one batch
BATCHED = (Inbound, Register, Subscribe, Unsubscribe, Unregister)


def fail_batch(batch: list[Any]) -> None:
    """Answer the waiting callers of a batch the hub loop failed to handle (a bug).

    A :class:`Register`'s ``done`` gets :class:`~chathub.errors.RegistrationFailed`
    (close 1011); an HTTP API :class:`Inbound`'s gets
    :class:`~chathub.protocol.ProtocolError` ``unavailable`` (not sent). Other kinds
    have no one waiting; futures already done are left alone.
    """
    for ev in batch:
        if isinstance(ev, Register):
            if not ev.done.done():
                ev.done.set_exception(RegistrationFailed(closecodes.INTERNAL_ERROR))
        elif isinstance(ev, Inbound) and ev.done is not None and not ev.done.done():
            ev.done.set_exception(ProtocolError(protocol.UNAVAILABLE, "the message was not sent"))

__all__ = ["BATCHED", "EchoDue", "Event", "fail_batch", "Inbound", "Register", "Remote", "Resync", "Subscribe",
           "Unregister", "Unsubscribe", "Watching"]
