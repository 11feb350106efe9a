"""The data-dir lock: a second daemon, migrate or worker refuses and removes nothing."""

from __future__ import annotations

import asyncio
import fcntl
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from chathub.admin.client import call
from chathub.datadir import ENV_FD, LOCK_NAME, DataDirLock, claim
from chathub.errors import DataDirLocked
from chathub.services import EmbeddedPostgres, EmbeddedValkey
from tests.procs import START_TIMEOUT, DaemonProcess, _healthy, free_port

# -- the lock itself ---------------------------------------------------------------------


def test_second_lock_refused_with_pid_then_free_after_release(short_dir):
    """A held lock refuses a second taker with the holder's pid; once released it is free."""
    first = DataDirLock(short_dir / "d").acquire()
    assert (short_dir / "d" / LOCK_NAME).read_text().strip() == str(os.getpid())
    with pytest.raises(DataDirLocked, match=f"another chathub daemon is running: pid {os.getpid()} "):
        DataDirLock(short_dir / "d").acquire()
    first.release()
    first.release()  # idempotent
    again = DataDirLock(short_dir / "d").acquire()
    again.release()
    assert (short_dir / "d" / LOCK_NAME).exists()  # the file stays; only the lock goes


def _dead_pid() -> int:
    """The pid of a process that has exited (what a SIGKILLed holder leaves in the file)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _take_without_writing(path: Path) -> int:
    """Hold the lock on ``path`` the way a starting holder does before it writes its pid."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


@pytest.mark.parametrize("command", [["serve"], ["serve", "--workers", "2"], ["migrate"]])
def test_a_data_dir_that_cannot_be_made_is_one_line(short_dir, command):
    """A file where the data dir (or a parent) should be: serve, serve --workers and
    migrate stop with one line naming the data dir, exit 1 (they were tracebacks). In a
    subprocess: serve sets up logging and the event loop policy of its process."""
    blocker = short_dir / "file"
    blocker.write_text("not a folder")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATHUB_")}
    for data_dir in (blocker, blocker / "sub"):
        result = subprocess.run([sys.executable, "-m", "chathub.cli", *command, "--data-dir",
                                 str(data_dir)], capture_output=True, text=True, env=env,
                                timeout=60)
        assert result.returncode == 1, result.stderr
        lines = [ln for ln in result.stderr.splitlines() if "chathub.fdlimit" not in ln]
        assert lines == [f"chathub: cannot use data dir {data_dir}: a file is in the way "
                         f"({data_dir})"], result.stderr


def test_refusal_waits_for_the_starting_holder_and_never_names_the_dead_one(short_dir):
    """A lock taken but not yet written, over a dead holder's pid: the refusal names the
    new holder once it writes, not the dead pid left in the file."""
    path = short_dir / LOCK_NAME
    path.write_text(f"{_dead_pid()}\n")
    fd = _take_without_writing(path)
    writer = threading.Timer(0.2, lambda: os.pwrite(fd, f"{os.getpid()}\n".encode(), 0))
    writer.start()
    try:
        with pytest.raises(DataDirLocked, match=f"pid {os.getpid()} holds"):
            DataDirLock(short_dir).acquire()
    finally:
        writer.join()
        os.close(fd)


def test_refusal_says_another_process_when_no_live_pid_appears(short_dir, monkeypatch):
    """A holder that never writes, over a dead pid: the refusal names no pid at all."""
    monkeypatch.setattr("chathub.datadir.HOLDER_PID_WAIT", 0.1)
    path = short_dir / LOCK_NAME
    dead = _dead_pid()
    path.write_text(f"{dead}\n")
    fd = _take_without_writing(path)
    try:
        with pytest.raises(DataDirLocked, match="another process holds") as refused:
            DataDirLock(short_dir).acquire()
        assert str(dead) not in str(refused.value)
    finally:
        os.close(fd)


def test_adopt_needs_the_descriptor_that_holds_the_lock(short_dir):
    """A descriptor of the lock file that does not hold the lock, or of another file, is refused."""
    held = DataDirLock(short_dir).acquire()
    other = os.open(short_dir / LOCK_NAME, os.O_RDONLY)
    unrelated = os.open(short_dir, os.O_RDONLY)
    try:
        with pytest.raises(DataDirLocked, match="does not hold it"):
            claim(short_dir, {ENV_FD: str(other)})
        with pytest.raises(DataDirLocked, match="does not hold it"):
            claim(short_dir, {ENV_FD: str(unrelated)})
        with pytest.raises(DataDirLocked, match="not a descriptor"):
            claim(short_dir, {ENV_FD: "x"})
        dup = os.dup(held.fd)  # what a worker inherits: the same open file
        adopted = claim(short_dir, {ENV_FD: str(dup)})
        assert adopted.fd == dup
        adopted.release()
    finally:
        os.close(other)
        os.close(unrelated)
        held.release()


