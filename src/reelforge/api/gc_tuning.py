"""Cyclic-GC settings for the serving process: keep full collections of the start-up heap off requests.

CPython's cyclic collector runs a full (generation 2) collection once enough objects have survived into
the oldest generation, and a full collection walks every tracked object while holding the GIL: the event
loop and every thread of the process stop meanwhile. A started service holds ~190k tracked objects
(FastAPI, pydantic and SQLAlchemy's module-level structures, the ops' schemas), nearly all of them alive
for the life of the process, so each full collection was a ~110 ms pause on the bench machine; under 400
status reads a second, with the executor's slots allocating too, those pauses were most of the p99 of
GET /v1/jobs/{id} (bench/results/api.md, "Paced status p99"). Frozen, a full collection walks ~32k
objects and takes ~15 ms.

`freeze_startup_heap()`, called once the service has started, moves everything alive at that point into
the permanent generation, which collections never walk: later full collections walk only what was made
since. The cost is that a cycle among those start-up objects that later becomes garbage is never freed;
they are module-level and application-lifetime objects, so there is next to none.
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> int:
    """Collect what start-up left as garbage, then freeze the rest; returns how many objects are frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
