"""The serving process's start-up heap is frozen out of full GC collections (api/gc_tuning.py)."""

from __future__ import annotations

import subprocess
import sys

# run in a child: freezing changes the whole interpreter's collector, not something to do to pytest's
CHILD = """
import gc, weakref
from reelforge.api.gc_tuning import freeze_startup_heap

class Node:
    pass

kept = [Node() for _ in range(1000)]       # alive at start-up: frozen
a, b = Node(), Node()
a.other, b.other = b, a                    # start-up garbage held only by a cycle: freed, not frozen
gone = weakref.ref(a)
del a, b
frozen = freeze_startup_heap()
tracked = {id(o) for o in gc.get_objects()}
print(gone() is None, frozen >= 1000, any(id(n) in tracked for n in kept), gc.isenabled())
"""


def test_freeze_startup_heap_frees_startup_garbage_and_takes_the_rest_out_of_collections() -> None:
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True, timeout=60)
    garbage_freed, frozen_many, still_walked, collector_on = out.stdout.split()
    assert garbage_freed == "True"
    assert frozen_many == "True"
    assert still_walked == "False"  # frozen objects are not in any generation a collection walks
    assert collector_on == "True"  # new objects are still collected