# -- daemons -----------------------------------------------------------------------------


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATHUB_")}
    return subprocess.run([sys.executable, "-m", "chathub.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env=env, check=False)


def _embedded_config(short_dir: Path) -> tuple[Path, Path]:
    data = short_dir / "data"
    cfg = short_dir / "c.toml"
    cfg.write_text(f'data_dir = "{data}"\n')
    return cfg, data


async def test_second_serve_and_migrate_on_live_data_dir_remove_nothing(short_dir):
    """serve and migrate refuse on a live data dir naming the pid; the admin socket still answers."""
    cfg, data = _embedded_config(short_dir)
    first = await DaemonProcess(cfg, free_port(), short_dir / "1.log").start()
    try:
        for args in (("serve", "--config", str(cfg), "--port", str(free_port())),
                     ("serve", "--config", str(cfg), "--port", str(free_port()), "--workers", "2"),
                     ("migrate", "--config", str(cfg))):
            res = await asyncio.to_thread(_cli, *args)
            assert res.returncode == 1, (args, res.stderr)
            lines = res.stderr.strip().splitlines()
            assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
            assert "another chathub daemon is running" in lines[0] and f"pid {first.pid} " in lines[0]
            if args[0] == "migrate":  # and why there is nothing to do meanwhile
                assert lines[0].endswith("that daemon migrated the embedded database when it "
                                         "started (stop it to run migrate)"), lines[0]
            assert (await call(data / "admin.sock", "hello"))["pid"] == first.pid, args
        assert EmbeddedPostgres(data).is_running() and EmbeddedValkey(data).is_running()
        assert await first.terminate() == 0
    finally:
        first.stop()
    assert not (data / "admin.sock").exists()


async def test_serve_after_sigkill_takes_the_lock_and_adopts(short_dir):
    """A SIGKILLed daemon's lock is free: the next serve starts, adopts the services, owns the lock."""
    cfg, data = _embedded_config(short_dir)
    first = await DaemonProcess(cfg, free_port(), short_dir / "1.log").start()
    first.kill()
    second = await DaemonProcess(cfg, free_port(), short_dir / "2.log").start()
    try:
        assert (data / LOCK_NAME).read_text().strip() == str(second.pid)
        assert (await call(data / "admin.sock", "hello"))["pid"] == second.pid
        assert "adopting embedded" in (short_dir / "2.log").read_text()
        assert await second.terminate() == 0
    finally:
        second.stop()


async def test_two_concurrent_serves_exactly_one_wins(short_dir):
    """Two serves started together on a fresh data dir: one runs, the other refuses and removes nothing."""
    cfg, data = _embedded_config(short_dir)
    ports = [free_port(), free_port()]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATHUB_")}
    procs = [subprocess.Popen([sys.executable, "-m", "chathub.cli", "serve", "--config", str(cfg),
                               "--port", str(p)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, env=env) for p in ports]
    try:
        deadline = time.monotonic() + START_TIMEOUT
        loser = None
        while loser is None and time.monotonic() < deadline:
            loser = next((i for i, p in enumerate(procs) if p.poll() is not None), None)
            await asyncio.sleep(0.05)
        assert loser is not None, "neither serve refused"
        winner = 1 - loser
        assert procs[loser].returncode == 1
        err = procs[loser].stderr.read()  # type: ignore[union-attr]
        assert "another chathub daemon is running" in err and f"pid {procs[winner].pid} " in err, err
        while not await _healthy(ports[winner]):
            assert procs[winner].poll() is None and time.monotonic() < deadline, "winner did not start"
            await asyncio.sleep(0.05)
        assert (await call(data / "admin.sock", "hello"))["pid"] == procs[winner].pid
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(30)
    assert procs[winner].returncode == 0
    assert not EmbeddedValkey(data).is_running() and not EmbeddedPostgres(data).is_running()


async def test_workers_share_the_parent_lock_and_a_second_serve_refuses(spawn):
    """--workers 2: both workers answer on their sockets; a second serve refuses; sockets still answer."""
    proc = await spawn(workers=2)
    data = proc.config.parent / proc.config.stem
    socks = [data / "admin.sock", data / "admin-1.sock"]

    async def both_answer() -> bool:
        try:
            return all([await call(s, "hello") for s in socks])
        except Exception:
            return False

    deadline = time.monotonic() + START_TIMEOUT
    while not await both_answer():
        assert time.monotonic() < deadline, "workers did not answer"
        await asyncio.sleep(0.05)
    assert (data / LOCK_NAME).read_text().strip() == str(proc.pid)
    res = await asyncio.to_thread(_cli, "serve", "--config", str(proc.config), "--port", str(free_port()))
    assert res.returncode == 1 and f"pid {proc.pid} " in res.stderr, res.stderr
    assert await both_answer()
    assert await proc.terminate() == 0
    assert not any(s.exists() for s in socks)
