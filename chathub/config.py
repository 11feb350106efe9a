"""Configuration schema: one dataclass per ``[section]``, every key with its default.

The defaults are what a daemon runs with when nothing is configured; each key's
comment gives its unit (seconds, bytes, per second). Reading a TOML file, the
environment and CLI flags onto these is :mod:`chathub.configload` (environment
variables: :mod:`chathub.configenv`); the rules a value must obey are
:mod:`chathub.configcheck`. Key types are ``int``, ``float``, ``bool``, ``str`` and
``list[str]`` only: the loader knows no others.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ServerConfig:
    """``[server]``: the listening socket, frame limits, timeouts and connection limits."""

    #: address to listen on
    host: str = "127.0.0.1"
    #: TCP port to listen on; 0 lets the kernel pick a free one
    port: int = 8080
    #: largest incoming WebSocket frame in bytes; larger ones close with 1009. Must admit a
    #: frame of max_text_chars in the worst legal JSON encoding (clientframes.max_frame_bytes)
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
    #: frames of any kind (pings and fragments included) one connection may send within
    #: one second; past it the connection is not read until the second is over, and at
    #: twice as many it is closed with 1008. 0: no limit
    max_frames_per_second: int = 1000
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
    """``[hub]``: per-client backlog bounds, stamping batches and this node's identity."""

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
    """``[database]``: PostgreSQL, external or embedded."""

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
    """``[valkey]``: Valkey, external or embedded."""

    #: Valkey URL; empty starts the embedded server in <data_dir>/valkey
    url: str = ""
    #: seconds to wait for a reply before the cache counts as unavailable
    timeout: float = 2.0
    #: prefix of every key chathub writes
    key_prefix: str = "chathub:"


@dataclass
class CacheConfig:
    """``[cache]``: history kept in Valkey and the write-behind flush to PostgreSQL."""

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
    """``[ratelimit]``: token buckets for chats, whispers and requests."""

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
    """``[admin]``: the admin socket."""

    #: Unix socket path; empty means <data_dir>/admin.sock
    socket: str = ""


@dataclass
class AuthConfig:
    """``[auth]``: how a connection's user name is established."""

    #: "none" (name from ?user=) or "token" (HS256 JWT)
    mode: str = "none"
    #: HS256 secret, at least 32 bytes in token mode (prefer env CHATHUB_AUTH_SECRET)
    secret: str = ""
    #: seconds of clock difference allowed between the token's issuer and this server when
    #: checking iat, nbf and exp (RFC 7519 section 4.1 allows "some small leeway")
    clock_skew: float = 30.0


@dataclass
class ModerationConfig:
    """``[moderation]``: blocklist, flood filter and extra filters."""

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
    """``[log]``: log level and format."""

    #: DEBUG, INFO, WARNING, ERROR
    level: str = "INFO"
    #: "text" or "json"
    format: str = "text"


@dataclass
class ChannelsConfig:
    """``[channels]``: auto-join channels, creation and limits."""

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
    """``[api]``: the HTTP API's keys, budget and limits."""

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
    """The whole configuration: ``data_dir`` and one attribute per section."""

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


#: section name -> its dataclass field on :class:`Config` (every key but ``data_dir``)
SECTIONS = {f.name: f for f in dataclasses.fields(Config) if f.name != "data_dir"}


def field_types(cls: type) -> dict[str, Any]:
    """``{key: type}`` for the keys of section dataclass ``cls``, in declaration order."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


__all__ = [
    "AdminConfig", "ApiConfig", "AuthConfig", "CacheConfig", "ChannelsConfig", "Config",
    "DatabaseConfig", "HubConfig", "LogConfig", "ModerationConfig", "RateLimitConfig",
    "SECTIONS", "ServerConfig", "ValkeyConfig", "field_types",
]
