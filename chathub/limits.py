"""Live limits: rate budgets and the flood filter, changed on every hub without a restart.

``chathub limits set chat_rate=2 chat_burst=4`` stores an override in the Valkey
hash ``<prefix>limits`` and tells every hub on the bus (``{"k": "limits", "v": {...}}``);
each hub applies it at once. A hub that starts, or whose bus was interrupted,
reads the hash (at start, when Valkey comes back, and every :data:`REFRESH_INTERVAL`
seconds), so the override survives restarts until ``chathub limits reset``
deletes it and every hub returns to its configuration.

The values are applied in place to the configuration objects the hub already
reads: ``cfg.ratelimit`` (the message cache checks the chat and whisper budgets
on every message; the request budget is taken by connections opened afterwards)
and ``cfg.moderation.flood_*`` (the flood filter is rebuilt through ``on_flood``).
The configuration's own values stay in :attr:`LiveLimits.base` (a reload replaces
them with :meth:`LiveLimits.rebase`). Per-channel chat budgets (slow mode) are
:mod:`chathub.slowmode`'s; :class:`LiveLimits` reads, receives and shows them with its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from .config import Config
from .edge import guard as guard_mod
from .edge import moderation
from .errors import CacheUnavailable
from .kv import KV
from .tasks import spawn

log = logging.getLogger("chathub.limits")

#: seconds between reads of the stored override (in case a bus message was missed)
REFRESH_INTERVAL = 10.0
#: bus payload kind
BUS_KIND = "limits"

#: every live limit: (config section, type, smallest value, whether the smallest is allowed)
KEYS: dict[str, tuple[str, type, float, bool]] = {
    "chat_rate": ("ratelimit", float, 0, False),
    "chat_burst": ("ratelimit", int, 1, True),
    "whisper_rate": ("ratelimit", float, 0, False),
    "whisper_burst": ("ratelimit", int, 1, True),
    "request_rate": ("ratelimit", float, 0, False),
    "request_burst": ("ratelimit", int, 1, True),
    "flood_repeats": ("moderation", int, 0, True),
    "flood_window": ("moderation", float, 0, False),
}
_FLOOD = ("flood_repeats", "flood_window")


class ChannelLimits(Protocol):
    """The per-channel budgets (:class:`chathub.slowmode.SlowMode`), kept with these."""

    async def refresh(self) -> None: ...

    def receive(self, payload: dict[str, Any]) -> bool: ...

    def show(self) -> dict[str, dict[str, int | float]]: ...


def parse_value(key: str, value: Any) -> int | float:
    """Check one limit from outside (a string from the CLI, a number from JSON).

    Raises:
        ValueError: unknown key or impossible value; one line naming it.
    """
    if key not in KEYS:
        raise ValueError(f"unknown limit {key!r}; known: {', '.join(KEYS)}")
    _, typ, low, inclusive = KEYS[key]
    try:
        if isinstance(value, bool):
            raise ValueError
        number: int | float = typ(value) if not isinstance(value, str) else typ(value.strip())
        if typ is int and isinstance(value, float) and value != int(value):
            raise ValueError
    except (TypeError, ValueError):
        kind = "an integer" if typ is int else "a number"
        raise ValueError(f"{key} must be {kind}, got {value!r}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError(f"{key} must be a finite number, got {value!r}")
    if number < low or (number == low and not inclusive):
        bound = f"at least {low:g}" if inclusive else f"more than {low:g}"
        raise ValueError(f"{key} must be {bound}, got {value!r}")
    return number


def rebuild_filters(guard: guard_mod.Guard) -> None:
    """Build the guard's moderation chain again from its ``cfg.moderation`` (blocklist,
    flood, filters); the flood filter starts with an empty memory."""
    guard.filters = moderation.build_chain(guard.cfg.moderation, guard_mod._import)


def config_values(cfg: Config) -> dict[str, int | float]:
    """The live keys' values in ``cfg``."""
    return {k: getattr(getattr(cfg, section), k) for k, (section, *_r) in KEYS.items()}


async def tell(kv: KV, node_id: str, kind: str, stored: dict[str, Any]) -> None:
    """Tell the other hubs about stored limits (``{"k": kind, "v": stored}``); when the bus
    is down they read the store within :data:`REFRESH_INTERVAL` seconds."""
    from .cluster.bus import publish

    try:
        await publish(kv, node_id, {"k": kind, "v": stored})
    except CacheUnavailable:
        log.warning("%s: stored, but the other hubs were not told; they read it within %gs",
                    kind, REFRESH_INTERVAL)


