"""Subscriptions: which of this hub's connections are in which channel, and who is in it.

The hub keeps, per channel with at least one local subscriber, the live set of
those connections (what fan-out writes to) and a mirror of the channel's members
on every hub (what ``subscribed.users`` and ``users`` answer from when the hub is
alone). When a channel gets its first local subscriber the hub starts listening
to its pub/sub channel (``watch``), and stops after the last (``unwatch``), so
cross-hub traffic grows with interest, not with the number of channels. Only the
hub loop calls this; it does no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from .cluster.presence import Online
from .peer import Client


class Subscriptions:
    """Local subscribers and member mirrors, per channel.

    Args:
        watch: called with a channel that got its first local subscriber.
        unwatch: called with a channel that lost its last one.
    """

    def __init__(self, watch: Callable[[str], None] = lambda _c: None,
                 unwatch: Callable[[str], None] = lambda _c: None) -> None:
        self.watch = watch
        self.unwatch = unwatch
        #: channel -> this hub's subscribers (insertion ordered; fan-out iterates it)
        self._subs: dict[str, dict[Client, None]] = {}
        #: channel -> its members on every hub, as far as this hub knows
        self._members: dict[str, Online] = {}
        #: subscriptions of every connection, for the figures
        self.count = 0

    def __len__(self) -> int:
        """Channels with local subscribers."""
        return len(self._subs)

    def __contains__(self, channel: str) -> bool:
        return channel in self._subs

    def channels(self) -> Iterator[str]:
        """Channels with local subscribers."""
        return iter(self._subs)

    def subscribers(self, channel: str) -> dict[Client, None]:
        """The live subscriber dict of ``channel`` (empty and unshared when there is none)."""
        return self._subs.get(channel) or {}

    def members(self, channel: str) -> Online:
        """The member mirror of ``channel`` (created on first use)."""
        m = self._members.get(channel)
        if m is None:
            m = self._members[channel] = Online()
        return m

    def local_users(self, channel: str) -> set[str]:
        return {c.user for c in self._subs.get(channel, ())}

    def add(self, client: Client, channel: str) -> None:
        """``client`` is now subscribed to ``channel`` here."""
        subs = self._subs.get(channel)
        if subs is None:
            subs = self._subs[channel] = {}
            self.watch(channel)
        if client not in subs:
            subs[client] = None
            client.channels.append(channel)
            self.count += 1
        self.members(channel).add(client.user)

    def remove(self, client: Client, channel: str) -> bool:
        """``client`` left ``channel``; True when no other local connection of that user is
        still in it."""
        subs = self._subs.get(channel)
        if channel in client.channels:
            client.channels.remove(channel)
        if subs is None or client not in subs:
            return False
        del subs[client]
        self.count -= 1
        still = any(c.user == client.user for c in subs)
        if not subs:
            del self._subs[channel]
            self._members.pop(channel, None)
            self.unwatch(channel)
        elif not still:
            self.members(channel).discard(client.user)
        return not still

    def counts(self) -> dict[tuple[str, str], int]:
        """(channel, user) -> local connections subscribed (for a presence resync)."""
        out: dict[tuple[str, str], int] = {}
        for channel, subs in self._subs.items():
            for c in subs:
                out[(channel, c.user)] = out.get((channel, c.user), 0) + 1
        return out
