"""The daemon's runtime settings (chathub.loop), in a fresh interpreter each."""

from __future__ import annotations

import json
import subprocess
import sys

from chathub.loop import GC_YOUNG_THRESHOLD


def _in_fresh_python(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         check=True)
    return json.loads(out.stdout)


def test_tune_gc_freezes_startup_and_raises_only_the_young_threshold():
    seen = _in_fresh_python(
        "import gc, json\n"
        "before = gc.get_threshold()\n"
        "from chathub.loop import tune_gc\n"
        "tune_gc()\n"
        "print(json.dumps({'before': before, 'after': gc.get_threshold(),"
        " 'frozen': gc.get_freeze_count(), 'enabled': gc.isenabled()}))\n")
    assert seen["after"] == [GC_YOUNG_THRESHOLD, *seen["before"][1:]]
    assert seen["after"][0] > seen["before"][0]
    assert seen["frozen"] > 1000  # the modules and objects loaded at startup
    assert seen["enabled"]  # cycles are still collected


def test_cycles_are_still_collected_after_tune_gc():
    seen = _in_fresh_python(
        "import gc, json, weakref\n"
        "from chathub.loop import tune_gc\n"
        "tune_gc()\n"
        "class Node: pass\n"
        "a, b = Node(), Node(); a.other, b.other = b, a\n"
        "alive = weakref.ref(a); del a, b\n"
        f"held = [[] for _ in range(3 * {GC_YOUNG_THRESHOLD})]  # live allocations trigger it\n"
        "print(json.dumps({'alive': alive() is not None}))\n")
    assert seen == {"alive": False}
