"""`render`: a JSON timeline (tracks of video/image/audio/text/caption clips) rendered by one ffmpeg run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pysubs2

from reelforge.captions import Word, ass_style, build_subtitles, pos_prefix
from reelforge.config import Settings
from reelforge.errors import InputError, InvalidParams, MediaError
from reelforge.media.codecs import DEFAULT_VIDEO_ARGS, chunkable_x264_args, gop_args
from reelforge.media.encoders import EncoderChoice, encode_with_fallback
from reelforge.media.ffmpeg import ensure_file_output, run_ffmpeg
from reelforge.media.fonts import LoadedFont, installed_families, load_font
from reelforge.media.frame_rate import parse_rate
from reelforge.media.html import HtmlPicture, render_html
from reelforge.media.limits import check_duration_limit, check_frame_pixels
from reelforge.media.limits import probe_input as probe_within_limits
from reelforge.media.probe import MediaInfo
from reelforge.media.subtitle_files import check_burn_size, read_subtitle_text
from reelforge.ops.chunking import (
    chunk_count,
    chunk_key,
    encode_chunk,
    fork_chunks,
    gop_frames,
    join_chunks,
    resumed_chunks,
    resumed_output,
)
from reelforge.ops.context import OpContext, OpResult
from reelforge.ops.registry import operation
from reelforge.ops.resources import ENCODES
from reelforge.pipelines.render_cost import gop_costs
from reelforge.pipelines.render_plan import (
    ClipKey,
    RenderPlan,
    Window,
    clip_lengths,
    frame_count,
    plan_render,
    timeline_duration,
)
from reelforge.pipelines.timeline import (
    MAX_TIMELINE_S,
    CaptionAsset,
    ChunkSpec,
    HtmlAsset,
    RenderParams,
    TextAsset,
)

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
    kept = (ctx.resumed or {}).get("state") or {}
    if "duration_s" in kept:  # the parent's run after its chunks: what the fork kept is all the join needs
        return _joined(params, ctx, float(kept["duration_s"]), bool(kept.get("has_audio")))
    joining = ctx.resumed is not None  # (a parent forked before the fork kept its length: as then)
    ctx.stage("fetching inputs", 0.95 if joining else 0.0)
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
        if not joining:
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
    # a long mp4 (not cut by output.range) may be chunked (docs/CHUNKED.md): fixed keyframes either way
    long_mp4 = (output.format == "mp4" and output.range is None
                and _duration(params, media) > ctx.settings.compute.chunk_threshold_s)
    gop = params.chunk.gop if params.chunk is not None else gop_frames(output.fps) if long_mp4 else 0
    sound_part = params.chunk is not None and params.chunk.sound
    window = (Window(params.chunk.start_frame, params.chunk.end_frame)
              if params.chunk is not None and not sound_part else None)
    if window is not None:
        captions = {k: _caption_window(p, window, output.fps) for k, p in captions.items()}

    def plan_for(choice: EncoderChoice | None = None, **kw: Any) -> RenderPlan:
        args = choice.args if choice is not None else DEFAULT_VIDEO_ARGS
        if gop and (choice is None or not choice.hw):  # a long mp4 on the CPU: as its chunks would be encoded
            args = chunkable_x264_args(output.quality, gop, ctx.settings.compute.threads_per_job)
        elif gop:  # NVENC (unchunked): at least the same keyframes
            args = (*args, *gop_args(gop))
        return plan_render(params, media, out=kw.pop("out", out), workdir=work, captions=captions, video_args=args,
                           fonts_dir=work / "fonts" if fonts else ctx.settings.media.font_dir,
                           html_images=html_images, font_files=font_files, **kw)

    plan = plan_for(window=window)
    check_duration_limit(plan.duration_s, ctx.settings, "The timeline")
    for path, text in plan.text_files.items():
        path.write_text(text, encoding="utf-8")
    if window is not None:
        return _render_chunk(params, ctx, plan_for, work, window, media)
    if sound_part:
        return _render_sound(ctx, plan_for, plan, work, media)
    chunks = chunk_count(params.chunks, ctx, plan.duration_s) if long_mp4 and not joining else 1
    if chunks > 1:
        return _fork(params, media, plan.duration_s, chunks, gop, plan.has_audio)
    if joining:
        _join_chunks(ctx, plan_for, plan, out, work)
    elif output.format == "mp4":
        ctx.stage("rendering", 0.05)
        choice = encode_with_fallback(lambda c: plan_for(c).args, ctx, output.quality,
                                      duration_s=plan.duration_s, span=(0.05, 1.0), stage="rendering")
        ctx.note(encoder=choice.name)
    else:
        ctx.stage("rendering", 0.05)
        run_ffmpeg(plan.args, ctx, duration_s=plan.duration_s, span=(0.05, 1.0), stage="rendering")
    ensure_file_output(out, "render")
    return _finish(params, ctx, out, plan.duration_s, plan.has_audio)


def _finish(params: RenderParams, ctx: OpContext, out: Path, duration_s: float, has_audio: bool) -> OpResult:
    """The rendered (or joined) file with the stills taken from it, and the job's data."""
    output = params.output
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
        at = min(at, max(0.0, duration_s - 1 / output.fps))
        run_ffmpeg(["-ss", f"{at:.3f}", "-i", str(out), "-frames:v", "1", "-vf",
                    f"scale={max(2, round(final_w * scale))}:{max(2, round(final_h * scale))}", "-q:v", "3",
                    "-update", "1", str(still)], ctx, stage=f"writing the {name}")
        ensure_file_output(still, name)
        outputs[name] = still
    ctx.progress(1.0)
    data: dict[str, Any] = {"duration_s": round(duration_s, 3), "format": output.format,
                            "size": [final_w, final_h], "fps": output.fps, "audio": has_audio}
    if ctx.resumed is not None:
        data["chunks"] = sum(1 for child in (ctx.resumed or {}).get("children") or [] if "chunk" in child["outputs"])
    return OpResult(outputs=outputs, data=data)


