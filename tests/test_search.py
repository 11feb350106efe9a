"""Full-text search of the message history: the query on a seeded corpus, paging,
filters, marks, the index, and the admin command and CLI around it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import asyncpg
import pytest

from chathub.db import migrate as migrations
from chathub.db import store
from chathub.db.search import (
    MARK_CLOSE,
    MARK_OPEN,
    SearchQuery,
    SearchTimeout,
    marked_text,
    search,
    split_marks,
)
from chathub.protocol import Message
from tests.helpers import Chatter, wait_for

#: (id ms, sender, recipient, text): the seeded corpus, oldest first
CORPUS = [
    (1000, "ann", None, "I like apple pie"),
    (2000, "bob", None, "pineapple is not an apple"),
    (3000, "cid", None, "Apple apple APPLE, all the apples"),
    (4000, "ann", None, "nothing to see here"),
    (5000, "bob", "ann", "a secret apple whisper"),
    (6000, "dee", None, "green apple and red pear"),
    (7000, "ann", None, "привет мир, apple"),
    (8000, "eve", None, "«apple» in quotes"),
    (9000, "bob", None, "the pear tree"),
]


def msg(ms: int, sender: str, to: str | None, text: str) -> Message:
    return Message(type="chat" if to is None else "whisper", id=f"{ms}-0", from_=sender,
                   text=text, ts=ms, to=to, channel="general" if to is None else None)


@pytest.fixture
async def seeded(database_url: str) -> asyncpg.Pool:
    conn = await asyncpg.connect(database_url)
    await migrations.migrate(conn)
    await conn.close()
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    # the flusher's own write path, unchanged by the search index
    assert await store.insert_messages(pool, [msg(*row) for row in CORPUS]) == len(CORPUS)
    yield pool
    await pool.close()


def ids(result: dict) -> list[str]:
    return [h["id"] for h in result["hits"]]


async def test_words_match_whole_words_any_case_newest_first(seeded):
    """'apple' finds every public message with the word apple, newest first; not pineapple
    alone, not apples alone (simple: no stemming), not whispers."""
    r = await search(seeded, SearchQuery("Apple"))
    assert ids(r) == ["8000-0", "7000-0", "6000-0", "3000-0", "2000-0", "1000-0"]
    assert r["next_before"] is None
    assert all(h["channel"] == "general" for h in r["hits"])


async def test_all_words_phrase_and_exclusion(seeded):
    """Every word must occur; a quoted phrase in order; -word excludes; or accepts either."""
    assert ids(await search(seeded, SearchQuery("apple pear"))) == ["6000-0"]
    assert ids(await search(seeded, SearchQuery('"apple pie"'))) == ["1000-0"]
    assert ids(await search(seeded, SearchQuery('"pie apple"'))) == []
    assert ids(await search(seeded, SearchQuery("apple -pear -pie -мир"))) == ["8000-0", "3000-0", "2000-0"]
    assert ids(await search(seeded, SearchQuery("pie or tree"))) == ["9000-0", "1000-0"]


async def test_any_language_with_the_simple_configuration(seeded):
    """Cyrillic words are found as they are written, any case."""
    assert ids(await search(seeded, SearchQuery("ПРИВЕТ"))) == ["7000-0"]


async def test_rank_follows_how_often_the_words_occur(seeded):
    """ts_rank: the message saying apple three times outranks those saying it once."""
    hits = {h["id"]: h["rank"] for h in (await search(seeded, SearchQuery("apple")))["hits"]}
    assert hits["3000-0"] > hits["1000-0"] > 0
    assert hits["3000-0"] == max(hits.values())


async def test_marks_are_exact_even_with_marker_characters_in_the_text(seeded):
    """marks are [start, end) spans of the matched words; marked wraps them in «»."""
    (hit,) = (await search(seeded, SearchQuery("apple", user="eve")))["hits"]
    assert hit["text"] == "«apple» in quotes"
    assert [hit["text"][a:b] for a, b in hit["marks"]] == ["apple"]
    assert hit["marked"] == f"«{MARK_OPEN}apple{MARK_CLOSE}» in quotes"
    (hit,) = (await search(seeded, SearchQuery("apple", user="cid")))["hits"]
    assert [hit["text"][a:b] for a, b in hit["marks"]] == ["Apple", "apple", "APPLE"]


async def test_filters_user_since_whispers_channel(seeded):
    """--user, --since (epoch ms), whispers included on request, channel general only."""
    assert ids(await search(seeded, SearchQuery("apple", user="ann"))) == ["7000-0", "1000-0"]
    assert ids(await search(seeded, SearchQuery("apple", since_ms=6000))) == ["8000-0", "7000-0", "6000-0"]
    r = await search(seeded, SearchQuery("secret", whispers=True))
    assert ids(r) == ["5000-0"] and r["hits"][0]["to"] == "ann"
    assert ids(await search(seeded, SearchQuery("secret"))) == []
    assert len(ids(await search(seeded, SearchQuery("apple", channel="general")))) == 6
    assert ids(await search(seeded, SearchQuery("apple", channel="random"))) == []


async def test_paging_by_id_returns_each_hit_once(seeded):
    """Pages of 4 then 2: next_before chains them, no hit twice, none missed."""
    first = await search(seeded, SearchQuery("apple", limit=4))
    assert ids(first) == ["8000-0", "7000-0", "6000-0", "3000-0"]
    assert first["next_before"] == "3000-0"
    second = await search(seeded, SearchQuery("apple", limit=4, before=first["next_before"]))
    assert ids(second) == ["2000-0", "1000-0"] and second["next_before"] is None


async def test_the_index_serves_the_query(seeded):
    """The query's expression is the one migration 0003 indexes (GIN)."""
    async with seeded.acquire() as conn:
        async with conn.transaction():
            await conn.execute("SET LOCAL enable_seqscan = off")
            plan = "\n".join(r[0] for r in await conn.fetch(
                "EXPLAIN SELECT id FROM messages WHERE to_tsvector('simple'::regconfig, text) "
                "@@ websearch_to_tsquery('simple'::regconfig, 'apple')"))
    assert "messages_text_search_idx" in plan


