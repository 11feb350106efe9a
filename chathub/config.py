"""Configuration: dataclasses with defaults, loaded from TOML, environment and flags.

Precedence, lowest first: defaults < file (``--config PATH``, or ``./chathub.toml``
when present) < environment ``CHATHUB_<SECTION>_<KEY>`` (``CHATHUB_DATA_DIR`` for
the top-level key) < explicit overrides (CLI flags).

Every problem is a :class:`ConfigError` whose message is one line naming the key
and where it came from; the CLI prints it and exits with code 2.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .edge import proxies
from .errors import ConfigError
from .protocol import is_private, max_frame_bytes, valid_channel, valid_user

DEFAULT_CONFIG_FILE = "chathub.toml"
ENV_PREFIX = "CHATHUB_"


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    #: largest incoming WebSocket frame in bytes; larger ones close with 1009. Must admit a
    #: frame of max_text_chars in the worst legal JSON encoding (see protocol.max_frame_bytes)
    max_message_bytes: int = 32 * 1024
    #: longest chat/whisper text in characters; longer gets error ``too_long``
    max_text_chars: int = 2000
    #: seconds between keepalive pings; 0 disables them
    ping_interval: float = 20.0
    #: seconds to wait for a pong before closing a dead peer
    ping_timeout: float = 20.0
    #: seconds a client has to finish the opening handshake
    handshake_timeout: float = 10.0
    #: seconds graceful shutdown may take before the rest is cut
    drain_timeout: float = 10.0
    #: browser origins allowed to connect; empty means any
    allowed_origins: list[str] = field(default_factory=list)
    #: open connections in total; more are refused with HTTP 503
    max_connections: int = 20000
    #: open connections per remote address; more are refused with HTTP 429
    max_connections_per_ip: int = 10000
    #: new connections per remote address per second (token bucket rate)
    connect_rate_per_ip: float = 200.0
    #: burst of new connections per remote address
    connect_burst_per_ip: int = 2000
    #: use uvloop when installed
    uvloop: bool = True
    #: kernel send buffer per connection in bytes (SO_SNDBUF); bounds what hides below the
    #: client backlog so slow consumers are seen early; 0 keeps the kernel's autotuning
    socket_send_buffer: int = 128 * 1024
    #: share the port with other processes (SO_REUSEPORT; set by serve --workers)
    reuse_port: bool = False
    #: reverse proxies (addresses, CIDR ranges) whose Forwarded / X-Forwarded-For /
    #: X-Forwarded-Proto headers name the client; empty: those headers are ignored
    trusted_proxies: list[str] = field(default_factory=list)


@dataclass
class HubConfig:
    #: bytes a client's outgoing backlog may stay above for at most write_timeout
    client_queue_limit: int = 1024 * 1024
    #: seconds a backlog may stay above client_queue_limit without once falling below it
    #: before the client is a slow consumer (4002)
    write_timeout: float = 5.0
    #: bytes no client's backlog may pass, however briefly (the memory cap; at once 4002)
    client_queue_max: int = 8 * 1024 * 1024
    #: what happens to a slow consumer: "close" (4002) is the only policy today
    slow_consumer_policy: str = "close"
    #: messages stamped per Valkey round trip at most
    ingest_batch: int = 256
    #: node id for this hub; empty means hostname-pid
    node_id: str = ""
    #: seconds without a heartbeat after which a node counts as dead
    node_ttl: float = 15.0


@dataclass
class DatabaseConfig:
    #: PostgreSQL URL; empty starts the embedded server in <data_dir>/pg
    url: str = ""
    #: asyncpg pool size
    pool_size: int = 4
    #: seconds to wait for a connection or a query
    timeout: float = 5.0
    #: migrate on serve even against an external database
    migrate: bool = False


@dataclass
class ValkeyConfig:
    #: Valkey URL; empty starts the embedded server in <data_dir>/valkey
    url: str = ""
    #: seconds to wait for a reply before the cache counts as unavailable
    timeout: float = 2.0
    #: prefix of every key chathub writes
    key_prefix: str = "chathub:"


@dataclass
class CacheConfig:
    #: messages kept in the Valkey stream after they reached PostgreSQL
    history_size: int = 1000
    #: public messages sent in welcome.history
    history_on_join: int = 50
    #: seconds between write-behind flushes to PostgreSQL
    flush_interval: float = 1.0
    #: messages per flush batch at most
    flush_batch: int = 500
    #: most messages a reconnect with ?since= may recover
    recover_limit: int = 1000


@dataclass
class RateLimitConfig:
    #: chat messages per second per user (sustained)
    chat_rate: float = 5.0
    #: chat messages a user may send in a burst
    chat_burst: int = 10
    #: whispers per second per user (sustained)
    whisper_rate: float = 2.0
    #: whispers a user may send in a burst
    whisper_burst: int = 5
    #: users/history requests per second per connection (sustained)
    request_rate: float = 10.0
    #: users/history requests a connection may send in a burst
    request_burst: int = 20


@dataclass
class AdminConfig:
    #: Unix socket path; empty means <data_dir>/admin.sock
    socket: str = ""


@dataclass
class AuthConfig:
    #: "none" (name from ?user=) or "token" (HS256 JWT)
    mode: str = "none"
    #: HS256 secret, at least 32 bytes in token mode (prefer env CHATHUB_AUTH_SECRET)
    secret: str = ""
    #: seconds of clock difference allowed between the token's issuer and this server when
    #: checking iat, nbf and exp (RFC 7519 section 4.1 allows "some small leeway")
    clock_skew: float = 30.0


@dataclass
class ModerationConfig:
    #: words refused or masked (case-insensitive, whole words)
    blocklist: list[str] = field(default_factory=list)
    #: "reject" (error blocked) or "mask" (replace with ***)
    blocklist_action: str = "reject"
    #: identical messages from one user within flood_window seconds before refusal
    flood_repeats: int = 3
    #: seconds that the flood filter remembers
    flood_window: float = 10.0
    #: extra filters, "module:callable"
    filters: list[str] = field(default_factory=list)


@dataclass
class LogConfig:
    #: DEBUG, INFO, WARNING, ERROR
    level: str = "INFO"
    #: "text" or "json"
    format: str = "text"


@dataclass
class ChannelsConfig:
    #: channels every connection starts subscribed to; the first is the default channel of
    #: chat, users and history frames without one, and the welcome's (protocol v1's room)
    auto_join: list[str] = field(default_factory=lambda: ["general"])
    #: create a channel on its first subscribe; false: only `chathub channel create`
    auto_create: bool = True
    #: channels that may exist at once (subscribing to a new one past it: too_many_channels)
    max_channels: int = 10_000
    #: channels one connection may be subscribed to at once
    max_per_connection: int = 100
    #: seconds a channel's history stays in Valkey after its last message (PostgreSQL keeps
    #: every message; paging older goes there)
    history_ttl: float = 7 * 24 * 3600.0


@dataclass
class ApiConfig:
    #: API keys for ``/api/v1/`` (``Authorization: Bearer KEY``); none: the API is off (404).
    #: Prefer env CHATHUB_API_KEYS (comma-separated).
    keys: list[str] = field(default_factory=list)
    #: requests a second each key may make on this daemon, and its burst (429 past them)
    rate: float = 50.0
    burst: int = 100
    #: sender names the API may publish and whisper as besides real user names
    system_names: list[str] = field(default_factory=lambda: ["system"])
    #: seconds a publish's idempotency_key keeps its first result (in Valkey, for every hub)
    idempotency_window: float = 86_400.0
    #: largest request body, in bytes (413 past it)
    max_body: int = 65_536


@dataclass
class Config:
    #: where the embedded services and the admin socket live
    data_dir: str = ".chathub"
    server: ServerConfig = field(default_factory=ServerConfig)
    hub: HubConfig = field(default_factory=HubConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    valkey: ValkeyConfig = field(default_factory=ValkeyConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    ratelimit: RateLimitConfig = field(default_factory=RateLimitConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    moderation: ModerationConfig = field(default_factory=ModerationConfig)
    log: LogConfig = field(default_factory=LogConfig)
    channels: ChannelsConfig = field(default_factory=ChannelsConfig)
    api: ApiConfig = field(default_factory=ApiConfig)

    @property
    def admin_socket(self) -> Path:
        """The admin socket path, defaulting to ``<data_dir>/admin.sock``."""
        return Path(self.admin.socket or Path(self.data_dir) / "admin.sock")


SECTIONS = {f.name: f for f in dataclasses.fields(Config) if f.name != "data_dir"}


def _coerce(value: Any, typ: Any, key: str, source: str) -> Any:
    """Check ``value`` against ``typ``; strings from the environment are parsed."""
    from_env = source.startswith("env")
    origin = typing.get_origin(typ)
    if origin is list:
        if from_env and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key} in {source}: expected a list of strings, got {value!r}")
        return value
    if typ is bool:
        if from_env and isinstance(value, str):
            low = value.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
        if not isinstance(value, bool):
            raise ConfigError(f"{key} in {source}: expected true or false, got {value!r}")
        return value
    if typ is int:
        if from_env and isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} in {source}: expected an integer, got {value!r}")
        return value
    if typ is float:
        if from_env and isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} in {source}: expected a number, got {value!r}")
        return float(value)
    if typ is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} in {source}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {typ!r}")  # pragma: no cover


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _apply(cfg: Config, data: dict[str, Any], source: str) -> None:
    """Apply a nested mapping (as TOML gives it) onto ``cfg``."""
    for name, value in data.items():
        if name == "data_dir":
            cfg.data_dir = _coerce(value, str, "data_dir", source)
            continue
        if name not in SECTIONS:
            raise ConfigError(f"unknown key '{name}' in {source}")
        if not isinstance(value, dict):
            raise ConfigError(f"[{name}] in {source}: expected a table, got {value!r}")
        section = getattr(cfg, name)
        types_ = _field_types(type(section))
        for key, v in value.items():
            if key not in types_:
                raise ConfigError(f"unknown key '{name}.{key}' in {source}")
            setattr(section, key, _coerce(v, types_[key], f"{name}.{key}", source))


def _env_overrides(environ: typing.Mapping[str, str]) -> dict[str, Any]:
    """Collect ``CHATHUB_<SECTION>_<KEY>`` variables into a nested mapping."""
    out: dict[str, Any] = {}
    for var, value in environ.items():
        if not var.startswith(ENV_PREFIX) or var.startswith("CHATHUB_TEST_"):
            continue
        rest = var[len(ENV_PREFIX):].lower()
        if rest == "data_dir":
            out["data_dir"] = value
            continue
        for section in SECTIONS:
            if rest.startswith(section + "_"):
                key = rest[len(section) + 1:]
                cls = typing.get_type_hints(Config)[section]
                if key in _field_types(cls):
                    out.setdefault(section, {})[key] = value
                break
    return out


def validate(cfg: Config, source: str = "configuration") -> None:
    """Refuse impossible values with a :class:`ConfigError` naming the key."""
    def need(cond: bool, key: str, what: str) -> None:
        if not cond:
            raise ConfigError(f"{key} in {source}: {what}")

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
    if cfg.auth.mode == "token":
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


def load(
    path: str | os.PathLike[str] | None = None,
    *,
    environ: typing.Mapping[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> Config:
    """Build a validated :class:`Config`.

    Args:
        path: a TOML file; ``None`` reads ``./chathub.toml`` when it exists.
        environ: the environment to read (``os.environ`` by default).
        overrides: nested mapping from CLI flags, e.g. ``{"server": {"port": 0}}``;
            ``None`` values are ignored.

    Raises:
        ConfigError: one line naming the key and its source.
    """
    cfg = Config()
    file: Path | None = Path(path) if path is not None else None
    if file is None and Path(DEFAULT_CONFIG_FILE).is_file():
        file = Path(DEFAULT_CONFIG_FILE)
    source = "configuration"
    if file is not None:
        try:
            data = tomllib.loads(file.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {file} not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: invalid TOML: {exc}") from None
        _apply(cfg, data, str(file))
        source = str(file)
    _apply(cfg, _env_overrides(os.environ if environ is None else environ), "environment")
    if overrides:
        cleaned = _drop_none(overrides)
        _apply(cfg, cleaned, "command line")
    validate(cfg, source)
    return cfg


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            sub = _drop_none(v)
            if sub:
                out[k] = sub
        elif v is not None:
            out[k] = v
    return out


__all__ = ["Config", "ConfigError", "load", "validate"]
