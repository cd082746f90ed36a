"""`build`: script (or narration audio) + background + optional talking head and music -> finished mp4.

The build is a step graph run by the pipeline runner, so it gets parallel steps, per-step caching,
aggregated progress and cancel:

    narration   tts (word timings; AAC when there is no music, encoded while the voice speaks)
                                              | given audio (+ align to the script, or transcribe)
    head        overlay: talking head -> transparent circle (VP9 alpha), parallel with the narration
    background  one period of the loop (the clip forward, then reversed for ping-pong), fitted to the output
                size and rate in the same encode; it does not need the narration's length, so it runs in
                parallel with the narration (a clip longer than the script can take to speak is encoded
                only that far, forward). Encoded without B-frames, so the compose can repeat it by stream
                copy and cut it on the exact frame.
      or images Ken Burns clips (img2vid) to the narration's length
                when the compose encodes anyway (burned captions, a head), either background is made as a
                fast near-lossless intermediate (media/encoders.intermediate_encoder), not a second quality
                encode
    captions    ASS (chosen style) + SRT from the word timings
    compose     ONE encode: background (repeated to the narration's length) + head + burned captions +
                narration/music mix; with soft or no captions and no head the background is stream-copied,
                and an AAC narration without music is stream-copied too (ops/build_compose.py)

A long build whose compose encodes may be chunked (docs/CHUNKED.md, ops/build_chunks.py): every step but
the compose runs, then child jobs compose time windows of it (and one its sound) from the files the parent
stored for them, and the parent's next run joins them by stream copy.

The steps named `build.*` are internal: they exist only inside this graph (not public operations).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, ValidationInfo, model_validator

from reelforge.captions import CaptionStyle, build_plain, build_subtitles, load_words, save_subs
from reelforge.errors import InvalidParams, MediaError
from reelforge.media.concat_list import concat_copy_args, write_concat_list
from reelforge.media.encoders import EncoderChoice, Quality, intermediate_encoder, with_encoder_fallback
from reelforge.media.ffmpeg import ensure_file_output, run_ffmpeg
from reelforge.media.frame_rate import parse_rate
from reelforge.media.frame_size import FrameSizeText, parse_frame_size
from reelforge.media.kenburns import Effect as KenBurnsEffect
from reelforge.media.limits import check_duration_limit, probe_input
from reelforge.media.probe import probe, require_audio, require_video
from reelforge.models.tts import split_sentences
from reelforge.ops import build_chunks
from reelforge.ops.build_compose import ComposeStepParams, MusicOptions, Options, compose_step
from reelforge.ops.context import OpContext, OpResult
from reelforge.ops.img2vid import Img2VidParams
from reelforge.ops.img2vid import render as render_img2vid
from reelforge.ops.loop import encode_cycle
from reelforge.ops.params import MediaRef, Params
from reelforge.ops.registry import Operation, get_operation, operation
from reelforge.ops.resources import Resources, ResourceSpec, Variant
from reelforge.pipelines.compose_plan import CaptionMode, Corner, background_fits
from reelforge.pipelines.graph import Step, build_graph
from reelforge.pipelines.runner import PipelineRunner, RunOptions, run_graph
from reelforge.pipelines.timeline import ChunkSpec

__all__ = ["BuildParams", "ComposeStepParams", "MusicOptions", "build_steps", "lookup_op"]

MAX_SCRIPT_CHARS = 20_000
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


# ---------------------------------------------------------------- public params
class VoiceOptions(Options):
    engine: Literal["piper", "kokoro", "espeak"] = "piper"
    voice: str | None = None
    language: str | None = None
    speed: float = Field(default=1.0, ge=0.5, le=2.0)
    sentence_pause_s: float = Field(default=0.3, ge=0.0, le=3.0)


class HeadOptions(Options):
    corner: Corner = "bottom_right"
    size: float = Field(default=0.3, gt=0.05, le=0.9, description="overlay height / output height")
    margin: float = Field(default=0.03, ge=0, le=0.3)
    engine: Literal["mediapipe", "rvm"] = "mediapipe"
    border_width: float = Field(default=0.0, ge=0, le=50, description="ring around the circle, pixels "
                                                                      "of the talking-head video")
    border_color: str = "#ffffff"
    loop: bool = Field(default=True, description="repeat a short talking head for the whole narration")


class BuildParams(Params):
    script: str | None = Field(default=None, max_length=MAX_SCRIPT_CHARS,
                               description="What the narrator says (spoken by tts unless `audio` is given).")
    audio: MediaRef | None = Field(default=None, description="Narration audio instead of tts; with `script`, "
                                                             "captions use the script's exact words.")
    voice: VoiceOptions = Field(default_factory=VoiceOptions)
    backgrounds: list[MediaRef] = Field(default_factory=list, max_length=20,
                                        description="Background video(s), joined then looped.")
    images: list[MediaRef] = Field(default_factory=list, max_length=200,
                                   description="Or images shown as Ken Burns clips, sharing the length.")
    background_mode: Literal["pingpong", "forward"] = "pingpong"
    ken_burns: KenBurnsEffect = "zoom_in"
    talking_head: MediaRef | None = Field(default=None, description="A video of the speaker, shown as a "
                                                                    "circle at a corner.")
    head: HeadOptions = Field(default_factory=HeadOptions)
    music: MediaRef | None = None
    music_options: MusicOptions = Field(default_factory=MusicOptions)
    captions: CaptionMode = "burn"
    caption_style: CaptionStyle = Field(default_factory=lambda: CaptionStyle(style="karaoke"))
    size: FrameSizeText = Field(default="1920x1080", description="1920x1080, 1080x1920, 1080x1080 or WxH")
    fps: int = Field(default=30, ge=1, le=60)
    quality: Quality = "standard"
    cache: bool = True
    keep_intermediates: bool = False
    chunks: int | None = Field(default=None, ge=1, le=64, description=(
        "Builds whose narration is longer than the chunk threshold (60 s by default) and whose picture is "
        "encoded (burned captions or a talking head): how many time chunks to compose as parallel child jobs "
        "(1: never split). Default: as many as the workers for the job's queue."))
    chunk: ChunkSpec | None = Field(default=None, description="Internal: set on a chunked build's child jobs.")
    compose: ComposeStepParams | None = Field(default=None, description=(
        "Internal: a chunked build's child jobs: the compose's inputs (the files the parent made)."))

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> BuildParams:
        if (self.chunk is None) != (self.compose is None):
            raise ValueError("chunk and compose are set together (on a chunked build's child jobs)")
        if not (self.script and self.script.strip()) and self.audio is None:
            raise ValueError("give a `script` to speak, or narration `audio`")
        if bool(self.backgrounds) == bool(self.images):
            raise ValueError("give background video(s) in `backgrounds` or `images`, not both and not neither")
        if self.audio is None:
            _check_voice(self.script or "", self.voice)
        # the whole graph (every step's params) is checked now, so a bad combination is a 422 at submit
        build_graph(build_steps(self), lookup=lookup_op, context=info.context)
        return self


def _check_voice(script: str, voice: VoiceOptions) -> None:
    tts = get_operation("tts").params_model
    try:
        tts.model_validate({"text": script, "engine": voice.engine, "voice": voice.voice,
                            "language": voice.language})
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "voice"
        where = "script" if field == "text" else "voice" if field in ("", "__root__") else f"voice.{field}"
        raise InvalidParams(f"{where}: {err['msg']}", code="invalid_voice", details={"path": where}) from None


# ---------------------------------------------------------------- the graph
def build_steps(p: BuildParams) -> list[Step]:
    """The build as pipeline steps (pure: params -> graph)."""
    w, h = parse_frame_size(p.size)
    steps: list[Step] = []
    want_words = p.captions != "none"
    duration_ref = {"ref": "narration.data.duration_s"}
    if p.audio is None:
        steps.append(Step(id="narration", op="tts", weight=3, params={
            "text": p.script, "engine": p.voice.engine, "voice": p.voice.voice, "language": p.voice.language,
            "speed": p.voice.speed, "sentence_pause_s": p.voice.sentence_pause_s,
            # without music the narration is the output's sound: encoded to AAC here, while the voice
            # speaks, and stream-copied by the compose; music is mixed from the lossless wav
            "format": "wav" if p.music is not None else "m4a", "sample_rate": 48000,
            "word_timings": want_words}))
        words_ref = {"ref": "narration.words"}
    else:
        steps.append(Step(id="narration", op="build.audio", params={"audio": p.audio}))
        if want_words and p.script and p.script.strip():
            steps.append(Step(id="words", op="align", weight=2, params={
                "audio": {"ref": "narration.audio"}, "script": p.script,
                **({"language": p.voice.language} if p.voice.language else {})}))
        elif want_words:
            steps.append(Step(id="words", op="transcribe", weight=2, params={"input": {"ref": "narration.audio"}}))
        words_ref = {"ref": "words.words"}

    # the compose decodes and encodes the background again: made as a fast near-lossless intermediate
    reencoded = {"reencoded": True} if p.captions == "burn" or p.talking_head is not None else {}
    if p.images:
        steps.append(Step(id="background", op="build.images", weight=4, params={
            "images": list(p.images), "duration_s": duration_ref, "size": f"{w}x{h}", "fps": p.fps,
            "effect": p.ken_burns, "quality": p.quality, **reencoded}))
    else:
        source: Any = p.backgrounds[0]
        if len(p.backgrounds) > 1:
            steps.append(Step(id="joined", op="concat", weight=2, params={
                "inputs": list(p.backgrounds), "size": f"{w}x{h}", "fps": p.fps, "quality": p.quality}))
            source = {"ref": "joined.video"}
        cycle: dict[str, Any] = {"input": source, "mode": p.background_mode, "size": f"{w}x{h}", "fps": p.fps,
                                 "quality": p.quality, **reencoded}
        if p.audio is None and p.script:
            cycle["longest_s"] = narration_upper_bound_s(p.script, p.voice)
        steps.append(Step(id="background", op="build.cycle", weight=2, params=cycle))

    if p.talking_head is not None:
        steps.append(Step(id="head", op="overlay", weight=4, params={
            "input": p.talking_head, "engine": p.head.engine, "shape": "circle", "crop": True,
            "border_width": p.head.border_width, "border_color": p.head.border_color, "output": "webm",
            "quality": "standard"}))

    if want_words:
        steps.append(Step(id="captions", op="build.captions", params={
            "words": words_ref, "style": p.caption_style.model_dump(mode="json"), "width": w, "height": h}))

    compose: dict[str, Any] = {
        "background": {"ref": "background.video"}, "narration": {"ref": "narration.audio"},
        "size": f"{w}x{h}", "fps": p.fps, "quality": p.quality, "captions": p.captions,
        "head_layout": {"corner": p.head.corner, "size": p.head.size, "margin": p.head.margin,
                        "loop": p.head.loop},
        "music_mix": p.music_options.model_dump(mode="json"),
    }
    if p.talking_head is not None:
        compose["head"] = {"ref": "head.overlay"}
    if p.music is not None:
        compose["music"] = p.music
    if want_words:
        compose["ass"] = {"ref": "captions.ass"}
        compose["srt"] = {"ref": "captions.srt"}
    steps.append(Step(id="compose", op="build.compose", weight=10, params=compose))
    return steps


def narration_upper_bound_s(script: str, voice: VoiceOptions) -> float:
    """A generous upper bound of how long `script` takes to speak, known before any synthesis: the
    background's loop period is made in parallel with the narration, so it cannot wait for the real
    length, but it need not encode more of a long background clip than this. Voices speak ~2.6 words/s
    (piper, measured) and CJK text ~7 characters/s; the bound assumes 1.8 words/s and 5 characters/s,
    plus every sentence pause, plus 20%, rounded up to 30 s x a power of two (so
    builds with scripts of similar length share the cached loop period of the same background)."""
    cjk = len(_CJK.findall(script))  # written without spaces between words: count characters
    words = len(_CJK.sub(" ", script).split())
    speech = (words / 1.8 + cjk / 5.0) / voice.speed
    pauses = len(split_sentences(script)) * voice.sentence_pause_s
    bound = (speech + pauses + 2.0) * 1.2
    return 30.0 * 2 ** max(0, math.ceil(math.log2(bound / 30.0)))


# ---------------------------------------------------------------- internal steps
class AudioStepParams(Params):
    audio: MediaRef


def _audio_step(params: AudioStepParams, ctx: OpContext) -> OpResult:
    path = ctx.fetch(params.audio)
    info = probe_input(path, ctx.settings, params.audio, "audio")
    require_audio(info)
    check_duration_limit(info.duration_s, ctx.settings, "The narration")
    return OpResult(outputs={"audio": path}, data={"duration_s": round(info.duration_s, 3)})


class CycleStepParams(Params):
    input: MediaRef
    mode: Literal["pingpong", "forward"] = "pingpong"
    size: FrameSizeText
    fps: int = Field(ge=1, le=60)
    quality: Quality = "standard"
    longest_s: float | None = Field(default=None, gt=0, description="no more of the clip is ever shown")
    reencoded: bool = Field(default=False, description="the compose encodes the picture again (burned captions, "
                                                       "a talking head): made as a fast, near-lossless intermediate")


def _cycle_step(params: CycleStepParams, ctx: OpContext) -> OpResult:
    """One loop period of the background at the output's size and rate, ready to repeat by stream copy."""
    path = ctx.fetch(params.input)
    info = probe_input(path, ctx.settings, params.input, "video")
    video = require_video(info)
    check_duration_limit(info.duration_s, ctx.settings, "The background video")
    size = parse_frame_size(params.size)
    # a clip longer than the narration can be is only shown forward, and only as far as it can be shown
    limit = params.longest_s if params.longest_s and info.duration_s > params.longest_s else None
    mode = "forward" if limit else params.mode
    if mode == "forward" and background_fits(info, size, params.fps) and video.b_frames == 0:
        # already what the compose can repeat and cut exactly: no encode at all
        return OpResult(outputs={"video": path}, data={"encoded": False, "duration_s": info.duration_s,
                                                       "mode": mode, "limited_to_s": None})
    fps = parse_rate(params.fps)

    def work(choice: EncoderChoice) -> Path:
        # no B-frames: decode order = display order, so a stream-copy cut ends on the exact frame
        enc = intermediate_encoder(params.quality).args if params.reencoded and not choice.hw else choice.args
        pieces = encode_cycle(path, ctx, mode, fps, info.duration_s, (*enc, "-bf", "0"),
                              size=size, fit=True, limit_s=limit, span=(0.0, 0.95))
        if len(pieces) == 1:
            return pieces[0].path
        joined = ctx.temp_path("cycle.mp4")
        lst = write_concat_list([piece.path for piece in pieces], ctx.temp_path("cycle.txt"))
        run_ffmpeg(concat_copy_args(lst, joined, audio=False), ctx, span=(0.95, 1.0), stage="joining")
        return joined

    cycle = ensure_file_output(with_encoder_fallback(work, ctx, params.quality), "background")
    out = ctx.output_path("video", ".mp4")
    cycle.replace(out)
    return OpResult(outputs={"video": out}, data={"encoded": True, "duration_s": round(probe(out).duration_s, 3),
                                                  "mode": mode, "limited_to_s": limit})


