"""The bus subscription: quiet is not dead, a real loss is noticed, counted and healed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
import valkey.asyncio as valkey

from chathub.admin.client import call
from chathub.cluster import bus as bus_mod
from chathub.cluster.bus import Bus
from chathub.kv import KV
from tests.faultproxy import FaultProxy
from tests.helpers import wait_for

#: seconds of silence before the bus PINGs, in these tests (the default is bus.PING_INTERVAL)
FAST_PING = 1.0
#: seconds an idle daemon is watched: longer than valkey-py's default 5 s socket timeout,
#: which is what used to drop the subscription of a quiet daemon
IDLE = 6.0


async def test_idle_daemon_never_resubscribes(daemon_factory, monkeypatch, caplog):
    """Idle for 6 s with a PING every second of silence: every PING is answered, nothing is lost."""
    monkeypatch.setattr(bus_mod, "PING_INTERVAL", FAST_PING)
    daemon = await daemon_factory()
    caplog.set_level(logging.INFO, logger="chathub.cluster.bus")
    await asyncio.sleep(IDLE)  # the point of the test: time passing with nothing on the bus
    assert daemon.node.bus.subscribed and daemon.node.bus.resubscribes == 0
    assert daemon.node.bus.pings >= 4  # liveness was checked several times, and held
    assert "subscription lost" not in caplog.text
    stats = await call(daemon.cfg.admin_socket, "stats")
    assert stats["bus_resubscribes"] == 0


@pytest.fixture
async def proxied_bus(tcp_valkey) -> AsyncIterator[tuple[Bus, FaultProxy, list[dict]]]:
    """A Bus reaching tcp_valkey through a FaultProxy (Valkey timeout 0.5 s, PING after 0.5 s)."""
    proxy = await FaultProxy(*tcp_valkey).start()
    kv = KV(f"redis://127.0.0.1:{proxy.port}", 0.5, "tb:")
    got: list[dict] = []
    bus = Bus(kv, "here", got.append, lambda: None, ping_interval=0.5)
    task = asyncio.create_task(bus.run())
    await bus.wait_subscribed()
    yield bus, proxy, got
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await kv.close()
    await proxy.close()


async def test_unanswered_ping_is_a_loss_then_resubscribes_once(proxied_bus, tcp_valkey, caplog):
    """A stalled link fails the PING: one warning, one resubscription, and messages flow again."""
    bus, proxy, got = proxied_bus
    caplog.set_level(logging.INFO, logger="chathub.cluster.bus")
    proxy.stall()
    await wait_for(lambda: not bus.subscribed, timeout=5, what="loss noticed")
    proxy.resume()
    await wait_for(lambda: bus.subscribed, timeout=5, what="resubscribed")
    assert bus.resubscribes == 1
    assert caplog.text.count("subscription lost") == 1 and "no reply to PING" in caplog.text
    direct = valkey.Valkey(host=tcp_valkey[0], port=tcp_valkey[1])
    try:
        await direct.publish(bus.channel, '{"k": "x", "n": "there"}')
    finally:
        await direct.aclose()
    await wait_for(lambda: got == [{"k": "x", "n": "there"}], what="message after resubscribe")


async def test_a_channel_watched_again_while_lingering_stays_subscribed(valkey_url, key_prefix):
    """Unwatch then watch within the linger: no new SUBSCRIBE (no second on_watching), and a
    message published in between arrives; after the linger the UNSUBSCRIBE goes out."""
    kv = KV(valkey_url, 2.0, key_prefix)
    got: list[dict] = []
    watching: list[str] = []
    dropped: list[str] = []
    bus = Bus(kv, "here", got.append, lambda: None, on_watching=watching.append, linger=0.5,
              on_dropped=dropped.append)
    task = asyncio.create_task(bus.run())
    direct = valkey.from_url(valkey_url, decode_responses=True)
    pubsub_name = bus.keys.pubsub("room")

    async def subscribers() -> int:
        return dict(await direct.pubsub_numsub(pubsub_name))[pubsub_name]

    try:
        await bus.wait_subscribed()
        bus.watch("room")
        await wait_for(lambda: watching == ["room"], what="first subscription live")
        bus.unwatch("room")
        assert "room" in bus.lingering
        await direct.publish(pubsub_name, '{"k": "join", "n": "other", "c": "room", "u": "x"}')
        bus.watch("room")
        assert not bus.lingering
        await wait_for(lambda: len(got) == 1, what="the message sent while lingering")
        assert watching == ["room"] and await subscribers() == 1 and dropped == []
        bus.unwatch("room")
        await wait_for(lambda: not bus.lingering, timeout=5.0, what="linger over")
        assert dropped == ["room"]  # the hub is told its traffic stops (chathub.stamping)

        async def none_left() -> bool:
            return await subscribers() == 0

        await wait_for(none_left, what="unsubscribed")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await direct.aclose()