# ---- chunked renders (docs/CHUNKED.md; the shared fork, cache and join: ops/chunking.py)
def _duration(params: RenderParams, media: dict[str, MediaInfo]) -> float:
    return timeline_duration(params, clip_lengths(params, media), MAX_TIMELINE_S)


# the sound child's cost as a share of the picture's: mixing + AAC measured 3.7-4.7 % of a 1080p render's time
# (its share of the progress, and how much lighter the first chunk is, whose worker takes the sound after it)
SOUND_WEIGHT = 0.04


def _fork(params: RenderParams, media: dict[str, MediaInfo], duration_s: float, chunks: int, gop: int,
          has_audio: bool) -> OpResult:
    """The picture chunks, of about equal cost (pipelines/render_cost.py), and, when the render has sound, one
    child that mixes and encodes it: listed last, so a worker takes it when it is free of a chunk, and the
    join that follows only copies."""
    rate = float(parse_rate(params.output.fps))
    frames = frame_count(duration_s, rate)
    costs = gop_costs(params, clip_lengths(params, media), media, frames=frames, rate=rate, gop=gop)
    body = params.model_dump(mode="json")
    sound = sum(costs) * SOUND_WEIGHT if has_audio else 0.0
    result = fork_chunks("render", body, frames, chunks, gop, first_lighter=sound, costs=costs)
    assert result.fork is not None
    result.fork.state.update(duration_s=duration_s, has_audio=has_audio)  # for the join (_joined)
    if has_audio:
        spec = ChunkSpec(index=len(result.fork.children), start_frame=0, gop=gop, sound=True)
        result.fork.children.append({"op": "render", "params": {**body, "chunk": spec.model_dump(mode="json")},
                                     "weight": max(1, round(sound))})
    return result


def _caption_window(path: Path, window: Window, fps: float) -> Path:
    """The caption file cut to the cues a window shows (so a chunk's cache key changes only when its own
    cues do); the cues keep their times on the output's clock."""
    a, b = window.seconds(float(parse_rate(fps)))
    margin = 1.0 / fps
    subs = pysubs2.load(str(path))
    kept = pysubs2.SSAFile()
    kept.info, kept.styles = subs.info, subs.styles
    for ev in subs:
        if ev.end / 1000 >= a - margin and (b is None or ev.start / 1000 <= b + margin):
            kept.append(ev)
    dest = path.with_name(f"{path.stem}_w{window.start_frame}.ass")
    kept.save(str(dest), format_="ass")
    return dest


