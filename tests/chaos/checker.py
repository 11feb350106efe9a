"""The chaos run's checker: what the clients saw against what PostgreSQL holds.

:func:`check` takes the clients' connection logs (:class:`tests.chaos.clients.Conn` as
dicts), the faults as they happened (run-relative seconds, plus the wall-clock time of
each Valkey SIGKILL) and the ``messages`` and ``sessions`` rows, and verifies:

1. every message a sender saw echoed is in PostgreSQL exactly once, with its text
   (each text is unique in the run, so a text twice means a message stamped twice),
   and no message its sender was told was not sent (``unavailable``, "nothing was
   sent") is stored; a message answered "may have been sent" is resent with its ref
   and must then be stored once;
2. every connection that came back with ``since`` and was told ``recovered: true`` saw
   every message after its ``since`` that was meant for it (public chat and its own
   whispers, up to the newest id it saw) exactly once, in id order;
3. every connection that got a ``welcome`` has a session row;
4. every close code is one the faults explain (see :data:`EXPLAINED_BY`).

A loss inside the window Valkey's AOF may lose on SIGKILL (``appendfsync everysec``:
up to :data:`AOF_WINDOW` s before the kill) is reported as explained, not as a violation.
No I/O here: :mod:`tests.chaos.runner` reads the database and hands the rows in.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

#: seconds before a Valkey SIGKILL whose writes the AOF (fsync every second) may not hold
AOF_WINDOW = 1.5
#: seconds after a fault ends during which closes it caused may still arrive
SLACK = 5.0
#: close code → fault kinds that explain it on the connection's own hub (hub_kill) or anywhere
EXPLAINED_BY: dict[int, set[str]] = {
    1006: {"hub_kill"},           # the hub's process died: no close frame
    1011: {"hub_kill", "valkey_slow", "pg_slow", "valkey_kill"},  # keepalive timeout while stalled
    1013: {"valkey_kill", "valkey_slow"},  # Valkey failed while this connection registered
}
#: kinds of finding docs/failure-modes.md lists as known gaps: reported, not failing a run
KNOWN_GAPS: set[str] = set()
#: faults during which a hub's own message may go out before another hub's older one:
#: its echo on the bus (which orders them, chathub.cluster.echo) was late or lost, and
#: the hub delivered it at the echo deadline
ORDER_FAULTS = {"valkey_slow", "valkey_kill"}
#: most examples listed per kind of violation
EXAMPLES = 10


def id_key(mid: str) -> tuple[int, int]:
    ms, _, seq = mid.partition("-")
    return int(ms), int(seq)


@dataclass
class Verdict:
    """The checker's findings; ``ok`` when no violation is left unexplained."""

    counts: dict[str, int] = field(default_factory=Counter)
    violations: dict[str, list[Any]] = field(default_factory=dict)
    explained: dict[str, int] = field(default_factory=Counter)

    def flag(self, kind: str, example: Any) -> None:
        self.counts[kind] += 1
        ex = self.violations.setdefault(kind, [])
        if len(ex) < EXAMPLES:
            ex.append(example)

    @property
    def ok(self) -> bool:
        return not set(self.violations) - KNOWN_GAPS

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "known_gaps": sorted(set(self.violations) & KNOWN_GAPS),
                "counts": dict(self.counts), "explained": dict(self.explained),
                "violations": self.violations}


def _aof_loss(mid: str, valkey_kills_wall: list[float]) -> bool:
    t = id_key(mid)[0] / 1000
    return any(k - AOF_WINDOW <= t <= k + 0.1 for k in valkey_kills_wall)


def _explained_close(conn: dict[str, Any], faults: list[dict[str, Any]], run_end: float) -> bool:
    code, t = conn["close_code"], conn["closed"]
    if conn["dropped"]:
        return True
    if conn["ended"] or t >= run_end:
        return code in (1000, 1001, 1006)  # closed by the client, or the hubs stopped last
    kinds = EXPLAINED_BY.get(code, set())
    for f in faults:
        if f["kind"] not in kinds or not (f["at"] <= t <= f["at"] + f["down"] + SLACK):
            continue
        if f["kind"] == "hub_kill" and f["params"]["hub"] != conn["hub"]:
            continue
        return True
    return False


