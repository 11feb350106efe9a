"""HTTP on the WebSocket port: refusals before the upgrade, ``/healthz``, ``/metrics``, ``/``.

websockets calls :meth:`Routes.process_request` for every request before the
handshake. Returning a :class:`Response` answers the request as plain HTTP;
returning None lets the upgrade to ``/ws`` go ahead. Everything that can refuse
a connection (bad name, bad token, wrong origin, limits) refuses it here, with a
status code and a one-line reason, before any WebSocket state exists.
"""

from __future__ import annotations

import json
import mimetypes
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers, MultipleValuesError
from websockets.http11 import Request, Response

from .. import protocol
from ..errors import ChathubError

WS_PATH = "/ws"
#: the HTTP API's paths (read with their bodies by :mod:`chathub.edge.handshake`)
API_PREFIX = "/api/v1/"


@dataclass(frozen=True, slots=True)
class Admission:
    """Who a connection is, decided before the upgrade."""

    user: str
    since: str | None
    remote_addr: str | None
    user_agent: str | None
    #: epoch seconds when the token expires (token mode), else None
    expires_at: float | None = None
    #: private channels (names or glob patterns) the token lets the user subscribe to
    rights: tuple[str, ...] = ()


def respond(status: int, body: bytes | str, content_type: str = "text/plain; charset=utf-8",
            extra: dict[str, str] | None = None) -> Response:
    """A complete HTTP response."""
    if isinstance(body, str):
        body = body.encode()
    # Connection: close because websockets closes the connection after any answer but
    # 101 (RFC 9112 section 9.6: say so rather than let a client pipeline into a close).
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body))),
                       ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff"),
                       ("Connection", "close")])
    for k, v in (extra or {}).items():
        headers[k] = v
    return Response(status, HTTPStatus(status).phrase, headers, body)


def refuse(status: int, reason: str) -> Response:
    """A refusal: status and a one-line plain-text reason."""
    return respond(status, reason.rstrip("\n") + "\n")


def json_response(status: int, obj: Any) -> Response:
    return respond(status, json.dumps(obj), "application/json")


