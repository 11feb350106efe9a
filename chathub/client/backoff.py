"""Reconnect delays: exponential backoff with jitter and a cap. Sans I/O."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before reconnect attempt ``n`` (0 for the first after a drop), in seconds:
    ``min(cap, initial * factor**n)`` times a random factor in ``[1 - jitter, 1 + jitter]``.

    Jitter keeps many clients dropped at once (a daemon restart) from coming back in
    the same instant.
    """

    #: seconds before the first attempt
    initial: float = 0.5
    #: growth per failed attempt
    factor: float = 2.0
    #: seconds no delay exceeds (before jitter)
    cap: float = 10.0
    #: fraction of the delay randomised either way (0 to 1)
    jitter: float = 0.25
    #: attempts before giving up (None: never give up)
    max_attempts: int | None = None
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.initial < 0 or self.cap < 0 or self.factor < 1 or not 0 <= self.jitter <= 1:
            raise ValueError("Backoff needs initial >= 0, cap >= 0, factor >= 1, 0 <= jitter <= 1")

    def delay(self, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt`` (0-based)."""
        base = min(self.cap, self.initial * self.factor ** min(attempt, 64))
        return base * (1 + self.jitter * (2 * self.rng.random() - 1))

    def gives_up(self, attempt: int) -> bool:
        """Whether attempt ``attempt`` (0-based) is past :attr:`max_attempts`."""
        return self.max_attempts is not None and attempt >= self.max_attempts