def check(conns: list[dict[str, Any]], faults: list[dict[str, Any]], run_end: float,
          valkey_kills_wall: list[float], messages: list[dict[str, Any]],
          sessions: list[dict[str, Any]]) -> Verdict:
    """Verify a run; see the module docstring. ``messages`` rows carry id, sender,
    recipient, text; ``sessions`` rows carry id."""
    v = Verdict()
    by_id = {m["id"]: m for m in messages}
    texts = Counter(m["text"] for m in messages)

    # 1. every echoed message is in PostgreSQL once, with its text
    echoed = [(mid, text) for c in conns for mid, text, _ in c["echoed"]]
    v.counts["echoed"] = len(echoed)
    for mid, text in echoed:
        row = by_id.get(mid)
        if row is None:
            if _aof_loss(mid, valkey_kills_wall):
                v.explained["echoed message lost with Valkey's AOF tail"] += 1
            else:
                v.flag("echoed message missing from PostgreSQL", mid)
        elif row["text"] != text:
            v.flag("id stored with another message's text (id reused)",
                   {"id": mid, "echoed": text, "stored": row["text"]})
    for text, n in texts.items():
        if n > 1:
            v.flag("message stored more than once", {"text": text, "times": n})
    # texts are the refs: a message its sender was told was not sent must not be stored
    refused = {r for c in conns for r in c.get("unavailable_refs", [])}
    phantom = {m["id"] for m in messages if m["text"] in refused}
    for mid in sorted(phantom, key=id_key):
        v.flag("message stored although its sender was told it was not sent",
               {"id": mid, "text": by_id[mid]["text"]})

    # 2. every connection saw messages once and in order; since-recovery saw them all
    public = sorted((id_key(m["id"]), m) for m in messages if m["recipient"] is None)
    whispers = [(id_key(m["id"]), m) for m in messages if m["recipient"] is not None]
    for c in conns:
        if not c["session"]:
            continue
        seen = c["welcome_ids"] + c["live_ids"]
        keys = [id_key(x) for x in seen]
        dup = [x for x, n in Counter(seen).items() if n > 1]
        if dup:
            v.flag("message delivered twice on one connection", {"session": c["session"], "ids": dup[:5]})
        first_live = len(c["welcome_ids"])
        at = c.get("live_at") or []
        bad = []
        for i in range(1, len(keys)):
            if keys[i] > keys[i - 1] or seen[i] in dup:
                continue
            t = at[i - first_live] if first_live <= i < first_live + len(at) else None
            if t is not None and any(f["kind"] in ORDER_FAULTS
                                     and f["at"] <= t <= f["at"] + f["down"] + SLACK
                                     for f in faults):
                v.explained["out of id order while the bus lagged (Valkey fault)"] += 1
                continue
            bad.append((seen[i - 1], seen[i]))
        if bad:
            worst = max(id_key(a)[0] - id_key(b)[0] for a, b in bad)
            v.counts["largest id-order inversion (ms)"] = max(
                v.counts["largest id-order inversion (ms)"], worst)
            v.flag("message delivered out of id order",
                   {"session": c["session"], "pairs": bad[:3], "n": len(bad)})
        if not c["since"]:
            continue
        v.counts["since reconnects"] += 1
        if c["recovered"] is not True:
            v.counts["since answered recovered: false"] += 1
            continue
        if not seen:
            continue
        lo, hi, me = id_key(c["since"]), max(keys), c["user"]
        want = {m["id"] for k, m in public if lo < k <= hi}
        want |= {m["id"] for k, m in whispers if lo < k <= hi and me in (m["sender"], m["recipient"])}
        missed = sorted(want - set(seen) - phantom, key=id_key)
        if missed:
            v.flag("since-recovery missed messages", {"session": c["session"], "since": c["since"],
                                                      "missed": missed[:5], "n": len(missed)})

    # 3. one session row per welcomed connection
    rows = Counter(s["id"] for s in sessions)
    for c in conns:
        if not c["session"]:
            continue
        v.counts["connections"] += 1
        n = rows.get(c["session"], 0)
        if n == 1:
            continue
        if n == 0 and any(k - AOF_WINDOW <= c.get("closed_wall", 0) <= k + 0.1
                          for k in valkey_kills_wall):
            v.explained["session row lost with Valkey's AOF tail"] += 1
        else:
            v.flag("connection without exactly one session row", {"session": c["session"], "rows": n})

    # 4. close codes the faults explain
    codes: Counter[int | None] = Counter()
    for c in conns:
        if not c["session"]:
            continue
        codes[c["close_code"]] += 1
        if not _explained_close(c, faults, run_end):
            v.flag(f"close code {c['close_code']} no fault explains",
                   {"session": c["session"], "hub": c["hub"], "at": round(c["closed"], 1)})
    v.counts.update({f"closed {k}": n for k, n in codes.items()})
    v.counts["refused handshakes"] = sum(1 for c in conns if c["refused"] is not None)
    v.counts["answered: outcome unknown, resent"] = sum(len(c.get("unsure_refs", [])) for c in conns)
    v.counts["resends answered again"] = sum(c.get("repeated_answers", 0) for c in conns)
    return v
