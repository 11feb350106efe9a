"""Opening PostgreSQL connections with errors a person can act on."""

from __future__ import annotations

import asyncio
import os
import socket
from urllib.parse import parse_qs, urlparse

import asyncpg

from ..errors import DatabaseUnavailable


def describe(url: str) -> str:
    """Where ``url`` points, for messages: ``host:port/db`` or the socket folder."""
    u = urlparse(url)
    host = u.hostname or parse_qs(u.query).get("host", ["localhost"])[0]
    port = f":{u.port}" if u.port else ""
    return f"{host}{port}{u.path or ''}"


def failure_reason(exc: BaseException) -> str:
    """Why a call to PostgreSQL failed, in a few words (``no server socket there``,
    ``connection refused``, ``timed out``, or the first line of the error)."""
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, FileNotFoundError):
        return "no server socket there"
    if isinstance(exc, socket.gaierror):
        return "unknown host"
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


_CONNECT_ERRORS = (OSError, asyncio.TimeoutError, asyncpg.PostgresError,
                   asyncpg.InterfaceError, socket.gaierror)


async def connect(url: str, timeout: float = 5.0) -> asyncpg.Connection:
    """One connection.

    Raises:
        DatabaseUnavailable: one line: where, and why.
    """
    try:
        return await asyncpg.connect(url, timeout=timeout)
    except _CONNECT_ERRORS as exc:
        raise DatabaseUnavailable(
            f"cannot reach PostgreSQL at {describe(url)}: {failure_reason(exc)}") from None


async def create_pool(url: str, size: int = 4, timeout: float = 5.0) -> asyncpg.Pool:
    """A pool of up to ``size`` connections, opened as they are needed.

    Raises:
        DatabaseUnavailable: one line: where, and why.
    """
    try:
        return await asyncpg.create_pool(
            # min_size=0: a pool with a floor reconnects in the background while
            # PostgreSQL is down and logs a traceback for every try; the flushers already
            # say, once, that PostgreSQL is away
            url, min_size=0, max_size=size, timeout=timeout, command_timeout=timeout * 6,
            server_settings={"application_name": f"chathub-{os.getpid()}"})
    except _CONNECT_ERRORS as exc:
        raise DatabaseUnavailable(
            f"cannot reach PostgreSQL at {describe(url)}: {failure_reason(exc)}") from None


#: seconds a pool may take to close its connections politely at shutdown before they
#: are dropped; on a slow link each goodbye (and each cancelled query's reset) is a round trip
CLOSE_TIMEOUT = 2.0


async def close_pool(pool: asyncpg.Pool, timeout: float = CLOSE_TIMEOUT) -> None:
    """Close ``pool``: politely within ``timeout`` seconds, else by dropping its connections.

    Nothing is lost by dropping them: by then every write the daemon cares about was
    committed or is still pending in Valkey for the next flusher.
    """
    try:
        await asyncio.wait_for(pool.close(), timeout)
    except (TimeoutError, OSError, asyncpg.InterfaceError):
        pool.terminate()
