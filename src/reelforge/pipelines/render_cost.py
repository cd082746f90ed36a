"""What each keyframe interval of a timeline costs to render, so that a chunked render's chunks take about
equal time (docs/CHUNKED.md). No I/O here.

A frame in which something moves costs about twice one that holds still. x264 skips the unchanged blocks of a
still picture, and a video clip is decoded again on every frame. Measured through the render op on one core at
1080p25, standard quality, under a caption track (bench/bench_chunked.py's media): 500 frames of a video clip
took 13.0-14.1 s, 500 frames of a still 6.9-7.0 s. Splitting by frame count put more of the moving minutes in
one chunk than the other, and that chunk ended last. The model only ranks stretches against each other. Their
exact cost is not known before encoding.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping

from reelforge.media.probe import MediaInfo
from reelforge.pipelines.render_plan import ClipKey, is_still
from reelforge.pipelines.timeline import Clip, RenderParams

STILL_FRAME = 1.0  # the unit: one output frame where nothing moves
MOVING_FRAME = 2.0  # one where a clip plays, moves or fades (measured 1.9-2.0x, above)


def _moves_throughout(clip: Clip, media: Mapping[str, MediaInfo]) -> bool:
    asset = clip.asset
    if clip.effect is not None or asset.type in ("video", "luma"):
        return True
    if asset.type == "image":  # an animated GIF plays; a still is decoded once and held
        info = media.get(asset.src)
        return info is not None and not is_still(info)
    return False


def moving_spans(params: RenderParams, lengths: Mapping[ClipKey, float], media: Mapping[str, MediaInfo],
                 duration_s: float) -> Iterator[tuple[float, float]]:
    """The (start, end) seconds of the output in which some clip's picture changes from frame to frame: a
    playing video, an effect's motion, a fade or a transition. Sound, captions and still text are left out."""
    for ti, track in enumerate(params.timeline.tracks):
        for ci, clip in enumerate(track.clips):
            if clip.asset.type in ("audio", "caption"):
                continue
            start, end = clip.start, min(clip.start + lengths[(ti, ci)], duration_s)
            if start >= end:
                continue
            if _moves_throughout(clip, media):
                yield start, end
                continue
            tr = clip.transition
            head = max(clip.fade_in, tr.in_s if tr is not None and tr.in_ is not None else 0.0)
            tail = max(clip.fade_out, tr.out_s if tr is not None and tr.out is not None else 0.0)
            if head > 0:
                yield start, min(end, start + head)
            if tail > 0:
                yield max(start, end - tail), end


def gop_costs(params: RenderParams, lengths: Mapping[ClipKey, float], media: Mapping[str, MediaInfo], *,
              frames: int, rate: float, gop: int) -> list[float]:
    """The cost of each run of `gop` output frames (the last may be shorter), in still frames."""
    moving = bytearray(frames)
    for start, end in moving_spans(params, lengths, media, frames / rate):
        first, last = max(0, math.floor(start * rate)), min(frames, math.ceil(end * rate))
        if last > first:
            moving[first:last] = b"\x01" * (last - first)
    extra = MOVING_FRAME - STILL_FRAME
    return [STILL_FRAME * len(run) + extra * run.count(1)
            for run in (moving[g:g + gop] for g in range(0, frames, gop))]
