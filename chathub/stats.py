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
    #: resends of a message stamped already (its first answer was lost), answered with its id
    resends: int = 0
    #: messages from other hubs received on the bus (only for channels with subscribers here)
    remote_messages: int = 0
    connects: int = 0
    #: channel messages accepted on this hub, by channel (the admin socket's rates;
    #: a deleted channel's entry is dropped)
    by_channel: dict[str, int] = field(default_factory=dict)
    #: channel messages from other hubs delivered here, by channel
    by_channel_remote: dict[str, int] = field(default_factory=dict)
    #: what deleted channels had in ``by_channel``, by channel type (public, private),
    #: so that totals by type never go down
    deleted_channels: dict[str, int] = field(default_factory=dict)
    by_error: dict[str, int] = field(default_factory=dict)
    #: finished connections by close reason
    by_close: dict[str, int] = field(default_factory=dict)
    recent_hits: deque[float] = field(default_factory=deque)

    def forget_channel(self, channel: str) -> None:
        """A channel was deleted: drop its counters, keeping its messages in the totals."""
        kind = "private" if channel.startswith("$") else "public"
        n = self.by_channel.pop(channel, 0)
        self.deleted_channels[kind] = self.deleted_channels.get(kind, 0) + n
        self.by_channel_remote.pop(channel, None)

    def channel_messages(self) -> dict[str, int]:
        """Channel messages accepted on this hub by channel type: public, private."""
        out = {"public": 0, "private": 0, **self.deleted_channels}
        for channel, n in self.by_channel.items():
            kind = "private" if channel.startswith("$") else "public"
            out[kind] += n
        return out

    def hits_last_minute(self) -> int:
        cutoff = time.monotonic() - RATE_WINDOW
        while self.recent_hits and self.recent_hits[0] < cutoff:
            self.recent_hits.popleft()
        return len(self.recent_hits)


__all__ = ["HubStats", "RATE_WINDOW"]
