"""A TCP proxy for tests that makes a service slow, stalled or cut, on command.

:class:`FaultProxy` listens on ``127.0.0.1:0`` and forwards every connection to
``target_host:target_port``. While it runs, a test can:

- :meth:`~FaultProxy.set_latency`: hold each chunk for some seconds before
  forwarding it, per direction (``up``: client → target, ``down``: target →
  client). Chunks of one connection keep their order, so latency also caps
  throughput, as a slow link does;
- :meth:`~FaultProxy.stall` / :meth:`~FaultProxy.resume`: stop forwarding
  (connections stay open, bytes wait in the proxy and then in the kernel) and
  start again;
- :meth:`~FaultProxy.cut`: abort every open connection on both sides (new ones
  are still accepted).

Two ways to run it:

- in the test's own event loop (pytest-asyncio fixtures): ``proxy = await
  FaultProxy(host, port).start()`` … ``await proxy.close()``;
- in a background thread with a loop of its own, for daemons in subprocesses
  or blocking code: ``with FaultProxy(host, port).in_thread() as proxy: ...``.

The control methods can be called from any thread in either mode. Only loopback
addresses are used; the proxy never listens elsewhere.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

#: bytes read from one side in one go (one "chunk" for the latency setting)
CHUNK = 64 * 1024
#: seconds the background thread has to start or stop its loop
THREAD_TIMEOUT = 5.0


class FaultProxy:
    """A loopback TCP proxy with run-time faults; see the module docstring."""

    def __init__(self, target_host: str, target_port: int, listen_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.listen_host = listen_host
        #: port the proxy listens on (set by :meth:`start`)
        self.port = 0
        #: seconds each chunk waits before it is forwarded, per direction
        self.latency = {"up": 0.0, "down": 0.0}
        #: connections accepted since start
        self.accepted = 0
        #: bytes forwarded, per direction
        self.forwarded = {"up": 0, "down": 0}
        self._flowing: asyncio.Event | None = None
        self._server: asyncio.AbstractServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._transports: set[asyncio.WriteTransport] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) to connect to instead of the target."""
        return self.listen_host, self.port

    # -- lifecycle (in the loop that runs the proxy) ------------------------------------

    async def start(self) -> FaultProxy:
        """Listen on an ephemeral loopback port; returns self."""
        self._loop = asyncio.get_running_loop()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, self.listen_host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        """Stop listening and drop every connection. Idempotent."""
        if self._server is not None:
            self._server.close()
            self._server = None
        self._cut_now()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @contextlib.contextmanager
    def in_thread(self) -> Iterator[FaultProxy]:
        """Run the proxy in a daemon thread with its own loop for the ``with`` block.

        Raises:
            TimeoutError: the loop did not start within THREAD_TIMEOUT seconds.
        """
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="faultproxy", daemon=True)
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.start(), loop).result(THREAD_TIMEOUT)
            yield self
        finally:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self.close(), loop).result(THREAD_TIMEOUT)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(THREAD_TIMEOUT)
            loop.close()

    # -- faults (any thread) ------------------------------------------------------------

    def set_latency(self, up: float = 0.0, down: float = 0.0) -> None:
        """Hold each chunk ``up`` s (client → target) and ``down`` s (target → client)."""
        self.latency = {"up": up, "down": down}

    def stall(self) -> None:
        """Stop forwarding in both directions; connections stay open."""
        self._in_loop(lambda: self._flowing.clear())  # type: ignore[union-attr]

    def resume(self) -> None:
        """Forward again, starting with what waited during the stall."""
        self._in_loop(lambda: self._flowing.set())  # type: ignore[union-attr]

    def cut(self) -> None:
        """Abort every open connection, both sides (peers see a reset)."""
        self._in_loop(self._cut_now)

    def _in_loop(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` in the proxy's loop and return once it ran."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("the proxy is not started")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            fn()
            return
        done: concurrent.futures.Future[None] = concurrent.futures.Future()

        def call() -> None:
            try:
                fn()
                done.set_result(None)
            except BaseException as exc:  # handed to the caller's thread
                done.set_exception(exc)

        loop.call_soon_threadsafe(call)
        done.result(THREAD_TIMEOUT)

    def _cut_now(self) -> None:
        for tr in list(self._transports):
            tr.abort()
        self._transports.clear()

    # -- forwarding ---------------------------------------------------------------------

    async def _accept(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            t_reader, t_writer = await asyncio.open_connection(*self.target)
        except OSError:
            c_writer.transport.abort()
            return
        pair = (c_writer.transport, t_writer.transport)
        self._transports.update(pair)  # type: ignore[arg-type]
        up = asyncio.create_task(self._pump(c_reader, t_writer, "up"))
        down = asyncio.create_task(self._pump(t_reader, c_writer, "down"))
        self._tasks.update((up, down))
        try:
            await asyncio.gather(up, down, return_exceptions=True)
        finally:
            self._tasks.difference_update((up, down))
            for tr in pair:
                self._transports.discard(tr)  # type: ignore[arg-type]
                tr.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    direction: str) -> None:
        flowing = self._flowing
        assert flowing is not None
        try:
            while True:
                chunk = await reader.read(CHUNK)
                if not chunk:
                    break
                delay = self.latency[direction]
                if delay > 0:
                    await asyncio.sleep(delay)
                await flowing.wait()
                writer.write(chunk)
                self.forwarded[direction] += len(chunk)
                await writer.drain()
            # the peer finished sending: pass the half-close on
            with contextlib.suppress(OSError):
                if writer.can_write_eof():
                    writer.write_eof()
        except (ConnectionError, OSError):
            writer.transport.abort()
