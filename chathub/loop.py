"""The event loop: uvloop when installed and enabled (``[server] uvloop``)."""

from __future__ import annotations

import asyncio
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
