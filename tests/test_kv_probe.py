"""The Valkey client's probe: once Valkey is back, the client comes back, whatever a
half-up server answered meanwhile (real Valkey behind a fault proxy)."""

from __future__ import annotations

import logging

from valkey.exceptions import InvalidResponse

from chathub import pkgdata
from chathub.errors import CacheUnavailable
from chathub.functions import Library
from chathub.kv import KV
from tests.faultproxy import FaultProxy
from tests.helpers import wait_for


class Garbled(Library):
    """The installed functions, whose source cannot be read ``failures`` times once armed,
    the way a torn reply surfaces from valkey-py (an error that is no connection error)."""

    def __init__(self, source: str) -> None:
        self.failures = 0
        super().__init__(source)

    @property
    def source(self) -> str:
        if self.failures > 0:
            self.failures -= 1
            raise InvalidResponse("Protocol Error: torn reply")
        return self._source

    @source.setter
    def source(self, value: str) -> None:
        self._source = value


async def test_the_probe_outlives_an_unforeseen_error_and_brings_the_client_back(
        tcp_valkey, key_prefix, caplog):
    """Before, the probe task died of the first error that was neither a connection error
    nor a reply error, silently, and the client stayed down with Valkey up: its hub
    refused every chat and dropped out of the cluster."""
    caplog.set_level(logging.INFO, logger="chathub.kv")
    library = Garbled(pkgdata.read_text("cache.lua"))
    async with FaultProxy(*tcp_valkey) as proxy:
        kv = KV(f"redis://127.0.0.1:{proxy.port}", 0.5, key_prefix, library=library)
        try:
            await kv.connect()
            library.failures = 3
            proxy.cut()
            try:
                await kv.call(kv.client.ping)
            except CacheUnavailable:  # CacheOutcomeUnknown included
                pass
            assert not kv.up
            await wait_for(lambda: kv.up, timeout=10, what="the client back up")
            assert library.failures == 0
            assert await kv.call(kv.client.ping)
            assert caplog.text.count("unexpected InvalidResponse") == 1  # once per kind
        finally:
            await kv.close()
