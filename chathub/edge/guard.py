"""Who may connect, and what a message must pass before it gets an id.

:class:`Guard` decides every upgrade before it happens (identity from ``?user=``
or a token, allowed origins, connection limits, connection-attempt rate per
address) and runs the moderation chain on every chat and whisper. Each refusal
is counted by reason (``refusals``) for the admin socket and /metrics.
"""

from __future__ import annotations

import importlib
import logging
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from ..bans import Ban, BanList
from ..bucket import TokenBucket
from ..config import Config
from ..protocol import Chat, Whisper
from . import auth, moderation, proxies
from .routes import (
    Admission,
    AmbiguousHeader,
    admit_user,
    first_header,
    query_one,
    refuse,
    single_header,
)

log = logging.getLogger("chathub.edge.guard")

#: remembered per-address buckets before the idle ones are dropped
_BUCKETS_MAX = 100_000


class Guard:
    """Admission and moderation for one daemon."""

    def __init__(self, cfg: Config, bans: BanList | None = None) -> None:
        self.cfg = cfg
        #: bans by user and by address, checked from memory (:mod:`chathub.bans`)
        self.bans = bans or BanList()
        #: refusals by reason
        self.refusals: dict[str, int] = defaultdict(int)
        #: open connections by address; an address leaves when its last one closes
        self._per_ip: dict[str, int] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self.filters: list[moderation.Filter] = moderation.build_chain(cfg.moderation, _import)

    # -- admission -----------------------------------------------------------------

    def _take(self, ip: str) -> bool:
        b = self._buckets.get(ip)
        if b is None:
            if len(self._buckets) > _BUCKETS_MAX:
                self._buckets.clear()
            s = self.cfg.server
            b = self._buckets[ip] = TokenBucket(s.connect_rate_per_ip, s.connect_burst_per_ip)
        return b.take() == 0.0

    def count_handshake_timeout(self) -> None:
        """Count a handshake cut by ``handshake_timeout`` (it happens outside :meth:`admit`)."""
        self.refusals["handshake_timeout"] += 1

    def _refuse(self, reason: str, status: int, text: str) -> Response:
        self.refusals[reason] += 1
        return refuse(status, text)

    def admit(self, connection: ServerConnection, request: Request,
              query: dict[str, list[str]], connections: int) -> Admission | Response:
        """Decide an upgrade request: an :class:`Admission`, or a refusal response."""
        s = self.cfg.server
        peer = connection.remote_address
        ip = proxies.resolve(peer[0] if peer else None, request.headers, s.trusted_proxies).ip
        if not self._take(ip):
            return self._refuse("connect_rate", 429, "too many connection attempts; slow down")
        ban = self.bans.address(ip)
        if ban is not None:
            return self._banned("your address is banned", ban)
        if connections >= s.max_connections:
            return self._refuse("max_connections", 503, "the server is full; try again later")
        if self._per_ip.get(ip, 0) >= s.max_connections_per_ip:  # .get: refusals add no key
            return self._refuse("max_connections_per_ip", 429, "too many connections from your address")
        try:
            origin = single_header(request.headers, "Origin")
        except AmbiguousHeader as exc:
            return self._refuse("origin", 403, str(exc))
        if s.allowed_origins and origin is not None and origin not in s.allowed_origins:
            return self._refuse("origin", 403, f"origin {origin[:100]} is not allowed")
        expires_at = None
        rights: tuple[str, ...] = ()
        if self.cfg.auth.mode == "token":
            try:
                token = query_one(query, "token") or _bearer(request)
            except AmbiguousHeader as exc:
                return self._refuse("auth", 401, str(exc))
            try:
                user, expires_at, rights = auth.verify(token, self.cfg.auth.secret,
                                                       self.cfg.auth.clock_skew)
            except auth.TokenError as exc:
                return self._refuse("auth", 401, str(exc))
            probe: dict[str, list[str]] = {"user": [user]}
            if "since" in query:
                probe["since"] = query["since"]  # admit_user refuses it when repeated
            user_ok, since, bad = admit_user(probe)
        else:
            user_ok, since, bad = admit_user(query)
        if bad is not None:
            self.refusals["bad_request"] += 1
            return bad
        assert user_ok is not None
        ban = self.bans.user(user_ok)
        if ban is not None:
            return self._banned("you are banned", ban)
        return Admission(user_ok, since, f"{ip}",
                         (first_header(request.headers, "User-Agent") or "")[:256], expires_at,
                         rights)

    def _banned(self, what: str, ban: Ban) -> Response:
        until = "until lifted" if ban.until is None else f"until {_utc(ban.until)}"
        return self._refuse("banned", 403, f"{what} {until}"
                            + (f": {ban.reason}" if ban.reason else ""))

    def open_per_ip(self) -> dict[str, int]:
        """Open connections by remote address (addresses with none are not kept)."""
        return dict(self._per_ip)

    def opened(self, ip: str | None) -> None:
        key = ip or "unknown"
        self._per_ip[key] = self._per_ip.get(key, 0) + 1

    def closed(self, ip: str | None) -> None:
        key = ip or "unknown"
        self._per_ip[key] -= 1
        if self._per_ip[key] <= 0:
            del self._per_ip[key]

    # -- moderation ----------------------------------------------------------------

    def moderate(self, user: str, msg: Chat | Whisper) -> Chat | Whisper:
        """Run the filter chain; returns the message (maybe masked) or raises ProtocolError."""
        return moderation.run_chain(self.filters, user, msg)


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _bearer(request: Request) -> str | None:
    value = single_header(request.headers, "Authorization") or ""
    if value.lower().startswith("bearer "):
        return value[7:].strip()
    return None


def _import(spec: str) -> Callable[..., Any]:
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)
