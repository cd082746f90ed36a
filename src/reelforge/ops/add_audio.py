"""`add_audio`: replace or mix an audio track onto a video; the video stream is copied, never re-encoded,
unless its codec cannot go into MP4.

Fit modes decide the output length: `shortest` (the shorter of the two), `loop_video` (the video repeats
until the audio ends), `loop_audio` (the audio repeats until the video ends), `pad` (the video's length;
audio that is shorter ends in silence, longer audio is cut). When nothing about the audio changes
(replace, volume 1, no fades, no loudness target, a codec MP4 holds, no padding) the audio is copied too,
which makes the whole job a remux (hundreds of times faster than realtime).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field, model_validator

from reelforge.errors import MediaError
from reelforge.media.encoders import Quality, encode_with_fallback
from reelforge.media.ffmpeg import ensure_file_output, run_ffmpeg
from reelforge.media.filters import filter_expr, sidechain_duck
from reelforge.media.limits import check_duration_limit, probe_input
from reelforge.media.probe import MediaInfo, require_audio, require_video
from reelforge.ops.context import OpContext, OpResult
from reelforge.ops.params import MediaRef, Params
from reelforge.ops.registry import operation
from reelforge.ops.resources import ENCODES

FitMode = Literal["shortest", "loop_video", "loop_audio", "pad"]
# codecs an MP4 can carry as they are
MP4_VIDEO_CODECS = {"h264", "hevc", "av1", "vp9", "mpeg4"}
MP4_AUDIO_CODECS = {"aac", "mp3", "alac", "opus", "ac3", "eac3", "flac"}


class AddAudioParams(Params):
    video: MediaRef
    audio: MediaRef
    mode: Literal["replace", "mix"] = "replace"
    fit: FitMode = "shortest"
    audio_volume: float = Field(1.0, ge=0, le=8, description="gain of the added track (1 = unchanged)")
    video_volume: float = Field(1.0, ge=0, le=8, description="mix mode: gain of the video's own audio")
    fade_in_s: float = Field(0.0, ge=0, le=60)
    fade_out_s: float = Field(0.0, ge=0, le=60)
    duck: Literal["none", "added", "original"] = Field(
        "none", description="mix mode: 'added' lowers the added track while the video's own sound plays "
        "(music under a talking video); 'original' lowers the video's sound while the added track plays "
        "(narration over footage)")
    loudness_lufs: float | None = Field(None, ge=-70, le=-5, description="EBU R128 integrated loudness target")
    audio_bitrate: Literal["96k", "128k", "160k", "192k", "256k", "320k"] = "192k"
    quality: Quality = "standard"  # only used when the video must be re-encoded

    @model_validator(mode="after")
    def _duck(self) -> AddAudioParams:
        if self.duck != "none" and self.mode != "mix":
            raise ValueError("duck needs mode 'mix' (with 'replace' there is only one track)")
        return self


@dataclass(frozen=True)
class AudioPlan:
    """What the ffmpeg command will do, decided from params and probes alone (pure, table-tested)."""

    duration_s: float
    copy_video: bool
    copy_audio: bool
    loop_video: bool
    loop_audio: bool
    mix: bool
    filter_complex: str | None  # produces [aout] when set


def output_duration(fit: FitMode, video_s: float, audio_s: float) -> float:
    return {"shortest": min(video_s, audio_s), "loop_video": audio_s, "loop_audio": video_s, "pad": video_s}[fit]


def plan_add_audio(params: AddAudioParams, video: MediaInfo, audio: MediaInfo) -> AudioPlan:
    v = require_video(video)
    a = require_audio(audio)
    duration = output_duration(params.fit, video.duration_s, audio.duration_s)
    mix = params.mode == "mix" and video.audio is not None
    needs_pad = params.fit == "pad" and audio.duration_s < duration
    filters_needed = (mix or needs_pad or params.audio_volume != 1.0 or params.fade_in_s > 0
                      or params.fade_out_s > 0 or params.loudness_lufs is not None)
    copy_audio = not filters_needed and a.codec in MP4_AUDIO_CODECS
    graph = None
    if not copy_audio:
        # one sample rate and layout for both tracks (amix and loudnorm need them to agree)
        norm = f"{filter_expr('aresample', osr=48000)},{filter_expr('aformat', channel_layouts='stereo')}"
        chain = [norm, filter_expr("volume", volume=params.audio_volume)]
        if params.fade_in_s > 0:
            chain.append(filter_expr("afade", t="in", st=0.0, d=params.fade_in_s))
        if params.fade_out_s > 0:
            chain.append(filter_expr("afade", t="out", st=max(0.0, duration - params.fade_out_s),
                                     d=params.fade_out_s))
        chain.append("apad")  # silence after the end; atrim below cuts to the output length
        # ducking: one track is the key (split off before the mix) that lowers the other one
        key = {"added": "orig", "original": "new"}.get(params.duck) if mix else None
        ducked = {"orig": "new", "new": "orig"}.get(key or "")

        def label(name: str) -> str:  # where a track's own chain ends: the key is split first
            return f"{name}0" if name == key else name

        parts = [f"[1:a]{','.join(chain)}[{label('new')}]"]
        last = "new"
        if mix:
            parts.append(f"[0:a]{norm},{filter_expr('volume', volume=params.video_volume)},apad[{label('orig')}]")
            mixed = {"orig": "orig", "new": "new"}
            if key and ducked:
                parts.append(f"[{key}0]asplit=2[{key}][key]")
                parts.append(sidechain_duck(ducked, "key", f"{ducked}d"))
                mixed[ducked] = f"{ducked}d"
            parts.append(f"[{mixed['orig']}][{mixed['new']}]"
                         f"{filter_expr('amix', inputs=2, duration='longest', normalize=0)}[mixed]")
            last = "mixed"
        tail = [filter_expr("atrim", end=round(duration, 6))]
        if params.loudness_lufs is not None:
            # loudnorm leaves the channel layout unset; without aformat the encoder cannot negotiate one
            tail += [filter_expr("loudnorm", I=params.loudness_lufs, TP=-1.5, LRA=11),
                     filter_expr("aresample", osr=48000), filter_expr("aformat", channel_layouts="stereo")]
        parts.append(f"[{last}]{','.join(tail)}[aout]")
        graph = ";".join(parts)
    loop_video = params.fit == "loop_video" and video.duration_s < duration
    # A stream copy can only end on a decodable frame: with B-frames the last packets before the cut (in
    # decode order) show up to a few frames past it (measured 0.12 s over on a looped x264 clip). A looped
    # video is cut mid-loop by design, so it is re-encoded to end within one frame of the audio.
    exact_cut = loop_video and (v.b_frames or 0) > 0
    return AudioPlan(duration_s=duration, copy_video=v.codec in MP4_VIDEO_CODECS and not exact_cut,
                     copy_audio=copy_audio, loop_video=loop_video,
                     loop_audio=params.fit == "loop_audio" and audio.duration_s < duration, mix=mix,
                     filter_complex=graph)


def add_audio_args(plan: AudioPlan, video_path: str, audio_path: str, out: str, video_args: tuple[str, ...],
                   audio_bitrate: str) -> list[str]:
    """The ffmpeg command for a plan (`video_args` are the encoder's args when the video is re-encoded)."""
    args = [*(["-stream_loop", "-1"] if plan.loop_video else []), "-i", video_path,
            *(["-stream_loop", "-1"] if plan.loop_audio else []), "-i", audio_path]
    if plan.filter_complex:
        args += ["-filter_complex", plan.filter_complex, "-map", "0:v:0", "-map", "[aout]"]
    else:
        args += ["-map", "0:v:0", "-map", "1:a:0"]
    args += ["-c:v", "copy"] if plan.copy_video else list(video_args)
    args += ["-c:a", "copy"] if plan.copy_audio else ["-c:a", "aac", "-b:a", audio_bitrate]
    return [*args, "-t", f"{plan.duration_s:.6f}", "-movflags", "+faststart", out]


@operation(
    "add_audio",
    params=AddAudioParams,
    summary="Replace or mix audio onto a video (volume, fades, fit modes, loudness); video stream-copied.",
    resources=ENCODES,
    timeout_s=1800,
    example={"video": "https://example.com/clip.mp4", "audio": "https://example.com/music.mp3",
             "mode": "mix", "fit": "loop_audio", "audio_volume": 0.4, "fade_out_s": 2, "loudness_lufs": -16},
)
def run(params: AddAudioParams, ctx: OpContext) -> OpResult:
    ctx.stage("probing")
    video_path, audio_path = ctx.fetch(params.video), ctx.fetch(params.audio)
    video = probe_input(video_path, ctx.settings, params.video, "video")
    audio = probe_input(audio_path, ctx.settings, params.audio, "audio")
    plan = plan_add_audio(params, video, audio)
    if params.mode == "mix" and not plan.mix:
        ctx.note(mix="the video has no audio track: the added audio is the only track")
    if plan.duration_s <= 0:
        raise MediaError("The video or the audio has no duration.", code="empty_media")
    check_duration_limit(plan.duration_s, ctx.settings, "The output")
    out = ctx.output_path("video", ".mp4")
    ctx.stage("muxing", 0.05)
    if plan.copy_video:
        ctx.note(encoder="copy")
        run_ffmpeg(add_audio_args(plan, str(video_path), str(audio_path), str(out), (), params.audio_bitrate),
                   ctx, duration_s=plan.duration_s, span=(0.05, 1.0))
    else:
        encode_with_fallback(
            lambda c: add_audio_args(plan, str(video_path), str(audio_path), str(out), c.args,
                                     params.audio_bitrate),
            ctx, params.quality, duration_s=plan.duration_s, span=(0.05, 1.0), stage="encoding")
    ensure_file_output(out)
    ctx.progress(1.0)
    return OpResult(outputs={"video": out}, data={
        "duration_s": round(plan.duration_s, 3), "video_copied": plan.copy_video, "audio_copied": plan.copy_audio,
        "mixed": plan.mix, "fit": params.fit})
