"""The data-dir lock: one chathub process tree owns a data dir at a time.

A daemon (``chathub serve``), the ``--workers`` parent and ``chathub migrate`` on
the embedded database take an exclusive ``flock`` on ``<data_dir>/chathub.lock``
before they touch anything else in the data dir, and hold it for their lifetime.
A second one refuses on the lock with one line naming the pid written in the file,
and leaves every file, socket and embedded server alone. The kernel drops the lock
when the last descriptor of the holder closes, so a SIGKILLed daemon leaves no
lock behind; the file itself stays (it is never removed: removing a lock file that
someone may be about to lock splits the lock in two).

Workers (the ``--workers`` decision): the parent holds the data-dir lock and hands
its descriptor to each worker it starts (``pass_fds``, number in the environment
variable :data:`ENV_FD`). A worker checks that the descriptor is the lock file and
that the lock on it is held through that very descriptor (``flock`` on a descriptor
of the same open file succeeds; on any other it would fail), so a worker cannot be
started by hand on a live data dir by setting the variable. Workers share the
parent's lock rather than take locks of their own: there is one owner of the data
dir, the process tree, and while any member lives the dir stays locked (a worker
that outlives a SIGKILLed parent still keeps a new daemon from starting beside it).
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Mapping
from pathlib import Path

from .errors import DataDirLocked, ServiceError

#: the lock file inside the data dir
LOCK_NAME = "chathub.lock"
#: environment variable through which a ``--workers`` parent passes its lock descriptor
ENV_FD = "CHATHUB_LOCK_FD"
#: how long a refused process waits for the holder to write its pid (seconds): the
#: holder writes it right after taking the lock, so only a start racing ours is
#: caught between the two; past this the refusal says "another process"
HOLDER_PID_WAIT = 2.0
#: pause between two reads of the lock file while waiting for the holder's pid (seconds)
HOLDER_PID_POLL = 0.01


class DataDirLock:
    """The exclusive lock on one data dir; :meth:`acquire` it, :meth:`release` at exit."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(data_dir)
        self.path = self.dir / LOCK_NAME
        #: the descriptor holding the lock (None: not held)
        self.fd: int | None = None

    @property
    def held(self) -> bool:
        return self.fd is not None

    def acquire(self) -> DataDirLock:
        """Lock the data dir (creating it) and write this pid into the lock file; returns self.

        Raises:
            DataDirLocked: another process holds the lock; the message names its pid.
            ServiceError: the data dir cannot be created or written (one line: why).
        """
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            # O_CLOEXEC: embedded servers started later must not inherit (and outlive us with) it.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            why = "a file is in the way" if isinstance(exc, FileExistsError | NotADirectoryError) \
                else (exc.strerror or type(exc).__name__).lower()
            raise ServiceError(f"cannot use data dir {self.dir}: {why} "
                               f"({exc.filename or self.path})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = _holder_pid(fd)
            finally:
                os.close(fd)
            raise DataDirLocked(self._refusal(holder)) from None
        except BaseException:
            os.close(fd)
            raise
        # Overwrite, then cut: a reader never sees an empty file, only the old pid
        # (a dead process, which _holder_pid waits past) or this one.
        pid = f"{os.getpid()}\n".encode()
        os.pwrite(fd, pid, 0)
        os.ftruncate(fd, len(pid))
        self.fd = fd
        return self

    def adopt(self, fd: int) -> DataDirLock:
        """Take over the lock descriptor a ``--workers`` parent passed down; returns self.

        Raises:
            DataDirLocked: ``fd`` is not this data dir's lock file, or does not hold its lock.
        """
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            if same:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # already ours: a no-op
        except (OSError, BlockingIOError):
            same = False
        if not same:
            with open(self.path, "rb") as f:
                holder = _holder_pid(f.fileno())
            raise DataDirLocked(self._refusal(holder) + f" ({ENV_FD}={fd} does not hold it)")
        os.set_inheritable(fd, False)
        self.fd = fd
        return self

    def release(self) -> None:
        """Close the descriptor. Idempotent.

        No ``LOCK_UN``: workers share the open file, and an unlock would free the lock
        for all of them; the kernel frees it when the last descriptor closes.
        """
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def _refusal(self, holder: int | None) -> str:
        who = f"pid {holder}" if holder else "another process"
        return f"another chathub daemon is running: {who} holds the lock on {self.path}"


def claim(data_dir: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> DataDirLock:
    """The lock of a daemon: adopted from a ``--workers`` parent when :data:`ENV_FD` is set,
    else acquired.

    Raises:
        DataDirLocked: the data dir is locked by another process.
    """
    env = os.environ if environ is None else environ
    lock = DataDirLock(data_dir)
    passed = env.get(ENV_FD)
    if passed:
        try:
            fd = int(passed)
        except ValueError:
            raise DataDirLocked(f"{ENV_FD}={passed!r} is not a descriptor number") from None
        return lock.adopt(fd)
    return lock.acquire()


def _holder_pid(fd: int) -> int | None:
    """The pid of the live process named in the lock file, waiting up to
    :data:`HOLDER_PID_WAIT` for the holder to write it; None when none appears.

    Between a holder's ``flock`` and its write, the file is empty or names the previous
    holder, which may be long dead (a SIGKILLed daemon leaves its pid behind); naming
    that pid would send the operator after the wrong process.
    """
    deadline = time.monotonic() + HOLDER_PID_WAIT
    while True:
        pid = _read_pid(fd)
        if pid is not None and _alive(pid):
            return pid
        if time.monotonic() >= deadline:
            return None
        time.sleep(HOLDER_PID_POLL)


def _alive(pid: int) -> bool:
    """Whether a process with this pid exists (signal 0 checks without sending)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True


def _read_pid(fd: int) -> int | None:
    """The pid written in the lock file (None when it is empty: the holder is just starting)."""
    try:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None
