"""chathub's Python client library: typed events, typed errors, reconnects by itself.

    from chathub.client import ChatClient, Chat

    async with ChatClient("ws://127.0.0.1:8080/ws", user="alice") as c:
        await c.chat("hello")
        async for event in c:
            if isinstance(event, Chat):
                print(event.from_, event.text)

See docs/client.md. Modules: :mod:`.client` (ChatClient: settings, events, requests),
:mod:`.link` (the connection and its reconnect loop), :mod:`.routing` (replies by
ref, de-duplication, gaps, resubscribing),
:mod:`.events` (server frames as typed events, sans I/O), :mod:`.errors` (one class
per error code), :mod:`.tracker` (since and de-duplication per channel),
:mod:`.buffer` (the bounded event buffer), :mod:`.backoff` (reconnect delays).
"""

from .backoff import Backoff
from .client import ChatClient
from .errors import (
    BadRequest,
    Blocked,
    ChatError,
    Disconnected,
    Forbidden,
    NotConnected,
    NotSubscribed,
    RateLimited,
    Refused,
    ReplyTimeout,
    ServerError,
    Terminated,
    TooLong,
    TooManyChannels,
    Unavailable,
    UnknownChannel,
    UnknownType,
    UnknownUser,
)
from .events import (
    Banned,
    ChannelInfo,
    Channels,
    Chat,
    Closed,
    ConnectionLost,
    Delete,
    Error,
    Event,
    Gap,
    History,
    Join,
    Kicked,
    Leave,
    Message,
    Muted,
    Overflow,
    Shutdown,
    Subscribed,
    Unknown,
    Unmuted,
    Unsubscribed,
    Users,
    Welcome,
    Whisper,
)

__all__ = [
    "Backoff", "ChatClient",
    "BadRequest", "Blocked", "ChatError", "Disconnected", "Forbidden", "NotConnected",
    "NotSubscribed", "RateLimited", "Refused", "ReplyTimeout", "ServerError", "Terminated",
    "TooLong", "TooManyChannels", "Unavailable", "UnknownChannel", "UnknownType", "UnknownUser",
    "Banned", "ChannelInfo", "Channels", "Chat", "Closed", "ConnectionLost", "Delete", "Error", "Event", "Gap",
    "History", "Join", "Kicked", "Leave", "Message", "Muted", "Overflow", "Shutdown",
    "Subscribed", "Unknown", "Unmuted", "Unsubscribed", "Users", "Welcome", "Whisper",
]