class Routes:
    """Answers HTTP requests and admits WebSocket upgrades.

    Args:
        admit: checks an upgrade request (auth, origin, limits) and returns the
            :class:`Admission` or a refusal :class:`Response`.
        health: returns (ok, body) for ``/healthz``.
        metrics: returns the Prometheus text for ``/metrics``.
        api: answers ``/api/v1/`` requests (:meth:`chathub.edge.api.Api.handle`); None:
            those paths are 404.
    """

    def __init__(self, admit: Callable[[ServerConnection, Request, dict[str, list[str]]], Admission | Response],
                 health: Callable[[], tuple[bool, dict[str, Any]]],
                 metrics: Callable[[], tuple[bytes, str]],
                 api: Callable[[Request], Awaitable[Response]] | None = None) -> None:
        self.admit = admit
        self.api = api
        self.health = health
        self.metrics = metrics

    def process_request(self, connection: ServerConnection, request: Request
                        ) -> Response | Awaitable[Response] | None:
        """websockets' hook: a :class:`Response` answers the request, None upgrades it.
        An ``/api/v1/`` request returns the API's coroutine, which websockets awaits.

        A header read with the wrong cardinality is a 400 naming it, never a 500.
        """
        method = request.method
        if request.path.startswith(API_PREFIX) and self.api is not None:
            return self.api(request)
        if method not in ("GET", "HEAD"):
            return respond(405, f"method {method[:20]} is not allowed here\n",
                           extra={"Allow": "GET, HEAD"})
        try:
            response = self._route(connection, request)
        except MultipleValuesError as exc:
            response = refuse(400, f"duplicate {exc} header")
        if method == "HEAD" and response is not None:
            # RFC 9110 section 9.3.2: the same headers as GET, no content
            response = Response(response.status_code, response.reason_phrase,
                                response.headers, b"")
        return response

    def _route(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        path = url.path
        if path == WS_PATH:
            if request.method != "GET" or "upgrade" not in list_header(request.headers, "Connection").lower():
                return refuse(426, "this is the WebSocket endpoint; connect with a WebSocket client")
            result = self.admit(connection, request, parse_qs(url.query))
            if isinstance(result, Response):
                return result
            # Kept on the connection itself: a handshake refused after this point
            # (no Sec-WebSocket-Key, wrong version, ...) leaves no state behind.
            connection.admission = result  # type: ignore[attr-defined]
            return None
        if path == "/healthz":
            ok, body = self.health()
            return json_response(200 if ok else 503, body)
        if path == "/metrics":
            data, ctype = self.metrics()
            return respond(200, data, ctype)
        return self.static(path)

    def static(self, path: str) -> Response:
        """Files of the browser client, from ``chathub/web``."""
        name = "index.html" if path in ("/", "") else path.lstrip("/")
        if "/" in name or name.startswith(".") or not name:
            return refuse(404, "not found")
        f = resources.files("chathub").joinpath("web").joinpath(name)
        if not f.is_file():
            return refuse(404, "not found")
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype in ("application/javascript",):
            ctype += "; charset=utf-8"
        csp = ("default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
               "style-src 'self'; script-src 'self'; frame-ancestors 'none'")
        extra = {"Content-Security-Policy": csp}
        if name == "chathub.js":  # other sites import the client module; ES modules load with CORS
            extra["Access-Control-Allow-Origin"] = "*"
        return respond(200, f.read_bytes(), ctype, extra)


class AmbiguousHeader(ChathubError, ValueError):
    """A header that must appear once came several times."""

    def __init__(self, name: str) -> None:
        super().__init__(f"ambiguous {name} header: sent more than once")
        self.name = name


class AmbiguousQuery(AmbiguousHeader):
    """A query parameter that must appear once came several times."""

    def __init__(self, name: str) -> None:
        ValueError.__init__(self, f"ambiguous query parameter {name}: sent more than once")
        self.name = name


def single_header(headers: Headers, name: str) -> str | None:
    """The value of a header that decides something (``Origin``, ``Authorization``).

    It must come at most once: two values cannot be told apart from an attempt to slip
    one past a check (RFC 6454 section 7.3 and RFC 9110 section 11.6.2 define one value
    each), and websockets refuses a repeated ``Origin`` too.

    Raises:
        AmbiguousHeader: ``name`` came more than once.
    """
    values = headers.get_all(name)
    if not values:
        return None
    if len(values) > 1:
        raise AmbiguousHeader(name)
    return values[0]


def first_header(headers: Headers, name: str) -> str | None:
    """The first value of a header that is only recorded (``User-Agent``): repeats are harmless."""
    values = headers.get_all(name)
    return values[0] if values else None


def list_header(headers: Headers, name: str) -> str:
    """A list-valued header (``Connection``) with its repeats combined, as RFC 9110
    section 5.3 allows: "a, b" sent as two lines is "a, b" sent as one."""
    return ", ".join(headers.get_all(name))


def query_one(query: dict[str, list[str]], name: str) -> str | None:
    """The single value of a query parameter, or None.

    As with :func:`single_header`, a parameter that decides something must come at most
    once: a proxy that checks one ``user`` or ``token`` and chathub that reads another
    would disagree on who connects.

    Raises:
        AmbiguousQuery: ``name`` came more than once.
    """
    values = query.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise AmbiguousQuery(name)
    return values[0]


def admit_user(query: dict[str, list[str]]) -> tuple[str | None, str | None, Response | None]:
    """Validate ``user`` and ``since`` from the query (auth mode "none")."""
    try:
        user, since = query_one(query, "user"), query_one(query, "since")
    except AmbiguousQuery as exc:
        return None, None, refuse(400, str(exc))
    if not protocol.valid_user(user):
        return None, None, refuse(400, "missing or invalid user name: use ?user=NAME with 1-32 of A-Z a-z 0-9 _ - .")
    if since is not None:
        since = protocol.canonical_id(since)
        if since is None:
            return None, None, refuse(
                400, "invalid since: use the id of the last message you saw (<ms>-<seq>, "
                     "each part an unsigned 64-bit integer)")
    return user, since, None
