"""Which welcome bounds a fetched archive page may serve (no database: a recorded loader)."""

from __future__ import annotations

import time

from chathub.db.archive import Archive
from chathub.protocol import Message


def m(ms: int) -> Message:
    return Message(type="chat", id=f"{ms}-0", from_="a", text=str(ms), ts=ms)


async def test_page_fetched_with_an_empty_stream_does_not_hide_later_trimmed_messages() -> None:
    """Fetched while the stream was empty (PostgreSQL held 1..3), the page serves an empty
    stream and bounds up to its newest message; a later bound (messages 4.. were stamped,
    flushed and trimmed since) needs a new page, and the welcome says it is partial."""
    db = [m(3), m(2), m(1)]

    async def load(channel: str, ms: int, seq: int, limit: int) -> list[Message]:
        return [x for x in db if (int(x.id.split("-")[0]), 0) < (ms, seq)][:limit]

    a = Archive(load, page_size=5)
    a.prefetch("general", None)
    await a.ready()
    assert [x.id for x in a.page_for("general", None, 5)] == ["3-0", "2-0", "1-0"]
    assert [x.id for x in a.page_for("general", "3-0", 5)] == ["2-0", "1-0"]
    db[:0] = [m(6), m(5), m(4)]  # flushed and trimmed from the stream since
    assert a.page_for("general", "7-0", 5) is None
    a.prefetch("general", "7-0")
    await a.ready()
    assert [x.id for x in a.page_for("general", "7-0", 5)] == ["6-0", "5-0", "4-0", "3-0", "2-0"]


async def test_empty_database_page_serves_only_an_empty_stream() -> None:
    async def load(channel: str, ms: int, seq: int, limit: int) -> list[Message]:
        return []

    a = Archive(load, page_size=5)
    a.prefetch("general", None)
    await a.ready()
    assert a.page_for("general", None, 5) == []
    assert a.page_for("general", "10-0", 5) is None


async def test_a_page_fetched_at_an_empty_stream_serves_a_whole_stream_after_it() -> None:
    """The stream has every message stamped since ``whole_since`` (short: never trimmed;
    young enough: never expired): a page fetched at an empty stream after that time
    serves any bound, so the first message into a quiet channel costs no partial history;
    a page fetched before that time still needs a new one."""
    db = [m(3), m(2), m(1)]

    async def load(channel: str, ms: int, seq: int, limit: int) -> list[Message]:
        return [x for x in db if (int(x.id.split("-")[0]), 0) < (ms, seq)][:limit]

    a = Archive(load, page_size=5)
    before = time.monotonic()
    a.prefetch("quiet", None)
    await a.ready()
    assert a.page_for("quiet", "7-0", 5) is None  # nothing known about the stream
    assert [x.id for x in a.page_for("quiet", "7-0", 5, whole_since=before)] == ["3-0", "2-0", "1-0"]
    assert a.page_for("quiet", "7-0", 5, whole_since=time.monotonic() + 1) is None