async def test_a_search_past_its_deadline_is_cancelled(seeded):
    """A query slower than the deadline raises SearchTimeout (PostgreSQL cancels it)."""
    rows = [msg(10_000 + i, "zed", None, f"needle {i}") for i in range(20_000)]
    await store.insert_messages(seeded, rows)
    with pytest.raises(SearchTimeout):
        await search(seeded, SearchQuery("needle", limit=200), timeout=0.001)


def test_request_fields_are_checked():
    """Bad fields are one-line ValueError/TypeError; the admin socket sends them back."""
    for req, needle in (({"words": ""}, "words"), ({"words": "x", "limit": 0}, "limit"),
                        ({"words": "x", "limit": 201}, "limit"), ({"words": "x", "before": "abc"}, "id"),
                        ({"words": "x", "since": "yesterday"}, "since"), ({"words": 3}, "words")):
        with pytest.raises((ValueError, TypeError), match=needle):
            SearchQuery.from_request(req)
    with pytest.raises(KeyError):
        SearchQuery.from_request({})
    q = SearchQuery.from_request({"words": "a b", "user": "ann", "limit": 5, "before": "9-0"})
    assert (q.user, q.limit, q.before, q.whispers) == ("ann", 5, "9-0", False)


def test_split_marks_round_trip():
    text, marks = split_marks("a \x02bc\x03 d \x02e\x03")
    assert (text, marks) == ("a bc d e", [[2, 4], [7, 8]])
    assert marked_text(text, marks) == "a «bc» d «e»"


# -- over the admin socket and the CLI -------------------------------------------------


async def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "chathub.cli", *args],
                                   capture_output=True, text=True, timeout=60)


async def test_search_end_to_end_over_admin_socket_and_cli(daemon):
    """Chat through the hub, wait for the flush, then search by the socket and the CLI."""
    from chathub.admin.client import call

    async with await Chatter.connect(daemon.port, "amy") as a:
        for text in ("hello bright world", "nothing here", "the world is round"):
            await a.chat(text)
            await a.recv_type("chat")
    sock = str(daemon.cfg.admin_socket)

    async def flushed() -> bool:
        return (await call(sock, "stats"))["flush_backlog"] == 0 and \
            daemon.node.message_flusher.written >= 3
    await wait_for(flushed)
    r = await call(sock, "search", words="world")
    assert [h["text"] for h in r["hits"]] == ["the world is round", "hello bright world"]
    assert r["unflushed"] == 0 and r["hits"][0]["from"] == "amy"
    out = await cli("search", "world", "--socket", sock, "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert [h["marked"] for h in data["hits"]] == ["the «world» is round", "hello bright «world»"]
    out = await cli("search", "world bright", "--socket", sock, "--user", "amy")
    assert out.returncode == 0 and "hello bright world" in out.stdout and "round" not in out.stdout
    assert "not yet searchable" in out.stdout
    bad = await cli("search", "world", "--socket", sock, "--since", "soon")
    assert bad.returncode == 2 and "--since" in bad.stderr and "Traceback" not in bad.stderr
    bad = await cli("search", "world", "--socket", sock, "--before", "nope")
    assert bad.returncode == 2 and "--before" in bad.stderr


async def test_search_cli_without_a_daemon_is_one_line(short_dir):
    out = await cli("search", "x", "--socket", str(short_dir / "none.sock"))
    assert out.returncode == 2 and "no chathub daemon" in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
