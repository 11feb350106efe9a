"""A client for chathub's HTTP API (docs/api.md), sync and async.

    from chathub.api import APIClient

    api = APIClient("http://127.0.0.1:8080", key="...")
    msg = api.publish("orders", "order 1234 shipped", sender="system")
    print(msg["id"], msg["ts"])

:class:`AsyncAPIClient` has the same methods as coroutines. Refusals raise the
typed errors of :mod:`chathub.client.errors` (``RateLimited``, ``Blocked``,
``UnknownUser``, ``BadRequest``, ``Unavailable``, ...; a code the client library does
not know, such as ``muted``, is a plain ``ServerError`` with its ``code``); a refusal
of the HTTP layer itself (401, 404, 405, 409, 413) raises :class:`Refused` with its
``status``.
"""

from ..client.errors import (
    BadRequest,
    Blocked,
    ChatError,
    Disconnected,
    NotConnected,
    RateLimited,
    Refused,
    ReplyTimeout,
    ServerError,
    Unavailable,
    UnknownUser,
)
from .client import APIClient, AsyncAPIClient

__all__ = [
    "APIClient", "AsyncAPIClient", "BadRequest", "Blocked", "ChatError", "Disconnected",
    "NotConnected", "RateLimited", "Refused", "ReplyTimeout", "ServerError", "Unavailable",
    "UnknownUser",
]
