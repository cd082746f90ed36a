"""A long `build` composed in time chunks by child jobs, joined by stream copy (docs/CHUNKED.md, "build").

Only the compose is long (one encode of the whole narration length) and only when it encodes: burned
captions or a talking head. The parent runs every other step (narration, background loop period, head,
captions), then forks: the files the compose needs are stored as the parent's (Fork.outputs) and each
child names them `job://<parent>/<name>` in its `compose` params, so a child on another machine reads them
from storage. Picture children compose one window each (pipelines/compose_plan.py, `window`), on the GOP
grid, with the chunkable x264 arguments the unchunked long compose uses too; a last child mixes and
encodes the sound once for the whole length. The parent's next run joins the pictures, muxes the sound in
and copies the subtitle files beside, as the unchunked compose does.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reelforge.errors import MediaError
from reelforge.media.codecs import chunkable_x264_args
from reelforge.media.encoders import choose_video_encoder
from reelforge.media.frame_rate import parse_rate
from reelforge.media.frame_size import parse_frame_size
from reelforge.ops.build_compose import compose_inputs, subtitles_beside
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
from reelforge.pipelines.compose_plan import (
    HeadLayout,
    MusicMix,
    compose_frames,
    copies_narration,
    plan_compose,
    plan_compose_sound,
)
from reelforge.pipelines.graph import Step
from reelforge.pipelines.render_plan import Window
from reelforge.pipelines.runner import PipelineRunner
from reelforge.pipelines.timeline import ChunkSpec
from reelforge.refs import job_output_ref
from reelforge.runtime import Fork

if TYPE_CHECKING:
    from reelforge.ops.build import BuildParams

# the compose's inputs the parent stores for its children: step output ref -> the stored file's name
SHARED = {"narration.audio": "narration", "background.video": "background", "head.overlay": "head",
          "captions.ass": "ass", "captions.srt": "srt"}
# the sound child's cost in frames of picture: the narration + ducked music mix and AAC took 7.0 s beside
# 83 s of 1080p picture chunks (8.4 %); its share of the progress, and how much shorter the first chunk
# is, whose worker is the first free and takes the sound after it (ops/chunking.fork_chunks)
SOUND_WEIGHT = 0.08


def may_chunk(params: BuildParams, ctx: OpContext) -> bool:
    """Whether this build could be chunked, before anything ran: it can fork, the compose encodes (burned
    captions or a head; otherwise the picture is stream-copied), on libx264 (a worker with NVENC encodes the
    whole compose faster itself), and nothing asks for one job (`chunks: 1`, or `keep_intermediates`, whose
    files the children do not make)."""
    encodes = params.talking_head is not None or params.captions == "burn"
    return (ctx.can_fork and encodes and params.chunks != 1 and not params.keep_intermediates
            and not choose_video_encoder(ctx, params.quality).hw)


def plan_chunks(params: BuildParams, ctx: OpContext, duration_s: float) -> int:
    """How many chunks a build whose narration lasts `duration_s` is composed in (1: not chunked)."""
    if duration_s <= ctx.settings.compute.chunk_threshold_s:
        return 1
    return chunk_count(params.chunks, ctx, duration_s)


def _step_ref(value: Any) -> str | None:
    """"narration.audio" for a step param {"ref": "narration.audio"}, else None."""
    return str(value["ref"]) if isinstance(value, dict) and set(value) == {"ref"} else None


def _with_refs(params: dict[str, Any], refs: dict[str, str]) -> dict[str, Any]:
    """The compose step's params with its step refs ({"ref": "narration.audio"}) replaced by the stored files."""
    return {key: refs[SHARED[ref]] if (ref := _step_ref(value)) else value for key, value in params.items()}


def fork(params: BuildParams, ctx: OpContext, first: PipelineRunner, *, compose: Step) -> OpResult | None:
    """The parent's first run, after every step but the compose (`first`): the fork, or None when the
    compose is not chunked."""
    duration = float(first.results["narration"].data["duration_s"])
    chunks = plan_chunks(params, ctx, duration)
    if chunks <= 1:
        return None
    files: dict[str, Path] = {}
    for ref in filter(None, map(_step_ref, compose.params.values())):
        step, _, output = ref.partition(".")
        files[SHARED[ref]] = Path(first.results[step].outputs[output])
    body = {**params.model_dump(mode="json"),
            "compose": _with_refs(compose.params, {name: job_output_ref(ctx.job_id, name) for name in files})}
    gop = gop_frames(params.fps)
    frames = compose_frames(duration, params.fps)  # the unchunked compose's count
    sound_frames = round(frames * SOUND_WEIGHT)
    result = fork_chunks("build", body, frames, chunks, gop, first_lighter=sound_frames)
    assert result.fork is not None
    spec = ChunkSpec(index=len(result.fork.children), start_frame=0, gop=gop, sound=True)
    children = [*result.fork.children, {"op": "build", "params": {**body, "chunk": spec.model_dump(mode="json")},
                                        "weight": max(1, sound_frames)}]
    steps = {sid: record.to_dict() for sid, record in first.records.items()}
    state = {**result.fork.state, "duration_s": duration, "steps": steps}
    return OpResult(fork=Fork(children=children, state=state, outputs=files))


