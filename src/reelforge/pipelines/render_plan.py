"""Plan a timeline render as data: (timeline, probed inputs) -> one ffmpeg argument list. No I/O here.

The graph, bottom track first:

    color (background, output size/fps/duration)            -> [bg]
    per visual clip: source -> fit/scale -> effect -> yuva -> opacity/fades -> transitions
                     -> setpts(+start)                        -> overlay onto the composite (eof passes)
    per caption clip: ass=<prepared file>                     applied to the composite at its layer
    per audible clip + soundtrack: resample -> volume -> fades -> delay(start) -> amix -> pad/trim(T)

User text never enters the filter string: drawtext reads it from a file (`textfile=`, `expansion=none`),
and every path or value that must appear goes through reelforge.media.filters escaping. Numbers are
formatted here from validated floats.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from reelforge.errors import InvalidParams, MediaError
from reelforge.media.codecs import AAC_ARGS, DEFAULT_VIDEO_ARGS, OPUS_ARGS, vp9_args
from reelforge.media.filters import filter_expr
from reelforge.media.frame_rate import parse_rate, rate_arg
from reelforge.media.frame_size import even
from reelforge.media.probe import MediaInfo
from reelforge.pipelines.timeline import MAX_TIMELINE_S, Clip, RenderParams, TextAsset

SLIDE_GROW = 1.1  # slide effects enlarge the clip so its moving edge stays outside the frame
ZOOM_RANGE = 0.2  # zoomIn goes 1.0 -> 1.2, zoomOut 1.2 -> 1.0
_XFADE = {"wipeLeft": "wipeleft", "wipeRight": "wiperight", "wipeUp": "wipeup", "wipeDown": "wipedown",
          "slideLeft": "slideleft", "slideRight": "slideright", "slideUp": "slideup", "slideDown": "slidedown"}
ClipKey = tuple[int, int]  # (track index, clip index) as in the JSON


@dataclass(frozen=True)
class RenderPlan:
    args: list[str]  # for run_ffmpeg (global flags are added there)
    duration_s: float
    text_files: dict[Path, str] = field(default_factory=dict)  # the caller writes these before running
    has_audio: bool = False
    has_video: bool = True


def num(x: float) -> str:
    """A float for a filter expression: plain decimal, no exponent, trimmed."""
    text = f"{x:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def clip_length(clip: Clip, info: MediaInfo | None, where: str) -> float:
    """A clip's seconds on screen: its `length`, or for video/audio the rest of the source after trim."""
    if clip.length is not None:
        return clip.length
    trim = getattr(clip.asset, "trim", 0.0)
    rest = (info.duration_s if info else 0.0) - trim
    if rest <= 0.04:
        raise InvalidParams(f"{where}: the source is {info.duration_s if info else 0:.2f} s long, nothing "
                            f"is left after trimming {trim} s", code="trim_too_long", details={"path": where})
    return rest


def fitted_size(clip: Clip, src_w: int, src_h: int, out_w: int, out_h: int) -> tuple[int, int, int, int]:
    """(scaled w, h, shown w, h): the size the source is scaled to, and after `crop` fitting."""
    if clip.fit in ("cover", "crop"):
        k = max(out_w / src_w, out_h / src_h)
    elif clip.fit == "contain":
        k = min(out_w / src_w, out_h / src_h)
    else:
        k = 1.0
    k *= clip.scale
    if clip.effect in ("slideLeft", "slideRight", "slideUp", "slideDown"):
        k *= SLIDE_GROW
    w, h = even(src_w * k), even(src_h * k)
    if clip.fit == "crop":
        grow = SLIDE_GROW if clip.effect and clip.effect.startswith("slide") else 1.0
        return w, h, min(w, even(out_w * clip.scale * grow)), min(h, even(out_h * clip.scale * grow))
    return w, h, w, h


