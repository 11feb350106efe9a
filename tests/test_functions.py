"""The Valkey functions in cache.lua, called directly on the suite's Valkey: the branches
that end-to-end runs reach only by chance (trim with unflushed entries, recovery past its
limit, ids past 2^53, a history page with messages still on their way to PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from chathub.keys import Keys
from chathub.kv import KV

NODE = "fn-test"


@pytest.fixture
async def kv(valkey_url: str, key_prefix: str) -> AsyncIterator[KV]:
    k = KV(valkey_url, 2.0, key_prefix)
    await k.connect()
    yield k
    await k.close()


async def chat(kv: KV, channel: str, text: str) -> str:
    k = Keys(kv.prefix)
    status, mid, published = await kv.client.fcall(
        kv.fn("accept_chat"), 6, k.stream(channel), k.queue, k.ids, k.rate("chat", "u"),
        k.hits, k.hits_total, 1e9, 1e9, "u", text, channel, kv.prefix, NODE, 60_000)
    assert status == 1 and published == 0  # alone: nothing to publish
    return str(mid)


async def test_ids_increase_across_channels_and_after_the_clock_goes_back(kv):
    k = Keys(kv.prefix)
    a = await chat(kv, "a", "1")
    await kv.client.set(k.ids, "99999999999999-5")  # as if the clock had been far ahead
    b = await chat(kv, "b", "2")
    assert b == "99999999999999-6" and a != b


async def test_trim_keeps_what_is_not_yet_in_postgres(kv):
    k = Keys(kv.prefix)
    ids = [await chat(kv, "t", f"m{i}") for i in range(10)]
    # nothing flushed: the queue holds all ten, so trimming to 3 removes nothing
    assert await kv.client.fcall(kv.fn("trim"), 2, k.queue, k.stream("t"), 3) == 0
    await kv.client.xdel(k.queue, *ids[:6])  # the first six reached PostgreSQL
    assert await kv.client.fcall(kv.fn("trim"), 2, k.queue, k.stream("t"), 3) == 6
    left = [e[0] for e in await kv.client.xrange(k.stream("t"))]
    assert left == ids[6:]
    await kv.client.xdel(k.queue, *ids[6:9])  # all but the newest flushed: keep 3 exactly
    assert await kv.client.fcall(kv.fn("trim"), 2, k.queue, k.stream("t"), 3) == 1
    assert [e[0] for e in await kv.client.xrange(k.stream("t"))] == ids[7:]


async def test_recover_past_its_limit_or_after_a_trim_is_not_recovered(kv):
    k = Keys(kv.prefix)
    ids = [await chat(kv, "r", f"m{i}") for i in range(8)]
    ok = await kv.client.fcall(kv.fn("recover"), 2, k.stream("r"), k.ids, ids[2], 10, "")
    assert ok[0] == 1 and [e[0] for e in ok[1]] == ids[3:]
    over = await kv.client.fcall(kv.fn("recover"), 2, k.stream("r"), k.ids, ids[2], 4, "")
    assert over == [0]
    await kv.client.xtrim(k.stream("r"), minid=ids[5], approximate=False)
    lost = await kv.client.fcall(kv.fn("recover"), 2, k.stream("r"), k.ids, ids[2], 10, "")
    assert lost == [0]
    newer = await kv.client.fcall(kv.fn("recover"), 2, k.stream("r"), k.ids,
                                  "18446744073709551615-0", 10, "")
    assert newer == [0]


async def test_history_says_when_older_messages_are_still_unflushed(kv):
    k = Keys(kv.prefix)
    ids = [await chat(kv, "h", f"m{i}") for i in range(3)]
    await kv.client.xdel(k.queue, *ids[1:])  # only the oldest is still on its way
    page = await kv.client.fcall(kv.fn("history"), 3, k.stream("h"), k.ids, k.queue, ids[1], 5, "h")
    assert [e[0] for e in page[0]] == [ids[0]] and page[1] == 1
    await kv.client.xtrim(k.stream("h"), minid=ids[1], approximate=False)
    page = await kv.client.fcall(kv.fn("history"), 3, k.stream("h"), k.ids, k.queue, ids[1], 5, "h")
    assert page[0] == [] and page[4] == 1  # PostgreSQL does not have ids[0] yet
    other = await kv.client.fcall(kv.fn("history"), 3, k.stream("x"), k.ids, k.queue, ids[1], 5, "x")
    assert other[4] == 0  # another channel's unflushed message is no reason to wait


async def test_ids_past_two_to_the_53_compare_exactly(kv):
    k = Keys(kv.prefix)
    base = 2**60
    await kv.client.xadd(k.stream("big"), {"f": "u", "t": "a", "n": NODE}, id=f"{base}-1")
    await kv.client.xadd(k.stream("big"), {"f": "u", "t": "b", "n": NODE}, id=f"{base}-2")
    await kv.client.set(k.ids, f"{base}-2")
    got = await kv.client.fcall(kv.fn("recover"), 2, k.stream("big"), k.ids, f"{base}-1", 10, "")
    assert got[0] == 1 and [e[0] for e in got[1]] == [f"{base}-2"]


async def test_a_resend_key_answers_a_resend_with_the_first_id(kv):
    """The same (connection, ref) and text within the window: the first id, nothing stored
    again and no rate-limit charge; another text under the same key is a new message."""
    k = Keys(kv.prefix)

    async def accept(text: str) -> list:
        return await kv.client.fcall(
            kv.fn("accept_chat"), 8, k.stream("rs"), k.queue, k.ids, k.rate("chat", "u"),
            k.hits, k.hits_total, k.deleted("rs"), k.resend("sess:r1"), 1e9, 1e9, "u", text, "rs", kv.prefix,
            NODE, 60_000)

    first = await accept("hello")
    again = await accept("hello")
    assert first[0] == 1 and again == [3, first[1]]
    other = await accept("changed")
    assert other[0] == 1 and other[1] != first[1]
    assert await kv.client.xlen(k.stream("rs")) == 2
    assert 0 < await kv.client.pttl(k.resend("sess:r1")) <= 120_000


# -- slow mode (chathub.slowmode): a channel's own budget on top of the chat budget --------


async def accept_slow(kv: KV, channel: str, rate: float, burst: int,
                      slow: tuple[float, int] | None, resend: str | None = None,
                      text: str = "hi") -> list:
    """chathub_accept_chat for user u, with the channel's budget (rate, burst) when slow."""
    k = Keys(kv.prefix)
    keys = [k.stream(channel), k.queue, k.ids, k.rate("chat", "u"), k.hits, k.hits_total,
            k.deleted(channel)]
    keys += [k.resend(resend)] if resend else []
    keys += [k.slow(channel, "u")] if slow else []
    return await kv.client.fcall(kv.fn("accept_chat"), len(keys), *keys, rate, burst, "u", text,
                                 channel, kv.prefix, NODE, 60_000, *(slow or ()))


