"""The chaos harness: the checker on hand-made logs, and a short fixed-seed run of the whole thing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.chaos import checker
from tests.chaos.runner import run
from tests.chaos.schedule import make_schedule

#: a seed whose 40 s schedule has a hub SIGKILL, a Valkey SIGKILL, PostgreSQL stopped for
#: 10 s, a slow link to PostgreSQL and dropped clients
SHORT_SEED, SHORT_DURATION = 20, 40.0


def conn(**kw: Any) -> dict[str, Any]:
    base = {"user": "a", "hub": 0, "since": None, "opened": 0.0, "session": "s1",
            "recovered": None, "history_partial": False, "welcome_ids": [], "live_ids": [],
            "echoed": [], "errors": {}, "close_code": 1000, "closed": 50.0, "closed_wall": 0.0,
            "dropped": False, "ended": True, "refused": None, "unavailable_refs": []}
    base.update(kw)
    return base


def msg(mid: str, text: str, sender: str = "a", to: str | None = None) -> dict[str, Any]:
    return {"id": mid, "sender": sender, "recipient": to, "text": text}


def test_checker_passes_a_clean_log_and_flags_each_kind_of_fault() -> None:
    """A consistent log passes; a lost echo, a double store, a gap after since, a missing
    session row and an unexplained close are each flagged; a loss in the AOF window is explained."""
    rows = [msg("10-0", "a#1"), msg("11-0", "b#1", "b"), msg("12-0", "b#2", "b", to="c")]
    sess = [{"id": "s1"}, {"id": "s2"}]
    ok = [conn(live_ids=["10-0", "11-0"], echoed=[("10-0", "a#1", "a#1")]),
          conn(session="s2", since="9-0", recovered=True, live_ids=["10-0", "11-0"])]
    assert checker.check(ok, [], 40.0, [], rows, sess).ok

    bad = [conn(live_ids=["10-0", "11-0"], echoed=[("10-0", "a#1", "a#1"), ("13-0", "a#2", "a#2")]),
           conn(session="s2", since="9-0", recovered=True, live_ids=["11-0"]),
           conn(session="s3", close_code=1011, ended=False, closed=5.0)]
    v = checker.check(bad, [], 40.0, [], [*rows, msg("14-0", "a#1")], sess)
    assert not v.ok
    assert set(v.violations) == {
        "echoed message missing from PostgreSQL", "message stored more than once",
        "since-recovery missed messages", "connection without exactly one session row",
        "close code 1011 no fault explains"}

    # told "nothing was sent" but stored: a violation, not counted again as missed by a
    # connection that recovered with since; told "may have been sent": no promise broken
    told = [conn(unavailable_refs=["b#1"]),
            conn(session="s2", since="9-0", recovered=True, live_ids=["10-0", "12-0"], user="c")]
    v = checker.check(told, [], 40.0, [], rows, sess)
    assert not v.ok and set(v.violations) == {
        "message stored although its sender was told it was not sent"}
    saw = conn(session="s2", since="9-0", recovered=True, live_ids=["10-0", "11-0", "12-0"],
               user="c")
    assert checker.check([conn(unsure_refs=["b#1"]), saw], [], 40.0, [], rows, sess).ok

    # out of id order: a violation, unless a Valkey fault made the bus lag at that moment
    swapped = [conn(live_ids=["11-0", "10-0"], live_at=[3.0, 3.1])]
    assert set(checker.check(swapped, [], 40.0, [], rows, sess).violations) == {
        "message delivered out of id order"}
    slow = [{"kind": "valkey_slow", "at": 2.0, "down": 2.0, "params": {}}]
    v = checker.check(swapped, slow, 40.0, [], rows, sess)
    assert v.ok and v.explained["out of id order while the bus lagged (Valkey fault)"] == 1

    # the same lost echo, stamped within a second before a Valkey SIGKILL: explained
    lost = [conn(echoed=[("13000-0", "a#2", "a#2")])]
    v = checker.check(lost, [], 40.0, [13.5], rows, sess)
    assert v.ok and v.explained["echoed message lost with Valkey's AOF tail"] == 1
    # a 1006 on the hub that was killed then, explained; on another hub, not
    kill = [{"kind": "hub_kill", "at": 5.0, "down": 2.0, "params": {"hub": 0}}]
    assert checker.check([conn(close_code=1006, ended=False, closed=6.0)], kill, 40.0, [], rows, sess).ok
    assert not checker.check([conn(close_code=1006, ended=False, closed=6.0, hub=1)], kill, 40.0,
                             [], rows, sess).ok


def test_schedule_is_fixed_by_its_seed() -> None:
    assert make_schedule(SHORT_SEED, SHORT_DURATION) == make_schedule(SHORT_SEED, SHORT_DURATION)
    kinds = {f.kind for f in make_schedule(SHORT_SEED, SHORT_DURATION)}
    assert {"hub_kill", "valkey_kill", "pg_stop", "pg_slow", "client_drop"} <= kinds


async def test_short_chaos_run_leaves_nothing_unexplained(tmp_path: Path) -> None:
    """Three hubs, 30 clients, 40 s of faults: the checker finds no unexplained violation.

    The run's report, connections, rows and hub logs are kept in ``tmp_path/chaos`` (the
    failure message names it) so that a violation can be traced afterwards."""
    out = tmp_path / "chaos"
    report = await run(SHORT_SEED, SHORT_DURATION, clients=30, interval=2.0, out=out)
    v = report["verdict"]
    assert v["ok"], {"violations": v["violations"], "counts": v["counts"], "kept in": str(out)}
    assert len(report["faults"]) == len(make_schedule(SHORT_SEED, SHORT_DURATION))
    assert v["counts"]["echoed"] > 200 and v["counts"]["since reconnects"] > 0