_ANCHORS: dict[str, tuple[str, str]] = {
    "center": ("(W-w)/2", "(H-h)/2"), "top": ("(W-w)/2", "0"), "bottom": ("(W-w)/2", "H-h"),
    "left": ("0", "(H-h)/2"), "right": ("W-w", "(H-h)/2"), "topLeft": ("0", "0"), "topRight": ("W-w", "0"),
    "bottomLeft": ("0", "H-h"), "bottomRight": ("W-w", "H-h"),
}


def overlay_xy(clip: Clip, start: float, length: float, out_w: int, out_h: int,
               layer_w: int, layer_h: int, *, text_layer: bool = False) -> tuple[str, str]:
    """Overlay x/y expressions: anchor + offset (+ the slide effect's motion over the clip)."""
    ax, ay = ("0", "0") if text_layer else _ANCHORS[clip.position]
    x = f"{ax}+{num(clip.offset.x * out_w)}" if not text_layer else "0"
    y = f"{ay}+{num(clip.offset.y * out_h)}" if not text_layer else "0"
    if clip.effect and clip.effect.startswith("slide"):
        p = f"clip((t-{num(start)})/{num(length)},0,1)"
        amp_x = (layer_w - layer_w / SLIDE_GROW) / 2 if not text_layer else out_w * 0.05
        amp_y = (layer_h - layer_h / SLIDE_GROW) / 2 if not text_layer else out_h * 0.05
        move = {"slideLeft": (amp_x, 0.0), "slideRight": (-amp_x, 0.0), "slideUp": (0.0, amp_y),
                "slideDown": (0.0, -amp_y)}[clip.effect]
        if move[0]:
            x += f"+{num(move[0])}*(1-2*{p})"
        if move[1]:
            y += f"+{num(move[1])}*(1-2*{p})"
    return x, y


_TEXT_ANCHORS: dict[str, tuple[str, str]] = {
    "center": ("(w-text_w)/2", "(h-text_h)/2"), "top": ("(w-text_w)/2", "{m}"),
    "bottom": ("(w-text_w)/2", "h-text_h-{m}"), "left": ("{m}", "(h-text_h)/2"),
    "right": ("w-text_w-{m}", "(h-text_h)/2"), "topLeft": ("{m}", "{m}"), "topRight": ("w-text_w-{m}", "{m}"),
    "bottomLeft": ("{m}", "h-text_h-{m}"), "bottomRight": ("w-text_w-{m}", "h-text_h-{m}"),
}


def drawtext_filter(asset: TextAsset, clip: Clip, text_file: Path, out_w: int, out_h: int) -> str:
    margin = num(round(out_h * 0.05))
    ax, ay = _TEXT_ANCHORS[clip.position]
    return filter_expr(
        "drawtext",
        textfile=text_file,
        expansion="none",
        font=asset.font,
        fontsize=round(asset.size * clip.scale),
        fontcolor=asset.colour,
        box=asset.box,
        boxcolor=asset.box_colour if asset.box else None,
        boxborderw=asset.box_padding if asset.box else None,
        x=f"{ax.format(m=margin)}+{num(clip.offset.x * out_w)}",
        y=f"{ay.format(m=margin)}+{num(clip.offset.y * out_h)}",
    )


class _Graph:
    """Collects inputs and filter chains with fresh labels."""

    def __init__(self) -> None:
        self.inputs: list[list[str]] = []
        self.chains: list[str] = []
        self._n = 0

    def add_input(self, args: Sequence[str]) -> int:
        self.inputs.append(list(args))
        return len(self.inputs) - 1

    def label(self, stem: str) -> str:
        self._n += 1
        return f"{stem}{self._n}"

    def chain(self, inputs: Sequence[str], filters: Sequence[str], out: str) -> str:
        self.chains.append("".join(f"[{i}]" for i in inputs) + ",".join(filters) + f"[{out}]")
        return out


