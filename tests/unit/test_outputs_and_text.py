"""Issue 11 items 4, 7 and 9 (subtitle size): no job succeeds with an empty or streamless output; control
characters in any op's text are refused at validation naming the field; subtitles too heavy for the video
they are burned onto are refused with a code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from reelforge.config import Settings
from reelforge.errors import MediaError, ProcessingError
from reelforge.media.outputs import verify_outputs
from reelforge.ops.context import OpContext
from reelforge.ops.registry import get_operation
from tests.conftest import ffmpeg

SRT = "1\n00:00:00,000 --> 00:00:01,000\nHello\n"


def _run(op_name: str, params: dict[str, Any], ctx: OpContext) -> Any:
    op = get_operation(op_name)
    return op.run(op.params_model.model_validate(params), ctx)


def truncated_y4m(tmp_path: Path) -> Path:
    path = tmp_path / "cut.y4m"  # one frame announced, a few bytes of it present
    path.write_bytes(b"YUV4MPEG2 W64 H48 F25:1 Ip A1:1 C420jpeg\nFRAME\n" + bytes(1000))
    return path


# ---------------------------------------------------------------- item 4: outputs are checked
def test_the_issues_empty_outputs_are_refused(tmp_path: Path, ctx: OpContext) -> None:
    cases = [
        ("caption", {"input": str(truncated_y4m(tmp_path)), "subtitles_text": SRT}),
        ("render", {"timeline": {"tracks": [{"clips": [{"asset": {"type": "text", "text": "hi"}, "start": 0,
                                                        "length": 1e-9}]}]}, "output": {"size": "160x120"}}),
    ]
    for op_name, params in cases:
        result = _run(op_name, params, ctx)  # ffmpeg exits 0 with a 262-byte file ...
        with pytest.raises(ProcessingError) as err:  # ... which the job host refuses to report as done
            verify_outputs(result.outputs, result.data)
        assert err.value.code == "output_invalid", op_name
        assert "no audio or video streams" in err.value.message or "no duration" in err.value.message


def test_good_outputs_pass_and_wrong_ones_do_not(tmp_path: Path, make_video: Any, make_audio: Any) -> None:
    video, audio = make_video(duration=2.0), make_audio(duration=2.0)
    verify_outputs({"video": video, "audio": audio}, {"duration_s": 2.0})
    notes = tmp_path / "notes.json"
    notes.write_text("{}")
    verify_outputs({"probe": notes})
    bad: list[tuple[dict[str, Path], dict[str, Any]]] = [
        ({"video": video}, {"duration_s": 30.0}),  # far from the length the op says it made
        ({"video": tmp_path / "missing.mp4"}, {}),
        ({"audio": (tmp_path / "empty.wav")}, {}),
    ]
    (tmp_path / "empty.wav").write_bytes(b"")
    silent_only = tmp_path / "only_audio.mp4"
    ffmpeg("-i", str(audio), "-c:a", "aac", str(silent_only))
    bad.append(({"video": silent_only}, {}))  # a "video" with no video stream
    picture_only = tmp_path / "picture.m4a"
    ffmpeg("-i", str(video), "-an", "-c:v", "copy", "-f", "mp4", str(picture_only))
    bad.append(({"audio": picture_only}, {}))
    bad.append(({"srt": tmp_path / "never-written.srt"}, {}))
    bad.append(({"render": video.with_name("silent.mp4")}, {"audio": True}))
    ffmpeg("-i", str(video), "-an", "-c:v", "copy", str(video.with_name("silent.mp4")))
    blank = tmp_path / "blank.srt"
    blank.write_text("")
    verify_outputs({"srt": blank, "render": video}, {"audio": True})  # an empty transcript is a result
    for outputs, data in bad:
        with pytest.raises(ProcessingError) as err:
            verify_outputs(outputs, data)
        assert err.value.code == "output_invalid", outputs


# ---------------------------------------------------------------- item 7: control characters
TEXT_FIELDS: list[tuple[str, dict[str, Any], str]] = [
    ("tts", {"text": "Hello\x00world"}, "text"),
    ("tts", {"text": "Hello", "voice": "en\x1b[0m"}, "voice"),
    ("caption", {"input": "v.mp4", "subtitles_text": SRT.replace("Hello", "He\x00llo")}, "subtitles_text"),
    ("caption", {"input": "v.mp4", "subtitles_text": SRT, "style": {"font": "DejaVu\x00Sans"}}, "style"),
    ("mux_subtitles", {"input": "v.mp4", "subtitles_text": SRT, "title": "a\x07b"}, "title"),
    ("render", {"timeline": {"tracks": [{"clips": [{"asset": {"type": "text", "text": "a\x00b"}, "start": 0,
                                                    "length": 1}]}]}}, "timeline"),
    ("render", {"timeline": {"tracks": [{"clips": [{"asset": {"type": "caption", "words": [
        {"text": "hi\x0b", "start": 0, "end": 0.5}]}, "start": 0, "length": 1}]}]}}, "timeline"),
    ("build", {"script": "Hi\x00 there.", "backgrounds": ["b.mp4"]}, "script"),
    ("align", {"audio": "a.wav", "script": "Hi\x7f there."}, "script"),
    ("subtitles", {"words": [{"text": "x\x00", "start": 0, "end": 1}]}, "words"),
    ("pipeline", {"steps": [{"id": "a", "op": "tts", "params": {"text": "x\x00y"}}]}, "steps"),
    ("transcribe", {"input": "v\x00.mp4"}, "input"),
]


@pytest.mark.parametrize(("op_name", "params", "field"), TEXT_FIELDS)
def test_control_characters_are_refused_naming_the_field(op_name: str, params: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        get_operation(op_name).params_model.model_validate(params)
    errors = err.value.errors()
    assert any(e["loc"][:1] == (field,) and "control character" in e["msg"] for e in errors), errors


def test_tabs_and_line_breaks_stay_allowed() -> None:
    get_operation("tts").params_model.model_validate({"text": "Line one.\r\nLine\ttwo.\n"})
    get_operation("caption").params_model.model_validate({"input": "v.mp4", "subtitles_text": SRT.replace(
        "\n", "\r\n")})


def test_subtitle_files_with_control_characters_are_refused(tmp_path: Path, ctx: OpContext,
                                                            make_video: Any) -> None:
    video = make_video(duration=1.0)
    bad = tmp_path / "bad.srt"
    bad.write_text(SRT.replace("Hello", "He\x01llo"))
    for op_name, params in (("caption", {"input": str(video), "subtitles": str(bad)}),
                            ("mux_subtitles", {"input": str(video), "subtitles": str(bad)}),
                            ("render", {"timeline": {"tracks": [{"clips": [{"asset": {"type": "caption",
                                                                                      "src": str(bad)},
                                                                            "start": 0, "length": 1}]}]},
                                        "output": {"size": "160x120"}}),
                            ("subtitles", {"input": str(bad)})):
        with pytest.raises(MediaError) as err:
            _run(op_name, params, ctx)
        assert err.value.code == "unsupported_subtitles", op_name
        assert "control character" in err.value.message


# ---------------------------------------------------------------- item 9: subtitle size against the video
def _many_cues(count: int, text: str = "word") -> str:
    lines = []
    for i in range(count):
        ms = i % 2000
        lines.append(f"{i + 1}\n00:00:00,{ms // 2:03d} --> 00:00:01,{ms // 2:03d}\n{text}\n")
    return "\n".join(lines)


def test_a_900_kb_subtitle_on_a_2_s_clip_is_refused(ctx: OpContext, make_video: Any) -> None:
    video = make_video(duration=2.0)
    heavy = _many_cues(9000, "x" * 80)  # ~900 kB, 9000 cues
    assert len(heavy) > 800_000
    with pytest.raises(MediaError) as err:
        _run("caption", {"input": str(video), "subtitles_text": heavy}, ctx)
    assert err.value.code == "subtitles_too_large"
    assert "2.0 s of video" in err.value.message


def test_subtitle_caps_scale_with_the_video_and_follow_the_settings(tmp_path: Path, make_video: Any) -> None:
    video = make_video(duration=2.0)
    tight = OpContext.for_test(tmp_path / "w", Settings(data_dir=tmp_path / "d", min_subtitle_cues=5,
                                                        max_subtitle_cues_per_s=1, min_subtitle_chars=10_000))
    with pytest.raises(MediaError) as err:
        _run("caption", {"input": str(video), "subtitles_text": _many_cues(6)}, tight)
    assert err.value.code == "subtitles_too_large" and "at most 5" in err.value.message
    result = _run("caption", {"input": str(video), "subtitles_text": _many_cues(5)}, tight)
    verify_outputs(result.outputs, result.data)
    assert result.data["captions"] == 5
    with pytest.raises(MediaError) as err:  # a caption clip of the timeline: its own length is the video
        _run("render", {"timeline": {"tracks": [{"clips": [{"asset": {"type": "caption", "words": [
            {"text": f"w{i}", "start": i * 0.01, "end": i * 0.01 + 0.01} for i in range(60)]}, "start": 0,
            "length": 1}]}]}, "output": {"size": "160x120"}}, tight)
    assert err.value.code == "subtitles_too_large"
