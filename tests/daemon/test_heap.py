"""daemon.heap: start-up's objects leave the collector's view; later garbage is still collected.

Run in a child interpreter: freezing is process-wide and must not touch the test runner's heap."""

from __future__ import annotations

import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import gc, weakref
    from daemon.heap import settle_heap

    class Node:
        pass

    kept = [Node() for _ in range(1000)]
    frozen = settle_heap()
    assert frozen >= 1000, frozen
    assert gc.get_freeze_count() == frozen

    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle made after the freeze
    probe = weakref.ref(a)
    del a, b
    gc.collect()
    assert probe() is None, "a cycle made after the freeze was not collected"

    again = settle_heap()  # a reload: unfreeze, collect, freeze again
    assert again >= 1000 and gc.get_freeze_count() == again
    print("ok", frozen)
    """
)


def test_settle_heap_freezes_start_up_and_later_cycles_are_still_collected() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD], check=False, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok ")
