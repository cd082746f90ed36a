"""loop: ping-pong frame order checked by pixels, exact durations, audio targets, chunked reversing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

import reelforge.ops.loop as loop_mod
from reelforge.ops.loop import LoopParams, Piece, chunk_ranges, sequence_plan
from reelforge.ops.registry import get_operation
from tests.unit.video_helpers import duration, ffmpeg, frame_count, luma, streams

OP = get_operation("loop")


@pytest.fixture
def counter_video(tmp_path):
    """Frame k is a flat grey of luma 20 + 8k, so frame order can be read back from pixels."""
    def make(n: int = 20, fps: int = 10, audio: bool = False) -> Path:
        out = tmp_path / f"counter{n}.mp4"
        args = ["-f", "lavfi", "-i", f"color=c=black:s=64x48:r={fps}:d={n / fps},geq=lum='20+8*N':cb=128:cr=128"]
        if audio:
            args += ["-f", "lavfi", "-i", f"sine=d={n / fps}", "-c:a", "aac"]
        ffmpeg(*args, "-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv420p", str(out))
        return out

    return make


def _frame_indices(path: Path) -> list[int]:
    lum = luma(path).reshape(-1, 64 * 48).mean(axis=1)
    return [round((v - 20) / 8) for v in lum]


def test_pingpong_order_and_exact_length(ctx, counter_video):
    src = counter_video(n=20)
    result = OP.run(LoopParams(input=str(src), duration_s=5.0), ctx)
    out = result.outputs["video"]
    got = _frame_indices(out)
    period = list(range(20)) + list(range(18, 0, -1))  # no repeated frame at the turns
    expected = (period * 3)[:50]
    assert got == expected
    assert abs(duration(out) - 5.0) <= 0.1 + 1e-6
    assert [s["codec_type"] for s in streams(out)] == ["video"]
    assert ctx.notes["encoder"] in ("libx264", "h264_nvenc")


def test_reverse_in_chunks(ctx, counter_video, monkeypatch):
    # 4 frames of 64x48 per chunk: the 18-frame reversed leg is made of 5 chunks
    monkeypatch.setattr(loop_mod, "REVERSE_CHUNK_BYTES", 64 * 48 * 3 // 2 * 4)
    src = counter_video(n=20)
    result = OP.run(LoopParams(input=str(src), duration_s=4.2), ctx)
    got = _frame_indices(result.outputs["video"])
    assert got == (list(range(20)) + list(range(18, 0, -1)) + list(range(20)))[:42]


def test_forward_loop_to_audio_length_with_audio(ctx, counter_video, make_audio):
    src = counter_video(n=15, audio=True)
    music = make_audio(duration=3.37, name="music.wav")
    result = OP.run(LoopParams(input=str(src), audio=str(music), mode="forward"), ctx)
    out = result.outputs["video"]
    assert _frame_indices(out)[:32] == (list(range(15)) * 3)[:32]
    kinds = [s["codec_type"] for s in streams(out)]
    assert kinds == ["video", "audio"]
    assert abs(duration(out) - 3.37) <= 0.1 + 1e-6
    assert frame_count(out) == round(3.37 * 10)


def test_target_shorter_than_clip(ctx, counter_video):
    result = OP.run(LoopParams(input=str(counter_video(n=20)), duration_s=0.5, mode="forward"), ctx)
    assert _frame_indices(result.outputs["video"]) == [0, 1, 2, 3, 4]


def test_sequence_plan():
    f, r = Piece(Path("f"), 10), Piece(Path("r"), 8)
    whole, partial = sequence_plan([f, r], 30)
    assert [p.path.name for p in whole] == ["f", "r", "f"] and partial == (r, 2)
    whole, partial = sequence_plan([f, r], 18)
    assert [p.path.name for p in whole] == ["f", "r"] and partial is None
    whole, partial = sequence_plan([f], 5)
    assert whole == [] and partial == (f, 5)
    assert chunk_ranges(1, 19, 5) == [(1, 6), (6, 11), (11, 16), (16, 19)]


def test_no_video_stream(ctx, make_audio):
    from reelforge.errors import MediaError

    with pytest.raises(MediaError) as err:
        OP.run(LoopParams(input=str(make_audio()), duration_s=2), ctx)
    assert err.value.code == "no_video_stream"


@pytest.mark.parametrize("bad", [{}, {"duration_s": 2, "audio": "a.wav"}, {"duration_s": 0},
                                 {"duration_s": float("nan")}, {"duration_s": 1e9}, {"mode": "bounce"}])
def test_bad_params(bad):
    with pytest.raises(ValidationError):
        LoopParams(input="v.mp4", **bad)


def test_frames_helper_sanity(counter_video):
    assert np.array_equal(_frame_indices(counter_video(n=5)), [0, 1, 2, 3, 4])
