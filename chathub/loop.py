"""The daemon's runtime: uvloop when installed and enabled (``[server] uvloop``), and
the cyclic garbage collector set for a server that allocates a lot and leaves no cycles."""

from __future__ import annotations

import asyncio
import gc
import logging

log = logging.getLogger("chathub.loop")


def install(use_uvloop: bool) -> str:
    """Set the event-loop policy; return the loop's name."""
    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            log.info("uvloop is not installed; using asyncio's loop")
        else:
            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
            return "uvloop"
    return "asyncio"


#: container allocations (less deallocations) between two young collections; CPython's
#: default is 700. Under chat load the daemon allocates and frees tens of thousands of
#: objects a second and leaves almost no cycles (a 20 s channels benchmark: 165 objects
#: collected in 1,474 collections). At 700 the young collections promote every message
#: in flight, the old generation fills with them, and about every 2 s a full collection
#: stops the hub for about 100 ms. At 10,000 the same run saw no full collection, the
#: channels layout 12-27 % more deliveries per CPU-second and a p99 a third lower
#: (docs/performance.md, "The cyclic garbage collector").
GC_YOUNG_THRESHOLD = 10_000


def tune_gc() -> None:
    """Move everything loaded so far out of the collector's sight (``gc.freeze``: modules,
    config, the objects that live as long as the process) and collect young objects
    every :data:`GC_YOUNG_THRESHOLD` allocations. Cycles are still collected."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)
