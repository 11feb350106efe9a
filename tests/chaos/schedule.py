"""A fixed-seed schedule of faults for a chaos run.

:func:`make_schedule` turns (seed, duration) into a list of :class:`Fault`, one after
another with quiet gaps between them, so that each close a client sees can be put
down to the fault that was active then. Every kind appears once before any repeats
(a short run still meets each of them), in an order and with durations the seed picks.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Any

#: the kinds of fault, and what each does
KINDS = {
    "hub_kill": "SIGKILL one hub, start it again after `down` seconds",
    "valkey_kill": "SIGKILL Valkey (AOF, fsync every second), start it again after `down` s",
    "pg_stop": "stop PostgreSQL (fast shutdown) for `down` seconds",
    "pg_slow": "add 2 s per round trip on the link to PostgreSQL for `down` seconds",
    "valkey_slow": "add `latency` s per round trip on the link to Valkey for `down` seconds",
    "client_drop": "drop `count` clients' TCP connections; they reconnect with ?since=",
}
#: seconds of calm before the first fault and after the last
MARGIN = 4.0


@dataclass
class Fault:
    """One fault: ``kind`` starts at ``at`` (seconds into the run) and lasts ``down`` s."""

    kind: str
    at: float
    down: float
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def end(self) -> float:
        return self.at + self.down

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _one(kind: str, at: float, rng: random.Random, short: bool, hubs: int) -> Fault:
    if kind == "hub_kill":
        return Fault(kind, at, rng.uniform(1.0, 4.0), {"hub": rng.randrange(hubs)})
    if kind == "valkey_kill":
        return Fault(kind, at, rng.uniform(1.0, 3.0))
    if kind == "pg_stop":
        return Fault(kind, at, 10.0 if short else rng.uniform(10.0, 30.0))
    if kind == "pg_slow":
        return Fault(kind, at, rng.uniform(3.0, 8.0), {"latency": 2.0})
    if kind == "valkey_slow":
        return Fault(kind, at, rng.uniform(2.0, 5.0), {"latency": rng.choice([0.05, 0.2, 2.0])})
    return Fault(kind, at, 0.0, {"count": rng.randint(3, 8), "seed": rng.randrange(1 << 30)})


def make_schedule(seed: int, duration: float, hubs: int = 3) -> list[Fault]:
    """Faults for a run of ``duration`` seconds; the same seed gives the same schedule."""
    rng = random.Random(seed)
    short = duration < 120
    faults: list[Fault] = []
    t = MARGIN
    bag: list[str] = []
    while True:
        if not bag:
            bag = list(KINDS)
            rng.shuffle(bag)
        f = _one(bag.pop(), t, rng, short, hubs)
        if f.end + MARGIN > duration:
            break
        faults.append(f)
        t = f.end + rng.uniform(2.0, 5.0)
    return faults