def plan_render(params: RenderParams, media: Mapping[str, MediaInfo], *, out: Path, workdir: Path,
                captions: Mapping[ClipKey, Path] | None = None, video_args: Sequence[str] = DEFAULT_VIDEO_ARGS,
                fonts_dir: Path | None = None, max_duration_s: float = MAX_TIMELINE_S) -> RenderPlan:
    """The ffmpeg arguments rendering `params` to `out`.

    `media` maps every asset/soundtrack `src` to its probe; `captions` maps each caption clip to a
    prepared .ass file already on the output's clock; text clips' files are returned in `text_files`.
    """
    tl, output = params.timeline, params.output
    out_w, out_h = output.frame_size
    rate = parse_rate(output.fps)
    rate_s = rate_arg(rate)
    fmt = output.format
    captions = captions or {}

    # lengths first: the timeline's duration is the end of the last clip
    lengths: dict[ClipKey, float] = {}
    for ti, track in enumerate(tl.tracks):
        for ci, clip in enumerate(track.clips):
            src = getattr(clip.asset, "src", None)
            lengths[(ti, ci)] = clip_length(clip, media.get(src) if src else None,
                                            f"timeline.tracks[{ti}].clips[{ci}].length")
    total = tl.duration or max(tl.tracks[k[0]].clips[k[1]].start + v for k, v in lengths.items())
    if total > max_duration_s:
        raise InvalidParams(f"The timeline is {total:.0f} s long; the limit is {max_duration_s:.0f} s.",
                            code="timeline_too_long", details={"path": "timeline"})

    g = _Graph()
    text_files: dict[Path, str] = {}
    want_video = fmt not in ("mp3",)
    want_audio = fmt in ("mp4", "webm", "mp3")
    audio_labels: list[str] = []
    cur = ""
    if want_video:
        cur = g.chain([], [filter_expr("color", c=tl.background, s=f"{out_w}x{out_h}", r=rate_s, d=num(total)),
                           "format=yuv420p"], g.label("bg"))

    # bottom track first, so the first track ends up on top
    for ti in reversed(range(len(tl.tracks))):
        for ci, clip in enumerate(tl.tracks[ti].clips):
            key = (ti, ci)
            length = lengths[key]
            if clip.start >= total:
                continue
            length = min(length, total - clip.start)
            asset = clip.asset
            where = f"timeline.tracks[{ti}].clips[{ci}]"
            input_idx: int | None = None
            info: MediaInfo | None = None
            if asset.type in ("video", "audio", "image"):
                info = media[asset.src]
                if asset.type == "image":
                    input_idx = g.add_input(["-loop", "1", "-framerate", rate_s, "-t", num(length),
                                             "-i", info.path])
                else:
                    input_idx = g.add_input(["-ss", num(asset.trim), "-t", num(length), "-i", info.path])
            # ---- sound of the clip
            if want_audio and asset.type in ("video", "audio") and asset.volume > 0:
                assert info is not None and input_idx is not None
                if info.audio is not None:
                    audio_labels.append(_audio_chain(g, f"{input_idx}:a", asset.volume, clip.fade_in,
                                                     clip.fade_out, length, clip.start))
                elif asset.type == "audio":
                    raise MediaError(f"{where}.asset.src has no audio stream.", code="no_audio_stream")
            if not want_video or asset.type == "audio":
                continue
            # ---- picture of the clip
            if asset.type == "caption":
                ass = captions[key]
                opts: dict[str, str | Path | None] = {"filename": ass}
                if fonts_dir is not None:
                    opts["fontsdir"] = fonts_dir
                cur = g.chain([cur], [filter_expr("ass", **opts)], g.label("v"))
                continue
            filters: list[str] = []
            src_label: list[str] = []
            if asset.type == "text":
                text_file = workdir / f"text_{ti}_{ci}.txt"
                text_files[text_file] = asset.text
                layer_w, layer_h = out_w, out_h
                filters += [filter_expr("color", c="black@0", s=f"{out_w}x{out_h}", r=rate_s, d=num(length)),
                            "format=yuva420p", drawtext_filter(asset, clip, text_file, out_w, out_h)]
            else:
                assert info is not None and input_idx is not None
                video = info.video
                if video is None or not video.width or not video.height:
                    raise MediaError(f"{where}.asset.src has no picture.", code="no_video_stream")
                src_label = [f"{input_idx}:v"]
                scaled_w, scaled_h, layer_w, layer_h = fitted_size(clip, video.width, video.height, out_w, out_h)
                filters += [f"fps={rate_s}", "setpts=PTS-STARTPTS"]
                available = info.duration_s - getattr(asset, "trim", 0.0)
                if asset.type == "video" and available < length - 0.02:
                    filters.append(f"tpad=stop_mode=clone:stop_duration={num(length - available + 0.1)}")
                filters += [f"scale={scaled_w}:{scaled_h}", "setsar=1"]
                if (scaled_w, scaled_h) != (layer_w, layer_h):
                    filters.append(f"crop={layer_w}:{layer_h}")
            if clip.effect in ("zoomIn", "zoomOut"):
                frames = max(1, round(length * float(rate)))
                z = (f"1+{num(ZOOM_RANGE)}*on/{frames}" if clip.effect == "zoomIn"
                     else f"{num(1 + ZOOM_RANGE)}-{num(ZOOM_RANGE)}*on/{frames}")
                filters += ["format=yuva420p",
                            filter_expr("zoompan", z=z, x="iw/2-(iw/zoom/2)", y="ih/2-(ih/zoom/2)", d=1,
                                        s=f"{layer_w}x{layer_h}", fps=rate_s)]
            filters += ["format=yuva420p", f"trim=duration={num(length)}"]
            if clip.opacity < 1:
                filters.append(filter_expr("lutyuv", a=f"val*{num(clip.opacity)}"))
            if clip.fade_in:
                filters.append(f"fade=t=in:st=0:d={num(clip.fade_in)}:alpha=1")
            if clip.fade_out:
                filters.append(f"fade=t=out:st={num(length - clip.fade_out)}:d={num(clip.fade_out)}:alpha=1")
            filters.append(f"settb=expr={rate.denominator}/{rate.numerator}")
            layer = g.chain(src_label, filters, g.label("c"))
            layer = _transitions(g, clip, layer, length, layer_w, layer_h, rate_s)
            layer = g.chain([layer], [f"setpts=PTS-STARTPTS+{num(clip.start)}/TB"], g.label("p"))
            x, y = overlay_xy(clip, clip.start, length, out_w, out_h, layer_w, layer_h,
                              text_layer=asset.type == "text")
            cur = g.chain([cur, layer], [filter_expr(
                "overlay", x=x, y=y, eof_action="pass",
                enable=f"between(t,{num(clip.start)},{num(clip.start + length)})")], g.label("v"))

    if want_audio and tl.soundtrack is not None and tl.soundtrack.volume > 0:
        st = tl.soundtrack
        info = media[st.src]
        if info.audio is None:
            raise MediaError("timeline.soundtrack.src has no audio stream.", code="no_audio_stream")
        loop = ["-stream_loop", "-1"] if st.loop else []
        idx = g.add_input([*loop, "-t", num(total), "-i", info.path])
        audio_labels.append(_audio_chain(g, f"{idx}:a", st.volume, st.fade_in, st.fade_out,
                                         min(total, info.duration_s) if not st.loop else total, 0.0))

    maps: list[str] = []
    has_audio = bool(audio_labels) and want_audio
    if has_audio:
        mix = ([f"amix=inputs={len(audio_labels)}:duration=longest:normalize=0"] if len(audio_labels) > 1
               else ["anull"])
        g.chain(audio_labels, [*mix, f"apad=whole_dur={num(total)}", f"atrim=end={num(total)}"], "aout")
    if fmt == "mp3" and not has_audio:
        raise InvalidParams("An mp3 render needs at least one audible clip or a soundtrack.",
                            code="nothing_audible", details={"path": "output.format"})

    codec_args: list[str] = []
    if want_video:
        tail = ["format=yuv420p"]
        if fmt in ("jpg", "png"):
            at = output.poster_at if output.poster_at is not None else total / 2
            at = min(at, max(0.0, total - 1 / float(rate)))
            tail = [f"trim=start={num(at)}", "setpts=PTS-STARTPTS",
                    "format=rgb24" if fmt == "png" else "format=yuvj420p"]
        if fmt == "gif":
            gif_rate = min(float(rate), 15.0)
            g.chains.append(f"[{cur}]fps={num(gif_rate)},split[g1][g2]")
            g.chain(["g1"], ["palettegen=stats_mode=diff"], "pal")
            g.chain(["g2", "pal"], ["paletteuse=dither=bayer:bayer_scale=4"], "vout")
        else:
            g.chain([cur], tail, "vout")
        maps += ["-map", "[vout]"]
        if fmt == "mp4":
            codec_args += [*video_args, "-r", rate_s, "-movflags", "+faststart"]
        elif fmt == "webm":
            codec_args += [*vp9_args(output.quality), "-r", rate_s]
        elif fmt == "gif":
            codec_args += ["-loop", "0"]
        else:
            codec_args += ["-frames:v", "1", "-update", "1", *(["-q:v", "2"] if fmt == "jpg" else [])]
    if has_audio:
        maps += ["-map", "[aout]"]
        codec_args += {"mp4": list(AAC_ARGS), "webm": list(OPUS_ARGS),
                       "mp3": ["-c:a", "libmp3lame", "-q:a", "2"]}[fmt]
    args: list[str] = []
    for inp in g.inputs:
        args += inp
    args += ["-filter_complex", ";".join(g.chains), *maps, *codec_args]
    if fmt not in ("jpg", "png"):
        args += ["-t", num(total)]
    args.append(str(out))
    return RenderPlan(args=args, duration_s=total, text_files=text_files, has_audio=has_audio,
                      has_video=want_video)


