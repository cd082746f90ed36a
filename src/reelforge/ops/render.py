"""`render`: a JSON timeline (tracks of video/image/audio/text/caption clips) rendered by one ffmpeg run."""

from __future__ import annotations

from pathlib import Path

import pysubs2

from reelforge.captions import Word, ass_style, build_subtitles, pos_prefix
from reelforge.config import Settings
from reelforge.errors import InputError, InvalidParams, MediaError
from reelforge.media.codecs import DEFAULT_VIDEO_ARGS
from reelforge.media.encoders import encode_with_fallback
from reelforge.media.ffmpeg import ensure_file_output, run_ffmpeg
from reelforge.media.fonts import LoadedFont, installed_families, load_font
from reelforge.media.html import HtmlPicture, render_html
from reelforge.media.limits import check_duration_limit, check_frame_pixels
from reelforge.media.limits import probe_input as probe_within_limits
from reelforge.media.probe import MediaInfo
from reelforge.media.subtitle_files import check_burn_size, read_subtitle_text
from reelforge.ops.context import OpContext, OpResult
from reelforge.ops.registry import operation
from reelforge.ops.resources import ENCODES
from reelforge.pipelines.render_plan import ClipKey, RenderPlan, plan_render
from reelforge.pipelines.timeline import CaptionAsset, HtmlAsset, RenderParams, TextAsset

_NAMED = {"white": (255, 255, 255), "black": (0, 0, 0), "red": (255, 0, 0), "green": (0, 128, 0),
          "lime": (0, 255, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0), "cyan": (0, 255, 255),
          "magenta": (255, 0, 255), "orange": (255, 165, 0), "gray": (128, 128, 128), "grey": (128, 128, 128),
          "pink": (255, 192, 203), "purple": (128, 0, 128)}
_ALIGN = {"bottom": pysubs2.Alignment.BOTTOM_CENTER, "center": pysubs2.Alignment.MIDDLE_CENTER,
          "top": pysubs2.Alignment.TOP_CENTER}
WORDS_PER_LINE = 6


def ass_colour(value: str, where: str) -> pysubs2.Color:
    if value.startswith("#"):
        r, g, b = (int(value[i:i + 2], 16) for i in (1, 3, 5))
        alpha = 255 - int(value[7:9], 16) if len(value) == 9 else 0  # ASS alpha: 0 is opaque
        return pysubs2.Color(r, g, b, alpha)
    if value.lower() not in _NAMED:
        raise InvalidParams(f"{where}: captions know the colours {', '.join(sorted(_NAMED))} or #RRGGBB.",
                            code="unknown_colour", details={"path": where})
    return pysubs2.Color(*_NAMED[value.lower()], 0)