class LiveLimits:
    """The limits one hub applies: its configuration, with the stored override on top.

    Args:
        kv: where the override is kept.
        node_id: this hub (the origin of bus payloads).
        cfg: the configuration objects to change in place.
        on_flood: called after the flood filter's values changed.
        channels: the per-channel budgets, read and shown with these (slow mode).
    """

    def __init__(self, kv: KV, node_id: str, cfg: Config,
                 on_flood: Callable[[], None] | None = None,
                 channels: ChannelLimits | None = None) -> None:
        self.kv = kv
        self.node_id = node_id
        self.cfg = cfg
        self.key = kv.key("limits")
        self.on_flood = on_flood
        self.channels = channels
        #: the configuration's values (what ``reset`` returns to)
        self.base = config_values(cfg)
        #: the stored override as this hub last saw it
        self.override: dict[str, int | float] = {}

    # -- applying ---------------------------------------------------------------------

    def effective(self) -> dict[str, int | float]:
        """The values in force: the configuration with the override on top."""
        return {**self.base, **self.override}

    def apply(self, override: dict[str, Any]) -> None:
        """Make ``override`` (values already checked, or from the hash) the one in force."""
        clean: dict[str, int | float] = {}
        for k, v in override.items():
            try:
                clean[k] = parse_value(k, v)
            except ValueError as exc:
                log.warning("limits: ignoring a stored value: %s", exc)
        before = self.effective()
        self.override = clean
        now = self.effective()
        for k, v in now.items():
            setattr(getattr(self.cfg, KEYS[k][0]), k, v)
        if before != now:
            log.info("limits now %s", ", ".join(f"{k}={v:g}" for k, v in now.items()))
        if any(before[k] != now[k] for k in _FLOOD) and self.on_flood is not None:
            self.on_flood()

    def rebase(self, cfg: Config) -> None:
        """New configuration values (a reload); the override stays on top."""
        self.base = config_values(cfg)
        self.apply(self.override)

    # -- the stored override ------------------------------------------------------------

    async def load(self) -> None:
        """Read the stored override and apply it. Raises CacheUnavailable."""
        self.apply(await self.kv.call(self.kv.client.hgetall, self.key))

    async def set(self, values: dict[str, Any]) -> dict[str, int | float]:
        """Check, store, tell every hub, apply here; returns the values in force.

        Raises:
            ValueError: a key or value is refused (nothing was changed).
            CacheUnavailable: Valkey is down (nothing was changed).
        """
        if not values:
            raise ValueError("name at least one limit, e.g. chat_rate=2")
        checked = {k: parse_value(k, v) for k, v in values.items()}
        pipe = self.kv.client.pipeline(transaction=True)
        pipe.hset(self.key, mapping={k: repr(v) for k, v in checked.items()})
        pipe.hgetall(self.key)
        _, stored = await self.kv.call(pipe.execute)
        await self._tell(stored)
        return self.effective()

    async def reset(self) -> dict[str, int | float]:
        """Delete the override everywhere; every hub returns to its configuration."""
        await self.kv.call(self.kv.client.delete, self.key)
        await self._tell({})
        return self.effective()

    async def _tell(self, stored: dict[str, Any]) -> None:
        self.apply(stored)
        await tell(self.kv, self.node_id, BUS_KIND, stored)

    def receive(self, payload: dict[str, Any]) -> bool:
        """Apply a ``limits`` payload (or a channel one) from another hub; False for any
        other payload."""
        if payload.get("k") != BUS_KIND:
            return self.channels is not None and self.channels.receive(payload)
        values = payload.get("v")
        if isinstance(values, dict):
            self.apply(values)
        else:
            spawn(self.refresh())
        return True

    async def refresh(self) -> None:
        """Read the stored override (and channel budgets) now; an outage leaves the values
        as they are."""
        try:
            await self.load()
        except CacheUnavailable:
            pass
        if self.channels is not None:
            await self.channels.refresh()

    async def run(self) -> None:
        """Read the stored override every :data:`REFRESH_INTERVAL` seconds, forever."""
        while True:
            await asyncio.sleep(REFRESH_INTERVAL)
            await self.refresh()

    def show(self) -> dict[str, Any]:
        """What ``chathub limits`` prints: values in force, the configuration's, the override,
        and the channels in slow mode (channel -> {"chat_rate", "chat_burst"})."""
        return {"limits": self.effective(), "config": dict(self.base),
                "override": dict(self.override),
                "channels": self.channels.show() if self.channels is not None else {}}
