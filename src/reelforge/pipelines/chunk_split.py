"""Where a chunked encode is cut (docs/CHUNKED.md): keyframe intervals grouped into windows so that the
costliest window, which the others wait for, is as cheap as it can be. No I/O here.

A window is a run of whole keyframe intervals (a chunk starts on a keyframe). With the intervals' costs known
(frames by default, pipelines/render_cost.py for a render), the lowest possible cost of the costliest window
is found first (a bisection over that cap, each step a greedy packing). Then each cut is put as near as
that cap allows to where equal shares would put it, so the slack does not all fall on the last window.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence

from reelforge.pipelines.render_plan import Window

_EPS = 1e-9


def chunk_windows(frames: int, chunks: int, gop: int, first_lighter: float = 0.0,
                  costs: Sequence[float] | None = None) -> list[Window]:
    """`frames` split into about `chunks` windows of equal cost, every cut on a multiple of `gop` (a keyframe);
    never more windows than keyframe intervals.

    `costs`: what each run of `gop` frames costs (the last may be shorter); default its frame count.
    `first_lighter`: work worth that much (same unit) that the first window's worker does after it (a
    render's sound child, taken by the first worker to be free): the first window is that much lighter, so
    every worker ends at about the same time (with 2 workers the sound was on the critical path)."""
    gops = math.ceil(frames / gop)
    chunks = max(1, min(chunks, gops))
    if costs is None:
        costs = [min(gop, frames - g * gop) for g in range(gops)]
    if len(costs) != gops:
        raise ValueError(f"{len(costs)} costs for {gops} keyframe intervals")
    if chunks == 1:
        return [Window(0, None)]
    before = list(itertools.accumulate(costs, initial=0.0))  # before[g]: the cost of the intervals ahead of g
    cap = _lowest_cap(before, chunks, first_lighter)
    reach = _reach(before, cap)
    need = _windows_needed(reach)
    share = (before[-1] + first_lighter) / chunks
    cuts = [0]
    for k in range(1, chunks):
        prev = cuts[-1]
        # the window from prev may end anywhere in [lo, hi]: within the cap, the rest still coverable by the
        # windows left (need only falls as g grows), and one interval at least for each of them
        hi = min(_first_reach(before, cap, first_lighter) if prev == 0 else reach[prev], gops - (chunks - k))
        lo = next(g for g in range(prev + 1, hi + 1) if need[g] <= chunks - k)
        target = share * k - first_lighter  # where equal shares would start window k, in cost
        g = min(max(bisect.bisect_left(before, target), lo), hi)
        if g > lo and target - before[g - 1] <= before[g] - target:  # the nearer boundary (ties: the earlier)
            g -= 1
        cuts.append(g)
    return [Window(a * gop, b * gop if b * gop < frames else None)
            for a, b in zip(cuts, [*cuts[1:], gops], strict=True)]


def _reach(before: Sequence[float], cap: float) -> list[int]:
    """reach[g]: the furthest interval boundary a window starting at g can end on within `cap` (at least
    g + 1: one interval is never split)."""
    n = len(before) - 1
    reach, j = [n] * (n + 1), 0
    for g in range(n):
        j = max(j, g + 1)
        while j < n and before[j + 1] - before[g] <= cap + _EPS:
            j += 1
        reach[g] = j
    return reach


def _windows_needed(reach: Sequence[int]) -> list[int]:
    """need[g]: the fewest windows within the cap that cover the intervals from g to the end (greedy: the
    furthest reach each time is optimal)."""
    n = len(reach) - 1
    need = [0] * (n + 1)
    for g in range(n - 1, -1, -1):
        need[g] = 1 + need[reach[g]]
    return need


def _first_reach(before: Sequence[float], cap: float, first_lighter: float) -> int:
    """The furthest end of the first window, which carries `first_lighter` more (at least one interval)."""
    return max(1, bisect.bisect_right(before, cap - first_lighter + _EPS) - 1)


def _lowest_cap(before: Sequence[float], chunks: int, first_lighter: float) -> float:
    """The lowest cost of the costliest window (the first counting `first_lighter`) over every split into at
    most `chunks` windows of whole intervals."""
    n = len(before) - 1

    def fits(cap: float) -> bool:
        return 1 + _windows_needed(_reach(before, cap))[_first_reach(before, cap, first_lighter)] <= chunks

    single = max(b - a for a, b in itertools.pairwise(before))
    lo = max(single, before[1] + first_lighter)  # no window is cheaper than its costliest interval
    hi = before[n] + first_lighter  # one window: always fits
    if fits(lo):
        return lo
    for _ in range(60):  # lo never fits, hi always does
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if fits(mid) else (mid, hi)
        if hi - lo <= _EPS * max(1.0, hi):
            break
    return hi