def _render_chunk(params: RenderParams, ctx: OpContext, plan_for: Any, work: Path, window: Window,
                  media: dict[str, MediaInfo]) -> OpResult:
    """A child job: the picture of one window, libx264 (the same encoder on every machine), from the step
    cache when the same chunk was rendered before."""
    chunk_out = ctx.output_path("chunk", ".mp4")
    plan = plan_for(None, window=window, out=chunk_out)  # chunkable libx264
    key = chunk_key("render.chunk", plan.args, [info.path for info in media.values()], work, ctx.workdir)
    a, b = window.seconds(float(parse_rate(params.output.fps)))
    seconds = (b if b is not None else plan.duration_s) - a
    return encode_chunk(ctx, kind="render.chunk", key=key, args=plan.args, out=chunk_out, work=work,
                        window=window, seconds=seconds, stage="rendering chunk")


def _render_sound(ctx: OpContext, plan_for: Any, plan: RenderPlan, work: Path,
                  media: dict[str, MediaInfo]) -> OpResult:
    """A child job: the render's sound for the whole length, mixed and AAC-encoded once (output `sound`), from
    the step cache when the same sound was made before."""
    sound_out = ctx.output_path("sound", ".m4a")
    sound = plan_for(audio_only=True, out=sound_out)
    key = chunk_key("render.sound", sound.args, [info.path for info in media.values()], work, ctx.workdir)
    return encode_chunk(ctx, kind="render.sound", key=key, args=sound.args, out=sound_out, work=work, window=None,
                        seconds=plan.duration_s, stage="mixing sound", name="sound")


def _joined(params: RenderParams, ctx: OpContext, duration_s: float, has_audio: bool) -> OpResult:
    """The parent's second run: the chunks joined by stream copy, with the sound child's AAC (the sound of the
    whole length, encoded once, so no encoder priming at the joins) muxed in. The fork kept the length and
    whether there is sound, so no input is fetched or probed again: a worker on other storage, or an agent,
    would download every source once more only to copy the chunks."""
    work = ctx.workdir / "render"
    work.mkdir(parents=True, exist_ok=True)
    out = ctx.output_path("render", ".mp4")
    audio = None
    if has_audio:
        audio = resumed_output(ctx, "sound")
        if audio is None:
            raise MediaError("The chunked render has no sound to join.", code="chunk_missing")
    _copy_join(ctx, out, work, duration_s, audio)
    ensure_file_output(out, "render")
    return _finish(params, ctx, out, duration_s, has_audio)


def _join_chunks(ctx: OpContext, plan_for: Any, plan: RenderPlan, out: Path, work: Path) -> None:
    """The join of a parent forked by an earlier version, whose fork did not keep the length (an upgrade while
    it rendered): after fetching and planning again, as it was then."""
    audio = resumed_output(ctx, "sound") if plan.has_audio else None
    if plan.has_audio and audio is None:  # forked before sound children existed: made here, as it was then
        audio = work / "sound.m4a"
        ctx.stage("joining chunks", 0.95)
        run_ffmpeg(plan_for(audio_only=True, out=audio).args, ctx, duration_s=plan.duration_s,
                   span=(0.95, 0.98), stage="mixing sound")
    _copy_join(ctx, out, work, plan.duration_s, audio)


def _copy_join(ctx: OpContext, out: Path, work: Path, duration_s: float, audio: Path | None) -> None:
    """The children's chunks joined by stream copy into `out`, with `audio` (the whole length's AAC) muxed in."""
    ctx.stage("joining chunks", 0.95)
    extra, maps = (["-i", str(audio)], ["0:v:0", "1:a:0"]) if audio is not None else ([], ["0:v:0"])
    join_chunks(ctx, resumed_chunks(ctx), out, work, duration_s=duration_s, extra_inputs=extra, maps=maps)
