"""concat: stream copy for compatible clips, normalised re-encode otherwise, xfade transitions."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from reelforge.errors import MediaError
from reelforge.media.probe import probe
from reelforge.ops.concat import ConcatParams, plan_normalise
from reelforge.ops.registry import get_operation
from tests.unit.video_helpers import duration, frames, streams

OP = get_operation("concat")


def test_compatible_clips_join_by_copy(ctx, make_video):
    a = make_video(duration=1.0, name="a.mp4")
    b = make_video(duration=1.5, name="b.mp4", source="smptebars")
    result = OP.run(ConcatParams(inputs=[str(a), str(b)]), ctx)
    assert result.data["method"] == "copy"
    out = result.outputs["video"]
    assert [s["codec_type"] for s in streams(out)] == ["video", "audio"]
    assert abs(duration(out) - 2.5) <= 0.04 + 1e-6
    # second clip's content is really there and decodes (colour bars: strongly saturated)
    last = frames(out, at=2.2, count=1)[0].astype(int)
    assert (last.max(axis=2) - last.min(axis=2)).mean() > 60
    assert ctx.notes["encoder"] == "copy"


def test_mixed_clips_are_normalised(ctx, make_video):
    a = make_video(duration=1.0, size="320x240", fps=25, name="a.mp4")
    b = make_video(duration=1.0, size="120x160", fps=15, audio=False, name="b.mp4")
    result = OP.run(ConcatParams(inputs=[str(a), str(b)], quality="draft"), ctx)
    assert result.data["method"] == "reencode"
    out = result.outputs["video"]
    v, a_stream = streams(out)
    assert (v["width"], v["height"], v["r_frame_rate"]) == (320, 240, "25/1")
    assert a_stream["codec_type"] == "audio"
    assert abs(duration(out) - 2.0) <= 0.04 + 1e-6
    # the portrait clip is letterboxed, not stretched: black bars left and right
    frame = frames(out, at=1.5, count=1)[0]
    assert frame[:, :60].max() < 40 and frame[:, 140:180].max() > 100


def test_transition_shortens_by_overlap(ctx, make_video):
    clips = [str(make_video(duration=1.0, name=f"{i}.mp4")) for i in range(3)]
    result = OP.run(ConcatParams(inputs=clips, transition="wipeleft", transition_s=0.4, quality="draft"), ctx)
    out = result.outputs["video"]
    assert abs(duration(out) - (3.0 - 2 * 0.4)) <= 0.04 + 1e-6
    assert abs(duration(out, "a:0") - 2.2) <= 0.05
    assert ctx.notes["encoder"] in ("libx264", "h264_nvenc")


def test_size_override_forces_reencode(ctx, make_video):
    clips = [str(make_video(duration=0.5, name=f"{i}.mp4")) for i in range(2)]
    result = OP.run(ConcatParams(inputs=clips, size="160x120", fps=10, quality="draft"), ctx)
    v = streams(result.outputs["video"])[0]
    assert (v["width"], v["height"], v["r_frame_rate"]) == (160, 120, "10/1")


def test_input_without_video(ctx, make_video, make_audio):
    with pytest.raises(MediaError) as err:
        OP.run(ConcatParams(inputs=[str(make_video(duration=0.5)), str(make_audio())]), ctx)
    assert err.value.code == "no_video_stream" and "Input 2" in err.value.message


def test_plan_offsets(make_video):
    infos = [probe(make_video(duration=d, name=f"{d}.mp4")) for d in (1.0, 2.0, 1.0)]
    plan = plan_normalise(ConcatParams(inputs=["a", "b", "c"], transition="fade", transition_s=0.5), infos)
    assert "offset=0.5" in plan.graph and "offset=2.0" in plan.graph
    assert plan.duration_s == pytest.approx(3.0)
    with pytest.raises(MediaError):
        plan_normalise(ConcatParams(inputs=["a", "b", "c"], transition="fade", transition_s=1.5), infos)


@pytest.mark.parametrize("bad", [{"inputs": ["a"]}, {"reference": 5}, {"transition": "explode"},
                                 {"transition_s": 0}, {"size": "99x99"}])
def test_bad_params(bad):
    with pytest.raises(ValidationError):
        ConcatParams(**{"inputs": ["a", "b"], **bad})