def caption_file(asset: CaptionAsset, start: float, length: float, size: tuple[int, int], src: Path | None,
                 dest: Path, where: str, settings: Settings | None = None) -> Path:
    """An .ass file on the output's clock: the clip's cues shifted by `start` and cut to its length."""
    if src is not None:
        try:
            subs = pysubs2.SSAFile.from_string(read_subtitle_text(src))  # text only: no control characters
        except MediaError as exc:
            raise MediaError(f"{where}.asset.src: {exc.message}", code=exc.code) from None
        except Exception as exc:  # pysubs2 raises many types for unreadable files
            raise MediaError(f"{where}.asset.src is not a readable SRT/VTT/ASS file ({exc}).",
                             code="bad_subtitles") from None
    else:
        subs = pysubs2.SSAFile()
        words = asset.words or []
        for i in range(0, len(words), WORDS_PER_LINE):
            line = words[i:i + WORDS_PER_LINE]
            text = " ".join(w.text.replace("\\", "\\\\").replace("{", "(").replace("}", ")") for w in line)
            subs.append(pysubs2.SSAEvent(start=round(line[0].start * 1000), end=round(line[-1].end * 1000),
                                         text=text))
    out_w, out_h = size
    keep = asset.keep_style and src is not None and src.suffix.lower() in (".ass", ".ssa")
    if asset.style is not None and not keep:
        if src is None:  # timed words: grouped and styled like the subtitles op does it
            timed = [Word(w.text, w.start, w.end) for w in asset.words or []]
            subs = build_subtitles(timed, asset.style, (out_w, out_h))
        else:
            subs.styles = {"Default": ass_style(asset.style)}
            for ev in subs:
                ev.style = "Default"
                ev.text = pos_prefix(asset.style) + ev.text
            subs.info["PlayResX"], subs.info["PlayResY"] = str(out_w), str(out_h)
    elif not keep:
        style = pysubs2.SSAStyle(fontname=asset.font, fontsize=asset.size or max(12, out_h // 18),
                                 primarycolor=ass_colour(asset.colour, f"{where}.asset.colour"),
                                 outlinecolor=ass_colour(asset.outline_colour, f"{where}.asset.outline_colour"),
                                 outline=max(1, out_h // 360), shadow=0, alignment=_ALIGN[asset.position],
                                 marginv=round(out_h * 0.06))
        subs.styles = {"Default": style}
        for ev in subs:
            ev.style = "Default"
        subs.info["PlayResX"], subs.info["PlayResY"] = str(out_w), str(out_h)
    cut = pysubs2.SSAFile()
    cut.info, cut.styles = subs.info, subs.styles
    end_ms = round(length * 1000)
    for ev in subs:
        if ev.end <= 0 or ev.start >= end_ms:
            continue
        ev.start, ev.end = max(0, ev.start), min(end_ms, ev.end)
        ev.shift(ms=round(start * 1000))
        cut.append(ev)
    if settings is not None:
        check_burn_size(cut, length, settings, f"{where}.asset")
    cut.save(str(dest), format_="ass")
    return dest


def _check_fonts(params: RenderParams, loaded: set[str]) -> None:
    """Every text and caption font is installed or brought by the timeline: never a silent fallback."""
    known: set[str] | None = None
    for ti, track in enumerate(params.timeline.tracks):
        for ci, clip in enumerate(track.clips):
            asset = clip.asset
            if not isinstance(asset, TextAsset | CaptionAsset) or asset.font in loaded:
                continue
            if isinstance(asset, CaptionAsset) and asset.style is not None:
                continue
            known = installed_families() if known is None else known
            if known and asset.font.lower() not in known:
                where = f"timeline.tracks[{ti}].clips[{ci}].asset.font"
                raise InvalidParams(f"{where}: no font family {asset.font!r} is installed or in timeline.fonts.",
                                    code="font_not_found", details={"path": where})


def probe_input(ctx: OpContext, ref: str, where: str) -> MediaInfo:
    """Fetch and probe one input; a failure names the timeline field it came from."""
    try:
        return probe_within_limits(ctx.fetch(ref), ctx.settings, ref)
    except (InputError, MediaError) as exc:
        raise type(exc)(f"{where}: {exc.message}", code=exc.code, details={"path": where}) from None


@operation(
    "render",
    params=RenderParams,
    summary="Render a JSON timeline (video, image, audio, text and caption clips on tracks) to one file.",
    resources=ENCODES,
    timeout_s=3 * 3600,
    example={
        "timeline": {
            "background": "#101820",
            "tracks": [
                {"clips": [{"asset": {"type": "text", "text": "Hello", "size": 64, "box": True},
                            "start": 0.5, "length": 2.5, "position": "bottom",
                            "transition": {"in": "fade", "out": "fade"}}]},
                {"clips": [{"asset": {"type": "image", "src": "https://example.com/photo.jpg"},
                            "start": 0, "length": 4, "effect": "zoomIn"}]},
            ],
        },
        "output": {"format": "mp4", "size": "1280x720", "fps": 25},
    },
)
def run(params: RenderParams, ctx: OpContext) -> OpResult:
    tl, output = params.timeline, params.output
    out_w, out_h = output.frame_size
    check_frame_pixels(out_w, out_h, ctx.settings)
    ctx.stage("fetching inputs")
    refs: dict[str, str] = {}  # src -> the JSON path of its first use, for error messages
    for ti, track in enumerate(tl.tracks):
        for ci, clip in enumerate(track.clips):
            src = getattr(clip.asset, "src", None)
            if src and not isinstance(clip.asset, CaptionAsset):
                refs.setdefault(src, f"timeline.tracks[{ti}].clips[{ci}].asset.src")
    if tl.soundtrack is not None:
        refs.setdefault(tl.soundtrack.src, "timeline.soundtrack.src")
    media: dict[str, MediaInfo] = {}
    for i, (ref, where) in enumerate(refs.items()):
        ctx.check_cancelled()
        media[ref] = probe_input(ctx, ref, where)
        ctx.progress(0.05 * (i + 1) / max(1, len(refs)))

    work = ctx.workdir / "render"
    work.mkdir(parents=True, exist_ok=True)
    captions: dict[ClipKey, Path] = {}
    for ti, track in enumerate(tl.tracks):
        for ci, clip in enumerate(track.clips):
            if isinstance(clip.asset, CaptionAsset):
                where = f"timeline.tracks[{ti}].clips[{ci}]"
                src = ctx.fetch(clip.asset.src) if clip.asset.src else None
                assert clip.length is not None  # the model requires it for captions
                captions[(ti, ci)] = caption_file(clip.asset, clip.start, clip.length, (out_w, out_h), src,
                                                  work / f"captions_{ti}_{ci}.ass", where, ctx.settings)

    fonts: list[LoadedFont] = []
    for i, ref in enumerate(tl.fonts):
        where = f"timeline.fonts[{i}]"
        try:
            fonts.append(load_font(ctx.fetch(ref), work / "fonts", where))
        except InputError as exc:
            raise InputError(exc.message if exc.message.startswith(where) else f"{where}: {exc.message}",
                             code=exc.code, details={"path": where}) from None
    font_files = {f.family: f.path for f in fonts}
    _check_fonts(params, set(font_files))
    fonts_css = "".join(f.css() for f in fonts)
    html_images: dict[ClipKey, Path] = {}
    for ti, track in enumerate(tl.tracks):
        for ci, clip in enumerate(track.clips):
            if isinstance(clip.asset, HtmlAsset):
                ctx.check_cancelled()
                a = clip.asset
                picture = HtmlPicture(a.html, fonts_css + a.css, a.width or out_w, a.height or out_h, a.background,
                                      a.position)
                try:
                    html_images[(ti, ci)] = render_html(picture, ctx.settings.service.data_dir / "cache" / "html",
                                                        ctx.settings.media.chromium_path)
                except MediaError as exc:
                    where = f"timeline.tracks[{ti}].clips[{ci}].asset"
                    raise MediaError(f"{where}: {exc.message}", code=exc.code, details={"path": where}) from None

    ext = "." + output.format
    out = ctx.output_path("render", ext)

    def plan_for(video_args: tuple[str, ...] | None = None) -> RenderPlan:
        return plan_render(params, media, out=out, workdir=work, captions=captions,
                           video_args=video_args or DEFAULT_VIDEO_ARGS,
                           fonts_dir=work / "fonts" if fonts else ctx.settings.media.font_dir,
                           html_images=html_images, font_files=font_files)

    plan = plan_for()
    check_duration_limit(plan.duration_s, ctx.settings, "The timeline")
    for path, text in plan.text_files.items():
        path.write_text(text, encoding="utf-8")
    ctx.stage("rendering", 0.05)
    if output.format == "mp4":
        choice = encode_with_fallback(lambda c: plan_for(c.args).args, ctx, output.quality,
                                      duration_s=plan.duration_s, span=(0.05, 1.0), stage="rendering")
        ctx.note(encoder=choice.name)
    else:
        run_ffmpeg(plan.args, ctx, duration_s=plan.duration_s, span=(0.05, 1.0), stage="rendering")
    ensure_file_output(out, "render")
    outputs = {"render": out}
    final_w, final_h = output.final_size
    stills = [("poster", output.poster, 1.0)]
    if output.thumbnail is not None:
        stills.append(("thumbnail", output.thumbnail.at, output.thumbnail.scale))
    for name, at, scale in stills:
        if at is None:
            continue
        if output.format in ("mp3", "jpg", "png"):
            raise InvalidParams(f"output.{name}: a {output.format} render has no frames to take a {name} from.",
                                code="no_frames", details={"path": f"output.{name}"})
        still = ctx.output_path(name, ".jpg")
        at = min(at, max(0.0, plan.duration_s - 1 / output.fps))
        run_ffmpeg(["-ss", f"{at:.3f}", "-i", str(out), "-frames:v", "1", "-vf",
                    f"scale={max(2, round(final_w * scale))}:{max(2, round(final_h * scale))}", "-q:v", "3",
                    "-update", "1", str(still)], ctx, stage=f"writing the {name}")
        ensure_file_output(still, name)
        outputs[name] = still
    ctx.progress(1.0)
    return OpResult(outputs=outputs,
                    data={"duration_s": round(plan.duration_s, 3), "format": output.format,
                          "size": [final_w, final_h], "fps": output.fps, "audio": plan.has_audio})
