"""Moderation before delivery: a chain of filters every chat and whisper passes.

A filter is a callable ``filter(user, message) -> message`` that returns the
message (possibly with its text changed: ``msgspec.structs.replace(message, text=...)``)
or raises :class:`~chathub.protocol.ProtocolError` (e.g. code ``blocked``) to refuse
it. Add your own with ``[moderation] filters = ["mypkg.filters:no_links"]``; a
factory taking the ``ModerationConfig`` is also accepted when the callable has a
``chathub_factory = True`` attribute. A filter that raises anything else refuses the
message with ``unavailable``; the error is logged and the hub keeps running.
"""

from __future__ import annotations

import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import msgspec

from ..config import ModerationConfig
from ..protocol import BLOCKED, UNAVAILABLE, Chat, ProtocolError, Whisper

log = logging.getLogger("chathub.edge.moderation")

Filter = Callable[[str, Chat | Whisper], Chat | Whisper]

#: users the flood filter remembers at most (least recently active forgotten first)
FLOOD_USERS_MAX = 50_000


class Blocklist:
    """Refuse (``blocked``) or mask (``***``) messages containing listed words."""

    def __init__(self, words: list[str], action: str) -> None:
        self.action = action
        alternatives = "|".join(re.escape(w) for w in words if w)
        self.pattern = re.compile(rf"\b(?:{alternatives})\b", re.IGNORECASE) if alternatives else None

    def __call__(self, user: str, msg: Chat | Whisper) -> Chat | Whisper:
        if self.pattern is None or not self.pattern.search(msg.text):
            return msg
        if self.action == "mask":
            return msgspec.structs.replace(msg, text=self.pattern.sub("***", msg.text))
        raise ProtocolError(BLOCKED, "message refused by the word filter", msg.ref)


class Flood:
    """Refuse the same text from one user more than ``repeats`` times within ``window`` s."""

    def __init__(self, repeats: int, window: float) -> None:
        self.repeats = repeats
        self.window = window
        self._seen: OrderedDict[str, list[tuple[float, str]]] = OrderedDict()

    def __call__(self, user: str, msg: Chat | Whisper) -> Chat | Whisper:
        if self.repeats <= 0:
            return msg
        now = time.monotonic()
        recent = [(t, x) for t, x in self._seen.pop(user, []) if now - t < self.window]
        same = sum(1 for _, x in recent if x == msg.text)
        if same >= self.repeats:
            self._seen[user] = recent
            raise ProtocolError(BLOCKED, "the same message too many times; say something new", msg.ref)
        recent.append((now, msg.text))
        self._seen[user] = recent[-(self.repeats * 4):]
        if len(self._seen) > FLOOD_USERS_MAX:
            self._seen.popitem(last=False)
        return msg


def build_chain(cfg: ModerationConfig, importer: Callable[[str], Any]) -> list[Filter]:
    """The configured chain: blocklist, flood, then the custom filters in order."""
    chain: list[Filter] = []
    if cfg.blocklist:
        chain.append(Blocklist(cfg.blocklist, cfg.blocklist_action))
    if cfg.flood_repeats > 0:
        chain.append(Flood(cfg.flood_repeats, cfg.flood_window))
    for spec in cfg.filters:
        obj = importer(spec)
        chain.append(obj(cfg) if getattr(obj, "chathub_factory", False) else obj)
    return chain


def run_chain(chain: list[Filter], user: str, msg: Chat | Whisper) -> Chat | Whisper:
    """Pass ``msg`` through every filter; raises ProtocolError to refuse it."""
    for f in chain:
        try:
            msg = f(user, msg)
        except ProtocolError:
            raise
        except Exception:
            log.exception("moderation filter %r failed; message refused", f)
            raise ProtocolError(UNAVAILABLE, "moderation failed; message not sent", msg.ref) from None
    return msg