class ImagesStepParams(Params):
    images: list[MediaRef] = Field(min_length=1)
    duration_s: float = Field(gt=0)
    size: FrameSizeText
    fps: int = Field(ge=1, le=60)
    effect: str = "zoom_in"
    quality: Quality = "standard"
    reencoded: bool = Field(default=False, description="the compose encodes the picture again: made as a fast, "
                                                       "near-lossless intermediate")


def _images_step(params: ImagesStepParams, ctx: OpContext) -> OpResult:
    """Ken Burns clips sharing the narration's length (one frame spare each; the compose cuts exactly)."""
    each = params.duration_s / len(params.images) + 1.0 / params.fps
    sub = Img2VidParams.model_validate({
        "images": list(params.images), "size": params.size, "fps": params.fps, "duration_s": each,
        "effect": params.effect, "join": True, "quality": params.quality})
    result = render_img2vid(sub, ctx, intermediate=params.reencoded)
    return OpResult(outputs={"video": result.outputs["video"]}, data=result.data)


class CaptionsStepParams(Params):
    words: MediaRef
    style: CaptionStyle
    width: int = Field(ge=16, le=8192)
    height: int = Field(ge=16, le=8192)


def _captions_step(params: CaptionsStepParams, ctx: OpContext) -> OpResult:
    words = load_words(ctx.fetch(params.words))
    if not words:
        raise MediaError("No words were heard in the narration, so there is nothing to caption.",
                         code="no_words")
    ass = save_subs(build_subtitles(words, params.style, (params.width, params.height)),
                    ctx.output_path("captions", ".ass"))
    srt = save_subs(build_plain(words, params.style), ctx.output_path("captions", ".srt"))
    return OpResult(outputs={"ass": ass, "srt": srt}, data={"words": len(words)})


