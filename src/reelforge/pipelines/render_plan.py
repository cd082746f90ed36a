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

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from reelforge.errors import InvalidParams, MediaError
from reelforge.media.codecs import AAC_ARGS, DEFAULT_VIDEO_ARGS, OPUS_ARGS, vp9_args
from reelforge.media.filters import filter_expr
from reelforge.media.frame_rate import parse_rate, rate_arg
from reelforge.media.frame_size import even
from reelforge.media.probe import MediaInfo
from reelforge.pipelines.timeline import MAX_TIMELINE_S, Clip, Crop, RenderParams, TextAsset

SLIDE_GROW = 1.1  # slide effects enlarge the clip so its moving edge stays outside the frame
ZOOM_RANGE = 0.2  # zoomIn goes 1.0 -> 1.2, zoomOut 1.2 -> 1.0
SPEED = {"slow": 0.5, "normal": 1.0, "fast": 2.0}  # effect_speed: how much motion over the clip
DRIFT = 0.05  # drift transitions move the clip by this fraction of the output size while it fades
ZOOM_TRANSITION = 0.5  # the zoom transition goes 1.5 -> 1 (in) and 1 -> 1.5 (out) while it fades
_XFADE = {"wipeLeft": "wipeleft", "wipeRight": "wiperight", "wipeUp": "wipeup", "wipeDown": "wipedown",
          "slideLeft": "slideleft", "slideRight": "slideright", "slideUp": "slideup", "slideDown": "slidedown",
          "smoothLeft": "smoothleft", "smoothRight": "smoothright", "smoothUp": "smoothup",
          "smoothDown": "smoothdown"}
_DRIFT = {"driftLeft": (-1, 0), "driftRight": (1, 0), "driftUp": (0, -1), "driftDown": (0, 1)}
# the clip filters: colour and blur looks, each a fixed filter chain on the clip's picture
LOOKS: dict[str, list[str]] = {
    "blur": ["gblur=sigma=6"],
    "boost": ["eq=contrast=1.25:saturation=1.6"],
    "contrast": ["eq=contrast=1.6"],
    "darken": ["eq=brightness=-0.25"],
    "greyscale": ["hue=s=0"],
    "lighten": ["eq=brightness=0.25"],
    "muted": ["eq=saturation=0.45:contrast=0.9"],
    "negative": ["negate"],
}
ClipKey = tuple[int, int]  # (track index, clip index) as in the JSON


@dataclass(frozen=True)
class RenderPlan:
    args: list[str]  # for run_ffmpeg (global flags are added there)
    duration_s: float
    text_files: dict[Path, str] = field(default_factory=dict)  # the caller writes these before running
    has_audio: bool = False
    has_video: bool = True


@dataclass(frozen=True)
class Window:
    """A run of output frames: `start_frame` up to `end_frame` (exclusive; None: to the end).

    A chunk of a chunked render (docs/CHUNKED.md) is the picture of one window, encoded on its own; the
    frames are the unchunked render's frames, because the whole filter graph is kept on the output's
    clock and only cut at its end (clips wholly outside the window are left out: they change nothing).
    """

    start_frame: int
    end_frame: int | None = None

    def seconds(self, rate: float) -> tuple[float, float | None]:
        return self.start_frame / rate, None if self.end_frame is None else self.end_frame / rate


def frame_count(duration_s: float, rate: float) -> int:
    """How many frames a render of `duration_s` at `rate` has (frames whose time is before the end)."""
    return max(1, math.ceil(duration_s * rate - 1e-6))


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


def slide_grow(clip: Clip) -> float:
    """How much a slide effect enlarges the clip (1.0 without one): more for a faster slide."""
    if not (clip.effect and clip.effect.startswith("slide")):
        return 1.0
    return 1 + (SLIDE_GROW - 1) * SPEED[clip.effect_speed]


def cropped_size(crop: Crop | None, src_w: int, src_h: int) -> tuple[int, int]:
    if crop is None:
        return src_w, src_h
    return (max(2, even(src_w * (1 - crop.left - crop.right))), max(2, even(src_h * (1 - crop.top - crop.bottom))))


