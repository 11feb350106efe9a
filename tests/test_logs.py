"""Logging: one line per connect, disconnect and kick, as text or JSON."""

from __future__ import annotations

import json

from chathub.admin.client import call
from tests.helpers import Chatter, wait_for


async def test_json_log_has_one_line_per_event(spawn):
    """--log-format json: every line is a JSON object; connect, kick, disconnect each appear once."""
    proc = await spawn(log={"format": "json", "level": "INFO"})
    c = await Chatter.connect(proc.port, "loggy")
    sock = proc.config.parent / proc.config.stem / "admin.sock"
    assert (await call(sock, "kick", user="loggy", reason="log test"))["closed"] == 1
    await c.ws.wait_closed()

    def lines() -> list[dict]:
        return [json.loads(ln) for ln in proc.log.read_text().splitlines() if ln.strip()]

    await wait_for(lambda: any("disconnect loggy" in r["message"] for r in lines()), what="disconnect logged")
    records = lines()
    assert all({"ts", "level", "logger", "message"} <= set(r) for r in records)
    messages = [r["message"] for r in records]
    assert sum(m.startswith("connect loggy") for m in messages) == 1
    assert sum(m.startswith("kicked loggy") for m in messages) == 1
    assert sum(m.startswith("disconnect loggy") and "reason=log test" in m for m in messages) == 1
