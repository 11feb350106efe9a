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
from collections.abc import Mapping
from pathlib import Path

from .errors import DataDirLocked

#: the lock file inside the data dir
LOCK_NAME = "chathub.lock"
#: environment variable through which a ``--workers`` parent passes its lock descriptor
ENV_FD = "CHATHUB_LOCK_FD"


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
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        # O_CLOEXEC: embedded servers started later must not inherit (and outlive us with) it.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise DataDirLocked(self._refusal(holder)) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
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
                holder = _read_pid(f.fileno())
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


def _read_pid(fd: int) -> int | None:
    """The pid written in the lock file (None when it is empty: the holder is just starting)."""
    try:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None