def run_chunk(params: BuildParams, ctx: OpContext) -> OpResult:
    """A child job: the compose's picture in one window (output `chunk`), or its sound for the whole length
    (output `sound`), from the step cache when the same was made before."""
    spec, compose = params.chunk, params.compose
    assert spec is not None and compose is not None  # BuildParams checks they come together
    inputs = compose_inputs(compose, ctx)
    work = ctx.workdir / "compose"
    work.mkdir(parents=True, exist_ok=True)
    mix = MusicMix(**compose.music_mix.model_dump())
    if spec.sound:
        out = ctx.output_path("sound", ".m4a")
        args = plan_compose_sound(inputs, out, music=mix)
        sources = [inputs.narration.path, *([inputs.music.path] if inputs.music else [])]
        key = chunk_key("build.sound", args, sources, work, ctx.workdir)
        return encode_chunk(ctx, kind="build.sound", key=key, args=args, out=out, work=work, window=None,
                            seconds=inputs.duration_s, stage="mixing sound", name="sound",
                            data={"audio": "copy" if copies_narration(inputs, mix) else "aac"})
    if inputs.ass is not None:  # under a plain name in the work folder: in the chunk's key by content
        ass = work / "captions.ass"
        shutil.copyfile(inputs.ass, ass)
        inputs = replace(inputs, ass=ass)
    window = Window(spec.start_frame, spec.end_frame)
    out = ctx.output_path("chunk", ".mp4")
    enc = chunkable_x264_args(compose.quality, spec.gop, ctx.settings.compute.threads_per_job)
    args = plan_compose(inputs, out, size=parse_frame_size(compose.size), fps=compose.fps, mode=compose.captions,
                        head=HeadLayout(**compose.head_layout.model_dump()), music=mix, video_args=enc,
                        fonts_dir=ctx.settings.media.font_dir, window=window).args
    sources = [inputs.background.path, *([inputs.head.path] if inputs.head else [])]
    key = chunk_key("build.chunk", args, sources, work, ctx.workdir)
    a, b = window.seconds(float(parse_rate(compose.fps)))
    return encode_chunk(ctx, kind="build.chunk", key=key, args=args, out=out, work=work, window=window,
                        seconds=(b if b is not None else inputs.duration_s) - a, stage="composing")


def join(params: BuildParams, ctx: OpContext) -> OpResult:
    """The parent's run after its children: the pictures joined by stream copy with the sound muxed in, the
    subtitle files beside; the outputs and data of an unchunked build."""
    resumed = ctx.resumed or {}
    state = resumed.get("state") or {}
    duration = float(state["duration_s"])
    ctx.stage("joining chunks", 0.95)
    pieces = resumed_chunks(ctx)
    sound = resumed_output(ctx, "sound")
    if sound is None:
        raise MediaError("The chunked build has no sound to join.", code="chunk_missing")
    audio = next((str(child["data"].get("audio") or "aac") for child in resumed.get("children") or []
                  if "sound" in child["outputs"]), "aac")
    work = ctx.workdir / "join"
    out = ctx.output_path("video", ".mp4")
    join_chunks(ctx, pieces, out, work, duration_s=duration, extra_inputs=["-i", str(sound)],
                maps=["0:v:0", "1:a:0"], span=(0.95, 1.0))
    shared = resumed.get("outputs") or {}
    outputs = {"video": out, **subtitles_beside(ctx, {name: shared.get(name) for name in ("srt", "ass")})}
    ctx.progress(1.0)
    size = list(parse_frame_size(params.size))
    steps = {**state.get("steps", {}), "compose": {"op": "build.compose", "cached": False, "seconds": 0.0,
                                                    "outputs": sorted(outputs), "chunks": len(pieces)}}
    return OpResult(outputs=outputs, data={
        "duration_s": round(duration, 3), "frames": compose_frames(duration, params.fps), "video": "libx264",
        "audio": audio, "captions": params.captions, "decoded_loop": False, "size": size, "fps": params.fps,
        "final_step": "compose", "steps": steps, "chunks": len(pieces)})