def fitted_size(clip: Clip, src_w: int, src_h: int, out_w: int, out_h: int) -> tuple[int, int, int, int]:
    """(scaled w, h, shown w, h): the size the source is scaled to, and after `crop` fitting."""
    grow = slide_grow(clip)
    if clip.fit == "stretch":
        w, h = even(out_w * clip.scale * grow), even(out_h * clip.scale * grow)
        return w, h, w, h
    if clip.fit in ("cover", "crop"):
        k = max(out_w / src_w, out_h / src_h)
    elif clip.fit == "contain":
        k = min(out_w / src_w, out_h / src_h)
    else:
        k = 1.0
    k *= clip.scale * grow
    w, h = even(src_w * k), even(src_h * k)
    if clip.fit == "crop":
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
        grow = slide_grow(clip)
        amp_x = (layer_w - layer_w / grow) / 2 if not text_layer else out_w * 0.05 * SPEED[clip.effect_speed]
        amp_y = (layer_h - layer_h / grow) / 2 if not text_layer else out_h * 0.05 * SPEED[clip.effect_speed]
        move = {"slideLeft": (amp_x, 0.0), "slideRight": (-amp_x, 0.0), "slideUp": (0.0, amp_y),
                "slideDown": (0.0, -amp_y)}[clip.effect]
        if move[0]:
            x += f"+{num(move[0])}*(1-2*{p})"
        if move[1]:
            y += f"+{num(move[1])}*(1-2*{p})"
    tr = clip.transition
    for side, kind in (("in", tr.in_ if tr else None), ("out", tr.out if tr else None)):
        if tr is None or kind not in _DRIFT:
            continue
        dx, dy = _DRIFT[kind]
        if side == "in":  # arrives moving in its direction: from -direction*amp to 0
            d = tr.in_s
            p = f"(1-clip((t-{num(start)})/{num(d)},0,1))"
            sign = -1
        else:  # leaves moving in its direction: from 0 to +direction*amp
            d = tr.out_s
            p = f"clip((t-{num(start + length - d)})/{num(d)},0,1)"
            sign = 1
        if dx:
            x += f"+{num(sign * dx * DRIFT * out_w)}*{p}"
        if dy:
            y += f"+{num(sign * dy * DRIFT * out_h)}*{p}"
    return x, y


_TEXT_ANCHORS: dict[str, tuple[str, str]] = {
    "center": ("(w-text_w)/2", "(h-text_h)/2"), "top": ("(w-text_w)/2", "{m}"),
    "bottom": ("(w-text_w)/2", "h-text_h-{m}"), "left": ("{m}", "(h-text_h)/2"),
    "right": ("w-text_w-{m}", "(h-text_h)/2"), "topLeft": ("{m}", "{m}"), "topRight": ("w-text_w-{m}", "{m}"),
    "bottomLeft": ("{m}", "h-text_h-{m}"), "bottomRight": ("w-text_w-{m}", "h-text_h-{m}"),
}


_WEIGHT = {"normal": "", "bold": ":weight=bold", "light": ":weight=light"}


def font_pattern(asset: TextAsset) -> str:
    """A fontconfig pattern: the family and its weight (escaped with the rest of the drawtext options)."""
    return asset.font + _WEIGHT[asset.weight]


def _font_options(asset: TextAsset, font_files: Mapping[str, Path]) -> dict[str, str | Path]:
    """drawtext's font: a file the timeline brought under that family name, else a fontconfig pattern."""
    if asset.font in font_files:
        return {"fontfile": font_files[asset.font]}
    return {"font": font_pattern(asset)}


_BOX_X = {"left": "0", "center": "(w-text_w)/2", "right": "w-text_w"}
_BOX_Y = {"top": "0", "center": "(h-text_h)/2", "bottom": "h-text_h"}


