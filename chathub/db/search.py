"""Full-text search of the message history in PostgreSQL (``chathub search``).

Words are matched with PostgreSQL's ``websearch_to_tsquery`` in the ``simple``
configuration: every word must occur (case-insensitive, whole words), ``"a
phrase"`` must occur in order, ``or`` between words accepts either, ``-word``
excludes. ``simple`` lower-cases and stems nothing, so it behaves the same for
every language; migration 0003 indexes exactly that expression (GIN).

Hits come newest first and are paged by id: pass the last hit's id as ``before``
for the next page. Each hit carries its text, the spans of the matched words
(``marks``, character offsets into ``text``) and the same text with the matches
between :data:`MARK_OPEN` and :data:`MARK_CLOSE` (``marked``). The spans are
exact even when a message itself contains the markers: PostgreSQL marks with
control characters, which chathub never accepts in a message, and they are turned
into offsets here.

Only messages already in PostgreSQL are found: the newest ones wait in Valkey for
the write-behind flusher (about ``cache.flush_interval``); the caller says how many.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from ..errors import ChathubError
from ..protocol import parse_id, valid_channel, valid_user

#: how ``marked`` shows a matched word
MARK_OPEN, MARK_CLOSE = "«", "»"
#: what PostgreSQL is asked to put around matches (control characters: never in a message)
_SEL_OPEN, _SEL_CLOSE = "\x02", "\x03"
_SEL_RE = re.compile("[\x02\x03]")
#: hits per page unless asked otherwise, and at most
DEFAULT_LIMIT, MAX_LIMIT = 20, 200
#: longest search text accepted, characters
MAX_WORDS_CHARS = 500
#: seconds a search may take in PostgreSQL before it is cancelled
SEARCH_TIMEOUT = 3.0
#: the largest value of PostgreSQL's bigint, which holds each part of an id
_BIGINT_MAX = 2**63 - 1


class SearchTimeout(ChathubError, TimeoutError):
    """The search did not finish within its deadline; nothing was returned."""


@dataclass(frozen=True)
class SearchQuery:
    """What to look for. Build it with :meth:`from_request` from untrusted input."""

    words: str
    user: str | None = None
    channel: str | None = None
    #: only messages stamped at or after this time (epoch ms)
    since_ms: int | None = None
    #: only messages older than this id (the previous page's last hit)
    before: str | None = None
    limit: int = DEFAULT_LIMIT
    #: also search whispers (public chat only by default)
    whispers: bool = False

    @classmethod
    def from_request(cls, req: dict[str, Any]) -> SearchQuery:
        """Check an admin ``search`` request's fields.

        Raises:
            KeyError: ``words`` is missing.
            TypeError / ValueError: a field has the wrong type or value (one line).
        """
        words = req["words"]
        if not isinstance(words, str) or not words.strip():
            raise ValueError("field 'words' must be a non-empty string")
        if len(words) > MAX_WORDS_CHARS:
            raise ValueError(f"field 'words' is longer than {MAX_WORDS_CHARS} characters")
        for name in ("user", "channel", "before"):
            if req.get(name) is not None and not isinstance(req[name], str):
                raise TypeError(f"field {name!r} must be a string")
        if req.get("user") and not valid_user(req["user"]):
            raise ValueError("field 'user' must be a user name (1-32 of A-Z a-z 0-9 _ - .)")
        if req.get("channel") and not valid_channel(req["channel"]):
            raise ValueError("field 'channel' must be a channel name")
        before = req.get("before")
        if before is not None:
            parse_id(before)  # ValueError names it
        since = req.get("since")
        if since is not None and (isinstance(since, bool) or not isinstance(since, int)):
            raise TypeError("field 'since' must be an integer (epoch ms)")
        limit = req.get("limit", DEFAULT_LIMIT)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"field 'limit' must be an integer from 1 to {MAX_LIMIT}")
        return cls(words=words, user=req.get("user") or None, channel=req.get("channel") or None,
                   since_ms=since, before=before, limit=limit, whispers=bool(req.get("whispers")))


def split_marks(headline: str) -> tuple[str, list[list[int]]]:
    """Text and [start, end) spans from a headline marked with the control characters."""
    out: list[str] = []
    marks: list[list[int]] = []
    pos = 0
    start: int | None = None
    i = 0
    for m in _SEL_RE.finditer(headline):
        chunk = headline[i:m.start()]
        out.append(chunk)
        pos += len(chunk)
        if m.group() == _SEL_OPEN:
            start = pos
        elif start is not None:
            if pos > start:
                marks.append([start, pos])
            start = None
        i = m.end()
    out.append(headline[i:])
    return "".join(out), marks


def marked_text(text: str, marks: list[list[int]]) -> str:
    """``text`` with each span between :data:`MARK_OPEN` and :data:`MARK_CLOSE`."""
    out, i = [], 0
    for a, b in marks:
        out += [text[i:a], MARK_OPEN, text[a:b], MARK_CLOSE]
        i = b
    out.append(text[i:])
    return "".join(out)


def _id_bound(before: str) -> tuple[int, int]:
    ms, seq = parse_id(before)
    if ms > _BIGINT_MAX:
        return _BIGINT_MAX, _BIGINT_MAX
    return ms, min(seq, _BIGINT_MAX)


async def search(pool: asyncpg.Pool, q: SearchQuery,
                 timeout: float = SEARCH_TIMEOUT) -> dict[str, Any]:
    """Run ``q``; returns ``{"hits": [...], "next_before": id or None}``.

    Each hit: ``id``, ``channel``, ``from``, ``to`` (whispers only), ``ts`` (epoch ms),
    ``text``, ``marks``, ``marked``, ``rank`` (``ts_rank``: how densely the words occur).

    Raises:
        SearchTimeout: PostgreSQL did not finish within ``timeout`` seconds.
    """
    try:
        rows = await _fetch(pool, q, timeout)
    except asyncpg.QueryCanceledError:
        raise SearchTimeout(
            f"the search took longer than {timeout:g}s and was cancelled; "
            "narrow it with --user, --since or more words") from None
    hits = [_hit(r) for r in rows]
    return {"hits": hits,
            "next_before": hits[-1]["id"] if len(hits) == q.limit else None}


async def _fetch(pool: asyncpg.Pool, q: SearchQuery, timeout: float) -> list[asyncpg.Record]:
    async with pool.acquire(timeout=max(timeout, 1.0)) as conn:
        async with conn.transaction(readonly=True):
            # 0 would mean no deadline at all
            await conn.execute(f"SET LOCAL statement_timeout = {max(1, int(timeout * 1000))}")
            args: list[Any] = [q.words]
            # the query written out in each place, so that the planner sees a constant and
            # uses the index (a CTE holding it would hide it behind a join)
            tsq = "websearch_to_tsquery('simple'::regconfig, $1)"
            # removed messages (chathub delete) are kept for the audit trail, never shown
            where = [f"to_tsvector('simple'::regconfig, m.text) @@ {tsq}", "m.deleted_at IS NULL"]

            def arg(value: Any) -> str:
                args.append(value)
                return f"${len(args)}"

            if not q.whispers:
                where.append("m.recipient IS NULL")
            if q.user:
                where.append(f"m.sender = {arg(q.user)}")
            if q.channel:
                where.append(f"m.channel = {arg(q.channel)}")
            if q.since_ms is not None:
                where.append(f"m.id_ms >= {arg(min(max(q.since_ms, 0), _BIGINT_MAX))}")
            if q.before is not None:
                ms, seq = _id_bound(q.before)
                where.append(f"(m.id_ms, m.id_seq) < ({arg(ms)}, {arg(seq)})")
            sql = f"""
                WITH found AS (
                    SELECT m.id, m.id_ms, m.id_seq, m.sender, m.recipient, m.text,
                           m.channel
                    FROM messages m
                    WHERE {' AND '.join(where)}
                    ORDER BY m.id_ms DESC, m.id_seq DESC
                    LIMIT {arg(q.limit)})
                SELECT f.id, f.id_ms, f.sender, f.recipient, f.text, f.channel,
                       ts_headline('simple'::regconfig, f.text, {tsq},
                                   'HighlightAll=true, StartSel=' || chr(2) || ', StopSel=' || chr(3))
                           AS headline,
                       ts_rank(to_tsvector('simple'::regconfig, f.text), {tsq}) AS rank
                FROM found f
                ORDER BY f.id_ms DESC, f.id_seq DESC"""
            rows = await conn.fetch(sql, *args)
    return rows


def _hit(r: asyncpg.Record) -> dict[str, Any]:
    text, marks = split_marks(r["headline"])
    if text != r["text"]:  # the headline did not keep the text as it was: show it unmarked
        text, marks = r["text"], []
    hit: dict[str, Any] = {
        "id": r["id"], "channel": r["channel"], "from": r["sender"], "ts": r["id_ms"],
        "time": datetime.fromtimestamp(r["id_ms"] / 1000, UTC).isoformat(timespec="seconds"),
        "text": text, "marks": marks, "marked": marked_text(text, marks),
        "rank": round(float(r["rank"]), 6)}
    if r["recipient"] is not None:
        hit["to"] = r["recipient"]
    return hit