async def test_a_slow_channel_spends_its_own_budget_and_the_global_one(kv):
    """The channel's budget refuses the second chat (slow=1) with the wait of its rate; the
    user's other channels and the global budget are untouched by that refusal."""
    k = Keys(kv.prefix)
    first = await accept_slow(kv, "raid", 1e9, 1000, (0.1, 1))
    assert first[0] == 1
    global_tat = await kv.client.get(k.rate("chat", "u"))
    refused = await accept_slow(kv, "raid", 1e9, 1000, (0.1, 1))
    assert refused[0] == 0 and refused[2] == 1 and 9000 < refused[1] <= 10_000
    assert await kv.client.get(k.rate("chat", "u")) == global_tat  # neither was spent
    assert (await accept_slow(kv, "calm", 1e9, 1000, None))[0] == 1  # another channel: no slow key
    assert await kv.client.exists(k.slow("calm", "u")) == 0
    assert int(await kv.client.get(k.hits_total)) == 1


async def test_the_stricter_budget_wins_and_a_refusal_spends_neither(kv):
    """Global burst 1 with a generous channel budget: the global budget refuses (slow=0)
    and the channel's key keeps its value; a resend key still answers a resend."""
    k = Keys(kv.prefix)
    ok = await accept_slow(kv, "raid", 0.01, 1, (100.0, 50), resend="s:1", text="one")
    assert ok[0] == 1
    slow_tat = await kv.client.get(k.slow("raid", "u"))
    refused = await accept_slow(kv, "raid", 0.01, 1, (100.0, 50), text="two")
    assert refused[0] == 0 and refused[2] == 0 and refused[1] > 90_000
    assert await kv.client.get(k.slow("raid", "u")) == slow_tat
    again = await accept_slow(kv, "raid", 0.01, 1, (100.0, 50), resend="s:1", text="one")
    assert again == [3, ok[1]]
    assert await kv.client.xlen(k.stream("raid")) == 1


# -- versions side by side (chathub.functions) ----------------------------------------------


async def test_two_versions_of_the_functions_share_one_valkey(valkey_url: str, key_prefix: str):
    """A hub of another version loading its functions (a rolling update, or Valkey coming
    back) leaves this version's in place: each calls its own, by names of its own."""
    from chathub.functions import Library, packaged

    mine = packaged()
    other = Library(mine.source.replace(f"#!lua name=chathub_{mine.tag}", "#!lua name=chathub", 1)
                    .replace(f"chathub_{mine.tag}_", "chathub_") + "\n-- another version\n")
    assert other.tag != mine.tag and other.name("trim") != mine.name("trim")
    assert "'chathub_trim'" not in other.source and f"'chathub_{other.tag}_trim'" in other.source
    here = KV(valkey_url, 2.0, key_prefix)
    there = KV(valkey_url, 2.0, key_prefix, library=other)
    try:
        await here.connect()
        await there.connect()  # loaded after this version's: must not replace it
        assert {mine.library, other.library} <= await loaded(here)
        await here.connect()  # and this version loading again leaves the other's alone
        assert other.library in await loaded(here)
        assert await chat(here, "v", "from this version")
        assert await chat(there, "v", "from the other")
    finally:
        await there.client.function_delete(other.library)
        await here.close()
        await there.close()


async def loaded(kv: KV) -> set[str]:
    """The names of the function libraries Valkey holds (FUNCTION LIST replies in pairs)."""
    return {dict(zip(lib[::2], lib[1::2], strict=True))["library_name"]
            for lib in await kv.client.function_list()}


def test_a_source_without_the_library_line_is_refused():
    from chathub.functions import Library

    with pytest.raises(ValueError, match="#!lua name=chathub"):
        Library("redis.register_function('chathub_x', function() end)")