def drawtext_filter(asset: TextAsset, clip: Clip, text_file: Path, out_w: int, out_h: int,
                    font_files: Mapping[str, Path] | None = None) -> str:
    font = _font_options(asset, font_files or {})
    if asset.width is not None:  # box mode: aligned inside the box; the box is placed like a picture
        return filter_expr(
            "drawtext", textfile=text_file, expansion="none", **font, fontsize=asset.size,
            fontcolor=asset.colour, line_spacing=asset.line_spacing or None,
            box=asset.box, boxcolor=asset.box_colour if asset.box else None,
            boxborderw=asset.box_padding if asset.box else None,
            x=_BOX_X[asset.align], y=_BOX_Y[asset.valign])
    margin = num(round(out_h * 0.05))
    ax, ay = _TEXT_ANCHORS[clip.position]
    return filter_expr(
        "drawtext",
        textfile=text_file,
        expansion="none",
        **font,
        fontsize=round(asset.size * clip.scale),
        fontcolor=asset.colour,
        line_spacing=asset.line_spacing or None,
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


def is_still(info: MediaInfo) -> bool:
    """A single-frame picture (not a GIF, which may be animated): decoded once and held in the graph."""
    return info.is_image and info.format_name != "gif"


def plan_render(params: RenderParams, media: Mapping[str, MediaInfo], *, out: Path, workdir: Path,
                captions: Mapping[ClipKey, Path] | None = None, video_args: Sequence[str] = DEFAULT_VIDEO_ARGS,
                fonts_dir: Path | None = None, max_duration_s: float = MAX_TIMELINE_S,
                html_images: Mapping[ClipKey, Path] | None = None,
                font_files: Mapping[str, Path] | None = None, window: Window | None = None,
                audio_only: bool = False) -> RenderPlan:
    """The ffmpeg arguments rendering `params` to `out`.

    `media` maps every asset/soundtrack `src` to its probe; `captions` maps each caption clip to a
    prepared .ass file already on the output's clock; `html_images` each html clip to its rendered
    transparent PNG (of the asset's width x height); `font_files` the timeline's fonts by family;
    text clips' files are returned in `text_files`.
    `window`: only these frames of the picture, no sound (a chunk). `audio_only`: only the sound, as AAC
    (a chunked mp4's one audio encode).
    """
    tl = params.timeline
    lengths = clip_lengths(params, media)
    total = timeline_duration(params, lengths, max_duration_s)
    plan = _RenderGraph(params, media, total, workdir=workdir, captions=captions or {}, fonts_dir=fonts_dir,
                        html_images=html_images or {}, lengths=lengths, font_files=font_files or {},
                        window=window, audio_only=audio_only)
    # bottom track first, so the first track ends up on top
    for ti in reversed(range(len(tl.tracks))):
        for ci, clip in enumerate(tl.tracks[ti].clips):
            length = min(lengths[(ti, ci)], total - clip.start)
            if clip.start < total and clip.asset.type != "luma" and plan.touches_window(clip.start, length):
                plan.add_clip((ti, ci), clip, length)
    plan.add_soundtrack()
    return plan.finish(out, video_args)


# ---- clips and timing
def clip_lengths(params: RenderParams, media: Mapping[str, MediaInfo]) -> dict[ClipKey, float]:
    """Every clip's seconds on screen (before the timeline's end cuts it)."""
    lengths: dict[ClipKey, float] = {}
    for ti, track in enumerate(params.timeline.tracks):
        for ci, clip in enumerate(track.clips):
            src = getattr(clip.asset, "src", None)
            lengths[(ti, ci)] = clip_length(clip, media.get(src) if src else None,
                                            f"timeline.tracks[{ti}].clips[{ci}].length")
    return lengths


def timeline_duration(params: RenderParams, lengths: Mapping[ClipKey, float], max_duration_s: float) -> float:
    """The output's length: the declared duration, else the end of the last clip; capped."""
    tl = params.timeline
    total = tl.duration or max(tl.tracks[k[0]].clips[k[1]].start + v for k, v in lengths.items())
    if total > max_duration_s:
        raise InvalidParams(f"The timeline is {total:.0f} s long; the limit is {max_duration_s:.0f} s.",
                            code="timeline_too_long", details={"path": "timeline"})
    return total


@dataclass
class _Layer:
    """A clip's picture before motion and placement: where it comes from, its first filters, its size."""

    source: list[str]  # input labels ([] for a generated picture)
    filters: list[str]
    width: int
    height: int


class _RenderGraph:
    """The filter graph of one render, built clip by clip: picture and sound per clip, then the outputs."""

    def __init__(self, params: RenderParams, media: Mapping[str, MediaInfo], total: float, *, workdir: Path,
                 captions: Mapping[ClipKey, Path], fonts_dir: Path | None, html_images: Mapping[ClipKey, Path],
                 lengths: Mapping[ClipKey, float], font_files: Mapping[str, Path], window: Window | None = None,
                 audio_only: bool = False) -> None:
        self.tl, self.output = params.timeline, params.output
        self.media, self.total = media, total
        self.workdir, self.captions, self.fonts_dir = workdir, captions, fonts_dir
        self.html_images, self.lengths, self.font_files = html_images, lengths, font_files
        self.out_w, self.out_h = self.output.frame_size
        self.rate = parse_rate(self.output.fps)
        self.rate_s = rate_arg(self.rate)
        self.fmt = self.output.format
        self.window, self.audio_only = window, audio_only
        self.want_video = self.fmt not in ("mp3",) and not audio_only
        self.want_audio = self.fmt in ("mp4", "webm", "mp3") and not self.output.mute and window is None
        if self.fmt == "mp3" and self.output.mute:
            raise InvalidParams("A muted mp3 would be empty.", code="nothing_audible",
                                details={"path": "output.mute"})
        self.g = _Graph()
        self.text_files: dict[Path, str] = {}
        self.audio_labels: list[str] = []
        self.cur = ""  # label of the picture composited so far
        if self.want_video:
            cut = [] if window is None else [
                f"trim=start_frame={window.start_frame}"
                + (f":end_frame={window.end_frame}" if window.end_frame is not None else "")]
            self.cur = self.g.chain([], [filter_expr("color", c=self.tl.background, s=f"{self.out_w}x{self.out_h}",
                                                     r=self.rate_s, d=num(total)), *cut, "format=yuv420p"],
                                    self.g.label("bg"))

    def touches_window(self, start: float, length: float) -> bool:
        """Whether a clip shown from `start` for `length` can change a frame of the window (a frame of
        margin either side: overlays are enabled on a closed interval)."""
        if self.window is None:
            return True
        rate = float(self.rate)
        a, b = self.window.seconds(rate)
        return start + length >= a - 1 / rate and (b is None or start <= b + 1 / rate)

    # ---- one clip
    def add_clip(self, key: ClipKey, clip: Clip, length: float) -> None:
        asset = clip.asset
        where = f"timeline.tracks[{key[0]}].clips[{key[1]}]"
        input_idx: int | None = None
        info: MediaInfo | None = None
        if asset.type in ("video", "audio", "image"):
            info = self.media[asset.src]
            if not self.want_video and not self._sounds(clip, info):
                # a sound-only plan opens nothing that carries no sound: ffmpeg 5.1 keeps reading an
                # unmapped looped image (a 1080p PNG of ~1 MB) after the output is done and never exits
                # (a chunked 1080p render's sound pass wrote its AAC, then spun at 200 % CPU, deaf to SIGTERM)
                return
            input_idx = self._add_clip_input(clip, info, length)
        if self.want_audio and asset.type in ("video", "audio") and asset.volume > 0:
            assert info is not None and input_idx is not None
            self._add_clip_sound(clip, info, input_idx, length, where)
        if not self.want_video or asset.type == "audio":
            return
        if asset.type == "caption":
            self._burn_caption(self.captions[key])
            return
        if asset.type == "text":
            layer = self._text_layer(asset, clip, key, length)
        elif asset.type == "html":
            layer = self._html_layer(clip, key, length)
        else:
            assert info is not None and input_idx is not None
            layer = self._media_layer(clip, info, input_idx, length, where)
        full_frame_text = asset.type == "text" and asset.width is None
        self._composite(key, clip, layer, length, text_layer=full_frame_text)

    def _sounds(self, clip: Clip, info: MediaInfo) -> bool:
        """Whether a clip's source is heard in this render's sound (an audio-less video is not, nor an image;
        an audio clip without a stream is, so that its error is raised where its sound is added)."""
        asset = clip.asset
        return (self.want_audio and asset.type in ("video", "audio") and asset.volume > 0
                and (info.audio is not None or asset.type == "audio"))

    def _add_clip_input(self, clip: Clip, info: MediaInfo, length: float) -> int:
        if clip.asset.type == "image" and is_still(info):
            return self.g.add_input(["-framerate", self.rate_s, "-i", info.path])  # one frame: looped in the graph
        if clip.asset.type == "image":
            return self.g.add_input(["-loop", "1", "-framerate", self.rate_s, "-t", num(length), "-i", info.path])
        # sound only: the clip's picture stream is switched off at the input (read, never decoded)
        skip_picture = ["-vn"] if not self.want_video else []
        return self.g.add_input([*skip_picture, "-ss", num(getattr(clip.asset, "trim", 0.0)), "-t", num(length),
                                 "-i", info.path])

    # ---- sound
    def _add_clip_sound(self, clip: Clip, info: MediaInfo, input_idx: int, length: float, where: str) -> None:
        volume = getattr(clip.asset, "volume", 1.0)
        fade_in = max(clip.fade_in, getattr(clip.asset, "audio_fade_in", 0.0))
        fade_out = max(clip.fade_out, getattr(clip.asset, "audio_fade_out", 0.0))
        if fade_in + fade_out > length:
            raise InvalidParams(f"{where}: the sound's fades ({fade_in + fade_out:g} s) are longer than the clip "
                                f"({length:g} s)", code="fades_too_long", details={"path": where})
        if info.audio is not None:
            self.audio_labels.append(_audio_chain(self.g, f"{input_idx}:a", volume, fade_in, fade_out,
                                                  length, clip.start))
        elif clip.asset.type == "audio":
            raise MediaError(f"{where}.asset.src has no audio stream.", code="no_audio_stream")

    def add_soundtrack(self) -> None:
        st = self.tl.soundtrack
        if not self.want_audio or st is None or st.volume <= 0:
            return
        info = self.media[st.src]
        if info.audio is None:
            raise MediaError("timeline.soundtrack.src has no audio stream.", code="no_audio_stream")
        loop = ["-stream_loop", "-1"] if st.loop else []
        idx = self.g.add_input([*loop, "-t", num(self.total), "-i", info.path])
        self.audio_labels.append(_audio_chain(self.g, f"{idx}:a", st.volume, st.fade_in, st.fade_out,
                                              min(self.total, info.duration_s) if not st.loop else self.total, 0.0))

    def _mix_audio(self) -> bool:
        has_audio = bool(self.audio_labels) and self.want_audio
        if has_audio:
            mix = ([f"amix=inputs={len(self.audio_labels)}:duration=longest:normalize=0"]
                   if len(self.audio_labels) > 1 else ["anull"])
            self.g.chain(self.audio_labels, [*mix, f"apad=whole_dur={num(self.total)}",
                                             f"atrim=end={num(self.total)}"], "aout")
        if has_audio and self.output.range is not None:
            start, end = self._range()
            self.g.chain(["aout"], [f"atrim=start={num(start)}:end={num(end)}", "asetpts=PTS-STARTPTS"], "aout_r")
        if self.fmt == "mp3" and not has_audio:
            raise InvalidParams("An mp3 render needs at least one audible clip or a soundtrack.",
                                code="nothing_audible", details={"path": "output.format"})
        return has_audio

    # ---- picture, per asset kind
    def _burn_caption(self, ass: Path) -> None:
        opts: dict[str, str | Path | None] = {"filename": ass}
        if self.fonts_dir is not None:
            opts["fontsdir"] = self.fonts_dir
        self.cur = self.g.chain([self.cur], [filter_expr("ass", **opts)], self.g.label("v"))

    def _text_layer(self, asset: TextAsset, clip: Clip, key: ClipKey, length: float) -> _Layer:
        text_file = self.workdir / f"text_{key[0]}_{key[1]}.txt"
        self.text_files[text_file] = asset.text
        w, h = self.out_w, self.out_h
        colour = "black@0"
        if asset.width is not None and asset.height is not None:
            w, h = even(asset.width * clip.scale), even(asset.height * clip.scale)
            colour = asset.background or colour
            asset = asset.model_copy(update={"size": max(4, round(asset.size * clip.scale))})
        return _Layer([], [filter_expr("color", c=colour, s=f"{w}x{h}", r=self.rate_s, d=num(length)),
                           "format=yuva420p", drawtext_filter(asset, clip, text_file, self.out_w, self.out_h,
                                                              self.font_files)],
                      w, h)

    def _html_layer(self, clip: Clip, key: ClipKey, length: float) -> _Layer:
        """The rendered page (source pixels, times `scale`)."""
        asset = clip.asset
        assert asset.type == "html"
        w, h = asset.width or self.out_w, asset.height or self.out_h
        idx = self.g.add_input(["-framerate", self.rate_s, "-i", str(self.html_images[key])])
        filters = [f"fps={self.rate_s}", "setpts=PTS-STARTPTS", "format=rgba"]
        if clip.scale != 1:
            w, h = even(w * clip.scale), even(h * clip.scale)
            filters.append(f"scale={w}:{h}")
        return _Layer([f"{idx}:v"], [*filters, "setsar=1", *self._hold(length)], w, h)

    def _hold(self, length: float) -> list[str]:
        """A still's one decoded, fitted frame repeated for `length` on the output's clock (at least as many
        frames as `-loop 1 -t length` would read: the clip's trim cuts the rest). Decoding and scaling it for
        every frame instead cost ~20 ms a frame for a 1080p PNG: a third of a slideshow render's time."""
        return [f"loop=loop={math.ceil(length * float(self.rate))}:size=1", "setpts=N"]  # TB is 1/rate (fps)

    def _media_layer(self, clip: Clip, info: MediaInfo, input_idx: int, length: float, where: str) -> _Layer:
        """A video or image source, fitted to the output (and held on its last frame if it ends early)."""
        video = info.video
        if video is None or not video.width or not video.height:
            raise MediaError(f"{where}.asset.src has no picture.", code="no_video_stream")
        crop = getattr(clip.asset, "crop", None)
        src_w, src_h = cropped_size(crop, video.width, video.height)
        scaled_w, scaled_h, layer_w, layer_h = fitted_size(clip, src_w, src_h, self.out_w, self.out_h)
        filters = [f"fps={self.rate_s}", "setpts=PTS-STARTPTS"]
        if crop is not None:
            filters.append(f"crop={src_w}:{src_h}:{even(video.width * crop.left)}:{even(video.height * crop.top)}")
        available = info.duration_s - getattr(clip.asset, "trim", 0.0)
        if clip.asset.type == "video" and available < length - 0.02:
            filters.append(f"tpad=stop_mode=clone:stop_duration={num(length - available + 0.1)}")
        filters += [f"scale={scaled_w}:{scaled_h}", "setsar=1"]
        if (scaled_w, scaled_h) != (layer_w, layer_h):
            filters.append(f"crop={layer_w}:{layer_h}")
        if clip.asset.type == "image" and is_still(info):
            filters += self._hold(length)
        return _Layer([f"{input_idx}:v"], filters, layer_w, layer_h)

    def _look(self, clip: Clip, layer: _Layer, length: float) -> list[str]:
        """Zoom effect, length, opacity and fades of a layer, on the output's time base."""
        filters: list[str] = list(LOOKS[clip.filter]) if clip.filter else []
        filters += [f for f, on in (("hflip", clip.flip_h), ("vflip", clip.flip_v)) if on]
        if clip.effect in ("zoomIn", "zoomOut"):
            frames = max(1, round(length * float(self.rate)))
            zr = ZOOM_RANGE * SPEED[clip.effect_speed]
            z = (f"1+{num(zr)}*on/{frames}" if clip.effect == "zoomIn"
                 else f"{num(1 + zr)}-{num(zr)}*on/{frames}")
            filters += ["format=yuva420p",
                        filter_expr("zoompan", z=z, x="iw/2-(iw/zoom/2)", y="ih/2-(ih/zoom/2)", d=1,
                                    s=f"{layer.width}x{layer.height}", fps=self.rate_s)]
        filters += ["format=yuva420p", f"trim=duration={num(length)}"]
        if clip.opacity < 1:
            filters.append(filter_expr("lutyuv", a=f"val*{num(clip.opacity)}"))
        if clip.fade_in:
            filters.append(f"fade=t=in:st=0:d={num(clip.fade_in)}:alpha=1")
        if clip.fade_out:
            filters.append(f"fade=t=out:st={num(length - clip.fade_out)}:d={num(clip.fade_out)}:alpha=1")
        filters.append(f"settb=expr={self.rate.denominator}/{self.rate.numerator}")
        return filters

    def _composite(self, key: ClipKey, clip: Clip, layer: _Layer, length: float, *, text_layer: bool) -> None:
        """The layer with its look, mattes and transitions, shifted to the clip's start, overlaid on the
        picture."""
        g = self.g
        label = g.chain(layer.source, [*layer.filters, *self._look(clip, layer, length)], g.label("c"))
        label = self._luma_mattes(key, clip, label, length, layer)
        label = _transitions(g, clip, label, length, layer.width, layer.height, self.rate)
        if clip.rotate % 360:  # the layer grows to hold the turned picture; the corners stay clear
            a = f"{num(clip.rotate)}*PI/180"
            label = g.chain([label], ["format=yuva444p", filter_expr(
                "rotate", a=a, ow=f"ceil(rotw({a})/2)*2", oh=f"ceil(roth({a})/2)*2", c="none"), "format=yuva420p"],
                g.label("r"))
        label = g.chain([label], [f"setpts=PTS-STARTPTS+{num(clip.start)}/TB"], g.label("p"))
        x, y = overlay_xy(clip, clip.start, length, self.out_w, self.out_h, layer.width, layer.height,
                          text_layer=text_layer)
        self.cur = g.chain([self.cur, label], [filter_expr(
            "overlay", x=x, y=y, eof_action="pass",
            enable=f"between(t,{num(clip.start)},{num(clip.start + length)})")], g.label("v"))

    def _luma_mattes(self, key: ClipKey, clip: Clip, label: str, length: float, layer: _Layer) -> str:
        """Multiply the layer's alpha by every luma clip of its track that overlaps it (white elsewhere)."""
        g, w, h = self.g, layer.width, layer.height
        mattes: list[tuple[str, float, float]] = []
        for li, luma in enumerate(self.tl.tracks[key[0]].clips):
            if luma.asset.type != "luma":
                continue
            l_start, l_len = luma.start, self.lengths[(key[0], li)]
            off, end = max(0.0, l_start - clip.start), min(length, l_start + l_len - clip.start)
            if end - off <= 1e-6:
                continue
            info = self.media[luma.asset.src]
            if info.video is None:
                raise MediaError(f"timeline.tracks[{key[0]}].clips[{li}].asset.src has no picture.",
                                 code="no_video_stream")
            skip = max(0.0, clip.start - l_start)  # the part of the matte before the clip starts
            hold: list[str] = []
            if is_still(info):
                idx = g.add_input(["-framerate", self.rate_s, "-i", info.path])
                hold = [*self._hold(end - off), f"trim=duration={num(end - off)}"]
            elif info.is_image:
                idx = g.add_input(["-loop", "1", "-framerate", self.rate_s, "-t", num(end - off), "-i", info.path])
            else:
                idx = g.add_input(["-ss", num(luma.asset.trim + skip), "-t", num(end - off), "-i", info.path])
            matte = g.chain([f"{idx}:v"], [f"fps={self.rate_s}", "setpts=PTS-STARTPTS", f"scale={w}:{h}", "setsar=1",
                                           "format=yuv420p", *hold, f"setpts=PTS-STARTPTS+{num(off)}/TB"],
                            g.label("lm"))
            mattes.append((matte, off, end))
        if not mattes:
            return label
        mask = g.chain([], [filter_expr("color", c="white", s=f"{w}x{h}", r=self.rate_s, d=num(length)),
                            "format=yuv420p", "setsar=1"], g.label("mw"))
        for matte, off, end in mattes:
            mask = g.chain([mask, matte], [filter_expr("overlay", eof_action="pass",
                                                       enable=f"between(t,{num(off)},{num(end)})"),
                                           "format=yuv420p"], g.label("mw"))
        # the matte went through limited-range yuv: white is 235, so stretch it back to 0..255 opacity
        grey = g.chain([mask], ["extractplanes=y", filter_expr("lut", c0="clip((val-16)*255/219,0,255)")],
                       g.label("mg"))
        c1, c2 = g.label("ms"), g.label("ms")
        g.chains.append(f"[{label}]split[{c1}][{c2}]")
        alpha = g.chain([c2], ["alphaextract"], g.label("ma"))
        both = g.chain([alpha, grey], ["blend=all_mode=multiply"], g.label("mb"))
        return g.chain([c1, both], ["alphamerge"], g.label("mm"))

    def _range(self) -> tuple[float, float]:
        rng = self.output.range
        assert rng is not None
        if rng.start >= self.total:
            raise InvalidParams(f"output.range.start ({rng.start:g} s) is not before the end of the timeline "
                                f"({self.total:g} s).", code="range_outside", details={"path": "output.range.start"})
        end = self.total if rng.length is None else min(self.total, rng.start + rng.length)
        return rng.start, end

    # ---- outputs
    def _video_output(self, video_args: Sequence[str]) -> tuple[list[str], list[str]]:
        """(maps, codec args) of the picture: the format's last filters and its encoder."""
        g, fmt, rate = self.g, self.fmt, self.rate
        if self.output.range is not None:
            start, end = self._range()
            self.cur = g.chain([self.cur], [f"trim=start={num(start)}:end={num(end)}", "setpts=PTS-STARTPTS"],
                               g.label("v"))
        if self.output.scale_to:
            fw, fh = self.output.final_size
            self.cur = g.chain([self.cur], [f"scale={fw}:{fh}", "setsar=1"], g.label("v"))
        tail = ["format=yuv420p"]
        if fmt in ("jpg", "png"):
            total = self.out_duration
            at = self.output.poster_at if self.output.poster_at is not None else total / 2
            at = min(at, max(0.0, total - 1 / float(rate)))
            tail = [f"trim=start={num(at)}", "setpts=PTS-STARTPTS",
                    "format=rgb24" if fmt == "png" else "format=yuvj420p"]
        if fmt == "gif":
            gif_rate = min(float(rate), 15.0)
            g.chains.append(f"[{self.cur}]fps={num(gif_rate)},split[g1][g2]")
            g.chain(["g1"], ["palettegen=stats_mode=diff"], "pal")
            g.chain(["g2", "pal"], ["paletteuse=dither=bayer:bayer_scale=4"], "vout")
        else:
            if self.window is not None:
                tail = [*tail, "setpts=PTS-STARTPTS"]
            g.chain([self.cur], tail, "vout")
        if fmt == "mp4":
            codec = [*video_args, "-r", self.rate_s, "-movflags", "+faststart"]
        elif fmt == "webm":
            codec = [*vp9_args(self.output.quality), "-r", self.rate_s]
        elif fmt == "gif":
            codec = ["-loop", "0" if self.output.repeat else "-1"]
        else:
            codec = ["-frames:v", "1", "-update", "1", *(["-q:v", "2"] if fmt == "jpg" else [])]
        return ["-map", "[vout]"], codec

    def finish(self, out: Path, video_args: Sequence[str]) -> RenderPlan:
        has_audio = self._mix_audio()
        maps: list[str] = []
        codec_args: list[str] = []
        if self.want_video:
            maps, codec_args = self._video_output(video_args)
        if has_audio:
            maps += ["-map", "[aout_r]" if self.output.range is not None else "[aout]"]
            codec_args += list(AAC_ARGS) if self.audio_only else {
                "mp4": list(AAC_ARGS), "webm": list(OPUS_ARGS), "mp3": ["-c:a", "libmp3lame", "-q:a", "2"]}[self.fmt]
        elif self.audio_only:
            raise InvalidParams("An audio-only plan needs at least one audible clip or a soundtrack.",
                                code="nothing_audible", details={"path": "timeline"})
        args = [arg for inp in self.g.inputs for arg in inp]
        args += ["-filter_complex", ";".join(self.g.chains), *maps, *codec_args]
        if self.fmt not in ("jpg", "png") and self.window is None:  # a window ends with its trim
            args += ["-t", num(self.out_duration)]
        args.append(str(out))
        return RenderPlan(args=args, duration_s=self.out_duration, text_files=self.text_files, has_audio=has_audio,
                          has_video=self.want_video)

    @property
    def out_duration(self) -> float:
        if self.output.range is None:
            return self.total
        start, end = self._range()
        return end - start


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


def _transitions(g: _Graph, clip: Clip, layer: str, length: float, w: int, h: int, rate: Fraction) -> str:
    """In/out transitions against whatever is below: fade on the alpha (drift moves the clip while it fades,
    see overlay_xy; zoom scales it), wipes/slides through xfade with a transparent frame of the same size."""
    tr = clip.transition
    if tr is None:
        return layer
    rate_s = rate_arg(rate)
    for side, kind in (("in", tr.in_), ("out", tr.out)):
        if kind is None:
            continue
        d = tr.in_s if side == "in" else tr.out_s
        if kind == "zoom":
            n = max(1, round(d * rate))
            if side == "in":
                z = f"if(lt(on,{n}),1+{num(ZOOM_TRANSITION)}*(1-on/{n}),1)"
            else:
                m = round((length - d) * rate)
                z = f"if(gt(on,{m}),1+{num(ZOOM_TRANSITION)}*(on-{m})/{n},1)"
            layer = g.chain([layer], [filter_expr("zoompan", z=z, x="iw/2-(iw/zoom/2)", y="ih/2-(ih/zoom/2)", d=1,
                                                  s=f"{w}x{h}", fps=rate_s), "format=yuva420p",
                                      f"settb=expr={rate.denominator}/{rate.numerator}"],
                            g.label("t"))
        if kind == "fade" or kind == "zoom" or kind in _DRIFT:
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
