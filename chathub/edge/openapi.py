"""The OpenAPI 3.1 document of the HTTP API, served at ``/api/v1/openapi.json``.

tests/test_api.py checks it against the server: every path answers, and every
required field it lists is refused when missing.
"""

from __future__ import annotations

from typing import Any

from .. import __version__
from ..config import Config
from ..removal import MAX_PURGE_SECONDS

_NAME = {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,32}$"}
_CHANNEL = {"type": "string", "description": "a channel name; $ first for a private one"}
_MESSAGE = {
    "type": "object", "required": ["id", "from", "text", "ts"],
    "properties": {"type": {"type": "string", "enum": ["chat", "whisper"]},
                   "id": {"type": "string", "description": "<ms>-<seq>"},
                   "from": {"type": "string"}, "text": {"type": "string"},
                   "ts": {"type": "integer", "description": "epoch milliseconds"},
                   "channel": {"type": "string"}, "to": {"type": "string"},
                   "replayed": {"type": "boolean",
                                "description": "a repeated idempotency_key: the first result"}},
}
_BAN = {
    "type": "object", "required": ["scope", "key", "reason", "until", "id", "at", "by"],
    "properties": {"scope": {"type": "string", "enum": ["user", "channel", "ip", "mute"]},
                   "key": {"type": "string"}, "reason": {"type": "string"},
                   "until": {"type": ["integer", "null"],
                             "description": "epoch milliseconds; null: until lifted"},
                   "id": {"type": ["integer", "null"]},
                   "at": {"type": ["integer", "null"], "description": "epoch milliseconds"},
                   "by": {"type": ["string", "null"],
                          "description": "who set it: a Unix user, or api:<fingerprint>"},
                   "user": {"type": ["string", "null"]}, "channel": {"type": ["string", "null"]},
                   "ip": {"type": ["string", "null"]}},
}
_ONE_BAN = {"type": "object", "properties": {"ban": {"$ref": "#/components/schemas/Ban"}}}
_LIFTED = {"type": "object", "properties": {"lifted": {
    "type": "boolean", "description": "false: none was in force"}}}
_SECONDS = {"type": "number", "exclusiveMinimum": 0, "description": "how long, in seconds"}
_IP = {"type": "string", "description": "an address or range, like 203.0.113.0/24"}
_ERROR = {
    "type": "object", "required": ["error", "message"],
    "properties": {"error": {"type": "string"}, "message": {"type": "string"},
                   "retry_after_ms": {"type": "integer"}},
}


