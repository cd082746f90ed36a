"""Time chunks of one long mp4 encode as child jobs, joined by stream copy (docs/CHUNKED.md).

Shared by the ops that chunk (`render`, `caption`): how many chunks, the keyframe interval they are cut
on, the fork into child jobs, a chunk's encode through the step cache, and the join. What a chunk's
picture is stays with each op.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from reelforge.errors import MediaError
from reelforge.media.concat_list import concat_copy_args, write_concat_list
from reelforge.media.ffmpeg import ensure_file_output, run_ffmpeg
from reelforge.ops.context import OpContext, OpResult
from reelforge.pipelines.cache import StepCache, file_sha256, step_key
from reelforge.pipelines.chunk_split import chunk_windows
from reelforge.pipelines.render_plan import Window
from reelforge.pipelines.timeline import ChunkSpec
from reelforge.runtime import Fork

GOP_S = 2.0  # a long mp4's keyframe interval: the grain chunks are cut on


def gop_frames(fps: float) -> int:
    return max(1, round(GOP_S * fps))


def chunk_count(chunks: int | None, ctx: OpContext, duration_s: float) -> int:
    """How many chunks: the job's own `chunks`, else the workers that could take them (the setting, or
    what the executor reported), never so many that a chunk is shorter than compute.chunk_min_s."""
    if not ctx.can_fork:
        return 1
    compute = ctx.settings.compute
    wanted = chunks or compute.chunk_workers or ctx.workers
    return max(1, min(wanted, int(duration_s // compute.chunk_min_s)))


def fork_chunks(op: str, params: dict[str, Any], frames: int, chunks: int, gop: int,
                first_lighter: float = 0.0, costs: Sequence[float] | None = None) -> OpResult:
    """The parent's first run: one child `op` per window of `frames` (cut on multiples of `gop`), each
    with the parent's JSON `params` and its `chunk`. `costs`, `first_lighter`: see chunk_windows (the
    latter a child the caller adds after these, worth that much); a child's weight is its window's cost."""
    windows = chunk_windows(frames, chunks, gop, first_lighter, costs)
    children = []
    for i, w in enumerate(windows):
        spec = ChunkSpec(index=i, start_frame=w.start_frame, end_frame=w.end_frame, gop=gop)
        end = w.end_frame or frames
        weight = sum(costs[w.start_frame // gop:math.ceil(end / gop)]) if costs is not None else end - w.start_frame
        children.append({"op": op, "params": {**params, "chunk": spec.model_dump(mode="json")},
                         "weight": max(1, round(weight))})
    return OpResult(fork=Fork(children=children, state={"frames": frames, "gop": gop, "chunks": len(windows)}))


def chunk_key(kind: str, args: Sequence[str], inputs: Iterable[str], work: Path, job_dir: Path) -> str:
    """The step-cache key of a chunk: its ffmpeg arguments with every input (`inputs`: paths) by content,
    the files of the work folder it names by content, and the job's folder by name, so the same picture
    of the same sources has the same key in any job."""
    text = "\x00".join(args)
    for path in inputs:
        text = text.replace(path, file_sha256(Path(path)))
    files = sorted(p for p in work.rglob("*") if p.is_file() and str(p) in text)  # captions, text, fonts
    hashed = {str(p.relative_to(work)): file_sha256(p) for p in files}
    return step_key(kind, {"args": text.replace(str(job_dir), "<job>"), "files": hashed})


def encode_chunk(ctx: OpContext, *, kind: str, key: str, args: list[str], out: Path, work: Path,
                 window: Window | None, seconds: float, stage: str, name: str = "chunk",
                 data: dict[str, Any] | None = None) -> OpResult:
    """A child job's encode of one window into `out` (output `name`; no window: the sound of the whole
    length), or the same result from the step cache when it was encoded before (`kind`, `key`: chunk_key).
    `data`: more of the child's data for the parent's join (kept in the cache with it)."""
    cache = StepCache.for_settings(ctx.settings)
    hit = cache.load(key, work / "cached")
    if hit is not None:
        ctx.note(chunk_cached=True)
        ctx.progress(1.0, f"{name} from cache")
        return OpResult(outputs={name: hit.outputs[name]}, data={**hit.data, "cached": True})
    ctx.stage(stage, 0.05)
    run_ffmpeg(args, ctx, duration_s=seconds, span=(0.05, 1.0), stage=stage)
    ensure_file_output(out, kind.split(".")[0])
    if window is None:
        result = OpResult(outputs={name: out}, data={"sound": True, **(data or {})})
    else:
        ctx.note(encoder="libx264")
        result = OpResult(outputs={name: out}, data={"start_frame": window.start_frame,
                                                      "end_frame": window.end_frame, **(data or {})})
    cache.store(key, kind, result)
    ctx.progress(1.0)
    return result


def resumed_chunks(ctx: OpContext) -> list[Path]:
    """The parent's second run: its children's `chunk` files, in order."""
    children = (ctx.resumed or {}).get("children") or []
    pieces = [ctx.fetch(child["outputs"]["chunk"]) for child in children if "chunk" in child["outputs"]]
    if not pieces:
        raise MediaError("The chunked job has no chunks to join.", code="chunk_missing")
    return pieces


def resumed_output(ctx: OpContext, name: str) -> Path | None:
    """The parent's second run: the one child output `name` (a render's `sound`), if a child made it."""
    for child in (ctx.resumed or {}).get("children") or []:
        if name in child["outputs"]:
            return ctx.fetch(child["outputs"][name])
    return None


def join_chunks(ctx: OpContext, pieces: Sequence[Path], out: Path, work: Path, *, duration_s: float,
                extra_inputs: Sequence[str] = (), maps: Sequence[str] = ("0:v:0",),
                span: tuple[float, float] = (0.98, 1.0)) -> None:
    """The chunks joined by stream copy through the project's own concat list (input 0), with
    `extra_inputs` (the sound) mapped in by `maps`."""
    join_dir = work / "join"
    join_dir.mkdir(parents=True, exist_ok=True)
    listing = write_concat_list(pieces, join_dir / "chunks.ffconcat")
    run_ffmpeg(concat_copy_args(listing, out, audio=False, extra_inputs=extra_inputs, maps=maps), ctx,
               duration_s=duration_s, span=span, stage="joining chunks")
    ctx.note(chunks=len(pieces), encoder="libx264")
