"""The build's single final encode, planned as data: background + talking head + captions + audio mix.

    [bg]   fps, scale+crop to the output (no-ops when the background already fits)
    [head] (VP9 alpha, looped) scaled to a share of the height, overlaid at a corner
    burn:  ass=<captions.ass> on the composite
    audio: narration padded/cut to D; music looped, faded, ducked by a sidechain compressor keyed on the
           narration, then mixed under it (stereo AAC); a mono narration without music stays mono

When nothing is drawn (no head, captions soft or none) and the background already has the output's
size, frame rate and codec, the video is stream-copied and only the audio is encoded. When there is no
music to mix and the narration already is AAC at 48 kHz in an mp4 (as `build` asks its tts step for: the
narration is encoded there, while the voice speaks), the audio is stream-copied too.

When the picture is encoded and the background is a short loop period repeated many times, the period
can be given decoded (`background_raw`, raw yuv420p on disk): reading raw frames instead of decoding the
same clip again and again saves ~18% of the encode's time on 2 cores (bench/results/build.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from reelforge.media.codecs import DEFAULT_VIDEO_ARGS
from reelforge.media.filters import filter_expr, sidechain_duck
from reelforge.media.frame_rate import rate_arg
from reelforge.media.frame_size import even
from reelforge.media.probe import MediaInfo
from reelforge.pipelines.render_plan import Window, num

Corner = Literal["top_left", "top_right", "bottom_left", "bottom_right"]
CaptionMode = Literal["burn", "soft", "none"]


@dataclass(frozen=True)
class HeadLayout:
    corner: Corner = "bottom_right"
    size: float = 0.3  # overlay height / output height
    margin: float = 0.03  # fraction of the output's shorter side
    loop: bool = True


@dataclass(frozen=True)
class MusicMix:
    volume: float = 0.25
    duck: bool = True
    fade_in: float = 1.0
    fade_out: float = 2.0


RAW_LOOP_MAX_BYTES = 4 * 1024**3  # a longer loop period is decoded as it plays instead


def compose_frames(duration_s: float, fps: float) -> int:
    """How many frames the compose makes of `duration_s`: its fps filter ends the picture on the frame
    nearest the narration's end (half up), not on the last one that starts before it (render_plan.frame_count),
    so a chunked build's windows must cover this many."""
    return max(1, math.floor(duration_s * fps + 0.5))


def raw_loop_bytes(info: MediaInfo, size: tuple[int, int], fps: float) -> int:
    w, h = size
    return math.ceil(info.duration_s * fps) * w * h * 3 // 2


@dataclass(frozen=True)
class ComposeInputs:
    background: MediaInfo
    narration: MediaInfo
    duration_s: float
    head: MediaInfo | None = None
    music: MediaInfo | None = None
    ass: Path | None = None  # burned when mode == "burn"
    srt: Path | None = None  # muxed as a subtitle track when mode == "soft"
    background_raw: Path | None = None  # the background decoded once to yuv420p at the output's size/rate


@dataclass(frozen=True)
class ComposePlan:
    args: list[str]
    copy_video: bool
    copy_audio: bool = False


def background_fits(info: MediaInfo, size: tuple[int, int], fps: float) -> bool:
    """True when the background can be stream-copied into the output as it is."""
    v = info.video
    return (v is not None and v.codec == "h264" and (v.width, v.height) == size
            and v.pix_fmt in ("yuv420p", "yuvj420p") and v.fps is not None and abs(v.fps - fps) < 0.01)


def needs_encode(inp: ComposeInputs, size: tuple[int, int], fps: float, mode: CaptionMode) -> bool:
    burn = mode == "burn" and inp.ass is not None
    return inp.head is not None or burn or not background_fits(inp.background, size, fps)


def copies_narration(inp: ComposeInputs, music: MusicMix = MusicMix()) -> bool:
    """True when the narration is the output's sound as it is: nothing mixed under it, already AAC at
    48 kHz, mono or stereo, in an mp4, and as long as the output (nothing to pad: a given file whose
    sound ends before its picture is encoded as before)."""
    a = inp.narration.audio
    mixes = inp.music is not None and music.volume > 0
    return (not mixes and a is not None and a.codec == "aac" and a.sample_rate == 48000
            and a.channels in (1, 2) and "mp4" in inp.narration.format_name.split(",")
            and a.duration_s is not None and abs(a.duration_s - inp.duration_s) < 0.05)


def head_xy(corner: Corner, margin_px: int) -> tuple[str, str]:
    m = str(margin_px)
    x = m if corner.endswith("left") else f"W-w-{m}"
    y = m if corner.startswith("top") else f"H-h-{m}"
    return x, y


