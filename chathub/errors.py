"""chathub's exceptions, with one root.

    ChathubError
    ├── ConfigError          a bad key or value; the CLI prints it and exits 2
    ├── ServiceError         an embedded service would not start or stop
    │   └── DataDirLocked    another process holds the data-dir lock (it names the pid)
    ├── DatabaseUnavailable  PostgreSQL cannot be reached (also ConnectionError)
    ├── CacheUnavailable     Valkey cannot be reached (also ConnectionError)
    ├── MigrationError       a migration cannot be applied or was changed after it was
    └── AdminError           the admin socket: no daemon, or an error reply
"""

from __future__ import annotations


class ChathubError(Exception):
    """Root of every error chathub raises on purpose."""


class ConfigError(ChathubError, ValueError):
    """A configuration key is unknown, mistyped or impossible. The message names it."""


class ServiceError(ChathubError, RuntimeError):
    """An embedded PostgreSQL or Valkey could not be started."""


class DataDirLocked(ServiceError):
    """Another chathub process holds the data dir's lock; the message names its pid."""


class DatabaseUnavailable(ChathubError, ConnectionError):
    """PostgreSQL cannot be reached; the message says where and why.

    ``retry_after_ms``, when set, is what a client is told to wait before asking again.
    """

    def __init__(self, message: str, retry_after_ms: int | None = None) -> None:
        super().__init__(message)
        self.retry_after_ms = retry_after_ms


class CacheUnavailable(ChathubError, ConnectionError):
    """Valkey cannot be reached or did not answer in time."""


class MigrationError(ChathubError, RuntimeError):
    """The schema cannot be brought up to date (or is behind, for ``serve``)."""


class AdminError(ChathubError, RuntimeError):
    """The admin socket has no daemon behind it, or the daemon answered with an error."""
