"""Idempotency keys of the HTTP API's ``publish`` (docs/api.md).

A request carrying an ``idempotency_key`` runs once per (API key, idempotency key)
within ``api.idempotency_window`` seconds, on every hub: the first marks the key
"pending" in Valkey, publishes, then stores its result; a repeat returns the stored
result with ``"replayed": true``, or waits (bounded) while the first is pending.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from ..kv import KV

#: seconds a repeated idempotency_key waits for the first request's result
IDEMPOTENCY_WAIT = 5.0
#: seconds between two looks at a pending key (the first request runs elsewhere)
POLL = 0.05


class InProgress(Exception):
    """The first request with this key is still running after :data:`IDEMPOTENCY_WAIT`."""


async def once(kv: KV, secret: bytes, idem: str, window: float,
               send: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """Run ``send`` once per (``secret``, ``idem``) within ``window`` seconds; its result.

    Nothing secret is written to Valkey: the slot is named by digests of both keys.

    Raises:
        InProgress: a first request is still pending after :data:`IDEMPOTENCY_WAIT` s.
        CacheUnavailable: Valkey is down (from :meth:`KV.call`).
        Whatever ``send`` raises (the slot is then freed for a retry).
    """
    who = hashlib.sha256(secret).hexdigest()[:16]
    slot = kv.key("api", "idem", who, hashlib.sha256(idem.encode()).hexdigest())
    client = kv.client
    ttl = max(1, int(window))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + IDEMPOTENCY_WAIT
    while loop.time() < deadline:
        if await kv.call(client.set, slot, "pending", nx=True, ex=ttl):
            try:
                result = await send()
            except BaseException:
                await kv.call(client.delete, slot)
                raise
            await kv.call(client.set, slot, json.dumps(result), ex=ttl)
            return result
        stored = await kv.call(client.get, slot)
        if stored is None:  # the first attempt failed meanwhile: try to be the first
            continue
        if isinstance(stored, bytes):
            stored = stored.decode()
        if stored != "pending":
            return {**json.loads(stored), "replayed": True}
        await asyncio.sleep(POLL)  # the first request is in another task or on another hub
    raise InProgress
