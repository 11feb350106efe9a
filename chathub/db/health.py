"""Is PostgreSQL there, and how slow: a probe beside the hub loop.

The flushers learn that PostgreSQL is down only when a write fails, and with nothing
to write (a quiet hub) they never try. :class:`PostgresProbe` asks ``SELECT 1``
every :data:`PROBE_INTERVAL` seconds through the daemon's pool, with a deadline, so
``/healthz``, ``chathub status`` and the dashboard say "down" within seconds of
PostgreSQL stopping, and "slow" while its round trips take longer than
:data:`SLOW_AFTER`. Nothing waits for it: the hub and the flushers read its flags.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import asyncpg

from ..tasks import bounded

log = logging.getLogger("chathub.db.health")

#: seconds between probes
PROBE_INTERVAL = 1.0
#: seconds a probe may take before PostgreSQL counts as down: far above a healthy round
#: trip (well under 10 ms), above a slow one that still serves (a few seconds)
PROBE_TIMEOUT = 5.0
#: seconds of round trip above which PostgreSQL counts as slow (still up)
SLOW_AFTER = 0.5

_PROBE_ERRORS = (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


class PostgresProbe:
    """Flags ``up`` and ``slow`` from a periodic ``SELECT 1``; see the module docstring."""

    def __init__(self, pool: asyncpg.Pool, on_change: Callable[[bool], None] | None = None,
                 interval: float = PROBE_INTERVAL, timeout: float = PROBE_TIMEOUT,
                 slow_after: float = SLOW_AFTER) -> None:
        """``on_change(up)`` is called when the probe sees PostgreSQL go or come back."""
        self.pool = pool
        self.on_change = on_change
        self.interval = interval
        self.timeout = timeout
        self.slow_after = slow_after
        #: whether the last probe was answered
        self.up = True
        #: seconds the last answered probe took
        self.round_trip: float | None = None
        #: perf_counter() when the probe in flight was sent (None between probes)
        self._sent: float | None = None

    @property
    def slow(self) -> bool:
        """PostgreSQL answers, but slower than ``slow_after``: the last probe took longer,
        or the one in flight is taking longer already."""
        if not self.up:
            return False
        if self._sent is not None and time.perf_counter() - self._sent > self.slow_after:
            return True
        return self.round_trip is not None and self.round_trip > self.slow_after

    async def check(self) -> bool:
        """Probe once; update the flags; return ``up``."""
        self._sent = started = time.perf_counter()
        try:
            await bounded(self.pool.fetchval("SELECT 1"), self.timeout)
        except _PROBE_ERRORS as exc:
            self._sent = None
            if self.up:
                log.warning("PostgreSQL does not answer (%s); messages and sessions wait in Valkey",
                            str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            self._set(False)
            return False
        self._sent = None
        was_slow, self.round_trip = self.slow, time.perf_counter() - started
        if self.slow and not was_slow:
            log.warning("PostgreSQL is slow: %.1f s for SELECT 1", self.round_trip)
        self._set(True)
        return True

    def _set(self, up: bool) -> None:
        if up != self.up:
            self.up = up
            if self.on_change is not None:
                self.on_change(up)

    async def run(self) -> None:
        """Probe every ``interval`` seconds, forever."""
        while True:
            await self.check()
            await asyncio.sleep(self.interval)
