"""Chunked img2vid planning (docs/CHUNKED.md): groups balanced by clip duration, how many chunks, the fork a
long joined video answers with, and a chunk's range checked. End to end: tests/integration/
test_chunked_img2vid.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from reelforge.config import Settings
from reelforge.ops.context import OpContext
from reelforge.ops.img2vid import Img2VidParams
from reelforge.ops.img2vid_chunks import balanced_groups, chunk_count
from reelforge.ops.registry import get_operation

OP = get_operation("img2vid")


@pytest.mark.parametrize(("durations", "n", "groups"), [
    ([5] * 6, 3, [(0, 2), (2, 4), (4, 6)]),
    ([3, 5, 4, 4, 6, 2], 3, [(0, 2), (2, 4), (4, 6)]),
    ([1, 1, 1, 10, 1, 1], 3, [(0, 3), (3, 4), (4, 6)]),  # the long clip alone
    ([10, 1, 1, 1], 2, [(0, 1), (1, 4)]),
    ([1, 2], 5, [(0, 1), (1, 2)]),  # never more groups than clips
    ([4], 1, [(0, 1)]),
])
def test_groups_are_contiguous_and_balanced_by_duration(durations: list[float], n: int,
                                                        groups: list[tuple[int, int]]) -> None:
    assert balanced_groups(durations, n) == groups


def fork_ctx(tmp_path: Path, **settings: object) -> OpContext:
    return OpContext.for_test(tmp_path / "w", Settings(data_dir=tmp_path / "d", **settings),  # type: ignore[arg-type]
                              can_fork=True, workers=8)


def test_chunk_count_is_capped_by_minimum_length_and_images(tmp_path: Path) -> None:
    ctx = fork_ctx(tmp_path, chunk_min_s=3)
    assert chunk_count(None, ctx, 24, 6) == 6  # 8 workers, 8 chunks of 3 s, but 6 images
    assert chunk_count(None, ctx, 10, 6) == 3  # no chunk shorter than 3 s
    assert chunk_count(2, ctx, 24, 6) == 2 and chunk_count(1, ctx, 24, 6) == 1
    assert chunk_count(4, OpContext.for_test(tmp_path / "x", ctx.settings), 24, 6) == 1  # this job cannot fork


def test_a_long_joined_video_forks_children_weighted_by_frames(tmp_path: Path, make_image) -> None:
    ctx = fork_ctx(tmp_path, chunk_threshold_s=2, chunk_min_s=1)
    imgs = [str(make_image(size="320x240", name=f"{i}.png")) for i in range(4)]
    images = [{"image": p, "duration_s": d} for p, d in zip(imgs, [1.0, 1.0, 2.0, 0.4], strict=True)]
    result = OP.run(Img2VidParams(images=images, size="160x90", fps=5, join=True, chunks=2), ctx)
    assert result.fork is not None and not result.outputs
    kids = result.fork.children
    assert [k["params"]["chunk"] for k in kids] == [
        {"index": 0, "first": 0, "end": 2, "threads": ctx.settings.compute.threads_per_job, "clips": False},
        {"index": 1, "first": 2, "end": 4, "threads": ctx.settings.compute.threads_per_job, "clips": False}]
    assert [k["weight"] for k in kids] == [10, 12] and all(k["op"] == "img2vid" for k in kids)
    # not joined, or under the threshold: no fork
    assert OP.run(Img2VidParams(images=images, size="160x90", fps=5, chunks=2), ctx).fork is None
    assert OP.run(Img2VidParams(images=images[:2], size="160x90", fps=5, join=True, chunks=2), ctx).fork is None


@pytest.mark.parametrize("chunk", [{"index": 0, "first": 1, "end": 3, "threads": 2},
                                   {"index": 0, "first": 1, "end": 1, "threads": 2},
                                   {"index": 0, "first": 0, "end": 1, "threads": 0}])
def test_a_chunk_outside_the_images_is_refused(chunk: dict[str, int]) -> None:
    with pytest.raises(ValidationError):
        Img2VidParams(images=["a.png", "b.png"], join=True, chunk=chunk)