SEEK_MARGIN_S = 1.0  # a window's unlooped input is opened this much before it (the fps filter's picks)


def window_input(info: MediaInfo, loop: bool, start_s: float) -> list[str]:
    """How a chunk (`window`) opens an input the unchunked compose reads from its start (looped when `loop`),
    so that its frames keep the timestamps they have there: a looped input starts at the loop that holds
    the window's start (`-itsoffset`: that loop's start time), an unlooped one a little before the window
    (`-ss`, with `-itsoffset` the same, which puts the timestamps back on the whole output's clock). A
    looped input is not seeked: ffmpeg measures a loop's length from the frames it read, so a seek would
    shorten the first loop; the chunk decodes up to one loop period more than its window."""
    if loop:
        period = info.duration_s
        first = math.floor(start_s / period + 1e-9) if period > 0 else 0
        return ["-stream_loop", "-1", "-itsoffset", num(first * period)] if first else ["-stream_loop", "-1"]
    seek = max(0.0, start_s - SEEK_MARGIN_S)
    return ["-ss", num(seek), "-itsoffset", num(seek)] if seek > 0 else []


def _audio_graph(inp: ComposeInputs, music: MusicMix, narration_idx: int,
                 idx: int) -> tuple[list[str], list[str], str]:
    """The sound's inputs besides the narration (input `narration_idx`; the first of them is input `idx`),
    its filter chains (ending in [aout]) and its AAC bitrate."""
    d = inp.duration_s
    args: list[str] = []
    chains: list[str] = []
    mix_music = inp.music is not None and music.volume > 0
    # A mono narration alone stays mono: AAC's cost is per channel, and on 2 cores encoding 15 minutes of
    # stereo at 192k takes ~40 s, most of a soft-caption build (mono at 128k: ~16 s, same sound).
    stereo = mix_music or (inp.narration.audio is not None and (inp.narration.audio.channels or 1) > 1)
    layout, bitrate = ("stereo", "192k") if stereo else ("mono", "128k")
    to_layout = f"aresample=48000,aformat=sample_fmts=fltp:channel_layouts={layout}"
    narration = f"[{narration_idx}:a]{to_layout},apad=whole_dur={num(d)},atrim=end={num(d)}"
    if mix_music:
        assert inp.music is not None
        args += ["-stream_loop", "-1", "-t", num(d), "-i", inp.music.path]
        m = [to_layout, "asetpts=PTS-STARTPTS", f"volume={num(music.volume)}"]
        if music.fade_in:
            m.append(f"afade=t=in:st=0:d={num(music.fade_in)}")
        if music.fade_out:
            m.append(f"afade=t=out:st={num(max(0.0, d - music.fade_out))}:d={num(music.fade_out)}")
        chains.append(f"[{idx}:a]" + ",".join(m) + "[music]")
        if music.duck:
            chains.append(f"{narration},asplit=2[narr][key]")
            chains.append(sidechain_duck("music", "key", "ducked"))
            chains.append("[narr][ducked]amix=inputs=2:duration=first:normalize=0,"
                          f"atrim=end={num(d)}[aout]")
        else:
            chains.append(f"{narration}[narr]")
            chains.append(f"[narr][music]amix=inputs=2:duration=first:normalize=0,atrim=end={num(d)}[aout]")
    else:
        chains.append(f"{narration}[aout]")
    return args, chains, bitrate


def plan_compose_sound(inp: ComposeInputs, out: Path, *, music: MusicMix = MusicMix()) -> list[str]:
    """The compose's sound alone, for the whole length (a chunked build's sound child: docs/CHUNKED.md):
    the same graph and AAC encode as plan_compose's."""
    if copies_narration(inp, music):  # an AAC narration with nothing to mix: copied, as plan_compose does
        return ["-i", inp.narration.path, "-map", "0:a:0", "-c:a", "copy", "-t", num(inp.duration_s),
                "-movflags", "+faststart", str(out)]
    extra, chains, bitrate = _audio_graph(inp, music, 0, 1)
    return ["-i", inp.narration.path, *extra, "-filter_complex", ";".join(chains), "-map", "[aout]",
            "-c:a", "aac", "-b:a", bitrate, "-t", num(inp.duration_s), "-movflags", "+faststart", str(out)]


