"""Chunked `img2vid` (docs/CHUNKED.md): a long joined video's images split into contiguous groups balanced by
clip duration, each group's Ken Burns clips rendered by a child job, joined by the parent.

Every clip is its own encode (it starts with a keyframe and carries no encoder state from the clip before),
so a chunk is simply some of the clips the unchunked op would make: the same encoder arguments give the
same bytes, and a join of chunks by stream copy is the join of all clips. What must be fixed is the encoder
itself: CPU libx264 at the quality's settings with a fixed thread count (x264's output depends on it), chosen
once by the parent and handed to every child, whichever machine takes it.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from reelforge.media.codecs import Quality
from reelforge.media.encoders import EncoderChoice, cpu_encoder
from reelforge.media.kenburns import KenBurnsOptions
from reelforge.ops.chunking import chunk_count as shared_chunk_count
from reelforge.ops.context import OpContext
from reelforge.pipelines.cache import file_sha256, step_key
from reelforge.runtime import Fork

MAX_CHUNKS = 64


class Img2VidChunk(BaseModel):
    """Set by the service on the child jobs of a chunked img2vid, not by clients: render images
    `first`..`end` (exclusive) with libx264 on `threads` threads; output each clip (`clips`: a transition
    join or keep_clips follows) or the clips joined as `chunk`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    index: int = Field(ge=0, lt=MAX_CHUNKS)
    first: int = Field(ge=0)
    end: int = Field(ge=1)
    threads: int = Field(ge=1, le=64)
    clips: bool = False


def clip_name(i: int) -> str:
    """The output name of image i's clip (0-based), the same in the unchunked op and in a chunk."""
    return f"clip_{i + 1:03d}"


def chunk_encoder(quality: Quality, threads: int) -> EncoderChoice:
    """The clips' encoder of a long joined img2vid on the CPU, chunked or not: libx264 at the quality's
    settings on a fixed number of threads, so every machine encodes a clip to the same stream."""
    base = cpu_encoder("h264", quality, "long img2vid: the chunks' encoder")
    return dataclasses.replace(base, args=(*base.args, "-threads", str(threads)))


def chunk_count(asked: int | None, ctx: OpContext, total_s: float, images: int) -> int:
    """The shared rule (ops/chunking.chunk_count: the op's `chunks`, else the workers; no chunk shorter than
    compute.chunk_min_s), never more chunks than images."""
    return min(shared_chunk_count(asked, ctx, total_s), images, MAX_CHUNKS)


def balanced_groups(durations: Sequence[float], n: int) -> list[tuple[int, int]]:
    """`n` contiguous, non-empty groups of the clips (index ranges, end exclusive) whose lengths are as
    even as cuts between whole clips allow: each cut at the clip boundary nearest its share of the total."""
    n = max(1, min(n, len(durations)))
    ends, acc = [], 0.0
    for d in durations:
        acc += d
        ends.append(acc)  # ends[i]: where clip i ends
    total = acc
    cuts, prev = [], 0
    for k in range(1, n):
        lo, hi = prev + 1, len(durations) - (n - k)  # at least one clip before and one per group after
        target = total * k / n
        cut = min(range(lo, hi + 1), key=lambda c: (abs(ends[c - 1] - target), c))
        cuts.append(cut)
        prev = cut
    bounds = [0, *cuts, len(durations)]
    return list(itertools.pairwise(bounds))


def plan_fork(base: dict[str, Any], frames: Sequence[int], durations: Sequence[float], n: int, threads: int,
              clips: bool) -> Fork:
    """The children of a chunked img2vid: `base` is the parent's params (JSON); each child renders one
    group of images, weighted by its frames."""
    groups = balanced_groups(durations, n)
    children = []
    for i, (first, end) in enumerate(groups):
        spec = Img2VidChunk(index=i, first=first, end=end, threads=threads, clips=clips)
        children.append({"op": "img2vid", "params": {**base, "chunk": spec.model_dump(mode="json")},
                         "weight": sum(frames[first:end])})
    return Fork(children=children, state={"chunks": len(groups), "clips": clips, "threads": threads,
                                          "groups": [list(g) for g in groups]})


def chunk_key(images: Sequence[Path], options: Sequence[KenBurnsOptions], encoder_args: Sequence[str],
              outputs: Sequence[str]) -> str:
    """The step-cache key of a chunk: its images by content, each clip's motion, the encoder arguments and
    the outputs it names; so an edit to one image misses only the chunk that holds it."""
    return step_key("img2vid.chunk", {"images": [file_sha256(p) for p in images],
                                      "clips": [dataclasses.asdict(o) for o in options],
                                      "encoder": list(encoder_args), "outputs": list(outputs)})
