"""A small client for the admin socket, used by ``chathub kick|status`` and the dashboard.

    async with AdminClient(path) as admin:
        stats = await admin.request("stats")
        async for event in admin.subscribe():
            ...

It speaks only the admin protocol (docs/admin-protocol.md): nothing here imports
the hub.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ..errors import AdminError

#: seconds to wait for a reply before giving up
REQUEST_TIMEOUT = 5.0
#: longest line accepted from the daemon, bytes (a clients list can be long)
MAX_LINE = 64 * 1024 * 1024


class AdminClient:
    """One connection to a daemon's admin socket."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._reader_task: asyncio.Task[None] | None = None

    async def connect(self) -> dict[str, Any]:
        """Connect and say hello; returns the daemon's ``hello`` reply.

        Raises:
            AdminError: no daemon answers on the socket, or this user may not use it.
        """
        try:
            self._reader, self._writer = await asyncio.open_unix_connection(str(self.path), limit=MAX_LINE)
        except PermissionError:
            raise AdminError(
                f"permission denied on the admin socket {self.path}: only the user the daemon "
                "runs as may use it (mode 0600); run this command as that user") from None
        except (OSError, ValueError) as exc:
            # absolute: the default socket is under ./.chathub, so a command run in another
            # directory than the daemon's says where it looked
            raise AdminError(f"no chathub daemon answers on {self.path.absolute()} "
                             f"({exc.strerror or exc})") from None
        self._reader_task = asyncio.create_task(self._read())
        try:
            return await self.request("hello")
        except BaseException:
            await self.close()
            raise

    async def __aenter__(self) -> AdminClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._reader_task is not None:
            self._reader_task.cancel()
        if self._writer is not None:
            self._writer.close()
            try:
                await self._writer.wait_closed()
            except (ConnectionError, OSError):
                pass

    async def _read(self) -> None:
        assert self._reader is not None
        try:
            while True:
                line = await self._reader.readline()
                if not line:
                    break
                msg = json.loads(line)
                fut = self._pending.pop(msg.get("id"), None) if "id" in msg else None
                if fut is not None and not fut.done():
                    fut.set_result(msg)
                elif "event" in msg:
                    self._events.put_nowait(msg)
        except (ConnectionError, ValueError, asyncio.CancelledError):
            pass
        finally:
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(AdminError("the daemon closed the admin connection"))
            self._pending.clear()
            self._events.put_nowait(None)

    async def request(self, cmd: str, **fields: Any) -> dict[str, Any]:
        """Send one command; return its reply.

        Raises:
            AdminError: the daemon answered with an error, or went away.
        """
        if self._writer is None:
            raise AdminError("not connected")
        rid = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        try:
            self._writer.write(json.dumps({"id": rid, "cmd": cmd, **fields}).encode() + b"\n")
            await self._writer.drain()
        except (ConnectionError, OSError):
            raise AdminError("the daemon closed the admin connection") from None
        try:
            reply = await asyncio.wait_for(fut, REQUEST_TIMEOUT)
        except TimeoutError:
            raise AdminError(f"no reply to {cmd!r} within {REQUEST_TIMEOUT:.0f}s") from None
        finally:
            self._pending.pop(rid, None)
        if not reply.get("ok"):
            raise AdminError(reply.get("error", "error"))
        return reply

    async def subscribe(self) -> AsyncIterator[dict[str, Any]]:
        """Subscribe and yield events until the daemon goes away.

        The first event is a ``stats`` snapshot taken as the subscription started: once
        it arrives, no later event can be missed. Then ``stats`` follows every second,
        and other events as they happen.
        """
        reply = await self.request("subscribe")
        yield {"event": "stats", **reply["stats"]}
        while True:
            ev = await self._events.get()
            if ev is None:
                return
            yield ev


async def call(path: str | Path, cmd: str, **fields: Any) -> dict[str, Any]:
    """Connect, send one command, return the reply, disconnect."""
    async with AdminClient(path) as admin:
        return await admin.request(cmd, **fields)
