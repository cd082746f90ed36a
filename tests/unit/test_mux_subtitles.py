"""mux_subtitles: a soft subtitle track is added and nothing is re-encoded."""

from __future__ import annotations

import subprocess

import pytest
from pydantic import ValidationError

from reelforge.errors import MediaError
from reelforge.ops.mux_subtitles import MuxSubtitlesParams
from reelforge.ops.registry import get_operation
from tests.unit.video_helpers import streams

OP = get_operation("mux_subtitles")
SRT = "1\n00:00:00,000 --> 00:00:01,000\nHello: 'world' [1], a\\b {x}\n\n2\n00:00:01,000 --> 00:00:02,000\nBye\n"


def _packets_md5(path, stream="v:0"):
    return subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(path), "-map", f"0:{stream}", "-c", "copy",
                           "-f", "md5", "-"], capture_output=True, text=True, check=True).stdout.strip()


def _subtitle_text(path):
    return subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(path), "-map", "0:s:0", "-f", "srt", "-"],
                          capture_output=True, text=True, check=True).stdout


def test_mp4_gets_mov_text_without_reencoding(ctx, make_video):
    video = make_video(duration=2.0)
    result = OP.run(MuxSubtitlesParams(input=str(video), subtitles_text=SRT, language="fra", title="Français"),
                    ctx)
    out = result.outputs["video"]
    kinds = {s["codec_type"]: s for s in streams(out)}
    assert kinds["subtitle"]["codec_name"] == "mov_text"
    assert kinds["subtitle"]["tags"]["language"] == "fra"
    assert _packets_md5(out) == _packets_md5(video)  # video packets identical: copied
    assert _packets_md5(out, "a:0") == _packets_md5(video, "a:0")
    text = _subtitle_text(out)
    assert "Hello: 'world' [1], a\\b" in text and "Bye" in text


def test_mkv_with_vtt_file(ctx, make_video, tmp_path):
    vtt = tmp_path / "subs.vtt"
    vtt.write_text("WEBVTT\n\n00:00.000 --> 00:01.500\nCaf&eacute; <i>ok</i>\n", encoding="utf-8")
    result = OP.run(MuxSubtitlesParams(input=str(make_video(duration=2.0)), subtitles=str(vtt), container="mkv"),
                    ctx)
    out = result.outputs["video"]
    assert out.suffix == ".mkv"
    sub = next(s for s in streams(out) if s["codec_type"] == "subtitle")
    assert sub["codec_name"] == "subrip"
    assert "Café" in _subtitle_text(out)


def test_webm_needs_webm_codecs(ctx, make_video):
    with pytest.raises(MediaError) as err:
        OP.run(MuxSubtitlesParams(input=str(make_video(duration=1.0)), subtitles_text=SRT, container="webm"), ctx)
    assert err.value.code == "container_incompatible"


@pytest.mark.parametrize("bad", [{"language": "english"}, {"title": "a\nb"}, {"container": "avi"},
                                 {"subtitles": "s.srt"}])
def test_bad_params(bad):
    with pytest.raises(ValidationError):
        MuxSubtitlesParams(**{"input": "v.mp4", "subtitles_text": SRT, **bad})
