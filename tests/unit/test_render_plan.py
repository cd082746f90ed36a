"""The render plan is a pure function: timeline + probes -> ffmpeg arguments. Checked without ffmpeg."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from reelforge.errors import InvalidParams
from reelforge.media.probe import MediaInfo, StreamInfo
from reelforge.pipelines.render_plan import RenderPlan, fitted_size, num, plan_render
from reelforge.pipelines.timeline import MAX_TIMELINE_S, Clip, RenderParams

VIDEO = MediaInfo("/m/v.mp4", "mov,mp4", 10.0, 1000, None, (
    StreamInfo(0, "video", "h264", width=640, height=480, fps=25.0), StreamInfo(1, "audio", "aac")))
SILENT = MediaInfo("/m/s.mp4", "mov,mp4", 4.0, 1000, None, (StreamInfo(0, "video", "h264", width=1920,
                                                                        height=1080, fps=30.0),))
IMAGE = MediaInfo("/m/i.png", "png_pipe", 0.04, 100, None, (StreamInfo(0, "video", "png", width=300, height=600),))
MUSIC = MediaInfo("/m/a.wav", "wav", 3.0, 100, None, (StreamInfo(0, "audio", "pcm_s16le"),))
MEDIA = {"v.mp4": VIDEO, "s.mp4": SILENT, "i.png": IMAGE, "a.wav": MUSIC}


def params(tracks: list[list[dict[str, Any]]], **extra: Any) -> RenderParams:
    output = extra.pop("output", {"size": "640x360", "fps": 25})
    return RenderParams.model_validate({"timeline": {"tracks": [{"clips": c} for c in tracks], **extra},
                                        "output": output})


def plan(p: RenderParams, **kw: Any) -> RenderPlan:
    return plan_render(p, MEDIA, out=Path("/w/out.mp4"), workdir=Path("/w"), **kw)


def graph_of(result: RenderPlan) -> str:
    return result.args[result.args.index("-filter_complex") + 1]


def plain(graph: str) -> str:
    """The graph with escaping removed, for looking up values."""
    return graph.replace("\\", "").replace("'", "")


def text_clip(text: str, **kw: Any) -> dict[str, Any]:
    return {"asset": {"type": "text", "text": text}, "start": 0, "length": 2, **kw}


def test_user_text_goes_to_a_file_never_into_the_graph() -> None:
    evil = "x';[0:v]drawbox=c=red:t=fill[out];%{pts}\\n"
    result = plan(params([[text_clip(evil)]]))
    graph = graph_of(result)
    assert "drawbox" not in graph and "%{pts}" not in graph
    assert list(result.text_files.values()) == [evil]
    assert "textfile=" in graph and "expansion=" in graph
    assert str(next(iter(result.text_files))) in graph.replace("\\", "")


def test_declared_duration_is_the_last_clip_end_and_bounds_the_output() -> None:
    result = plan(params([[text_clip("a", start=1, length=2)], [{"asset": {"type": "video", "src": "v.mp4"},
                                                                 "start": 0, "length": 4.5}]]))
    assert result.duration_s == 4.5
    assert result.args[result.args.index("-t", len(result.args) - 4) + 1] == "4.5"
    assert ":d=4.5," in plain(graph_of(result))


def test_auto_length_comes_from_the_probe_after_trim() -> None:
    result = plan(params([[{"asset": {"type": "video", "src": "v.mp4", "trim": 2.5}, "start": 1}]]))
    assert result.duration_s == pytest.approx(8.5)
    i = result.args.index("/m/v.mp4")
    assert result.args[i - 5:i] == ["-ss", "2.5", "-t", "7.5", "-i"]


def test_trim_beyond_the_source_is_rejected_with_its_path() -> None:
    with pytest.raises(InvalidParams) as info:
        plan(params([[{"asset": {"type": "video", "src": "s.mp4", "trim": 5}, "start": 0}]]))
    assert info.value.details["path"] == "timeline.tracks[0].clips[0].length"


def test_first_track_is_drawn_on_top() -> None:
    result = plan(params([[text_clip("top")], [{"asset": {"type": "image", "src": "i.png"}, "start": 0,
                                                "length": 2}]]))
    graph = graph_of(result)
    assert graph.index("drawtext") > graph.index("[0:v]")  # the image layer is composed first


@pytest.mark.parametrize(("fit", "scale", "expected"), [
    ("cover", 1.0, (640, 1280, 640, 1280)),
    ("crop", 1.0, (640, 1280, 640, 360)),
    ("contain", 1.0, (180, 360, 180, 360)),
    ("none", 1.0, (300, 600, 300, 600)),
    ("contain", 0.5, (90, 180, 90, 180)),
])
def test_fitted_size(fit: str, scale: float, expected: tuple[int, int, int, int]) -> None:
    clip = Clip.model_validate({"asset": {"type": "image", "src": "i.png"}, "start": 0, "length": 1,
                                "fit": fit, "scale": scale})
    assert fitted_size(clip, 300, 600, 640, 360) == expected


def test_effects_and_transitions_become_filters() -> None:
    result = plan(params([[{"asset": {"type": "image", "src": "i.png"}, "start": 1, "length": 4,
                            "effect": "zoomIn", "opacity": 0.5, "fade_in": 1,
                            "transition": {"in": "wipeLeft", "out": "slideDown", "duration": 1}}],
                          [{"asset": {"type": "video", "src": "v.mp4"}, "start": 0, "length": 5,
                            "effect": "slideLeft"}]]))
    graph = graph_of(result)
    assert "zoompan=z=" in graph and "on/100" in graph  # 4 s at 25 fps
    assert "xfade=transition=wipeleft:duration=1:offset=0" in graph
    assert "xfade=transition=slidedown:duration=1:offset=3" in graph
    assert "lutyuv=a=" in graph and "fade=t=in:st=0:d=1:alpha=1" in graph
    assert "clip((t-0)/5,0,1)" in plain(graph)  # the slide moves over the clip's length
    assert "setpts=PTS-STARTPTS+1/TB" in graph


def test_audio_mixes_clips_and_a_faded_looped_soundtrack() -> None:
    result = plan(params([[{"asset": {"type": "video", "src": "v.mp4", "volume": 0.5}, "start": 2,
                            "length": 3}]],
                         soundtrack={"src": "a.wav", "volume": 0.3, "fade_out": 1}))
    graph = graph_of(result)
    assert "amix=inputs=2" in graph and "adelay=delays=2000:all=1" in graph
    assert "volume=0.3" in graph and "afade=t=out:st=4:d=1" in graph
    assert result.args[result.args.index("/m/a.wav") - 5:result.args.index("/m/a.wav")] == [
        "-stream_loop", "-1", "-t", "5", "-i"]
    assert result.has_audio and "[aout]" in result.args


def test_silent_sources_give_a_video_without_audio() -> None:
    result = plan(params([[{"asset": {"type": "video", "src": "s.mp4"}, "start": 0}]]))
    assert not result.has_audio and "[aout]" not in result.args


@pytest.mark.parametrize(("fmt", "wanted", "unwanted"), [
    ("gif", ["palettegen", "paletteuse", "-loop"], ["[aout]", "-c:a"]),
    ("webm", ["libvpx-vp9", "libopus"], ["libx264"]),
    ("mp3", ["libmp3lame", "[aout]"], ["[vout]"]),
    ("jpg", ["-frames:v", "trim=start=2.5"], ["[aout]"]),
    ("png", ["-frames:v", "format=rgb24"], ["[aout]"]),
    ("mp4", ["libx264", "aac", "+faststart"], []),
])
def test_output_formats(fmt: str, wanted: list[str], unwanted: list[str]) -> None:
    p = params([[{"asset": {"type": "video", "src": "v.mp4"}, "start": 0, "length": 5}]],
               output={"format": fmt, "size": "320x180"})
    text = " ".join(plan(p).args)
    assert all(w in text for w in wanted), text
    assert not any(u in text for u in unwanted), text


def test_mp3_without_sound_is_refused() -> None:
    with pytest.raises(InvalidParams):
        plan(params([[text_clip("a")]], output={"format": "mp3"}))


def test_caption_clip_uses_the_prepared_ass_file() -> None:
    p = params([[{"asset": {"type": "caption", "words": [{"text": "hi", "start": 0, "end": 1}]},
                  "start": 1, "length": 2}], [text_clip("below", length=3)]])
    graph = graph_of(plan(p, captions={(0, 0): Path("/w/cap it's.ass")}))
    assert graph.rstrip().count("ass=filename=") == 1
    assert "cap\\ it\\'" in graph  # the blank and the quote in the path are escaped


@pytest.mark.parametrize(("tracks", "path"), [
    ([[{"asset": {"type": "image", "src": "i.png"}, "start": 0}]], ("timeline", "tracks", 0, "clips", 0)),
    ([[{"asset": {"type": "text", "text": "a", "colour": "red;x"}, "start": 0, "length": 1}]],
     ("timeline", "tracks", 0, "clips", 0, "asset", "text", "colour")),
    ([[{"asset": {"type": "text", "text": "a", "font": "x:y"}, "start": 0, "length": 1}]],
     ("timeline", "tracks", 0, "clips", 0, "asset", "text", "font")),
    ([[{"asset": {"type": "caption", "src": "a.srt", "words": []}, "start": 0, "length": 1}]],
     ("timeline", "tracks", 0, "clips", 0, "asset", "caption")),
    ([[{"asset": {"type": "gif", "src": "a"}, "start": 0, "length": 1}]],
     ("timeline", "tracks", 0, "clips", 0, "asset")),
    ([[text_clip("a", length=1, fade_in=0.8, fade_out=0.8)]], ("timeline", "tracks", 0, "clips", 0)),
    ([[text_clip("a", start=-1)]], ("timeline", "tracks", 0, "clips", 0, "start")),
    ([[{"asset": {"type": "audio", "src": "a.wav"}, "start": 0, "effect": "zoomIn"}]],
     ("timeline", "tracks", 0, "clips", 0)),
])
def test_invalid_timelines_name_the_bad_field(tracks: list[list[dict[str, Any]]], path: tuple[Any, ...]) -> None:
    with pytest.raises(ValidationError) as info:
        params(tracks)
    assert info.value.errors()[0]["loc"][: len(path)] == path


def test_overlaps_and_the_length_cap_are_rejected_with_paths() -> None:
    with pytest.raises(InvalidParams) as info:
        params([[text_clip("a", start=0, length=2), text_clip("b", start=1, length=2)]])
    assert info.value.details["path"] == "timeline.tracks[0].clips[1].start"
    with pytest.raises(InvalidParams) as info:
        params([[text_clip("a", start=MAX_TIMELINE_S - 1, length=5)]])
    assert info.value.code == "timeline_too_long"
    assert info.value.details["path"] == "timeline.tracks[0].clips[0].length"
    with pytest.raises(InvalidParams):
        plan_render(params([[text_clip("a", length=20)]]), MEDIA, out=Path("/o.mp4"), workdir=Path("/w"),
                    max_duration_s=10)


def test_num_formats_plainly() -> None:
    assert [num(x) for x in (1.0, 0.1 + 0.2, 1e-9, -0.0, 12.5)] == ["1", "0.3", "0", "0", "12.5"]


def test_a_still_is_decoded_once_and_held_a_gif_is_looped_by_its_reader() -> None:
    gif = MediaInfo("/m/g.gif", "gif", 1.0, 100, None, (StreamInfo(0, "video", "gif", width=64, height=64),))
    p = params([[{"asset": {"type": "image", "src": "i.png"}, "start": 0, "length": 3.01}],
                [{"asset": {"type": "image", "src": "g.gif"}, "start": 0, "length": 2}]])
    result = plan_render(p, {**MEDIA, "g.gif": gif}, out=Path("/w/out.mp4"), workdir=Path("/w"))
    args, graph = result.args, graph_of(result)
    png_at, gif_at = args.index("/m/i.png"), args.index("/m/g.gif")
    assert "-loop" not in args[png_at - 4:png_at]  # one frame read, decoded and fitted once ...
    assert "loop=loop=76:size=1,setpts=N" in graph  # ... then repeated: 77 frames >= 3.01 s at 25 fps, trimmed
    assert "trim=duration=3.01" in graph
    assert args[gif_at - 7:gif_at] == ["-loop", "1", "-framerate", "25", "-t", "2", "-i"]  # may be animated
