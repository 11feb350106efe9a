""":class:`APIClient` and :class:`AsyncAPIClient`: chathub's HTTP API from Python.

One request per connection (the daemon answers ``Connection: close``), HTTP/1.1
over plain sockets with no dependency, or over TLS to the proxy in front of the
daemon (``https://``). Requests are built and answers parsed by
the same sans-I/O functions for both (:func:`build`, :func:`parse`); only the
socket differs.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from typing import Any
from urllib.parse import urlencode, urlsplit

from ..client.errors import (
    ChatError,
    Disconnected,
    NotConnected,
    Refused,
    ReplyTimeout,
    error_for,
)

#: the largest answer read (a history page of 200 long messages fits many times)
MAX_RESPONSE = 16 * 1024 * 1024
#: seconds a request may take by default
DEFAULT_TIMEOUT = 10.0
PREFIX = "/api/v1/"
#: error codes of the HTTP layer itself, raised as :class:`Refused` with the status; every
#: other code is a chat protocol code, raised as its typed :class:`ServerError`
HTTP_CODES = frozenset({"unauthorized", "not_found", "method_not_allowed", "in_progress"})


def build(host: str, key: str, method: str, path: str, query: dict[str, Any] | None = None,
          body: dict[str, Any] | None = None) -> bytes:
    """The bytes of one request to ``PREFIX + path``."""
    target = PREFIX + path
    q = {k: v for k, v in (query or {}).items() if v is not None}
    if q:
        target += "?" + urlencode(q)
    data = b"" if body is None else json.dumps(
        {k: v for k, v in body.items() if v is not None}).encode()
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", f"Authorization: Bearer {key}",
             "Accept: application/json", "Connection: close"]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(data)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


def parse(raw: bytes) -> Any:
    """The JSON of a 200 answer.

    Raises:
        ServerError: a refusal with an error code (its typed subclass: RateLimited, ...).
        Refused: any other non-200 status (401 bad key, 404 API off, 413, ...).
        Disconnected: the answer was cut short or is not HTTP.
    """
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise Disconnected("the connection closed before a complete answer")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise Disconnected(f"not an HTTP answer: {status_line[:80]!r}")
    status = int(parts[1])
    if status == 200:
        try:
            return json.loads(body)
        except ValueError:
            raise Disconnected("the answer's body is not complete JSON") from None
    try:
        err = json.loads(body)
    except ValueError:
        err = None
    if isinstance(err, dict) and isinstance(err.get("error"), str) \
            and err["error"] not in HTTP_CODES:
        exc = error_for(err["error"], str(err.get("message", "")), err.get("retry_after_ms"))
        exc.status = status  # type: ignore[attr-defined]
        raise exc
    text = err.get("message", "") if isinstance(err, dict) else body.decode("utf-8", "replace")
    raise Refused(status, text)


class _Base:
    def __init__(self, url: str, key: str, timeout: float = DEFAULT_TIMEOUT,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        """Args:
            url: the daemon's address, ``http://host:port`` (the WebSocket port), or
                ``https://host[:port]``: the TLS proxy in front of it (docs/deploy.md).
            key: one of the daemon's ``api.keys``.
            timeout: seconds each request may take (connect, TLS handshake, send, answer).
            ssl_context: for ``https://``, how to verify the proxy (default: the system's
                certificate authorities, and the host name).

        Raises:
            ValueError: a URL that is neither ``http://`` nor ``https://`` with a host.
        """
        u = urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError("url must be http://host:port (the daemon) or https://host[:port] "
                             "(a TLS proxy in front of it)")
        self.host = u.hostname
        self.port = u.port or (443 if u.scheme == "https" else 80)
        #: None for plain http://
        self.tls = (ssl_context or ssl.create_default_context()) if u.scheme == "https" else None
        self.key = key
        self.timeout = timeout
        self._hostport = u.netloc

    def _req(self, method: str, path: str, query: dict[str, Any] | None = None,
             body: dict[str, Any] | None = None) -> bytes:
        return build(self._hostport, self.key, method, path, query, body)

    def _ban_req(self, user: str | None, ip: str | None, channel: str | None,
                 seconds: float | None, reason: str | None) -> bytes:
        return self._req("POST", "ban", body={"user": user, "ip": ip, "channel": channel,
                                              "seconds": seconds, "reason": reason})

    def _unban_req(self, user: str | None, ip: str | None, channel: str | None) -> bytes:
        return self._req("POST", "unban", body={"user": user, "ip": ip, "channel": channel})

    def _kick_req(self, user: str, reason: str | None, channel: str | None) -> bytes:
        return self._req("POST", "kick", body={"user": user, "reason": reason,
                                               "channel": channel})

    def _delete_req(self, msg_id: str, channel: str | None) -> bytes:
        return self._req("POST", "delete", body={"id": msg_id, "channel": channel})

    def _purge_req(self, user: str, seconds: float, channel: str | None) -> bytes:
        return self._req("POST", "purge", body={"user": user, "seconds": seconds,
                                                "channel": channel})

    def _mute_req(self, user: str, seconds: float, reason: str | None) -> bytes:
        return self._req("POST", "mute", body={"user": user, "seconds": seconds,
                                               "reason": reason})


class APIClient(_Base):
    """Blocking client of the HTTP API; every method is one request."""

    def _call(self, data: bytes) -> Any:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
            if self.tls is not None:
                try:
                    sock = self.tls.wrap_socket(sock, server_hostname=self.host)
                except BaseException:
                    sock.close()
                    raise
        except TimeoutError:
            raise ReplyTimeout(f"no connection within {self.timeout} s") from None
        except OSError as exc:  # ssl.SSLError too: a certificate that does not verify
            raise NotConnected(f"cannot reach {self.host}:{self.port}: {exc}") from None
        chunks: list[bytes] = []
        size = 0
        try:
            with sock:
                sock.sendall(data)
                while size <= MAX_RESPONSE:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
        except TimeoutError:
            raise ReplyTimeout(f"no answer within {self.timeout} s") from None
        except OSError as exc:
            raise Disconnected(f"the connection failed: {exc}") from None
        return parse(b"".join(chunks))

    def publish(self, channel: str, text: str, sender: str = "system",
                idempotency_key: str | None = None) -> dict[str, Any]:
        """Post ``text`` in ``channel`` as ``sender``; the stamped message (``id``, ``ts``)."""
        return self._call(self._req("POST", "publish", body={
            "channel": channel, "text": text, "from": sender,
            "idempotency_key": idempotency_key}))

    def whisper(self, to: str, text: str, sender: str = "system") -> dict[str, Any]:
        """Whisper ``text`` to the online user ``to`` from a system name."""
        return self._call(self._req("POST", "whisper", body={"to": to, "text": text,
                                                             "from": sender}))

    def users(self, channel: str | None = None) -> list[str]:
        """Users online (in ``channel`` when given), sorted."""
        return self._call(self._req("GET", "users", {"channel": channel}))["users"]

    def channels(self) -> list[dict[str, Any]]:
        """Public channels: ``[{"name": ..., "members": n}, ...]``."""
        return self._call(self._req("GET", "channels"))["channels"]

    def history(self, channel: str, before: str | None = None,
                limit: int | None = None) -> list[dict[str, Any]]:
        """Messages of ``channel`` older than ``before`` (newest when None), oldest first."""
        return self._call(self._req("GET", "history", {"channel": channel, "before": before,
                                                       "limit": limit}))["messages"]

    def kick(self, user: str, reason: str | None = None, channel: str | None = None) -> int:
        """Close every connection of ``user`` on every hub, or with ``channel`` take them out
        of it (they stay connected); how many connections."""
        return self._call(self._kick_req(user, reason, channel))["closed"]

    def delete(self, msg_id: str, channel: str | None = None) -> dict[str, Any]:
        """Remove message ``msg_id`` on every hub (checked to be in ``channel`` when given):
        ``{"id", "channel", "deleted"}``, ``deleted`` False when no message has that id or
        it was removed before.

        Raises:
            BadRequest: not a message id, or a bad channel name.
            Unavailable: PostgreSQL or Valkey could not take it (``retry_after``).
        """
        return self._call(self._delete_req(msg_id, channel))

    def purge(self, user: str, seconds: float, channel: str | None = None) -> dict[str, Any]:
        """Remove what ``user`` sent in the last ``seconds`` (at most 30 days; at most 10,000
        messages a call), in ``channel`` only when given: ``{"user", "deleted", "ids"}``.

        Raises:
            BadRequest: a bad name, channel or duration.
            Unavailable: PostgreSQL or Valkey could not take it (``retry_after``).
        """
        return self._call(self._purge_req(user, seconds, channel))

    def ban(self, user: str | None = None, *, ip: str | None = None, channel: str | None = None,
            seconds: float | None = None, reason: str | None = None) -> dict[str, Any]:
        """Ban ``user`` (from ``channel`` only, when given) or the address range ``ip`` on
        every hub for ``seconds`` (None: until lifted); the entry (``scope``, ``until`` in
        epoch ms or None, ``id``, ``by`` = this key's fingerprint, ...).

        Raises:
            BadRequest: neither or both of ``user`` and ``ip``, or a bad field (named).
            Unavailable: PostgreSQL or Valkey could not take it.
        """
        return self._call(self._ban_req(user, ip, channel, seconds, reason))["ban"]

    def unban(self, user: str | None = None, *, ip: str | None = None,
              channel: str | None = None) -> bool:
        """Lift a ban on every hub; False when none was in force."""
        return self._call(self._unban_req(user, ip, channel))["lifted"]

    def mute(self, user: str, seconds: float, reason: str | None = None) -> dict[str, Any]:
        """Mute ``user`` for ``seconds`` on every hub (chat and whisper refused with
        ``muted``); the entry, as :meth:`ban`."""
        return self._call(self._mute_req(user, seconds, reason))["ban"]

    def unmute(self, user: str) -> bool:
        """Lift ``user``'s mute on every hub; False when none was in force."""
        return self._call(self._req("POST", "unmute", body={"user": user}))["lifted"]

    def bans(self) -> list[dict[str, Any]]:
        """Bans and mutes in force, oldest first (entries as :meth:`ban` returns)."""
        return self._call(self._req("GET", "bans"))["bans"]


class AsyncAPIClient(_Base):
    """The same as :class:`APIClient`, each method a coroutine."""

    async def _call(self, data: bytes) -> Any:
        try:
            return parse(await asyncio.wait_for(self._exchange(data), self.timeout))
        except TimeoutError:
            raise ReplyTimeout(f"no answer within {self.timeout} s") from None

    async def _exchange(self, data: bytes) -> bytes:
        try:
            reader, writer = await asyncio.open_connection(
                self.host, self.port, ssl=self.tls,
                server_hostname=self.host if self.tls is not None else None)
        except OSError as exc:  # ssl.SSLError too: a certificate that does not verify
            raise NotConnected(f"cannot reach {self.host}:{self.port}: {exc}") from None
        try:
            writer.write(data)
            await writer.drain()
            return await _read_all(reader)
        except OSError as exc:
            raise Disconnected(f"the connection failed: {exc}") from None
        finally:
            writer.close()

    async def publish(self, channel: str, text: str, sender: str = "system",
                      idempotency_key: str | None = None) -> dict[str, Any]:
        """See :meth:`APIClient.publish`."""
        return await self._call(self._req("POST", "publish", body={
            "channel": channel, "text": text, "from": sender,
            "idempotency_key": idempotency_key}))

    async def whisper(self, to: str, text: str, sender: str = "system") -> dict[str, Any]:
        """See :meth:`APIClient.whisper`."""
        return await self._call(self._req("POST", "whisper", body={"to": to, "text": text,
                                                                   "from": sender}))

    async def users(self, channel: str | None = None) -> list[str]:
        """See :meth:`APIClient.users`."""
        return (await self._call(self._req("GET", "users", {"channel": channel})))["users"]

    async def channels(self) -> list[dict[str, Any]]:
        """See :meth:`APIClient.channels`."""
        return (await self._call(self._req("GET", "channels")))["channels"]

    async def history(self, channel: str, before: str | None = None,
                      limit: int | None = None) -> list[dict[str, Any]]:
        """See :meth:`APIClient.history`."""
        return (await self._call(self._req("GET", "history", {
            "channel": channel, "before": before, "limit": limit})))["messages"]

    async def kick(self, user: str, reason: str | None = None,
                   channel: str | None = None) -> int:
        """See :meth:`APIClient.kick`."""
        return (await self._call(self._kick_req(user, reason, channel)))["closed"]

    async def delete(self, msg_id: str, channel: str | None = None) -> dict[str, Any]:
        """See :meth:`APIClient.delete`."""
        return await self._call(self._delete_req(msg_id, channel))

    async def purge(self, user: str, seconds: float, channel: str | None = None
                    ) -> dict[str, Any]:
        """See :meth:`APIClient.purge`."""
        return await self._call(self._purge_req(user, seconds, channel))

    async def ban(self, user: str | None = None, *, ip: str | None = None,
                  channel: str | None = None, seconds: float | None = None,
                  reason: str | None = None) -> dict[str, Any]:
        """See :meth:`APIClient.ban`."""
        return (await self._call(self._ban_req(user, ip, channel, seconds, reason)))["ban"]

    async def unban(self, user: str | None = None, *, ip: str | None = None,
                    channel: str | None = None) -> bool:
        """See :meth:`APIClient.unban`."""
        return (await self._call(self._unban_req(user, ip, channel)))["lifted"]

    async def mute(self, user: str, seconds: float, reason: str | None = None
                   ) -> dict[str, Any]:
        """See :meth:`APIClient.mute`."""
        return (await self._call(self._mute_req(user, seconds, reason)))["ban"]

    async def unmute(self, user: str) -> bool:
        """See :meth:`APIClient.unmute`."""
        return (await self._call(self._req("POST", "unmute", body={"user": user})))["lifted"]

    async def bans(self) -> list[dict[str, Any]]:
        """See :meth:`APIClient.bans`."""
        return (await self._call(self._req("GET", "bans")))["bans"]


async def _read_all(reader: asyncio.StreamReader) -> bytes:
    """Everything until the daemon closes (it answers ``Connection: close``), bounded."""
    chunks: list[bytes] = []
    size = 0
    while size <= MAX_RESPONSE:
        chunk = await reader.read(65536)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


__all__ = ["APIClient", "AsyncAPIClient", "ChatError", "build", "parse"]
