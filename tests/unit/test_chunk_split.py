"""Where a chunked encode is cut (pipelines/chunk_split.py): whole keyframe intervals, the costliest window as
cheap as any split could make it, the cuts near equal shares, the first window lighter by its worker's
later work."""

from __future__ import annotations

import functools
import itertools
import random
from collections.abc import Sequence

from reelforge.pipelines.chunk_split import chunk_windows
from reelforge.pipelines.render_plan import Window


def _window_costs(windows: list[Window], costs: Sequence[float], gop: int, first_lighter: float) -> list[float]:
    out = [sum(costs[w.start_frame // gop:(w.end_frame // gop if w.end_frame is not None else len(costs))])
           for w in windows]
    out[0] += first_lighter
    return out


def _best_costliest(costs: Sequence[float], chunks: int, first_lighter: float) -> float:
    """Every split into `chunks` windows tried (small sizes only): the lowest cost of the costliest."""
    n = len(costs)

    @functools.cache
    def best(start: int, left: int) -> float:
        extra = first_lighter if start == 0 else 0.0
        if left == 1:
            return sum(costs[start:]) + extra
        return min(max(sum(costs[start:end]) + extra, best(end, left - 1))
                   for end in range(start + 1, n - left + 2))

    return best(0, chunks)


def test_windows_take_equal_cost_not_equal_frames() -> None:
    # a moving first third, a still rest: split in two by cost, not at the middle frame
    costs = [20.0] * 10 + [10.0] * 20
    assert chunk_windows(300, 2, 10, costs=costs) == [Window(0, 100), Window(100, None)]
    assert chunk_windows(300, 2, 10) == [Window(0, 150), Window(150, None)]
    # the work that follows the first window counts in the same unit: 90 frames (180) + 40 against 220
    assert chunk_windows(300, 2, 10, first_lighter=40, costs=costs) == [Window(0, 90), Window(90, None)]


def test_the_costliest_window_is_the_cheapest_any_split_of_whole_intervals_allows() -> None:
    rng = random.Random(7)
    for _ in range(300):
        gops, gop = rng.randint(1, 14), rng.choice([1, 5, 10])
        frames = gops * gop - rng.randint(0, gop - 1)  # the last interval may be shorter
        costs = [float(rng.choice([1, 2, 3, 10])) * gop for _ in range(gops)]
        chunks, lighter = rng.randint(1, 6), float(rng.choice([0, 0, 3, 25]) * gop)
        windows = chunk_windows(frames, chunks, gop, lighter, costs)
        assert len(windows) == min(chunks, gops)
        assert windows[0].start_frame == 0 and windows[-1].end_frame is None
        assert all(w.start_frame % gop == 0 for w in windows)
        assert all(a.end_frame == b.start_frame for a, b in itertools.pairwise(windows))
        got = max(_window_costs(windows, costs, gop, lighter))
        assert abs(got - _best_costliest(costs, len(windows), lighter)) < 1e-6, (costs, chunks, lighter, windows)


def test_the_slack_is_spread_not_left_to_the_last_window() -> None:
    # 60 intervals in 8 windows: 8 at most each, and 7 and 8 by turns, not seven 8s and a 4
    sizes = [(w.end_frame or 3000) - w.start_frame for w in chunk_windows(3000, 8, 50)]
    assert max(sizes) == 400 and min(sizes) == 350
    # cuts nearest to equal shares (1.75 each) would make [1, 1], [1], [1, 2], [1]: a window of 3; the cap
    # keeps each at 2
    windows = chunk_windows(6, 4, 1, costs=[1.0, 1.0, 1.0, 1.0, 2.0, 1.0])
    assert [w.start_frame for w in windows] == [0, 2, 4, 5]
