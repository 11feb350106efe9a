"""Channel commands on the admin socket: channels, channel, channel_create,
channel_delete; channel rates; the channel events pushed to subscribers.

:class:`ChannelCommands` is mixed into :class:`~chathub.admin.server.AdminServer`.
Messages per minute come from the hub's per-channel counters (messages stamped on
this hub plus those other hubs delivered here, one dict increment per message),
sampled once a second by :meth:`ChannelCommands.watch_channels`: the rate is the
difference over the last minute, as ``messages_per_s`` is done for the node. That
task also compares the channel registry from one second to the next while someone
is subscribed and pushes ``channel_created``, ``channel_emptied`` and
``channel_deleted``, wherever in the cluster the change happened.
docs/admin-protocol.md is the reader's version.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

from ..errors import CacheUnavailable
from ..protocol import is_private, valid_channel

log = logging.getLogger("chathub.admin")

#: seconds over which messages per minute are measured
RATE_WINDOW = 60.0
#: seconds between two samples of the channel counters (and looks at the registry)
SAMPLE_PERIOD = 1.0
#: the most messages the ``channel`` command returns
MAX_RECENT = 200
NAME_RULE = "1-64 of A-Z a-z 0-9 _ - . : after an optional '$'"


class ChannelRates:
    """Messages per minute per channel from successive snapshots of running totals."""

    def __init__(self, window: float = RATE_WINDOW) -> None:
        self.window = window
        self._samples: deque[tuple[float, dict[str, int]]] = deque()

    def sample(self, counts: dict[str, int], now: float | None = None) -> None:
        """Keep one snapshot of the totals (``now``: a ``time.monotonic()`` value)."""
        now = time.monotonic() if now is None else now
        self._samples.append((now, counts))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window:
            self._samples.popleft()

    def per_minute(self, counts: dict[str, int], now: float | None = None) -> dict[str, float]:
        """Messages per minute of each channel in ``counts`` since the oldest snapshot
        (at most ``window`` seconds ago); 0 before any snapshot."""
        now = time.monotonic() if now is None else now
        if not self._samples:
            return {c: 0.0 for c in counts}
        t0, old = self._samples[0]
        span = now - t0
        if span <= 0:
            return {c: 0.0 for c in counts}
        return {c: round((n - old.get(c, 0)) * 60.0 / span, 1) for c, n in counts.items()}


def channel_totals(stats: Any) -> dict[str, int]:
    """Messages per channel seen by this hub: stamped here plus delivered from others."""
    out = dict(stats.by_channel)
    for c, n in stats.by_channel_remote.items():
        out[c] = out.get(c, 0) + n
    return out


def _channel_name(req: dict[str, Any]) -> str:
    name = req["name"]
    if not isinstance(name, str) or not valid_channel(name):
        raise ValueError(f"field 'name' must be a channel name: {NAME_RULE}")
    return name


class ChannelCommands:
    """``cmd_*`` handlers for channels; needs ``self.control``, ``self.publish``,
    ``self.record`` and ``self._subscribers`` of the admin server."""

    control: Any
    _subscribers: set[Any]
    rates: ChannelRates
    publish: Any
    record: Any
    #: the channel registry (name -> users) at the last look, while someone is subscribed
    _known: dict[str, int] | None = None

    def _rates_now(self) -> dict[str, float]:
        return self.rates.per_minute(channel_totals(self.control.figures().stats))

    async def cmd_channels(self, req: dict[str, Any]) -> dict[str, Any]:
        listed = await self.control.channels()
        rates = self._rates_now()
        try:
            figures = await self.control.channel_figures([n for n, _, _ in listed])
        except CacheUnavailable:
            figures = {}
        out = []
        for name, users, private in listed:
            fig = figures.get(name, {})
            nodes = fig.get("nodes", {})
            out.append({"name": name, "private": private, "users": users,
                        "subscriptions": sum(nodes.values()), "nodes": nodes,
                        "messages_per_min": rates.get(name, 0.0),
                        "history": fig.get("history")})
        return {"channels": out}

    async def cmd_channel(self, req: dict[str, Any]) -> dict[str, Any]:
        name = _channel_name(req)
        recent = req.get("recent", 20)
        if isinstance(recent, bool) or not isinstance(recent, int) or not 0 <= recent <= MAX_RECENT:
            raise ValueError(f"field 'recent' must be an integer from 0 to {MAX_RECENT}")
        info = await self.control.channel(name, recent)
        if info is None:
            raise ValueError(f"there is no channel {name}")
        fig = (await self.control.channel_figures([name])).get(name, {})
        nodes = fig.get("nodes", {})
        return {**info, "users": len(info["members"]), "subscriptions": sum(nodes.values()),
                "nodes": nodes, "history": fig.get("history"),
                "messages_per_min": self._rates_now().get(name, 0.0)}

    async def cmd_channel_create(self, req: dict[str, Any]) -> dict[str, Any]:
        name = _channel_name(req)
        private = is_private(name) or bool(req.get("private"))
        if private and not is_private(name):
            raise ValueError("a private channel's name starts with '$'")
        result = await self.control.create_channel(name, private, "admin")
        if result == "full":
            raise ValueError("channels.max_channels is reached")
        if result == "ok":
            await self.record("channel_create", name, {"private": private})
        return {"name": name, "private": private, "created": result == "ok"}

    async def cmd_channel_delete(self, req: dict[str, Any]) -> dict[str, Any]:
        name = _channel_name(req)
        force = req.get("force", False)
        if not isinstance(force, bool):
            raise TypeError("field 'force' must be true or false")
        result = await self.control.delete_channel(name, force)
        kind = result["result"]
        if kind == "unknown":
            raise ValueError(f"there is no channel {name}")
        if kind == "auto_join":
            raise ValueError(f"{name} is in channels.auto_join: every connection joins it, "
                             "so it cannot be deleted")
        if kind == "members":
            n = len(result["members"])
            raise ValueError(f"{name} has {n} member{'s' if n != 1 else ''}; "
                             "delete it with force (chathub channel delete --force) "
                             "to unsubscribe them")
        await self.record("channel_delete", name, {"force": force,
                                                   "unsubscribed": result["unsubscribed"]})
        return {"name": name, "deleted": True, "unsubscribed": result["unsubscribed"]}

    async def channel_baseline(self) -> None:
        """Take the registry as it is now, so that a new subscriber hears every change
        after its ``subscribe`` reply (called before that reply)."""
        if self._known is None:
            try:
                self._known = {n: u for n, u, _ in await self.control.channels()}
            except CacheUnavailable:
                pass

    async def watch_channels(self) -> None:
        """Sample the channel counters each second; while someone is subscribed, push the
        registry's changes as events. Runs until cancelled."""
        while True:
            try:
                await self._look()
            except Exception:  # a bad moment (the daemon stopping) must not end the rates
                log.debug("channel watcher: look failed", exc_info=True)
            await asyncio.sleep(SAMPLE_PERIOD)

    async def _look(self) -> None:
        self.rates.sample(channel_totals(self.control.figures().stats))
        if not self._subscribers:
            self._known = None
            return
        try:
            now = {n: u for n, u, _ in await self.control.channels()}
        except CacheUnavailable:
            return
        if self._known is not None:
            self._registry_changed(self._known, now)
        self._known = now

    def _registry_changed(self, before: dict[str, int], after: dict[str, int]) -> None:
        for name in sorted(after.keys() - before.keys()):
            self.publish({"type": "channel_created", "channel": name,
                          "private": is_private(name), "users": after[name]})
        for name in sorted(before.keys() - after.keys()):
            self.publish({"type": "channel_deleted", "channel": name})
        for name in sorted(after.keys() & before.keys()):
            if before[name] > 0 and after[name] == 0:
                self.publish({"type": "channel_emptied", "channel": name})
