"""Configuration rules: the values a :class:`~chathub.config.Config` may not hold.

:func:`validate` checks ranges (ports, sizes in bytes, durations in seconds, rates per
second), choices among named values, and how keys bear on each other (a frame limit
that admits the longest text, a backlog cap above its limit, auto-join channels that
fit the channel limits). It runs at the end of every :func:`chathub.configload.load`
(a reload's included), after the types were checked.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from .clientframes import max_frame_bytes
from .config import Config
from .edge import proxies
from .errors import ConfigError
from .identifiers import is_private, valid_channel, valid_user

#: longest path a Unix socket may have, in bytes (``sun_path`` holds 108 with the NUL)
MAX_SOCKET_PATH = 107

#: URL schemes asyncpg accepts for [database] url
DATABASE_SCHEMES = ("postgresql", "postgres")
#: URL schemes the Valkey client accepts for [valkey] url
VALKEY_SCHEMES = ("redis", "rediss", "valkey", "valkeys", "unix")


def validate(cfg: Config, source: str = "configuration",
             origins: Mapping[str, str] | None = None, *, serving: bool = True) -> None:
    """Refuse impossible values.

    Args:
        cfg: a configuration whose keys have the schema's types.
        source: where it came from, for the message (a file path, or "configuration").
        origins: where single keys came from when not from ``source``
            (``{"server.port": "command-line flags"}``,
            ``{"server.port": "environment (CHATHUB_SERVER_PORT)"}``).
        serving: the configuration is a daemon's. False for the commands that only reach
            a daemon or its database: they leave out the rules on what only the daemon
            uses (the token secret, which the daemon's unit may keep in an environment
            the operator's shell does not have).

    Raises:
        ConfigError: ``"<section>.<key> in <source>: <what it must be>"``, for the first
            key that breaks a rule, naming the layer that set that key.
    """
    origins = origins or {}

    def need(cond: bool, key: str, what: str) -> None:
        if not cond:
            raise ConfigError(f"{key} in {origins.get(key, source)}: {what}")

    s = cfg.server
    need(0 <= s.port <= 65535, "server.port", f"must be 0-65535, got {s.port}")
    need(s.max_message_bytes >= 256, "server.max_message_bytes", "must be at least 256")
    need(s.max_text_chars >= 1, "server.max_text_chars", "must be at least 1")
    frame = max_frame_bytes(s.max_text_chars)
    need(s.max_message_bytes >= frame, "server.max_message_bytes",
         f"must be at least {frame} to admit server.max_text_chars = {s.max_text_chars} in the "
         "worst legal JSON encoding (12 bytes a character); raise it or lower max_text_chars")
    need(s.ping_interval >= 0, "server.ping_interval", "must not be negative")
    need(s.ping_timeout > 0, "server.ping_timeout", "must be positive")
    need(s.handshake_timeout > 0, "server.handshake_timeout", "must be positive")
    need(s.drain_timeout > 0, "server.drain_timeout", "must be positive")
    need(s.socket_send_buffer >= 0, "server.socket_send_buffer", "must not be negative")
    need(s.max_frames_per_second >= 0, "server.max_frames_per_second", "must not be negative")
    need(s.max_connections >= 1, "server.max_connections", "must be at least 1")
    need(s.max_connections_per_ip >= 1, "server.max_connections_per_ip", "must be at least 1")
    need(s.connect_rate_per_ip > 0, "server.connect_rate_per_ip", "must be positive")
    need(s.connect_burst_per_ip >= 1, "server.connect_burst_per_ip", "must be at least 1")
    try:
        proxies.parse_networks(s.trusted_proxies)
    except ValueError as exc:
        need(False, "server.trusted_proxies", str(exc))
    need(cfg.hub.client_queue_limit >= 1024, "hub.client_queue_limit", "must be at least 1024 bytes")
    need(cfg.hub.write_timeout > 0, "hub.write_timeout", "must be more than 0 seconds")
    need(cfg.hub.client_queue_max >= cfg.hub.client_queue_limit, "hub.client_queue_max",
         f"must be at least hub.client_queue_limit ({cfg.hub.client_queue_limit} bytes)")
    need(cfg.hub.slow_consumer_policy == "close", "hub.slow_consumer_policy", "must be \"close\"")
    need(cfg.hub.ingest_batch >= 1, "hub.ingest_batch", "must be at least 1")
    need(cfg.hub.node_ttl >= 1, "hub.node_ttl", "must be at least 1 second")
    need(cfg.database.pool_size >= 1, "database.pool_size", "must be at least 1")
    need(cfg.database.timeout > 0, "database.timeout", "must be positive")
    need(cfg.valkey.timeout > 0, "valkey.timeout", "must be positive")
    for key, url, schemes in (("database.url", cfg.database.url, DATABASE_SCHEMES),
                              ("valkey.url", cfg.valkey.url, VALKEY_SCHEMES)):
        scheme = url.partition("://")[0].lower() if "://" in url else ""
        need(not url or scheme in schemes, key,
             f"must start with {' or '.join(s + '://' for s in schemes)} (or be empty: embedded)")
    c = cfg.cache
    need(c.history_size >= 1, "cache.history_size", "must be at least 1")
    need(0 <= c.history_on_join <= c.history_size, "cache.history_on_join",
         "must be between 0 and cache.history_size")
    need(c.flush_interval > 0, "cache.flush_interval", "must be positive")
    need(c.flush_batch >= 1, "cache.flush_batch", "must be at least 1")
    need(c.recover_limit >= 1, "cache.recover_limit", "must be at least 1")
    r = cfg.ratelimit
    for kind in ("chat", "whisper", "request"):
        need(getattr(r, f"{kind}_rate") > 0, f"ratelimit.{kind}_rate", "must be positive")
        need(getattr(r, f"{kind}_burst") >= 1, f"ratelimit.{kind}_burst", "must be at least 1")
    ch = cfg.channels
    need(bool(ch.auto_join), "channels.auto_join", "must name at least one channel")
    for name in ch.auto_join:
        need(valid_channel(name) and not is_private(name), "channels.auto_join",
             f"{name!r} is not a public channel name (1-64 of A-Z a-z 0-9 _ - . :)")
    need(len(set(ch.auto_join)) == len(ch.auto_join), "channels.auto_join", "names a channel twice")
    need(ch.max_channels >= len(ch.auto_join), "channels.max_channels",
         "must be at least the number of auto_join channels")
    need(ch.max_per_connection >= len(ch.auto_join), "channels.max_per_connection",
         "must be at least the number of auto_join channels")
    need(ch.history_ttl >= 1, "channels.history_ttl", "must be at least 1 second")
    need(0 <= cfg.auth.clock_skew <= 3600, "auth.clock_skew", "must be 0-3600 seconds")
    need(cfg.auth.mode in ("none", "token"), "auth.mode", f"must be \"none\" or \"token\", got {cfg.auth.mode!r}")
    if cfg.auth.mode == "token" and serving:
        need(len(cfg.auth.secret.encode()) >= 32, "auth.secret",
             "must be at least 32 bytes in token mode")
    m = cfg.moderation
    need(m.blocklist_action in ("reject", "mask"), "moderation.blocklist_action",
         "must be \"reject\" or \"mask\"")
    need(m.flood_repeats >= 0, "moderation.flood_repeats", "must not be negative")
    for spec in m.filters:
        need(":" in spec, "moderation.filters", f"{spec!r} is not \"module:callable\"")
    need(cfg.log.level.upper() in ("DEBUG", "INFO", "WARNING", "ERROR"), "log.level",
         "must be DEBUG, INFO, WARNING or ERROR")
    need(cfg.log.format in ("text", "json"), "log.format", "must be \"text\" or \"json\"")
    a = cfg.api
    need(all(len(k) >= 16 for k in a.keys), "api.keys", "each key must be at least 16 characters")
    need(a.rate > 0, "api.rate", "must be positive")
    need(a.burst >= 1, "api.burst", "must be at least 1")
    need(all(valid_user(n) for n in a.system_names), "api.system_names",
         "each must be a valid user name (1-32 of A-Z a-z 0-9 _ - .)")
    need(a.idempotency_window >= 1, "api.idempotency_window", "must be at least 1 second")
    need(1024 <= a.max_body <= 1_048_576, "api.max_body", "must be 1024-1048576 bytes")
    too_long = socket_path_too_long(cfg.admin_socket)
    need(too_long is None, "admin.socket" if cfg.admin.socket else "data_dir", str(too_long))


def socket_path_too_long(path: os.PathLike[str] | str) -> str | None:
    """What is wrong with ``path`` as a Unix socket's path: None, or one line saying it is
    longer than :data:`MAX_SOCKET_PATH` bytes and what to shorten."""
    size = len(os.fsencode(os.fspath(path)))
    if size <= MAX_SOCKET_PATH:
        return None
    return (f"the admin socket {os.fspath(path)} would be {size} bytes long, and a Unix socket "
            f"path may have {MAX_SOCKET_PATH}: use a shorter data_dir, or set [admin] socket "
            "to a shorter path")
