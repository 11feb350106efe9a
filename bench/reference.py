"""The reference: a bare ``websockets`` broadcast server speaking just enough of chathub's protocol.

It answers a ``welcome`` first and echoes every ``chat`` frame to every connection
with ``websockets.broadcast``, in the shape of chathub's chat frame. No hub, no
Valkey, no PostgreSQL, no validation: the floor that chathub's figures are compared
with. ``GET /healthz`` reports the open connections (the harness waits on it).

    python -m bench.reference --port 8765
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import signal
import time
from http import HTTPStatus

import websockets
from websockets.asyncio.server import ServerConnection, serve

CONNECTED: set[ServerConnection] = set()
_seq = itertools.count()


def process_request(conn: ServerConnection, request):  # type: ignore[no-untyped-def]
    if request.path.startswith("/healthz"):
        body = json.dumps({"status": "ok", "connections": len(CONNECTED)})
        return conn.respond(HTTPStatus.OK, body + "\n")
    return None


async def handler(ws: ServerConnection) -> None:
    user = ws.request.path.partition("user=")[2].partition("&")[0] or "anon"
    await ws.send(json.dumps({"type": "welcome", "user": user, "session": "ref", "users": [],
                              "history": [], "protocol": 1}, separators=(",", ":")))
    CONNECTED.add(ws)
    try:
        async for data in ws:
            msg = json.loads(data)
            if msg.get("type") == "chat":
                ms = int(time.time() * 1000)
                frame = {"type": "chat", "id": f"{ms}-{next(_seq)}", "from": user,
                         "text": msg["text"], "ts": ms}
                websockets.broadcast(CONNECTED, json.dumps(frame, separators=(",", ":")))
    finally:
        CONNECTED.discard(ws)


async def main(host: str, port: int) -> None:
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(handler, host, port, process_request=process_request, compression=None,
                     ping_interval=20, max_queue=None):
        await stop


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8765)
    args = ap.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(main(args.host, args.port))
    else:
        uvloop.run(main(args.host, args.port))
