"""A fake daemon for dashboard layout tests: the admin protocol over a real Unix socket,
answering from fixed figures.

    async with FakeAdmin(path, replies) as fake:
        app = DashApp(path, ...)

``replies`` maps a command to the fields of its reply; ``subscribe`` answers with
``replies["stats"]`` and then pushes nothing, so what the dashboard shows depends on
these figures alone, not on a live daemon's clocks. Entries of ``clients`` may give
``connected_s`` (seconds ago) instead of ``connected_at``, and entries of the stats'
``cluster`` ``last_s`` instead of ``last``, resolved when asked.

With a :class:`FakeModeration` (tests/fakemoderation.py) it also answers ``search``,
``bans``, ``ban``, ``mute``, ``unban``, ``unmute``, ``delete`` and ``purge`` from its
state. Every request is kept in ``requests`` (without its ``id``), in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any

from tests.fakemoderation import FakeModeration


class FakeAdmin:
    """Serves canned admin replies on ``path`` until closed; counts what was asked."""

    def __init__(self, path: Path, replies: dict[str, dict[str, Any]],
                 moderation: FakeModeration | None = None) -> None:
        self.path = path
        self.replies = replies
        self.moderation = moderation
        #: command -> how many times it was asked
        self.asked: dict[str, int] = {}
        #: every request received, oldest first, without its ``id``
        self.requests: list[dict[str, Any]] = []
        #: the connections that sent ``subscribe``, for :meth:`push`
        self._subscribed: list[asyncio.StreamWriter] = []
        self._server: asyncio.AbstractServer | None = None

    async def __aenter__(self) -> FakeAdmin:
        self._server = await asyncio.start_unix_server(self._serve, str(self.path))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2)
        self.path.unlink(missing_ok=True)

    async def push(self, event: dict[str, Any]) -> int:
        """Push ``event`` (``{"event": name, ...}``) to every subscriber; how many."""
        line = json.dumps({"ts": int(time.time() * 1000), **event}).encode() + b"\n"
        for writer in self._subscribed:
            writer.write(line)
            await writer.drain()
        return len(self._subscribed)

    def sent(self, cmd: str) -> list[dict[str, Any]]:
        """The requests of one command, oldest first, without ``id`` and ``cmd``."""
        return [{k: v for k, v in r.items() if k != "cmd"} for r in self.requests
                if r.get("cmd") == cmd]

    def _reply(self, req: dict[str, Any]) -> dict[str, Any]:
        cmd = str(req.get("cmd"))
        self.asked[cmd] = self.asked.get(cmd, 0) + 1
        self.requests.append({k: v for k, v in req.items() if k != "id"})
        if self.moderation is not None and cmd in self.moderation.COMMANDS:
            return self.moderation.answer(cmd, req)
        now = int(time.time() * 1000)
        if cmd in ("subscribe", "stats"):
            stats = dict(self.replies["stats"])
            stats["cluster"] = [{**n, "last": now - int(n.get("last_s", 0) * 1000)}
                                for n in stats.get("cluster", [])]
            return {"subscribed": True, "stats": stats} if cmd == "subscribe" else stats
        if cmd not in self.replies:
            return {"ok": False, "error": f"unknown command {cmd!r}"}
        fields = dict(self.replies[cmd])
        if cmd == "clients":
            fields["clients"] = [
                {**c, "connected_at": now - int(c.get("connected_s", 0) * 1000)}
                for c in fields["clients"]]
        return fields

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                req = json.loads(line)
                if self.moderation is not None:
                    await self.moderation.delay(req)
                reply = {"id": req.get("id"), "ok": True, **self._reply(req)}
                if req.get("cmd") == "subscribe":  # before the reply: then no push is missed
                    self._subscribed.append(writer)
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, ValueError):
            pass
        finally:
            if writer in self._subscribed:
                self._subscribed.remove(writer)
            writer.close()
