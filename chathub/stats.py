"""HubStats: the counters the hub and fan-out keep, read by the figures snapshot."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

#: seconds of rate-limit hits kept for the "last minute" figure
RATE_WINDOW = 60.0

@dataclass
class HubStats:
    """Counters the admin socket and /metrics read (through :mod:`chathub.figures`);
    only the hub, its fan-out and the connection handlers write them, all on the loop."""

    messages_in: int = 0
    #: accepted messages by type (chat, whisper)
    by_type: dict[str, int] = field(default_factory=dict)
    deliveries_out: int = 0
    rate_limit_hits: int = 0
    slow_consumers: int = 0
    kicks: int = 0
    #: messages from other hubs received on the bus (only for channels with subscribers here)
    remote_messages: int = 0
    connects: int = 0
    by_error: dict[str, int] = field(default_factory=dict)
    #: finished connections by close reason
    by_close: dict[str, int] = field(default_factory=dict)
    recent_hits: deque[float] = field(default_factory=deque)

    def hits_last_minute(self) -> int:
        cutoff = time.monotonic() - RATE_WINDOW
        while self.recent_hits and self.recent_hits[0] < cutoff:
            self.recent_hits.popleft()
        return len(self.recent_hits)


__all__ = ["HubStats", "RATE_WINDOW"]
