"""A chunked render is split by what its stretches cost, not by frame count (pipelines/render_cost.py): frames
where a clip plays, moves or fades cost about twice still ones, and the chunks take about equal time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reelforge.config import Settings
from reelforge.media.probe import MediaInfo, StreamInfo, probe
from reelforge.ops.context import OpContext
from reelforge.ops.registry import get_operation
from reelforge.pipelines.render_cost import gop_costs, moving_spans
from reelforge.pipelines.render_plan import clip_lengths
from reelforge.pipelines.timeline import RenderParams
from tests.conftest import ffmpeg


def _info(name: str, fmt: str, codec: str, duration: float = 10.0) -> MediaInfo:
    stream = StreamInfo(index=0, kind="video", codec=codec, width=64, height=36)
    return MediaInfo(path=name, format_name=fmt, duration_s=duration, size_bytes=1, bit_rate=None,
                     streams=(stream,))


MEDIA = {"clip.mp4": _info("clip.mp4", "mov,mp4,m4a,3gp,3g2,mj2", "h264"),
         "still.png": _info("still.png", "png_pipe", "png", 0.04),
         "anim.gif": _info("anim.gif", "gif", "gif", 2.0)}


def _alternating(seconds: int, **clip: Any) -> dict[str, Any]:
    """10 s video clips and 10 s stills by turns, each fading in over 0.5 s, under a title and captions."""
    clips = [{"asset": {"type": "video" if i % 2 == 0 else "image",
                        "src": "clip.mp4" if i % 2 == 0 else "still.png"},
              "start": t, "length": 10, "transition": {"in": "fade", "duration": 0.5}, **clip}
             for i, t in enumerate(range(0, seconds, 10))]
    words = [{"text": "word", "start": k * 0.5, "end": k * 0.5 + 0.4} for k in range(seconds * 2)]
    return {"timeline": {"duration": seconds, "tracks": [
        {"clips": [{"asset": {"type": "caption", "words": words}, "start": 0, "length": seconds}]},
        {"clips": [{"asset": {"type": "text", "text": "Title"}, "start": 1, "length": 6}]},
        {"clips": clips}]}, "output": {"size": "64x36", "fps": 10}}


def _costs(body: dict[str, Any], gop: int = 10) -> list[float]:
    params = RenderParams.model_validate(body)
    seconds = params.timeline.duration or 0
    return gop_costs(params, clip_lengths(params, MEDIA), MEDIA, frames=int(seconds * 10), rate=10, gop=gop)


def test_playing_video_and_fades_cost_twice_a_still_and_text_and_captions_nothing_more() -> None:
    costs = _costs(_alternating(40))
    # 1 s intervals: a video clip's 10 cost 20 each; a still's first has its 0.5 s fade (5 frames moving)
    assert costs == [20.0] * 10 + [15.0] + [10.0] * 9 + [20.0] * 10 + [15.0] + [10.0] * 9


def test_an_effect_an_animated_gif_and_a_fade_out_move_a_still() -> None:
    def spans(clip: dict[str, Any]) -> list[tuple[float, float]]:
        params = RenderParams.model_validate({"timeline": {"duration": 20, "tracks": [{"clips": [
            {"start": 2, "length": 6, **clip}]}]}, "output": {"size": "64x36", "fps": 10}})
        return list(moving_spans(params, clip_lengths(params, MEDIA), MEDIA, 20))

    still = {"type": "image", "src": "still.png"}
    assert spans({"asset": still}) == []
    assert spans({"asset": still, "effect": "zoomIn"}) == [(2, 8)]
    assert spans({"asset": {"type": "image", "src": "anim.gif"}}) == [(2, 8)]
    assert spans({"asset": still, "fade_in": 1, "transition": {"out": "fade", "duration": 2}}) == [(2, 3), (6, 8)]
    assert spans({"asset": {"type": "text", "text": "t"}, "fade_out": 0.5}) == [(7.5, 8)]


def test_a_long_render_forks_into_chunks_of_about_equal_cost(tmp_path: Path) -> None:
    """The render op itself: a 2-minute timeline of stills and clips whose moving minutes fall unevenly is
    forked into chunks whose costs (and the sound's share) differ by less than one keyframe interval's."""
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x36:rate=10:duration=10", "-f", "lavfi", "-i",
           "sine=f=300:d=10", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac",
           "-shortest", str(tmp_path / "clip.mp4"))
    ffmpeg("-f", "lavfi", "-i", "mandelbrot=size=64x36", "-frames:v", "1", str(tmp_path / "still.png"))
    # video in the first 40 s and the last 20 s, stills between: by frames the first half holds 40 s of video
    # and the second 20 s
    kinds = ["video"] * 4 + ["image"] * 6 + ["video"] * 2
    clips = [{"asset": {"type": kind, "src": str(tmp_path / ("clip.mp4" if kind == "video" else "still.png"))},
              "start": i * 10, "length": 10} for i, kind in enumerate(kinds)]
    body = {"timeline": {"duration": 120, "tracks": [{"clips": clips}]},
            "output": {"format": "mp4", "size": "64x36", "fps": 10}}
    settings = Settings(data_dir=tmp_path / "data")
    ctx = OpContext.for_test(tmp_path / "work", settings, can_fork=True, workers=2)
    op = get_operation("render")
    result = op.run(op.params_model.model_validate(body), ctx)
    assert result.fork is not None
    chunks = [c for c in result.fork.children if not c["params"]["chunk"].get("sound")]
    sound = [c for c in result.fork.children if c["params"]["chunk"].get("sound")]
    starts = [c["params"]["chunk"]["start_frame"] for c in chunks]
    # cost: 600 moving frames x 2 + 600 still = 1800, the sound 4 % of it (72): the first chunk, which
    # carries the sound after it, ends where 864 of cost are done: 40 s of video (800) and 6.4 s of stills
    assert starts == [0, 460]
    weights = [c["weight"] for c in chunks]
    assert weights == [860, 940] and sound[0]["weight"] == 72
    assert abs(weights[0] + sound[0]["weight"] - weights[1]) <= 20  # within one 2 s interval of stills
    assert result.fork.state["duration_s"] == 120 and result.fork.state["has_audio"] is True  # for the join


def test_the_join_copies_the_chunks_and_sound_without_fetching_an_input_again(tmp_path: Path) -> None:
    """The parent's second run needs only what its fork kept: the timeline's sources are not there at all (as
    on a worker that would have to download them again), and the chunks and the sound still join."""
    pieces = []
    for i, colour in enumerate(("red", "blue")):
        piece = tmp_path / f"chunk{i}.mp4"
        ffmpeg("-f", "lavfi", "-i", f"color=c={colour}:size=64x36:rate=10:duration=2", "-c:v", "libx264",
               "-preset", "ultrafast", "-g", "20", "-pix_fmt", "yuv420p", str(piece))
        pieces.append(piece)
    sound = tmp_path / "sound.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine=f=440:duration=4", "-c:a", "aac", str(sound))
    body = {"timeline": {"duration": 4, "tracks": [{"clips": [
        {"asset": {"type": "video", "src": str(tmp_path / "gone.mp4")}, "start": 0, "length": 4}]}]},
        "output": {"format": "mp4", "size": "64x36", "fps": 10, "poster": 3.0}}
    children = [{"id": f"c{i}", "outputs": {"chunk": str(p)}, "data": {}} for i, p in enumerate(pieces)]
    children.append({"id": "s", "outputs": {"sound": str(sound)}, "data": {"sound": True}})
    ctx = OpContext.for_test(tmp_path / "work", Settings(data_dir=tmp_path / "data"), resumed={
        "state": {"frames": 40, "gop": 20, "chunks": 2, "duration_s": 4.0, "has_audio": True},
        "children": children, "outputs": {}})
    op = get_operation("render")
    result = op.run(op.params_model.model_validate(body), ctx)
    info = probe(result.outputs["render"])
    assert info.video is not None and info.video.frames == 40 and info.audio is not None
    assert abs(info.duration_s - 4.0) < 0.1
    assert result.data["chunks"] == 2 and result.data["audio"] is True and "poster" in result.outputs