def plan_compose(inp: ComposeInputs, out: Path, *, size: tuple[int, int], fps: float, mode: CaptionMode,
                 head: HeadLayout = HeadLayout(), music: MusicMix = MusicMix(),
                 video_args: Sequence[str] = DEFAULT_VIDEO_ARGS, fonts_dir: Path | None = None,
                 window: Window | None = None) -> ComposePlan:
    """The compose's one ffmpeg run. `window`: only that run of output frames, picture only (a chunked
    build's child: docs/CHUNKED.md); every input keeps the timestamps it has in the whole compose, the
    frames are picked on that clock, and the chunk's own timestamps then start at 0."""
    w, h = size
    d = inp.duration_s
    rate_s = rate_arg(fps)
    burn = mode == "burn" and inp.ass is not None
    copy_video = not needs_encode(inp, size, fps, mode)
    if window is not None and copy_video:
        raise ValueError("a stream-copied compose has no windows")
    bg_loops = inp.background.duration_s < d - 0.5 / fps
    bg_input = ["-i", inp.background.path]
    if inp.background_raw is not None and not copy_video:
        bg_input = ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-video_size", f"{w}x{h}", "-framerate", rate_s,
                    "-i", str(inp.background_raw)]
    start_s = 0.0 if window is None else window.start_frame / fps
    end_frame = compose_frames(d, fps) if window is None or window.end_frame is None else window.end_frame
    if window is None:
        args: list[str] = [*(["-stream_loop", "-1"] if bg_loops else []), "-t", num(d), *bg_input,
                           "-i", inp.narration.path]
    else:  # picture only: no narration input
        args = [*window_input(inp.background, bg_loops, start_s), *bg_input]
    chains: list[str] = []
    idx = 2 if window is None else 1  # the next input's number
    if not copy_video:
        cur = "bg"
        picked = ""
        if window is not None:
            lo, hi = start_s - 0.5 / fps, end_frame / fps - 0.5 / fps
            picked = "," + filter_expr("select", expr=f"gte(t,{num(lo)})*lt(t,{num(hi)})")
        chains.append(f"[0:v]fps={rate_s},scale={w}:{h}:force_original_aspect_ratio=increase,crop={w}:{h},"
                      f"setsar=1{picked}[bg]")
        if inp.head is not None:
            # libvpx-vp9 is the decoder that reads VP9's alpha layer (the native one drops it)
            decoder = ["-c:v", "libvpx-vp9"] if inp.head.video and inp.head.video.codec == "vp9" else []
            if window is None:
                args += [*(["-stream_loop", "-1"] if head.loop else []), "-t", num(d), *decoder, "-i", inp.head.path]
            else:
                args += [*window_input(inp.head, head.loop, start_s), *decoder, "-i", inp.head.path]
            head_h = even(h * head.size)
            x, y = head_xy(head.corner, round(min(w, h) * head.margin))
            chains.append(f"[{idx}:v]fps={rate_s},scale=-2:{head_h},format=yuva420p,setsar=1[head]")
            chains.append(f"[{cur}][head]" + filter_expr("overlay", x=x, y=y, eof_action="pass") + "[vh]")
            cur = "vh"
            idx += 1
        if burn:
            assert inp.ass is not None
            opts: dict[str, Path | str | None] = {"filename": inp.ass}
            if fonts_dir is not None:
                opts["fontsdir"] = fonts_dir
            chains.append(f"[{cur}]" + filter_expr("ass", **opts) + "[vc]")
            cur = "vc"
        chains.append(f"[{cur}]format=yuv420p{',setpts=PTS-STARTPTS' if window is not None else ''}[vout]")
    if window is not None:
        return ComposePlan(args=[*args, "-filter_complex", ";".join(chains), "-map", "[vout]", *video_args, "-r",
                                 rate_s, "-frames:v", str(end_frame - window.start_frame), "-movflags", "+faststart",
                                 str(out)],
                           copy_video=False)

    copy_audio = copies_narration(inp, music)
    bitrate = ""
    if not copy_audio:
        extra, audio_chains, bitrate = _audio_graph(inp, music, 1, idx)
        args += extra
        chains += audio_chains
        idx += 1 if extra else 0

    maps = ["-map", "0:v:0" if copy_video else "[vout]", "-map", "1:a:0" if copy_audio else "[aout]"]
    codec = ["-c:v", "copy"] if copy_video else [*video_args, "-r", rate_s]
    subs: list[str] = []
    if mode == "soft" and inp.srt is not None:
        args += ["-i", str(inp.srt)]
        maps += ["-map", f"{idx}:0"]
        subs = ["-c:s", "mov_text", "-metadata:s:s:0", "title=Captions"]
        idx += 1
    audio_codec = ["-c:a", "copy"] if copy_audio else ["-c:a", "aac", "-b:a", bitrate]
    graph = ["-filter_complex", ";".join(chains)] if chains else []
    args += [*graph, *maps, *codec, *audio_codec, *subs, "-t", num(d), "-movflags", "+faststart", str(out)]
    return ComposePlan(args=args, copy_video=copy_video, copy_audio=copy_audio)
