"""Search benchmark: how long ``chathub search`` takes over a large message history.

    python -m bench.search [--messages 100000] [--runs 20] [--database-url URL]

Starts an embedded PostgreSQL in a temporary folder (or uses ``--database-url``,
whose database must be empty), applies chathub's migrations, writes
``--messages`` chat messages through the flusher's own write path
(:func:`chathub.db.store.insert_messages`) from a fixed vocabulary with Zipf-like
word frequencies, then times :func:`chathub.db.search.search` (a page of 20, as the
CLI asks) for rare, middling and common words, a two-word query, a phrase, and a
search narrowed to one user. Prints the median and the worst of ``--runs`` runs per
query; the target is under 100 ms at 100,000 messages.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

from chathub.db import migrate as migrations
from chathub.db import store
from chathub.db.search import SearchQuery, search
from chathub.protocol import Message

#: words messages are made of; the first are the most frequent
VOCABULARY = [f"w{i}" for i in range(5000)]
USERS = [f"user{i}" for i in range(500)]
#: the budget the benchmark checks against, ms
TARGET_MS = 100.0


def corpus(n: int, seed: int = 18) -> list[Message]:
    rnd = random.Random(seed)
    weights = [1 / (i + 1) for i in range(len(VOCABULARY))]  # Zipf-like
    t0 = 1_700_000_000_000
    out = []
    for i in range(n):
        words = rnd.choices(VOCABULARY, weights, k=rnd.randint(3, 15))
        out.append(Message(type="chat", id=f"{t0 + i * 10}-0", from_=rnd.choice(USERS),
                           text=" ".join(words), ts=t0 + i * 10))
    return out


QUERIES = {
    "common word (w0)": SearchQuery("w0"),
    "middling word (w50)": SearchQuery("w50"),
    "rare word (w4000)": SearchQuery("w4000"),
    "absent word": SearchQuery("nowhere"),
    "two words (w3 w40)": SearchQuery("w3 w40"),
    'phrase ("w0 w1")': SearchQuery('"w0 w1"'),
    "rare word, one user": SearchQuery("w900", user="user7"),
    "common word, page 10": SearchQuery("w0", before=None),
}


async def run(url: str, messages: int, runs: int) -> int:
    conn = await asyncpg.connect(url)
    await migrations.migrate(conn)
    have = await conn.fetchval("SELECT count(*) FROM messages")
    await conn.close()
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    try:
        if have < messages:
            started = time.perf_counter()
            rows = corpus(messages)[have:]
            for i in range(0, len(rows), 5000):
                await store.insert_messages(pool, rows[i:i + 5000])
            print(f"wrote {len(rows)} messages in {time.perf_counter() - started:.1f}s")
        await pool.execute("ANALYZE messages")
        # page 10 of the common word: the id of the 200th hit
        page = await search(pool, SearchQuery("w0", limit=200))
        QUERIES["common word, page 10"] = SearchQuery("w0", before=page["hits"][-1]["id"])
        print(f"{'query':28} {'hits':>5} {'median ms':>10} {'worst ms':>9}")
        worst_all = 0.0
        for name, q in QUERIES.items():
            times = []
            hits = 0
            for _ in range(runs):
                t = time.perf_counter()
                result = await search(pool, q)
                times.append((time.perf_counter() - t) * 1000)
                hits = len(result["hits"])
            worst_all = max(worst_all, statistics.median(times))
            print(f"{name:28} {hits:5d} {statistics.median(times):10.1f} {max(times):9.1f}")
        print(f"{messages} messages: slowest median {worst_all:.1f} ms "
              f"({'within' if worst_all < TARGET_MS else 'OVER'} the {TARGET_MS:.0f} ms target)")
        return 0 if worst_all < TARGET_MS else 1
    finally:
        await pool.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.search", description=__doc__.split("\n")[0])
    p.add_argument("--messages", type=int, default=100_000)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--database-url", default="")
    args = p.parse_args(argv)
    if args.database_url:
        return asyncio.run(run(args.database_url, args.messages, args.runs))
    from chathub.services import EmbeddedPostgres

    with tempfile.TemporaryDirectory(prefix="chbs") as d:
        pg = EmbeddedPostgres(Path(d))
        url = pg.start()
        try:
            return asyncio.run(run(url, args.messages, args.runs))
        finally:
            pg.stop()


if __name__ == "__main__":
    sys.exit(main())
