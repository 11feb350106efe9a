"""Running the HTTP API: its actions in the audit trail, its figures on /metrics, and
``[api]`` reloaded by SIGHUP, against real daemons, PostgreSQL and Valkey."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import signal
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from chathub.api import AsyncAPIClient, BadRequest, RateLimited, Refused
from chathub.client import ChatClient, Kicked
from chathub.edge.api import fingerprint
from chathub.reload import ConfigSource

from .helpers import wait_for
from .test_api import KEY, OTHER, client, post, raw


def test_fingerprint_names_a_key_without_revealing_it() -> None:
    """``api:`` and 12 hex digits of the key's SHA-256; different keys, different names."""
    assert fingerprint(KEY) == "api:" + hashlib.sha256(KEY.encode()).hexdigest()[:12]
    assert fingerprint(KEY) != fingerprint(OTHER) and KEY not in fingerprint(KEY)


async def test_api_kick_is_in_the_audit_trail(daemon_factory: Any, db: asyncpg.Connection,
                                              caplog: pytest.LogCaptureFixture) -> None:
    """A kick through the API closes the user's connection and is written to
    ``admin_actions`` by the key's fingerprint; the key itself is neither stored nor logged."""
    caplog.set_level(logging.DEBUG)
    d = await daemon_factory(api={"keys": [KEY, OTHER]})
    async with ChatClient(f"ws://127.0.0.1:{d.port}/ws", user="mallory") as mallory:
        assert await client(d.port, OTHER).kick("mallory", "spam") == 1
        events = [ev async for ev in mallory]
    assert any(isinstance(ev, Kicked) for ev in events), events

    async def written() -> bool:
        return await db.fetchval("SELECT count(*) FROM admin_actions") == 1
    await wait_for(written, what="the kick in admin_actions")
    row = await db.fetchrow("SELECT action, target, arguments, by_uid, by_user FROM admin_actions")
    assert (row["action"], row["target"], row["by_uid"]) == ("kick", "mallory", None)
    assert row["by_user"] == fingerprint(OTHER)
    assert json.loads(row["arguments"]) == {"reason": "spam", "closed": 1}
    listed = (await d.operator().audit.list())["actions"]
    assert [(a["action"], a["by_user"]) for a in listed] == [("kick", fingerprint(OTHER))]
    assert OTHER not in caplog.text and KEY not in caplog.text
    assert fingerprint(OTHER) in caplog.text


async def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics as {(sample name, sorted labels): value}."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = (await asyncio.wait_for(reader.read(), 10)).decode()
    writer.close()
    body = answer.partition("\r\n\r\n")[2]
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body) for s in family.samples}


async def test_api_requests_and_refusals_on_metrics(daemon_factory: Any) -> None:
    """Each answer counts by endpoint and status; 400, 401, 413 and 429 count as refusals
    by reason; a published message is observed in the latency histogram."""
    # a budget of 3 requests and (practically) no refill: the fourth is refused
    d = await daemon_factory(api={"keys": [KEY], "rate": 0.001, "burst": 3})
    c = client(d.port)
    await c.publish("general", "counted", sender="system")
    with pytest.raises(BadRequest):
        await c.publish("general", "", sender="not a name")
    await c.channels()
    with pytest.raises(RateLimited):
        await c.channels()
    for wrong in ("w" * 24, None):
        assert (await raw(d.port, post("publish", b"{}", key=wrong)))[0] == 401
    big = post("publish", b"", extra="").replace(b"Content-Length: 0", b"Content-Length: 70000")
    assert (await raw(d.port, big))[0] == 413

    async def counted() -> bool:  # the 413's count lands as its connection ends
        return (await scrape(d.port)).get(
            ("chathub_api_refusals_total", (("reason", "too_large"),))) == 1.0
    await wait_for(counted, what="the 413 on /metrics")
    m = await scrape(d.port)
    requests = {dict(labels)["endpoint"] + " " + dict(labels)["status"]: v
                for (name, labels), v in m.items() if name == "chathub_api_requests_total"}
    assert requests == {"publish 200": 1, "publish 400": 1, "channels 200": 1,
                        "channels 429": 1, "publish 401": 2, "unknown 413": 1}
    refusals = {dict(labels)["reason"]: v for (name, labels), v in m.items()
                if name == "chathub_api_refusals_total"}
    assert refusals == {"bad_request": 1, "unauthorized": 2, "too_large": 1, "rate_limited": 1}
    assert m[("chathub_api_publish_seconds_count", ())] == 1.0
    assert 0 < m[("chathub_api_publish_seconds_sum", ())] < 5


async def test_sighup_reloads_api_keys_and_budget(spawn: Any) -> None:
    """SIGHUP re-reads ``[api]``: a removed key is refused at once, an added one works, the
    new rate budget applies; ``api.max_body`` is named as needing a restart."""
    proc = await spawn(api={"keys": [KEY, OTHER], "rate": 500.0, "burst": 700})
    url = f"http://127.0.0.1:{proc.port}"
    await AsyncAPIClient(url, OTHER).channels()
    text = proc.config.read_text()
    added = "n" * 24
    assert f'keys = ["{KEY}", "{OTHER}"]' in text and "\nrate = 500.0" in text
    proc.config.write_text(text.replace(f'keys = ["{KEY}", "{OTHER}"]', f'keys = ["{KEY}", "{added}"]')
                           .replace("\nrate = 500.0", "\nrate = 0.001")
                           .replace("\nburst = 700", "\nburst = 2\nmax_body = 2048"))
    os.kill(proc.pid, signal.SIGHUP)

    def logged() -> bool:
        return "reload: applied api.keys, api.rate, api.burst" in proc.log.read_text()
    await wait_for(logged, what="the reload log line")
    (line,) = [ln for ln in proc.log.read_text().splitlines()
               if "cannot change while chathub runs" in ln]
    assert "api.max_body" in line and "api.keys" not in line
    with pytest.raises(Refused) as info:
        await AsyncAPIClient(url, OTHER).channels()
    assert info.value.status == 401
    await AsyncAPIClient(url, added).channels()
    await AsyncAPIClient(url, added).channels()
    with pytest.raises(RateLimited):  # burst 2 now, where it was 700
        await AsyncAPIClient(url, added).channels()
    await AsyncAPIClient(url, KEY).channels()  # KEY's budget was made anew: 2 again
    assert OTHER not in proc.log.read_text() and added not in proc.log.read_text()


def test_api_keys_from_the_environment_outrank_the_file_on_reload(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reload reads the environment as at start: a process's environment does not change,
    so keys from CHATHUB_API_KEYS stay whatever the file now says."""
    path = tmp_path / "chathub.toml"
    path.write_text(f'[api]\nkeys = ["{KEY}"]\n')
    monkeypatch.setenv("CHATHUB_API_KEYS", OTHER)
    assert ConfigSource.resolve(path).load().api.keys == [OTHER]
    path.write_text('[api]\nkeys = []\n')
    assert ConfigSource.resolve(path).load().api.keys == [OTHER]
