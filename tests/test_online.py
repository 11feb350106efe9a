"""Online (chathub/cluster/presence.py): a sorted set of names kept as one sorted list."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from chathub.cluster.presence import Online

names = st.sampled_from(["a", "b", "bb", "c", "z", "ä", "A", ""])
ops = st.lists(st.tuples(st.sampled_from(["add", "discard", "replace"]),
                         st.lists(names, max_size=4)), max_size=40)


@given(ops)
def test_online_behaves_as_a_sorted_set(steps):
    online, model = Online(), set()
    for op, users in steps:
        if op == "replace":
            online.replace(users)
            model = set(users)
        else:
            for u in users:
                getattr(online, op)(u)
                getattr(model, op)(u)
        assert online.sorted() == sorted(model)
        assert len(online) == len(model)
        for u in ["a", "b", "bb", "c", "z", "ä", "A", "", "q"]:
            assert (u in online) == (u in model)
