"""Refusals of the HTTP API: :class:`ApiError` and the HTTP status of each code.

A refusal's body is ``{"error": CODE, "message": ONE_LINE}``, with ``retry_after_ms``
(and a ``Retry-After`` header) when waiting helps (docs/api.md).
"""

from __future__ import annotations

import json
from typing import Any

from websockets.http11 import Response

from .. import protocol
from ..protocol import ProtocolError
from .routes import respond

#: HTTP status of each refusal code
STATUS = {
    protocol.BAD_REQUEST: 400, protocol.TOO_LONG: 400, "unauthorized": 401,
    protocol.BLOCKED: 403, protocol.FORBIDDEN: 403, protocol.MUTED: 403, "not_found": 404,
    protocol.UNKNOWN_USER: 404, protocol.UNKNOWN_CHANNEL: 404,
    "method_not_allowed": 405, "in_progress": 409, protocol.RATE_LIMITED: 429,
    protocol.UNAVAILABLE: 503,
}


class ApiError(Exception):
    """A refusal: status from :data:`STATUS`, ``code`` and a one-line message."""

    def __init__(self, code: str, message: str, retry_after_ms: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after_ms = retry_after_ms

    def response(self) -> Response:
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        extra = {}
        if self.retry_after_ms is not None:
            body["retry_after_ms"] = self.retry_after_ms
            extra["Retry-After"] = str(max(1, -(-self.retry_after_ms // 1000)))
        if self.code == "unauthorized":
            extra["WWW-Authenticate"] = 'Bearer realm="chathub"'
        return respond(STATUS.get(self.code, 400), json.dumps(body), "application/json", extra)


def from_protocol(err: ProtocolError) -> ApiError:
    """The refusal of a frame the protocol refused (same code, message and retry)."""
    return ApiError(err.code, err.message, err.retry_after_ms)