def _refusals(*statuses: int) -> dict[str, Any]:
    text = {400: "a field is missing or invalid (the message names it)",
            401: "no or invalid API key", 403: "refused by moderation",
            404: "unknown user", 409: "the same idempotency_key is still in progress",
            413: "the body is larger than api.max_body", 429: "over the API key's request budget (api.rate, api.burst)",
            503: "the message cache or database is unavailable"}
    return {str(s): {"description": text[s],
                     "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            for s in statuses}


def _post(summary: str, required: list[str], props: dict[str, Any], reply: dict[str, Any],
          *statuses: int, any_of: list[list[str]] | None = None) -> dict[str, Any]:
    """A POST operation; ``any_of``: alternative sets of required fields (one must be given)."""
    schema: dict[str, Any] = {"type": "object", "required": required, "properties": props}
    if any_of:
        schema["anyOf"] = [{"required": r} for r in any_of]
    return {"post": {
        "summary": summary, "security": [{"apiKey": []}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
        "responses": {"200": {"description": "done", "content": {"application/json": {
            "schema": reply}}}, **_refusals(400, 401, 413, 429, *statuses)}}}


def _get(summary: str, params: list[tuple[str, bool, dict[str, Any]]], reply: dict[str, Any]
         ) -> dict[str, Any]:
    return {"get": {
        "summary": summary, "security": [{"apiKey": []}],
        "parameters": [{"name": n, "in": "query", "required": req, "schema": schema}
                       for n, req, schema in params],
        "responses": {"200": {"description": "done", "content": {"application/json": {
            "schema": reply}}}, **_refusals(400, 401, 429, 503)}}}


def document(cfg: Config) -> dict[str, Any]:
    """The OpenAPI document for this daemon's limits."""
    text = {"type": "string", "minLength": 1, "maxLength": cfg.server.max_text_chars}
    msg_ref = {"$ref": "#/components/schemas/Message"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "chathub HTTP API", "version": __version__,
                 "description": "Publish, whisper, list, kick, ban, mute and delete on a chathub "
                                "daemon (docs/api.md)."},
        "servers": [{"url": "/api/v1"}],
        "components": {
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Message": _MESSAGE, "Error": _ERROR, "Ban": _BAN},
        },
        "paths": {
            "/publish": _post(
                "Post a chat into a channel", ["channel", "text", "from"],
                {"channel": _CHANNEL, "text": text,
                 "from": {**_NAME, "description": "a user name or one of api.system_names"},
                 "idempotency_key": {"type": "string", "maxLength": 128}},
                msg_ref, 403, 409, 503),
            "/whisper": _post(
                "Whisper to an online user from a system name", ["to", "text", "from"],
                {"to": _NAME, "text": text,
                 "from": {"type": "string", "enum": list(cfg.api.system_names)}},
                msg_ref, 403, 404, 503),
            "/kick": _post(
                "Close every connection of a user on every hub, or with channel take them "
                "out of that channel only", ["user"],
                {"user": _NAME, "reason": {"type": "string", "maxLength": 200},
                 "channel": {"type": "string", "description": "a channel name"}},
                {"type": "object", "properties": {"user": {"type": "string"},
                                                  "closed": {"type": "integer"},
                                                  "channel": {"type": "string"}}}, 503),
            "/delete": _post(
                "Delete a message on every hub (history, paging and recovery never serve it "
                "again; clients showing it remove it)", ["id"],
                {"id": {"type": "string", "description": "the message id, <ms>-<seq>"},
                 "channel": {**_CHANNEL, "description": "its channel (a check; ids are unique)"}},
                {"type": "object", "properties": {
                    "id": {"type": "string"}, "channel": {"type": ["string", "null"]},
                    "deleted": {"type": "boolean",
                                "description": "false: no such message, or deleted before"}}},
                503),
            "/purge": _post(
                "Delete every message a user sent in the last `seconds` (at most 30 days)",
                ["user", "seconds"],
                {"user": _NAME, "seconds": {"type": "number", "exclusiveMinimum": 0,
                                            "maximum": MAX_PURGE_SECONDS},
                 "channel": {**_CHANNEL, "description": "only this channel (default: every "
                                                        "channel and whispers)"}},
                {"type": "object", "properties": {
                    "user": {"type": "string"}, "deleted": {"type": "integer"},
                    "ids": {"type": "array", "items": {"type": "string"}}}},
                503),
            "/ban": _post(
                "Ban a user (from one channel when given) or an address range, on every hub: "
                "their connections close with 4004 and upgrades get 403", [],
                {"user": _NAME, "ip": _IP,
                 "channel": {**_CHANNEL, "description": "only this channel (a user ban)"},
                 "seconds": {**_SECONDS, "description": "how long, in seconds; default: "
                                                        "until lifted"},
                 "reason": {"type": "string", "maxLength": 200}},
                _ONE_BAN, 503, any_of=[["user"], ["ip"]]),
            "/unban": _post(
                "Lift a ban of a user (in a channel) or an address range on every hub", [],
                {"user": _NAME, "ip": _IP, "channel": _CHANNEL},
                _LIFTED, 503, any_of=[["user"], ["ip"]]),
            "/mute": _post(
                "Mute a user on every hub: connected and reading, but chat and whisper are "
                "refused with `muted` and retry_after_ms", ["user", "seconds"],
                {"user": _NAME, "seconds": _SECONDS,
                 "reason": {"type": "string", "maxLength": 200}},
                _ONE_BAN, 503),
            "/unmute": _post("Lift a user's mute on every hub", ["user"], {"user": _NAME},
                             _LIFTED, 503),
            "/bans": _get("Bans and mutes in force (valkey false: this hub's copy, Valkey "
                          "being down)", [],
                          {"type": "object", "properties": {
                              "bans": {"type": "array",
                                       "items": {"$ref": "#/components/schemas/Ban"}},
                              "valkey": {"type": "boolean"}}}),
            "/users": _get("Users online (in a channel when given)",
                           [("channel", False, _CHANNEL)],
                           {"type": "object", "properties": {
                               "users": {"type": "array", "items": {"type": "string"}},
                               "channel": {"type": "string"}}}),
            "/channels": _get("Public channels and their member counts", [],
                              {"type": "object", "properties": {"channels": {
                                  "type": "array", "items": {"type": "object", "properties": {
                                      "name": {"type": "string"},
                                      "members": {"type": "integer"}}}}}}),
            "/history": _get("Messages of a channel older than `before`, oldest first",
                             [("channel", True, _CHANNEL),
                              ("before", False, {"type": "string"}),
                              ("limit", False, {"type": "integer", "minimum": 1,
                                                "maximum": 200})],
                             {"type": "object", "properties": {
                                 "channel": {"type": "string"},
                                 "messages": {"type": "array", "items": msg_ref}}}),
        },
    }
