"""Slow mode: one channel's own chat budget, on every hub, without a restart.

``chathub limits set --channel NAME chat_rate=0.2 chat_burst=1`` stores the channel's
budget in the Valkey hash ``<prefix>limits:c`` (channel -> ``{"chat_rate": R,
"chat_burst": B}`` as JSON) and tells every hub on the bus (``{"k": "slow", "v":
{channel: json, ...}}``, the whole hash); ``chathub limits reset --channel NAME``
deletes it. Hubs read the hash when they start and whenever they read the global
override (:class:`chathub.limits.LiveLimits` calls :meth:`SlowMode.refresh`), so slow
mode survives restarts and a missed bus message.

Enforcement is in the stamping path with no extra round trip: :attr:`SlowMode.active`
is the mapping :class:`~chathub.cache.MessageCache` reads for every chat, and
``chathub_accept_chat`` (cache.lua) checks the sender's budget in that channel (its own
GCRA key per (channel, user), so slowing one channel spends nothing elsewhere) *and*
the sender's global chat budget: a message passes both, or is refused and spends
neither. The channel's budget can therefore only slow a channel down; a channel rate
above the global one changes nothing. Only chats from WebSocket clients are slowed;
the HTTP API's publishes have their key's own budget (docs/api.md).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from .errors import CacheUnavailable
from .kv import KV
from .limits import parse_value, tell
from .protocol import valid_channel
from .tasks import spawn

log = logging.getLogger("chathub.slowmode")

#: bus payload kind
BUS_KIND = "slow"
#: the limits that can be set per channel
CHANNEL_KEYS = ("chat_rate", "chat_burst")
#: the burst of a channel put in slow mode without one: one message, then wait
DEFAULT_BURST = 1


def check_channel(channel: Any) -> str:
    """A channel name from outside. Raises ValueError (one line) when it is not one."""
    if not isinstance(channel, str) or not valid_channel(channel):
        raise ValueError(f"{channel!r} is not a channel name (1-64 of A-Z a-z 0-9 _ . : -, "
                         "optionally after $)")
    return channel


def check_values(values: Mapping[str, Any]) -> dict[str, int | float]:
    """The limits asked for one channel, checked: only ``chat_rate`` and ``chat_burst``.

    Raises:
        ValueError: another key, an impossible value, or none at all (one line).
    """
    if not values:
        raise ValueError("name chat_rate and/or chat_burst, e.g. chat_rate=0.2")
    for key in values:
        if key not in CHANNEL_KEYS:
            raise ValueError(f"only chat_rate and chat_burst can be set per channel, not {key!r}")
    return {k: parse_value(k, v) for k, v in values.items()}


def decode(raw: Any) -> tuple[float, int] | None:
    """A stored channel budget (JSON text) as (rate, burst); None when it is unreadable."""
    try:
        d = json.loads(raw)
        return float(parse_value("chat_rate", d["chat_rate"])), \
            int(parse_value("chat_burst", d["chat_burst"]))
    except (TypeError, ValueError, KeyError):
        return None


class SlowMode:
    """The channels in slow mode, as one hub last saw them; see the module docstring.

    Args:
        kv: where the channel budgets are kept.
        node_id: this hub (the origin of bus payloads).
    """

    def __init__(self, kv: KV, node_id: str) -> None:
        self.kv = kv
        self.node_id = node_id
        self.key = kv.key("limits:c")
        #: channel -> (chat rate per second, chat burst); changed in place, read by the cache
        self.active: dict[str, tuple[float, int]] = {}

    def apply(self, stored: Mapping[str, Any]) -> None:
        """Make ``stored`` (channel -> JSON text, the whole hash) the budgets in force."""
        now: dict[str, tuple[float, int]] = {}
        for channel, raw in stored.items():
            pair = decode(raw)
            if pair is None or not valid_channel(channel):
                log.warning("slow mode: ignoring a stored value for %r: %r", channel, raw)
                continue
            now[channel] = pair
        if now != self.active:
            log.info("slow mode now %s", ", ".join(
                f"{c} (chat_rate={r:g} chat_burst={b})" for c, (r, b) in sorted(now.items()))
                or "off everywhere")
        self.active.clear()
        self.active.update(now)

    def show(self) -> dict[str, dict[str, int | float]]:
        """channel -> {"chat_rate": R, "chat_burst": B}, for ``chathub limits``."""
        return {c: {"chat_rate": r, "chat_burst": b} for c, (r, b) in sorted(self.active.items())}

    async def load(self) -> None:
        """Read the stored budgets and apply them. Raises CacheUnavailable."""
        self.apply(await self.kv.call(self.kv.client.hgetall, self.key))

    async def refresh(self) -> None:
        """Read the stored budgets now; an outage leaves them as they are."""
        try:
            await self.load()
        except CacheUnavailable:
            pass

    async def set(self, channel: str, values: Mapping[str, Any]) -> dict[str, int | float]:
        """Put ``channel`` in slow mode (or change its budget) on every hub; returns its
        budget. A key not named keeps its value when the channel is slowed already (else
        chat_burst is :data:`DEFAULT_BURST`, and chat_rate must be named).

        Raises:
            ValueError: a bad channel name, key or value (nothing was changed).
            CacheUnavailable: Valkey is down (nothing was changed).
        """
        check_channel(channel)
        checked = check_values(values)
        before = decode(await self.kv.call(self.kv.client.hget, self.key, channel))
        rate = checked.get("chat_rate", before[0] if before else None)
        if rate is None:
            raise ValueError(f"{channel} is not in slow mode: name chat_rate too, "
                             "e.g. chat_rate=0.2")
        burst = checked.get("chat_burst", before[1] if before else DEFAULT_BURST)
        budget = {"chat_rate": float(rate), "chat_burst": int(burst)}
        pipe = self.kv.client.pipeline(transaction=True)
        pipe.hset(self.key, channel, json.dumps(budget))
        pipe.hgetall(self.key)
        _, stored = await self.kv.call(pipe.execute)
        await self._tell(stored)
        return budget

    async def reset(self, channel: str) -> bool:
        """Take ``channel`` out of slow mode on every hub; False when it was not in it.

        Raises:
            ValueError: a bad channel name.
            CacheUnavailable: Valkey is down (nothing was changed).
        """
        check_channel(channel)
        pipe = self.kv.client.pipeline(transaction=True)
        pipe.hdel(self.key, channel)
        pipe.hgetall(self.key)
        removed, stored = await self.kv.call(pipe.execute)
        await self._tell(stored)
        return bool(removed)

    async def _tell(self, stored: dict[str, Any]) -> None:
        self.apply(stored)
        await tell(self.kv, self.node_id, BUS_KIND, stored)

    def receive(self, payload: dict[str, Any]) -> bool:
        """Apply a ``slow`` payload from another hub; False for any other payload."""
        if payload.get("k") != BUS_KIND:
            return False
        stored = payload.get("v")
        if isinstance(stored, dict):
            self.apply(stored)
        else:
            spawn(self.refresh())
        return True


__all__ = ["BUS_KIND", "CHANNEL_KEYS", "SlowMode", "check_channel", "check_values"]
