"""Transitions between clips as an ffmpeg filter graph (xfade for video, acrossfade for audio), built as data.

Each clip overlaps the previous one by `transition_s`, so the joined length is
`sum(durations) - (n - 1) * transition_s`. The inputs must already share size, frame rate, pixel format
and time base (callers normalise first, see `normalise_video_chain`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from reelforge.media.filters import filter_expr

Transition = Literal["none", "fade", "dissolve", "wipeleft", "wiperight", "wipeup", "wipedown",
                     "slideleft", "slideright", "slideup", "slidedown", "fadeblack", "fadewhite"]


def joined_duration(durations: Sequence[float], transition_s: float) -> float:
    return sum(durations) - max(0, len(durations) - 1) * transition_s


def xfade_offsets(durations: Sequence[float], transition_s: float) -> list[float]:
    """Start time (in the joined output) of each of the n-1 transitions."""
    offsets, elapsed = [], 0.0
    for d in durations[:-1]:
        elapsed += d - transition_s
        offsets.append(elapsed)
    return offsets


def xfade_chain(video_labels: Sequence[str], durations: Sequence[float], transition: Transition,
                transition_s: float, out_label: str = "vout") -> list[str]:
    """Filter chains joining `video_labels` (without brackets) with xfade; the result is `[out_label]`."""
    if len(video_labels) != len(durations) or len(video_labels) < 2:
        raise ValueError("need one duration per clip and at least two clips")
    chains, prev = [], video_labels[0]
    for k, offset in enumerate(xfade_offsets(durations, transition_s), start=1):
        label = out_label if k == len(video_labels) - 1 else f"xf{k}"
        fx = filter_expr("xfade", transition=transition, duration=round(transition_s, 6), offset=round(offset, 6))
        chains.append(f"[{prev}][{video_labels[k]}]{fx}[{label}]")
        prev = label
    return chains


def acrossfade_chain(audio_labels: Sequence[str], transition_s: float, out_label: str = "aout") -> list[str]:
    chains, prev = [], audio_labels[0]
    for k in range(1, len(audio_labels)):
        label = out_label if k == len(audio_labels) - 1 else f"ax{k}"
        chains.append(f"[{prev}][{audio_labels[k]}]{filter_expr('acrossfade', d=round(transition_s, 6))}[{label}]")
        prev = label
    return chains


def normalise_video_chain(in_label: str, out_label: str, width: int, height: int, fps: str) -> str:
    """Scale to fit inside WxH (never stretched), pad to WxH, constant fps, yuv420p, square pixels."""
    parts = [
        filter_expr("scale", w=width, h=height, force_original_aspect_ratio="decrease", force_divisible_by=2),
        filter_expr("pad", w=width, h=height, x="(ow-iw)/2", y="(oh-ih)/2", color="black"),
        filter_expr("setsar", r=1),
        filter_expr("fps", fps=fps),
        filter_expr("format", pix_fmts="yuv420p"),
        "settb=AVTB",
    ]
    return f"[{in_label}]{','.join(parts)}[{out_label}]"


def normalise_audio_chain(in_label: str, out_label: str) -> str:
    return (f"[{in_label}]{filter_expr('aresample', osr=48000)},"
            f"{filter_expr('aformat', sample_fmts='fltp', channel_layouts='stereo')}[{out_label}]")
