"""Drain progress: when a client's outgoing backlog makes it a slow consumer.

A bytes-only threshold cannot tell a reader that is briefly behind (a burst put
more in its buffer than it has taken yet) from one that stopped. chathub judges
by progress, as NATS does with its write deadline: a client is slow when its
backlog has stayed above ``client_queue_limit`` for longer than ``write_timeout``
seconds without once falling to or below it, or at once when its backlog would
pass ``client_queue_max``, the hard memory cap.

Only writes add to a backlog; between two writes it can only shrink. So the
backlog measured just before a write is the lowest it was since the previous
write: if that is at or below the limit, the client made progress and its clock
starts again. The fan-out measures before and after each write, and a periodic
pass measures clients already above the limit that get no more writes (a reader
that stopped while the room went quiet).

Everything here is pure: numbers in (bytes, monotonic seconds), a decision out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import HubConfig

#: verdict: the backlog stayed above client_queue_limit for longer than write_timeout
TIMED_OUT = "write_timeout"
#: verdict: the backlog would pass client_queue_max
OVER_CAP = "client_queue_max"


@dataclass(frozen=True, slots=True)
class DrainPolicy:
    """The slow-consumer rule for one hub (see the module docstring)."""

    #: bytes of backlog a client may keep for up to ``timeout`` seconds
    limit: int
    #: bytes of backlog no client may pass, however briefly
    cap: int
    #: seconds a backlog may stay above ``limit`` without falling below it
    timeout: float

    def fits(self, backlog: int, size: int) -> bool:
        """Whether ``size`` more bytes may be written to a backlog of ``backlog`` bytes.

        An empty backlog takes any write (the kernel takes what it can at once, and a
        write alone is not a client's fault); otherwise the sum must stay within the cap.
        """
        return backlog == 0 or backlog + size <= self.cap

    def judge(self, over_since: float | None, low: int, high: int,
              now: float) -> tuple[float | None, str | None]:
        """One observation of a client's backlog.

        Args:
            over_since: when the backlog was first seen above the limit without falling
                below it since (monotonic seconds), or None.
            low: the lowest backlog since the previous observation, bytes (the one
                measured just before a write; for a plain sample, the sample).
            high: the backlog now, bytes (after the write, if any).
            now: monotonic seconds.

        Returns:
            ``(over_since, verdict)``: the new ``over_since`` to keep, and None (fine),
            :data:`TIMED_OUT` or :data:`OVER_CAP`.
        """
        if high > self.cap:
            return over_since, OVER_CAP
        if low <= self.limit:
            over_since = None  # it fell to or below the limit: progress, the clock restarts
        if high <= self.limit:
            return None, None
        if over_since is None:
            return now, None
        if now - over_since > self.timeout:
            return over_since, TIMED_OUT
        return over_since, None


def drain_policy(cfg: HubConfig) -> DrainPolicy:
    """The policy the ``[hub]`` keys describe."""
    return DrainPolicy(cfg.client_queue_limit, cfg.client_queue_max, cfg.write_timeout)
