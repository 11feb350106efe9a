"""The moderation commands of a fake daemon (tests/fakeadmin.py), answered from state.

``search`` matches whole words in any case (every word must occur), newest first,
paged by id with ``before`` and ``limit``; ``delete`` and ``purge`` remove hits as
the admin-protocol contract says; ``ban``, ``mute``, ``unban`` and ``unmute`` change
the list ``bans`` returns. ``errors`` makes a command answer an error reply, and
``delays`` holds back the answer to a search for some words (seconds).
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any


def hit(mid: str, channel: str, sender: str, text: str, ts: int | None = None) -> dict[str, Any]:
    """A message the fake can find (``ts`` defaults to the id's milliseconds)."""
    return {"id": mid, "channel": channel, "from": sender, "text": text,
            "ts": ts if ts is not None else int(mid.split("-")[0])}


def _key(mid: str) -> tuple[int, int]:
    ms, _, seq = mid.partition("-")
    return int(ms), int(seq or 0)


class FakeModeration:
    """Messages (newest first by id) and bans, changed by the requests received."""

    COMMANDS = frozenset({"search", "bans", "ban", "mute", "unban", "unmute", "delete", "purge"})

    def __init__(self, messages: list[dict[str, Any]], bans: list[dict[str, Any]] | None = None,
                 unflushed: int | None = 0) -> None:
        self.messages = sorted(messages, key=lambda m: _key(m["id"]), reverse=True)
        self.bans = list(bans or [])
        self.unflushed = unflushed
        #: command -> the error its replies carry (``{"ok": false}``)
        self.errors: dict[str, str] = {}
        #: search words -> seconds before the answer is sent
        self.delays: dict[str, float] = {}
        #: search words -> set once their (delayed) answer is made
        self.answered: dict[str, asyncio.Event] = {}

    async def delay(self, req: dict[str, Any]) -> None:
        if req.get("cmd") == "search" and req.get("words") in self.delays:
            await asyncio.sleep(self.delays[req["words"]])

    def answer(self, cmd: str, req: dict[str, Any]) -> dict[str, Any]:
        if cmd in self.errors:
            return {"ok": False, "error": self.errors[cmd]}
        out = getattr(self, f"_{cmd}")(req)
        if cmd == "search":
            self.answered.setdefault(req["words"], asyncio.Event()).set()
        return out

    def _search(self, req: dict[str, Any]) -> dict[str, Any]:
        words = str(req["words"]).lower().split()
        before, limit = req.get("before"), int(req.get("limit", 20))
        found = []
        for m in self.messages:
            if before is not None and _key(m["id"]) >= _key(before):
                continue
            spans = [[x.start(), x.end()] for w in words
                     for x in re.finditer(rf"\b{re.escape(w)}\b", m["text"], re.IGNORECASE)]
            if all(re.search(rf"\b{re.escape(w)}\b", m["text"], re.IGNORECASE) for w in words):
                found.append({**m, "marks": sorted(spans), "rank": 1.0})
        page = found[:limit]
        more = len(found) > limit
        return {"hits": page, "next_before": page[-1]["id"] if more else None,
                "unflushed": self.unflushed}

    def _delete(self, req: dict[str, Any]) -> dict[str, Any]:
        m = next((m for m in self.messages if m["id"] == req["msg"]
                  and req.get("channel") in (None, m["channel"])), None)
        if m is not None:
            self.messages.remove(m)
        return {"msg": req["msg"], "channel": m["channel"] if m else req.get("channel"),
                "deleted": m is not None}

    def _purge(self, req: dict[str, Any]) -> dict[str, Any]:
        since = time.time() * 1000 - float(req["seconds"]) * 1000
        gone = [m for m in self.messages if m["from"] == req["user"] and m["ts"] >= since
                and req.get("channel") in (None, m["channel"])]
        for m in gone:
            self.messages.remove(m)
        return {"user": req["user"], "deleted": len(gone), "ids": [m["id"] for m in gone]}

    def _bans(self, req: dict[str, Any]) -> dict[str, Any]:
        return {"bans": self.bans, "valkey": True}

    def _ban(self, req: dict[str, Any], scope: str | None = None) -> dict[str, Any]:
        user, channel = req.get("user"), req.get("channel")
        scope = scope or ("channel" if channel else "user")
        key = f"{channel} {user}" if channel else user
        seconds = req.get("seconds")
        entry = {"scope": scope, "key": key, "user": user, "channel": channel, "ip": None,
                 "reason": req.get("reason") or "", "id": len(self.bans) + 1,
                 "until": None if seconds is None else int((time.time() + seconds) * 1000),
                 "at": int(time.time() * 1000), "by": "tester"}
        self.bans = [b for b in self.bans if (b["scope"], b["key"]) != (scope, key)] + [entry]
        return {"ban": entry}

    def _mute(self, req: dict[str, Any]) -> dict[str, Any]:
        if req.get("seconds") is None:
            return {"ok": False, "error": "a mute needs a duration (--for)"}
        return self._ban(req, "mute")

    def _unban(self, req: dict[str, Any], mute: bool = False) -> dict[str, Any]:
        channel = req.get("channel")
        scope = "mute" if mute else "ip" if req.get("ip") else "channel" if channel else "user"
        key = req.get("ip") or (f"{channel} {req['user']}" if channel else req["user"])
        kept = [b for b in self.bans if (b["scope"], b["key"]) != (scope, key)]
        lifted, self.bans = len(kept) < len(self.bans), kept
        return {"lifted": lifted}

    def _unmute(self, req: dict[str, Any]) -> dict[str, Any]:
        return self._unban(req, mute=True)
