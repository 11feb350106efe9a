"""Daemons as real subprocesses, for tests that SIGKILL or SIGTERM one."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: seconds a daemon subprocess has to start listening
START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(path: Path, data_dir: Path, sections: dict[str, dict[str, Any]]) -> Path:
    lines = [f"data_dir = {_toml_value(str(data_dir))}"]
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in values.items())
    path.write_text("\n".join(lines) + "\n")
    return path


class DaemonProcess:
    """``chathub serve`` in a subprocess; ``port`` is where it listens."""

    def __init__(self, config: Path, port: int, log: Path, workers: int = 1,
                 preexec: Callable[[], None] | None = None) -> None:
        self.config = config
        #: run in the child before exec (e.g. to set resource limits)
        self.preexec = preexec
        self.port = port
        self.log = log
        self.workers = workers
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> DaemonProcess:
        args = [sys.executable, "-m", "chathub.cli", "serve", "--config", str(self.config),
                "--port", str(self.port)]
        if self.workers != 1:
            args += ["--workers", str(self.workers)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHATHUB_")}
        with self.log.open("ab") as out:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env,
                                         preexec_fn=self.preexec)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            if await _healthy(self.port):
                return self
            await asyncio.sleep(0.05)
        raise AssertionError(f"daemon did not start: {self.log.read_text()[-2000:]}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL: no goodbye, no flush."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    async def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait for the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return await asyncio.to_thread(self.proc.wait, timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


async def _healthy(port: int) -> bool:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        data = await asyncio.wait_for(reader.read(200), 2)
        return data.startswith(b"HTTP/1.1 200")
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()


def proc_status(pid: int, key: str) -> int:
    """A memory figure of /proc/<pid>/status in bytes (``VmRSS``, ``VmHWM``, ...)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"{key} not in /proc/{pid}/status")
