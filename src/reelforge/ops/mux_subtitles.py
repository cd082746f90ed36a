"""`mux_subtitles`: add a soft (selectable) subtitle track to a video without re-encoding anything.

MP4 gets a mov_text track, MKV a SubRip (or, for ASS input, ASS) track, WebM a WebVTT track (WebM holds
only VP8/VP9/AV1 video and Opus/Vorbis audio, so that container needs such input). Existing subtitle
tracks of the input are not carried over.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from reelforge.errors import MediaError
from reelforge.media.ffmpeg import ensure_file_output, run_ffmpeg
from reelforge.media.limits import probe_input
from reelforge.media.probe import MediaInfo, require_video
from reelforge.media.subtitle_files import detect_format, load_subtitles, soft_track_srt
from reelforge.ops.caption import SubtitleSource, subtitle_text
from reelforge.ops.context import OpContext, OpResult
from reelforge.ops.params import MediaRef
from reelforge.ops.registry import operation

Container = Literal["mp4", "mkv", "webm"]
WEBM_VIDEO = {"vp8", "vp9", "av1"}
WEBM_AUDIO = {"opus", "vorbis"}


class MuxSubtitlesParams(SubtitleSource):
    input: MediaRef
    language: str = Field("eng", pattern=r"^[a-z]{3}$", description="ISO 639-2 code, e.g. eng, fra, deu")
    title: str | None = Field(None, max_length=100, pattern=r"^[^\x00-\x1f]*$")
    container: Container = "mp4"
    default: bool = Field(True, description="mark the track to be shown by default")


def subtitle_codec(container: Container, fmt: str) -> str:
    if container == "mp4":
        return "mov_text"
    if container == "webm":
        return "webvtt"
    return "ass" if fmt == "ass" else "srt"


def check_container(container: Container, info: MediaInfo) -> None:
    if container != "webm":
        return
    v, a = info.video, info.audio
    if (v and v.codec not in WEBM_VIDEO) or (a and a.codec not in WEBM_AUDIO):
        raise MediaError("WebM holds only VP8/VP9/AV1 video and Opus/Vorbis audio; use mp4 or mkv for this "
                         "input.", code="container_incompatible")


def mux_args(video: str, subs: str, out: str, codec: str, language: str, title: str | None,
             default: bool) -> list[str]:
    args = ["-i", video, "-i", subs, "-map", "0:v", "-map", "0:a?", "-map", "1:0", "-c:v", "copy", "-c:a", "copy",
            "-c:s", codec, "-metadata:s:s:0", f"language={language}"]
    if title:
        args += ["-metadata:s:s:0", f"title={title}"]
    args += ["-disposition:s:0", "default" if default else "0"]
    return [*args, *(["-movflags", "+faststart"] if out.endswith(".mp4") else []), out]


@operation(
    "mux_subtitles",
    params=MuxSubtitlesParams,
    summary="Add a soft subtitle track (mov_text / SubRip / WebVTT) to a video without re-encoding.",
    timeout_s=600,
    example={"input": "https://example.com/clip.mp4", "subtitles": "https://example.com/captions.srt",
             "language": "eng", "container": "mp4"},
)
def run(params: MuxSubtitlesParams, ctx: OpContext) -> OpResult:
    ctx.stage("probing")
    video_path = ctx.fetch(params.input)
    info = probe_input(video_path, ctx.settings, params.input, "video")
    require_video(info)
    check_container(params.container, info)
    text = subtitle_text(params, ctx)
    fmt = detect_format(text, params.format)
    subs = load_subtitles(text, fmt)
    codec = subtitle_codec(params.container, fmt)
    if codec == "ass":
        track = ctx.temp_path("subtitles.ass")
        subs.save(str(track), format_="ass")
    else:
        track = ctx.temp_path("subtitles.srt")
        track.write_text(soft_track_srt(subs, fmt), encoding="utf-8")
    out = ctx.output_path("video", f".{params.container}")
    ctx.note(encoder="copy")
    run_ffmpeg(mux_args(str(video_path), str(track), str(out), codec, params.language, params.title,
                        params.default), ctx, duration_s=info.duration_s, stage="muxing")
    ensure_file_output(out)
    ctx.progress(1.0)
    return OpResult(outputs={"video": out}, data={"format": fmt, "codec": codec, "captions": len(subs.events),
                                                  "language": params.language})