def _audio_chain(g: _Graph, src: str, volume: float, fade_in: float, fade_out: float, length: float,
                 start: float) -> str:
    filters = ["aresample=48000", "aformat=sample_fmts=fltp:channel_layouts=stereo", "asetpts=PTS-STARTPTS"]
    if volume != 1:
        filters.append(f"volume={num(volume)}")
    if fade_in:
        filters.append(f"afade=t=in:st=0:d={num(fade_in)}")
    if fade_out:
        filters.append(f"afade=t=out:st={num(max(0.0, length - fade_out))}:d={num(fade_out)}")
    if start > 0:
        filters.append(f"adelay=delays={round(start * 1000)}:all=1")
    return g.chain([src], filters, g.label("a"))


def _transitions(g: _Graph, clip: Clip, layer: str, length: float, w: int, h: int, rate_s: str) -> str:
    """In/out transitions against whatever is below: fade on the alpha, wipes/slides through xfade with a
    transparent frame of the same size."""
    tr = clip.transition
    if tr is None:
        return layer
    d = tr.duration
    for side, kind in (("in", tr.in_), ("out", tr.out)):
        if kind is None:
            continue
        if kind == "fade":
            st = 0.0 if side == "in" else length - d
            layer = g.chain([layer], [f"fade=t={side}:st={num(st)}:d={num(d)}:alpha=1"], g.label("t"))
            continue
        clear = g.chain([], [filter_expr("color", c="black@0", s=f"{w}x{h}", r=rate_s, d=num(d)),
                             "format=yuva420p", "setsar=1"], g.label("clear"))
        pair = [clear, layer] if side == "in" else [layer, clear]
        offset = 0.0 if side == "in" else length - d
        layer = g.chain(pair, [f"xfade=transition={_XFADE[kind]}:duration={num(d)}:offset={num(offset)}"],
                        g.label("t"))
    return layer
