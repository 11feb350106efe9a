"""Bans and mutes: kept in PostgreSQL, cached in Valkey, enforced by every hub from memory.

An operator's ``chathub ban`` / ``mute`` writes a row to the ``bans`` table (the
record that survives everything), a field to one Valkey hash per scope (what
every hub reads), and tells every hub on the bus (``{"k": "ban", ...}``). Each hub
keeps the active entries in a :class:`BanList` in memory, so the upgrade
admission (:class:`~chathub.edge.guard.Guard`) and the hub loop check them without
a round trip. A hub reads the hashes at start, when Valkey comes back and every
:data:`REFRESH_INTERVAL` seconds (in case a bus message was missed); the daemon
copies PostgreSQL's active rows back into Valkey at start (a Valkey that lost its
data).

Scopes (one hash each, field -> JSON ``{"id", "reason", "until", "at", "by"}``):

- ``<prefix>bans:user``: field USER, the user may not connect anywhere;
- ``<prefix>bans:channel``: field ``CHANNEL USER``, the user may not be in CHANNEL;
- ``<prefix>bans:ip``: field CIDR, nobody may connect from the range;
- ``<prefix>bans:mute``: field USER, the user may read but not chat or whisper.

``until`` is epoch ms or null (until lifted). An entry past its ``until`` is
ignored everywhere at once (every check compares with the clock) and deleted from
the hash at the next refresh.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from .errors import CacheUnavailable
from .kv import KV
from .tasks import spawn

log = logging.getLogger("chathub.bans")

#: seconds between reads of the stored bans (in case a bus message was missed)
REFRESH_INTERVAL = 5.0
#: bus payload kind
BUS_KIND = "ban"
#: the scopes, each a Valkey hash
SCOPES = ("user", "channel", "ip", "mute")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class Ban:
    """One entry: who or what, why, until when (epoch ms; None: until lifted)."""

    scope: str
    #: the hash field: USER, "CHANNEL USER" or a CIDR
    key: str
    reason: str
    until: int | None
    id: int | None = None
    at: int | None = None
    by: str | None = None

    def active(self, now: int) -> bool:
        return self.until is None or self.until > now

    @property
    def user(self) -> str | None:
        if self.scope == "ip":
            return None
        return self.key.split(" ", 1)[1] if self.scope == "channel" else self.key

    @property
    def channel(self) -> str | None:
        return self.key.split(" ", 1)[0] if self.scope == "channel" else None

    def covers(self, user: str, ip: str | None) -> bool:
        """Whether a connection of ``user`` from ``ip`` falls under this ban or mute."""
        if self.scope != "ip":
            return self.user == user
        try:
            return ip is not None and ipaddress.ip_address(ip) in ipaddress.ip_network(
                self.key, strict=False)
        except (ValueError, TypeError):
            return False

    def stored(self) -> str:
        """The hash value."""
        return json.dumps({"id": self.id, "reason": self.reason, "until": self.until,
                           "at": self.at, "by": self.by})

    @classmethod
    def from_stored(cls, scope: str, key: str, value: str | bytes) -> Ban:
        d = json.loads(value)
        until = d.get("until")
        return cls(scope, key, str(d.get("reason") or ""), None if until is None else int(until),
                   d.get("id"), d.get("at"), d.get("by"))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["user"], out["channel"] = self.user, self.channel
        out["ip"] = self.key if self.scope == "ip" else None
        return out


def channel_key(channel: str, user: str) -> str:
    return f"{channel} {user}"


class BanList:
    """The active bans one hub enforces, in memory; no I/O. Every check takes the clock."""

    def __init__(self) -> None:
        self._by_scope: dict[str, dict[str, Ban]] = {s: {} for s in SCOPES}
        self._nets: list[tuple[Network, Ban]] = []

    def replace(self, bans: list[Ban]) -> None:
        """Make ``bans`` the whole list (a refresh)."""
        by_scope: dict[str, dict[str, Ban]] = {s: {} for s in SCOPES}
        for b in bans:
            by_scope[b.scope][b.key] = b
        self._by_scope = by_scope
        self._rebuild_nets()

    def add(self, ban: Ban) -> None:
        self._by_scope[ban.scope][ban.key] = ban
        if ban.scope == "ip":
            self._rebuild_nets()

    def remove(self, scope: str, key: str) -> Ban | None:
        """Forget an entry; the entry if it was in force."""
        b = self._by_scope[scope].pop(key, None)
        if b is not None and scope == "ip":
            self._rebuild_nets()
        return b if b is not None and b.active(now_ms()) else None

    def _rebuild_nets(self) -> None:
        nets = []
        for key, b in self._by_scope["ip"].items():
            try:
                nets.append((ipaddress.ip_network(key, strict=False), b))
            except ValueError:
                log.warning("bans: ignoring a stored address range %r", key)
        self._nets = nets

    def _get(self, scope: str, key: str, now: int | None) -> Ban | None:
        b = self._by_scope[scope].get(key)
        if b is None or not b.active(now_ms() if now is None else now):
            return None
        return b

    def user(self, user: str, now: int | None = None) -> Ban | None:
        """The ban that keeps ``user`` off every hub, if any."""
        return self._get("user", user, now)

    def channel(self, channel: str, user: str, now: int | None = None) -> Ban | None:
        """The ban that keeps ``user`` out of ``channel``, if any."""
        return self._get("channel", channel_key(channel, user), now)

    def muted(self, user: str, now: int | None = None) -> Ban | None:
        """The mute that keeps ``user`` from chatting and whispering, if any."""
        return self._get("mute", user, now)

    def address(self, ip: str | None, now: int | None = None) -> Ban | None:
        """The ban of a range that holds ``ip``, if any."""
        if not self._nets or not ip:
            return None
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return None
        now = now_ms() if now is None else now
        for net, b in self._nets:
            if addr.version == net.version and addr in net and b.active(now):
                return b
        return None

    def all(self, now: int | None = None) -> list[Ban]:
        """Every active entry."""
        now = now_ms() if now is None else now
        return [b for s in SCOPES for b in self._by_scope[s].values() if b.active(now)]


class BanSync:
    """Keeps one hub's :class:`BanList` in step with Valkey and the bus, and changes it.

    Args:
        kv: where the hashes are kept and the bus runs.
        node_id: this hub (the origin of bus payloads).
        enforce: called with a ban that was just added (here or on another hub), to
            close or unsubscribe the connections it covers on this hub; must not block.
        lifted: called with ``(scope, key)`` of an entry in force that an operator just
            lifted (here or on another hub), to tell the connections it covered; must
            not block. Entries that run out are not reported.
    """

    def __init__(self, kv: KV, node_id: str, enforce: Callable[[Ban], None],
                 lifted: Callable[[str, str], object] = lambda _s, _k: None) -> None:
        self.kv = kv
        self.node_id = node_id
        self.enforce = enforce
        self.lifted = lifted
        #: what this hub enforces
        self.active = BanList()
        #: changes applied since start (a refresh that read Valkey before one of them is dropped)
        self._changes = 0

    def key(self, scope: str) -> str:
        return self.kv.key(f"bans:{scope}")

    async def load(self) -> list[Ban]:
        """Read every hash; expired fields are deleted. Raises CacheUnavailable."""
        pipe = self.kv.client.pipeline(transaction=False)
        for s in SCOPES:
            pipe.hgetall(self.key(s))
        stored = await self.kv.call(pipe.execute)
        now = now_ms()
        out: list[Ban] = []
        expired: list[tuple[str, str]] = []
        for scope, fields in zip(SCOPES, stored, strict=True):
            for k, v in fields.items():
                key = k.decode() if isinstance(k, bytes) else k
                try:
                    b = Ban.from_stored(scope, key, v)
                except (ValueError, TypeError):
                    log.warning("bans: ignoring a stored entry %s %r", scope, key)
                    continue
                if b.active(now):
                    out.append(b)
                else:
                    expired.append((scope, key))
        if expired:
            pipe = self.kv.client.pipeline(transaction=False)
            for scope, key in expired:
                pipe.hdel(self.key(scope), key)
            await self.kv.call(pipe.execute)
        return out

    async def refresh(self) -> None:
        """Read the stored bans now; an outage leaves the list as it is, and so does a
        change that arrived while reading (the next refresh reads it).

        What the read changed is enforced or reported as lifted, as a bus message would
        have been: a hub that missed one (its bus down, or the sender's publish failed)
        closes, removes or tells the connections it covers within :data:`REFRESH_INTERVAL`.
        """
        changes = self._changes
        try:
            loaded = await self.load()
        except CacheUnavailable:
            return
        if changes != self._changes:
            return
        before = {(b.scope, b.key): b for b in self.active.all()}
        self.active.replace(loaded)
        after = {(b.scope, b.key): b for b in loaded}
        for k, b in after.items():
            old = before.get(k)
            if old is None or old.stored() != b.stored():
                self.enforce(b)
        now = now_ms()
        for (scope, key), old in before.items():
            if (scope, key) not in after and old.active(now):  # lifted, not run out
                self.lifted(scope, key)

    async def run(self) -> None:
        """Read the stored bans every :data:`REFRESH_INTERVAL` seconds, forever."""
        while True:
            await asyncio.sleep(REFRESH_INTERVAL)
            await self.refresh()

    async def store(self, ban: Ban) -> None:
        """Write ``ban`` to Valkey, apply and enforce it here, tell every hub.

        Raises:
            CacheUnavailable: Valkey is down; nothing changed on any hub.
        """
        await self.kv.call(self.kv.client.hset, self.key(ban.scope), ban.key, ban.stored())
        self._added(ban)
        await self._tell({"k": BUS_KIND, "op": "add", "s": ban.scope, "key": ban.key,
                          "v": ban.stored()})

    async def lift(self, scope: str, key: str) -> bool:
        """Delete an entry everywhere; whether Valkey held it. Raises CacheUnavailable."""
        n = await self.kv.call(self.kv.client.hdel, self.key(scope), key)
        self._removed(scope, key)
        await self._tell({"k": BUS_KIND, "op": "del", "s": scope, "key": key})
        return bool(n)

    async def restore(self, bans: list[Ban]) -> None:
        """Put entries from PostgreSQL back into Valkey where missing (HSETNX); no bus."""
        if not bans:
            return
        pipe = self.kv.client.pipeline(transaction=False)
        for b in bans:
            pipe.hsetnx(self.key(b.scope), b.key, b.stored())
        await self.kv.call(pipe.execute)
        await self.refresh()

    async def _tell(self, payload: dict[str, Any]) -> None:
        from .cluster.bus import publish

        try:
            await publish(self.kv, self.node_id, payload)
        except CacheUnavailable:
            log.warning("bans: stored, but the other hubs were not told; they read it within "
                        "%gs", REFRESH_INTERVAL)

    def _added(self, ban: Ban) -> None:
        self._changes += 1
        self.active.add(ban)
        if ban.active(now_ms()):
            self.enforce(ban)

    def _removed(self, scope: str, key: str) -> None:
        self._changes += 1
        if self.active.remove(scope, key) is not None:
            self.lifted(scope, key)

    def receive(self, payload: dict[str, Any]) -> bool:
        """Apply a ``ban`` payload from another hub; False for any other payload."""
        if payload.get("k") != BUS_KIND:
            return False
        scope, key = payload.get("s"), payload.get("key")
        if scope not in SCOPES or not isinstance(key, str):
            spawn(self.refresh())
            return True
        if payload.get("op") == "del":
            self._removed(scope, key)
            return True
        try:
            self._added(Ban.from_stored(scope, key, payload.get("v") or ""))
        except (ValueError, TypeError):
            spawn(self.refresh())
        return True