INTERNAL_OPS: dict[str, Operation] = {
    op.name: op for op in (
        Operation("build.audio", AudioStepParams, _audio_step, "narration from a given audio file"),
        Operation("build.cycle", CycleStepParams, _cycle_step, "one loop period of the background"),
        Operation("build.images", ImagesStepParams, _images_step, "Ken Burns background from images"),
        Operation("build.captions", CaptionsStepParams, _captions_step, "ASS + SRT from word timings"),
        Operation("build.compose", ComposeStepParams, compose_step, "the one final encode"),
    )
}


def lookup_op(name: str) -> Operation:
    return INTERNAL_OPS[name] if name in INTERNAL_OPS else get_operation(name)


@operation(
    "build",
    params=BuildParams,
    summary="Narrated video in one request: tts, looped background or Ken Burns images, talking-head "
            "circle, ducked music, captions (burned or soft), encoded once.",
    resources=ResourceSpec(Resources(gpu="optional", vram_gb=1, nvenc=True),  # tts + a small whisper for word times
                           (Variant({"head.engine": "rvm"}, Resources(gpu="preferred", vram_gb=2, nvenc=True)),)),
    timeout_s=3 * 3600,
    example={
        "script": "Welcome to ReelForge. This whole video was built from one request.",
        "backgrounds": ["https://example.com/background.mp4"],
        "music": "https://example.com/music.mp3",
        "captions": "burn",
        "caption_style": {"style": "karaoke"},
        "size": "1080x1920",
    },
)
def run(params: BuildParams, ctx: OpContext) -> OpResult:
    if params.chunk is not None:  # a chunked build's child: one window of the compose, or its sound
        return build_chunks.run_chunk(params, ctx)
    if ctx.resumed is not None:  # a chunked build's parent after its children: the join
        return build_chunks.join(params, ctx)
    steps = build_steps(params)
    graph = build_graph(steps, lookup=lookup_op)
    options = RunOptions(cache=params.cache, keep_intermediates=params.keep_intermediates, include_step_data=False)
    if not build_chunks.may_chunk(params, ctx):
        return run_graph(graph, ctx, options)
    # every step but the compose first: the narration's length decides whether the compose is chunked
    before = steps[:-1]
    share = sum(s.weight for s in before) / sum(s.weight for s in steps)
    part = ctx.child(ctx.workdir, resolver=lambda ref, _dest: ctx.fetch(ref), is_cancelled=ctx.cancelled,
                     on_progress=lambda fraction, stage: ctx.progress(fraction * share, stage))
    first = PipelineRunner(build_graph(before, lookup=lookup_op), part,
                           RunOptions(cache=params.cache, keep_intermediates=True, include_step_data=False))
    first.run()
    forked = build_chunks.fork(params, ctx, first, compose=steps[-1])
    return forked if forked is not None else run_graph(graph, ctx, options, done=first)
