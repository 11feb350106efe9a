"""The HTTP API under ``/api/v1/`` on the daemon's port (docs/api.md).

Other applications publish, whisper, list users, channels and history, and kick,
with an API key (``Authorization: Bearer KEY``). Nothing goes around the hub:
a publish is validated as a client's ``chat`` frame (:func:`chathub.protocol.parse`),
runs the moderation chain (:meth:`Guard.moderate`), and is stamped in the same
batches as clients' messages (:meth:`Hub.publish`) — ids, history, flush, other
hubs and mutes as for any chat. Rate limits are the API key's own (``[api] rate``,
``burst``): a publish or whisper neither spends nor is refused by its sender's chat
budget, so an application's posts and a user's chatting never throttle each other.

The request, body included, is read by :mod:`chathub.edge.handshake`; :meth:`Api.handle`
answers it. Every answer is JSON; a refusal is ``{"error": CODE, "message": ONE_LINE}``
with the codes of docs/protocol.md plus ``unauthorized``, ``not_found``,
``method_not_allowed`` and ``in_progress``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry
from websockets.http11 import Request, Response

from .. import protocol
from ..bandesk import BanDesk, BansUnavailable
from ..bucket import TokenBucket
from ..config import Config
from ..errors import CacheUnavailable, DatabaseUnavailable
from ..hub import Hub
from ..kv import KV
from ..protocol import Message, ProtocolError
from ..removal import MessageRemoval, RemovalUnavailable
from .apibans import ApiBans, Kick, Record
from .apierror import ApiError, from_protocol
from .apimetrics import ApiMetrics
from .guard import Guard
from .handshake import BodyRequest
from .idempotency import InProgress, once
from .openapi import document
from .routes import API_PREFIX, AmbiguousHeader, json_response, single_header

log = logging.getLogger("chathub.edge.api")

#: longest idempotency_key accepted
IDEMPOTENCY_KEY_MAX = 128
#: seconds an unknown-availability answer asks the caller to wait
RETRY_AFTER_MS = 1000
#: hex digits of a key's SHA-256 that name it in the audit trail and logs
FINGERPRINT_DIGITS = 12


def fingerprint(key: str) -> str:
    """A short name for an API key that does not reveal it: ``api:`` and the first
    :data:`FINGERPRINT_DIGITS` hex digits of its SHA-256 (as the audit trail shows it)."""
    return "api:" + hashlib.sha256(key.encode()).hexdigest()[:FINGERPRINT_DIGITS]


@dataclass
class _Key:
    """One configured API key and its request budget on this daemon."""

    secret: bytes
    #: :func:`fingerprint` of the key
    who: str
    bucket: TokenBucket


class Api:
    """Answers ``/api/v1/`` requests for one daemon.

    Args:
        cfg: the whole configuration (``[api]``, and ``server.max_text_chars``).
        hub: where messages go and who is online.
        guard: the moderation chain.
        kv: Valkey, for idempotency keys shared by every hub.
        kick: closes a user's connections on every hub, or takes them out of a channel
            (``user, reason, channel``); returns how many.
        removal: removes messages everywhere (``delete``, ``purge``); None: 503.
        bans: the ban desk the admin socket uses too (``kick``, ``ban``, ``unban``,
            ``mute``, ``unmute``, ``bans``; :mod:`chathub.edge.apibans`).
        record: the audit trail (:meth:`chathub.db.audit.AuditLog.record`); a kick, ban,
            mute, delete or purge made through the API is recorded with ``by_user`` = the
            key's :func:`fingerprint`.
        registry: the daemon's Prometheus registry, where :attr:`metrics` goes.
    """

    def __init__(self, cfg: Config, hub: Hub, guard: Guard, kv: KV,
                 kick: Kick, removal: MessageRemoval | None,
                 bans: BanDesk, record: Record, registry: CollectorRegistry) -> None:
        self.cfg = cfg
        self.hub = hub
        self.guard = guard
        self.kv = kv
        self.removal = removal
        self.record = record
        self.bans = ApiBans(bans, record, kick)
        self._keys: list[_Key] = []
        self._budget = (cfg.api.rate, cfg.api.burst)
        self.reload()
        self._routes: dict[str, tuple[str, Callable[[dict[str, Any], _Key], Awaitable[Any]]]] = {
            "publish": ("POST", self.publish), "whisper": ("POST", self.whisper),
            "users": ("GET", self.users),
            "channels": ("GET", self.channels), "history": ("GET", self.history),
            "delete": ("POST", self.delete), "purge": ("POST", self.purge),
            **{name: (method, self._moderating(name)) for name, method in (
                ("kick", "POST"), ("ban", "POST"), ("unban", "POST"), ("mute", "POST"),
                ("unmute", "POST"), ("bans", "GET"))},
        }
        #: requests, refusals and publish latency on /metrics
        self.metrics = ApiMetrics(registry, frozenset([*self._routes, "openapi.json"]))

    def reload(self) -> None:
        """Take ``cfg.api.keys``, ``rate`` and ``burst`` again (a reload changed them in
        place). A removed key is refused from the next request on; a key still listed
        keeps what it spent of its budget unless ``rate`` or ``burst`` changed."""
        budget = (self.cfg.api.rate, self.cfg.api.burst)
        kept = {k.secret: k for k in self._keys} if budget == self._budget else {}
        self._budget = budget
        self._keys = [kept.get(s.encode()) or _Key(s.encode(), fingerprint(s), TokenBucket(*budget))
                      for s in self.cfg.api.keys]

    @property
    def enabled(self) -> bool:
        """Whether any key is configured (else every API path answers 404)."""
        return bool(self._keys)

    async def handle(self, request: Request) -> Response:
        """Answer one API request (never raises)."""
        started = time.perf_counter()
        name = urlsplit(request.path).path[len(API_PREFIX):]
        try:
            response = await self._handle(request)
        except ApiError as err:
            response = err.response()
        except CacheUnavailable:
            response = ApiError(protocol.UNAVAILABLE, "the message cache is unavailable",
                                RETRY_AFTER_MS).response()
        except Exception:
            log.exception("API request %s failed", request.path[:100])
            response = ApiError(protocol.UNAVAILABLE, "internal error").response()
        self.metrics.answered(name, response.status_code)
        if name == "publish" and response.status_code == 200:
            self.metrics.publish.observe(time.perf_counter() - started)
        return response

    async def _handle(self, request: Request) -> Response:
        if not self.enabled:
            raise ApiError("not_found", "the API is off: no api.keys configured")
        url = urlsplit(request.path)
        name = url.path[len(API_PREFIX):]
        if name == "openapi.json":
            return json_response(200, document(self.cfg))
        route = self._routes.get(name)
        if route is None:
            raise ApiError("not_found", f"no endpoint {url.path[:100]}")
        method, fn = route
        if request.method != method:
            raise ApiError("method_not_allowed", f"use {method} for {url.path}")
        key = self._authenticate(request)
        wait = key.bucket.take()
        if wait:
            raise ApiError(protocol.RATE_LIMITED, "this API key is over its request budget",
                           max(1, int(wait * 1000)))
        if method == "GET":
            args: dict[str, Any] = {k: v[-1] for k, v in parse_qs(url.query).items()}
        else:
            args = _json_body(request)
        return json_response(200, await fn(args, key))

    def _authenticate(self, request: Request) -> _Key:
        """The request's key. Every key is compared, in constant time."""
        try:
            value = single_header(request.headers, "Authorization") or ""
        except AmbiguousHeader as exc:
            raise ApiError("unauthorized", str(exc)) from None
        if not value.lower().startswith("bearer "):
            raise ApiError("unauthorized", "missing API key: send Authorization: Bearer KEY")
        given = value[7:].strip().encode()
        found: _Key | None = None
        for key in self._keys:
            if hmac.compare_digest(given, key.secret) and found is None:
                found = key
        if found is None:
            raise ApiError("unauthorized", "invalid API key")
        return found

    # -- endpoints --------------------------------------------------------------------

    def _sender(self, args: dict[str, Any], system_only: bool) -> str:
        sender = args.get("from")
        if sender is None:
            raise ApiError(protocol.BAD_REQUEST, "field 'from' is required (a user name, or one "
                                                 "of api.system_names)")
        if not isinstance(sender, str) or not protocol.valid_user(sender):
            raise ApiError(protocol.BAD_REQUEST, "field 'from' must be a user name "
                                                 "(1-32 of A-Z a-z 0-9 _ - .)")
        if system_only and sender not in self.cfg.api.system_names:
            raise ApiError(protocol.BAD_REQUEST, "field 'from' must be one of api.system_names: "
                                                 + ", ".join(self.cfg.api.system_names))
        return sender

    def _frame(self, kind: str, args: dict[str, Any], fields: tuple[str, ...]) -> Any:
        """Validate ``fields`` of ``args`` exactly as a client's ``kind`` frame."""
        frame = {"type": kind, **{f: args[f] for f in fields if f in args}}
        try:
            return protocol.parse(json.dumps(frame), self.cfg.server.max_text_chars)
        except ProtocolError as err:
            raise from_protocol(err) from None

    async def publish(self, args: dict[str, Any], key: _Key) -> dict[str, Any]:
        """Post a chat into a channel as a user or a system name."""
        if not isinstance(args.get("channel"), str):
            raise ApiError(protocol.BAD_REQUEST, "field 'channel' is required (a channel name)")
        if not isinstance(args.get("text"), str):
            raise ApiError(protocol.BAD_REQUEST, "field 'text' is required (a string)")
        sender = self._sender(args, system_only=False)
        msg = self._frame("chat", args, ("text", "channel"))
        idem = args.get("idempotency_key")
        if idem is not None and (not isinstance(idem, str)
                                 or not 1 <= len(idem) <= IDEMPOTENCY_KEY_MAX
                                 or not idem.isprintable()):
            raise ApiError(protocol.BAD_REQUEST, "field 'idempotency_key' must be a string of "
                                                 f"1-{IDEMPOTENCY_KEY_MAX} printable characters")
        try:
            msg = self.guard.moderate(sender, msg)
        except ProtocolError as err:
            raise from_protocol(err) from None

        async def send() -> dict[str, Any]:
            return _stamped(await self._stamp(self.hub.publish(sender, msg.channel, msg.text)))

        if idem is None:
            return await send()
        return await self._once(key, idem, send)

    async def whisper(self, args: dict[str, Any], key: _Key) -> dict[str, Any]:
        """Send a whisper to an online user from a system name."""
        if not isinstance(args.get("to"), str):
            raise ApiError(protocol.BAD_REQUEST, "field 'to' is required (a user name)")
        if not isinstance(args.get("text"), str):
            raise ApiError(protocol.BAD_REQUEST, "field 'text' is required (a string)")
        sender = self._sender(args, system_only=True)
        msg = self._frame("whisper", args, ("to", "text"))
        try:
            msg = self.guard.moderate(sender, msg)
        except ProtocolError as err:
            raise from_protocol(err) from None
        return _stamped(await self._stamp(self.hub.whisper_from(sender, msg.to, msg.text)))

    async def users(self, args: dict[str, Any], key: _Key) -> dict[str, Any]:
        channel = args.get("channel")
        if channel is not None and not protocol.valid_channel(channel):
            raise ApiError(protocol.BAD_REQUEST, "parameter 'channel' is not a channel name")
        out: dict[str, Any] = {"users": await self.hub.users_everywhere(channel)}
        if channel is not None:
            out["channel"] = channel
        return out

    async def channels(self, args: dict[str, Any], key: _Key) -> dict[str, Any]:
        listed = await self.hub.channel_list()
        return {"channels": [{"name": n, "members": m} for n, m in listed]}

    async def history(self, args: dict[str, Any], key: _Key) -> dict[str, Any]:
        if "channel" not in args:
            raise ApiError(protocol.BAD_REQUEST, "parameter 'channel' is required")
        frame: dict[str, Any] = {"channel": args["channel"]}
        if "before" in args:
            frame["before"] = args["before"]
        if "limit" in args:
            try:
                frame["limit"] = int(args["limit"])
            except ValueError:
                raise ApiError(protocol.BAD_REQUEST, "parameter 'limit' must be an integer"
                               ) from None
        msg = self._frame("history", frame, ("channel", "before", "limit"))
        try:
            msgs = await self.hub.cache.history(msg.before, msg.limit, msg.channel)
        except DatabaseUnavailable as exc:
            raise ApiError(protocol.UNAVAILABLE, "older history is unavailable right now",
                           exc.retry_after_ms) from None
        return {"channel": msg.channel, "messages": [_message(m) for m in msgs]}

    async def delete(self, args: dict[str, Any], key: _Key) -> dict[str, Any]:
        """Remove one message everywhere (docs/operations.md); marked deleted by "api" and
        recorded in the audit trail under the key's fingerprint."""
        if not isinstance(args.get("id"), str):
            raise ApiError(protocol.BAD_REQUEST, "field 'id' is required (a message id)")
        out = await self._removing(lambda r: r.delete(args.get("id"), args.get("channel"), "api"))
        await self.record("delete", out["msg"], {"channel": out["channel"],
                                                 "deleted": out["deleted"]}, None, key.who)
        return {"id": out["msg"], "channel": out["channel"], "deleted": out["deleted"]}

    async def purge(self, args: dict[str, Any], key: _Key) -> dict[str, Any]:
        """Remove a user's messages of the last ``seconds`` everywhere; audited as delete."""
        for name in ("user", "seconds"):
            if name not in args:
                raise ApiError(protocol.BAD_REQUEST, f"field '{name}' is required")
        out = await self._removing(lambda r: r.purge(args.get("user"), args.get("seconds"),
                                                     args.get("channel"), "api"))
        await self.record("purge", out["user"], {"seconds": args.get("seconds"),
                                                 "channel": args.get("channel"),
                                                 "deleted": out["deleted"]}, None, key.who)
        return {k: out[k] for k in ("user", "deleted", "ids")}

    async def _removing(self, call: Callable[[MessageRemoval], Awaitable[dict[str, Any]]]
                        ) -> dict[str, Any]:
        if self.removal is None:
            raise ApiError(protocol.UNAVAILABLE, "message removal is not available here")
        try:
            return await call(self.removal)
        except RemovalUnavailable as exc:
            raise ApiError(protocol.UNAVAILABLE, str(exc), RETRY_AFTER_MS) from None
        except ValueError as exc:
            raise ApiError(protocol.BAD_REQUEST, str(exc)) from None

    def _moderating(self, name: str) -> Callable[[dict[str, Any], _Key], Awaitable[Any]]:
        """The endpoint ``name`` of :class:`ApiBans`, its errors as refusals."""
        verb = getattr(self.bans, name)

        async def endpoint(args: dict[str, Any], key: _Key) -> Any:
            try:
                out = await verb(args, key.who)
            except BansUnavailable as exc:
                raise ApiError(protocol.UNAVAILABLE, str(exc), RETRY_AFTER_MS) from None
            except (ValueError, TypeError) as exc:
                raise ApiError(protocol.BAD_REQUEST, str(exc)) from None
            if name != "bans":
                log.info("API %s %s by %s", name, args.get("user") or args.get("ip"), key.who)
            return out
        return endpoint

    # -- helpers ----------------------------------------------------------------------

    @staticmethod
    async def _stamp(aw: Awaitable[Message]) -> Message:
        try:
            return await aw
        except ProtocolError as err:
            raise from_protocol(err) from None

    async def _once(self, key: _Key, idem: str, send: Callable[[], Awaitable[dict[str, Any]]]
                    ) -> dict[str, Any]:
        """Run ``send`` once per (API key, idempotency key) within the window
        (:func:`chathub.edge.idempotency.once`)."""
        try:
            return await once(self.kv, key.secret, idem, self.cfg.api.idempotency_window, send)
        except InProgress:
            raise ApiError("in_progress", "a request with this idempotency_key is still in "
                                          "progress; retry later", RETRY_AFTER_MS) from None


def _json_body(request: Request) -> dict[str, Any]:
    body = request.body if isinstance(request, BodyRequest) else b""
    if not body:
        raise ApiError(protocol.BAD_REQUEST, "a JSON object body is required")
    try:
        args = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(protocol.BAD_REQUEST, "the body is not valid JSON") from None
    if not isinstance(args, dict):
        raise ApiError(protocol.BAD_REQUEST, "the body must be a JSON object")
    return args


def _message(m: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"id": m.id, "from": m.from_, "text": m.text, "ts": m.ts}
    if m.channel is not None:
        out["channel"] = m.channel
    if m.to is not None:
        out["to"] = m.to
    return out


def _stamped(m: Message) -> dict[str, Any]:
    return {"type": m.type, **_message(m)}
