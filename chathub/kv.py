"""The Valkey connection every part of the daemon shares, with an availability switch.

:class:`KV` wraps one ``valkey.asyncio`` client. When a call fails with a
connection error or times out, KV marks Valkey *down*: further calls fail at
once with :class:`CacheUnavailable` (no caller waits on a dead server) while a
probe pings every :data:`PROBE_INTERVAL` seconds. When Valkey answers again,
the functions in ``cache.lua`` are loaded again, listeners are told, and calls
flow. Use :meth:`call` for everything on the hot path.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import valkey.asyncio as valkey
from valkey.exceptions import ConnectionError as VConnectionError
from valkey.exceptions import ResponseError
from valkey.exceptions import TimeoutError as VTimeoutError

from .errors import CacheOutcomeUnknown, CacheUnavailable
from .functions import Library, packaged
from .tasks import bounded
from .valkeywire import pool_options

log = logging.getLogger("chathub.kv")

#: seconds between pings while Valkey is down
PROBE_INTERVAL = 0.5
#: connections in the client's pool (hub loop, flushers, session records, admin, probes);
#: callers beyond it wait up to the Valkey timeout for a free one
POOL_SIZE = 32

T = TypeVar("T")
#: a password given as a query parameter of a Valkey URL
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)
_DOWN_ERRORS = (VConnectionError, VTimeoutError, asyncio.TimeoutError, OSError)


def _before_sending(exc: BaseException) -> bool:
    """Whether a failure happened before the request could reach Valkey: connecting
    failed (refused, unreachable). Anything else (a timeout, a reset mid-call) leaves
    the outcome unknown."""
    return isinstance(exc, ConnectionRefusedError) or (
        isinstance(exc, VConnectionError) and "connecting" in str(exc))


def redact(url: str) -> str:
    """``url`` for messages and logs: a password in it (``user:PASSWORD@`` or
    ``?password=``) becomes ``***`` (``redis://app:***@cache:6379/0``); the rest is kept,
    to say where."""
    parts = urlsplit(url)
    if parts.password is not None:
        host = parts.netloc.rpartition("@")[2]
        url = url.replace(parts.netloc, f"{parts.username or ''}:***@{host}", 1)
    return _QUERY_PASSWORD.sub(r"\1***", url)


class KV:
    """One Valkey client plus an up/down switch; see the module docstring."""

    def __init__(self, url: str, timeout: float, prefix: str = "chathub:",
                 library: Library | None = None) -> None:
        """``library``: the functions to load and call (default: the installed ones,
        read when first needed)."""
        self.url = url
        self._library = library
        #: ``url`` without its password, for messages and logs
        self.where = redact(url)
        self.prefix = prefix
        #: whether the last call reached Valkey
        self.up = False
        self.timeout = timeout
        # A blocking pool: when every connection is busy a caller waits (back-pressure)
        # instead of failing with "Too many connections", which is no outage.
        settings = dict(
            max_connections=POOL_SIZE, timeout=timeout, socket_timeout=timeout,
            socket_connect_timeout=timeout, decode_responses=True, retry=None,
            retry_on_error=[], retry_on_timeout=False, health_check_interval=0)
        # options in the URL's query string win, as in valkey-py's from_url
        pool = valkey.BlockingConnectionPool(**{**settings, **pool_options(url)})
        self.client = valkey.Valkey(connection_pool=pool)
        self._probe: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[bool], None]] = []
        self._closed = False

    @property
    def library(self) -> Library:
        """The Valkey functions this client loads and calls (:mod:`chathub.functions`).

        Raises:
            PackageDataMissing: the installed chathub lacks ``cache.lua``.
        """
        if self._library is None:
            self._library = packaged()
        return self._library

    def fn(self, function: str) -> str:
        """The name to ``FCALL`` for ``function`` of ``cache.lua`` (without ``chathub_``)."""
        return self.library.name(function)

    def key(self, *parts: str) -> str:
        """A key under the configured prefix: ``key("msgs")`` → ``chathub:msgs``."""
        return self.prefix + ":".join(parts)

    def on_change(self, listener: Callable[[bool], None]) -> None:
        """Call ``listener(up)`` whenever Valkey goes down or comes back."""
        self._listeners.append(listener)

    async def connect(self) -> None:
        """Reach Valkey and load the server-side functions.

        Raises:
            CacheUnavailable: Valkey cannot be reached now.
        """
        try:
            await bounded(self._load(), self.timeout * 2)
        except _DOWN_ERRORS as exc:
            raise CacheUnavailable(f"cannot reach Valkey at {self.where}: {exc or type(exc).__name__}") from None
        self._set(True)

    async def _load(self) -> None:
        await self.client.ping()
        # This version's library only: hubs of another version sharing this Valkey keep theirs.
        await self.client.function_load(self.library.source, replace=True)
        log.info("Valkey functions loaded as library %s", self.library.library)

    def _set(self, up: bool) -> None:
        if up == self.up:
            return
        self.up = up
        if up:
            log.info("Valkey is reachable at %s", self.where)
        else:
            log.warning("Valkey is unreachable at %s; chat answers 'unavailable' until it returns", self.where)
            if self._probe is None or self._probe.done():
                self._probe = asyncio.get_running_loop().create_task(self._probe_loop())
        for listener in self._listeners:
            try:
                listener(up)
            except Exception:  # a listener must not break the switch
                log.exception("Valkey availability listener failed")

    async def _probe_loop(self) -> None:
        """Ping every :data:`PROBE_INTERVAL` until Valkey answers and takes the functions.

        Nothing else ends it (but :meth:`close`): while it runs no other probe starts, so
        a probe that stopped would leave this client down for good while Valkey is up
        (its hub refusing every chat and missing from the cluster). An error of a kind
        not foreseen is logged once per kind and the probing goes on; an attempt that
        does not finish within the timeout is abandoned, not awaited (``bounded``: the
        cleanup of a command cancelled on a dead link must not hold the probe).
        """
        unforeseen: set[type[BaseException]] = set()
        while not self._closed and not self.up:
            await asyncio.sleep(PROBE_INTERVAL)
            try:
                await bounded(self._load(), self.timeout)
            except (*_DOWN_ERRORS, ResponseError):
                continue
            except Exception as exc:  # a probe must outlive whatever a half-up server says
                if type(exc) not in unforeseen:
                    unforeseen.add(type(exc))
                    log.warning("Valkey probe at %s: unexpected %r; probing on", self.where, exc)
                continue
            self._set(True)

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Await ``fn(*args)`` against Valkey, or fail fast while it is down.

        Raises:
            CacheUnavailable: Valkey is down or just failed.
        """
        if not self.up:
            raise CacheUnavailable("Valkey is unreachable")
        try:
            return await fn(*args, **kwargs)
        except _DOWN_ERRORS as exc:
            self._set(False)
            why = f"Valkey is unreachable: {exc or type(exc).__name__}"
            if _before_sending(exc):
                raise CacheUnavailable(why) from None
            raise CacheOutcomeUnknown(why) from None
        except ResponseError as exc:
            if "Function not found" in str(exc):  # Valkey restarted without our functions
                self._set(False)
                raise CacheUnavailable("Valkey lost chathub's functions; reloading") from None
            raise

    async def close(self) -> None:
        """Stop probing and close the client's connections."""
        self._closed = True
        if self._probe is not None:
            self._probe.cancel()
        try:
            await self.client.aclose()
        except Exception:  # closing a dead connection may fail; nothing to do
            pass
