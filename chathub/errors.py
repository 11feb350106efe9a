"""chathub's exceptions, with one root.

    ChathubError
    ├── ConfigError          a bad key or value; the CLI prints it and exits 2
    ├── ServiceError         an embedded service would not start or stop
    │   └── DataDirLocked    another process holds the data-dir lock (it names the pid)
    ├── PackageDataMissing   a file chathub reads at run time is not installed (pkgdata)
    ├── DatabaseUnavailable  PostgreSQL cannot be reached (also ConnectionError)
    ├── CacheUnavailable     Valkey cannot be reached (also ConnectionError)
    ├── MigrationError       a migration cannot be applied or was changed after it was
    ├── AdminError           the admin socket: no daemon, or an error reply
    ├── ProtocolError        a client frame that cannot be served (errorcodes.py; an error frame)
    ├── TokenError           a token refused at the upgrade (edge/auth.py; HTTP 401)
    ├── AmbiguousHeader      a deciding header sent twice (edge/routes.py; HTTP 403/401)
    │   └── AmbiguousQuery   a deciding query parameter sent twice (HTTP 400/401)
    ├── MalformedHeader      a proxy header that cannot be read (edge/proxies.py; ignored)
    ├── SubscriptionLost     the bus's pub/sub connection died (cluster/bus.py; resubscribe)
    └── RegistrationFailed   a connection could not join the hub; it carries the close

Each also subclasses the standard type a caller would catch (``ValueError``,
``ConnectionError``, ``RuntimeError``).
"""

from __future__ import annotations

from typing import Any


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


class CacheOutcomeUnknown(CacheUnavailable):
    """Valkey failed while a request was on its way (a timeout, a reset): it may have
    been carried out. A stamp that fails so may have stored the message."""


class MigrationError(ChathubError, RuntimeError):
    """The schema cannot be brought up to date (or is behind, for ``serve``)."""


class RegistrationFailed(ChathubError, ConnectionError):
    """A connection could not be registered with the hub; close it with :attr:`close`
    (a :class:`chathub.closecodes.Close`: 1001 while stopping, 1011 on a fault)."""

    def __init__(self, close: Any) -> None:
        super().__init__(str(getattr(close, "reason", close)))
        self.close = close


class AdminError(ChathubError, RuntimeError):
    """The admin socket has no daemon behind it, or the daemon answered with an error."""
