"""A chunked build's planning (docs/CHUNKED.md, "build"), without ffmpeg runs: when a build may be chunked and
into how many chunks, the fork (children, the files stored for them, their refs), a window's compose plan
and the sound-only plan; the internal params are refused from clients."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from reelforge.config import Settings
from reelforge.media.codecs import chunkable_x264_args
from reelforge.ops import build_chunks
from reelforge.ops.build import BuildParams, build_steps
from reelforge.ops.context import OpContext, OpResult
from reelforge.pipelines.compose_plan import ComposeInputs, plan_compose, plan_compose_sound
from reelforge.pipelines.render_plan import Window
from reelforge.pipelines.runner import StepRecord
from tests.unit.test_build_op import BG, HEAD, MUSIC, NARRATION, SMALL_BG, graph_text, params


def ctx_for(tmp_path: Path, **kw: Any) -> OpContext:
    settings = Settings(data_dir=tmp_path / "d", media={"nvenc": "off"},
                        compute={"chunk_threshold_s": 60, "chunk_min_s": 15})
    return OpContext.for_test(tmp_path, settings, **kw)


def test_which_builds_may_be_chunked(tmp_path: Path) -> None:
    forks = ctx_for(tmp_path, can_fork=True, workers=4)
    assert build_chunks.may_chunk(params(), forks)  # burned captions: the compose encodes
    assert build_chunks.may_chunk(params(captions="soft", talking_head="/m/head.mp4"), forks)  # a head too
    assert not build_chunks.may_chunk(params(captions="soft"), forks)  # the picture is stream-copied
    assert not build_chunks.may_chunk(params(captions="none"), forks)
    assert not build_chunks.may_chunk(params(chunks=1), forks)
    assert not build_chunks.may_chunk(params(keep_intermediates=True), forks)
    assert not build_chunks.may_chunk(params(), ctx_for(tmp_path))  # cannot fork (a child, an agent)


def test_how_many_chunks(tmp_path: Path) -> None:
    forks = ctx_for(tmp_path, can_fork=True, workers=8)
    assert build_chunks.plan_chunks(params(), forks, 60.0) == 1  # not longer than the threshold
    assert build_chunks.plan_chunks(params(), forks, 90.0) == 6  # 90 s / the 15 s minimum
    assert build_chunks.plan_chunks(params(chunks=2), forks, 90.0) == 2
    assert build_chunks.plan_chunks(params(chunks=3), ctx_for(tmp_path, can_fork=True), 40.0) == 1


class _Done:
    """What the fork reads of the steps that ran before it (a PipelineRunner's results and records)."""

    def __init__(self, tmp_path: Path, duration_s: float, head: bool) -> None:
        def out(name: str) -> str:
            return str(tmp_path / name)
        self.results = {"narration": OpResult(outputs={"audio": Path(out("voice.wav"))},
                                              data={"duration_s": duration_s}),
                        "background": OpResult(outputs={"video": Path(out("cycle.mp4"))}),
                        "captions": OpResult(outputs={"ass": Path(out("c.ass")), "srt": Path(out("c.srt"))})}
        if head:
            self.results["head"] = OpResult(outputs={"overlay": Path(out("head.webm"))})
        self.records = {sid: StepRecord("x") for sid in self.results}


def test_the_fork_stores_the_compose_inputs_for_its_children(tmp_path: Path) -> None:
    p = params(chunks=3, music="file_" + "a" * 32, talking_head="/m/head.mp4")
    ctx = ctx_for(tmp_path, can_fork=True)
    done: Any = _Done(tmp_path, 90.0, head=True)
    result = build_chunks.fork(p, ctx, done, compose=build_steps(p)[-1])
    assert result is not None and result.fork is not None
    fork = result.fork
    assert set(fork.outputs) == {"narration", "background", "head", "ass", "srt"}
    assert fork.outputs["head"] == tmp_path / "head.webm"
    kids = fork.children
    assert [k["params"]["chunk"].get("sound", False) for k in kids] == [False, False, False, True]
    # 90 s at 30 fps on 2 s GOPs; the first chunk is shorter by the sound's 8 % of the frames (its worker takes
    # the sound after it): 780 + 216 against 960 and 960 frames
    assert [k["params"]["chunk"]["start_frame"] for k in kids[:3]] == [0, 780, 1740]
    compose = kids[0]["params"]["compose"]
    assert compose["narration"] == f"job://{ctx.job_id}/narration" and compose["head"] == f"job://{ctx.job_id}/head"
    assert compose["music"] == "file_" + "a" * 32  # the client's own file: the child's claim resolves it
    assert fork.state["duration_s"] == 90.0 and fork.state["chunks"] == 3
    assert set(fork.state["steps"]) == set(done.results)
    for kid in kids:  # a child's params are valid build params
        assert BuildParams.model_validate(kid["params"]).compose is not None
    short: Any = _Done(tmp_path, 50.0, head=False)
    assert build_chunks.fork(params(), ctx, short, compose=build_steps(params())[-1]) is None


def test_the_internal_params_are_set_together_and_never_name_jobs_from_a_client() -> None:
    body = {"script": "Hi.", "backgrounds": ["/m/bg.mp4"]}
    compose = {"background": "job://job_1/background", "narration": "job://job_1/narration", "size": "320x180",
               "fps": 10}
    with pytest.raises(ValidationError):
        BuildParams.model_validate({**body, "chunk": {"index": 0, "start_frame": 0, "gop": 20}})
    with pytest.raises(ValidationError):
        BuildParams.model_validate({**body, "compose": compose})
    both = {**body, "compose": compose, "chunk": {"index": 0, "start_frame": 0, "gop": 20}}
    assert BuildParams.model_validate(both).chunk is not None
    with pytest.raises(ValidationError):
        BuildParams.model_validate({**both, "backgrounds": ["file_" + "b" * 32]}, context={"source": "api"})


def test_a_window_keeps_each_input_on_the_whole_composes_clock(tmp_path: Path) -> None:
    small = SMALL_BG  # a 3 s loop period, 640x360 at 25 fps
    inp = ComposeInputs(background=small, narration=NARRATION, duration_s=42.5, head=HEAD, music=MUSIC,
                        ass=Path("/m/c.ass"))
    enc = chunkable_x264_args("standard", 60, 1)
    args = plan_compose(inp, tmp_path / "c.mp4", size=(1920, 1080), fps=30, mode="burn", video_args=enc,
                        window=Window(600, 900)).args  # 20 s..30 s
    # the background's loop that holds 20 s starts at 18 s, the head's (5 s) at 20 s; no sound, no narration
    assert args[:6] == ["-stream_loop", "-1", "-itsoffset", "18", "-i", "/m/small.mp4"]
    assert args[6:10] == ["-stream_loop", "-1", "-itsoffset", "20"] and "/m/voice.wav" not in args
    graph = graph_text(args)
    assert "select=expr=" in graph and "gte(t\\,19.983333)*lt(t\\,29.983333)" in graph
    assert "ass=" in graph and graph.endswith("setpts=PTS-STARTPTS[vout]") and "[aout]" not in graph
    assert args[args.index("-frames:v") + 1] == "300" and "-qp" in args and "-t" not in args
    last = plan_compose(inp, tmp_path / "c.mp4", size=(1920, 1080), fps=30, mode="burn", video_args=enc,
                        window=Window(1200, None)).args
    assert last[last.index("-frames:v") + 1] == str(1275 - 1200)  # to the narration's end: 42.5 s at 30 fps
    # a background longer than the narration is seeked, a second before the window, on its own clock
    seeked = plan_compose(ComposeInputs(background=BG, narration=NARRATION, duration_s=42.5, ass=Path("/m/c.ass")),
                          tmp_path / "c.mp4", size=(1920, 1080), fps=30, mode="burn", video_args=enc,
                          window=Window(600, 900)).args
    assert seeked[:6] == ["-ss", "19", "-itsoffset", "19", "-i", "/m/bg.mp4"]
    with pytest.raises(ValueError):  # nothing is encoded: no windows
        plan_compose(ComposeInputs(background=BG, narration=NARRATION, duration_s=42.5), tmp_path / "c.mp4",
                     size=(1920, 1080), fps=30, mode="soft", window=Window(0, 30))


def test_the_sound_plan_is_the_composes_sound(tmp_path: Path) -> None:
    inp = ComposeInputs(background=BG, narration=NARRATION, duration_s=42.5, music=MUSIC)
    whole = plan_compose(inp, tmp_path / "v.mp4", size=(1920, 1080), fps=30, mode="none").args
    sound = plan_compose_sound(inp, tmp_path / "a.m4a")
    assert sound[:2] == ["-i", "/m/voice.wav"] and "/m/bg.mp4" not in sound and "[vout]" not in graph_text(sound)
    # the same chains, the narration as input 0 and the music as 1 instead of 1 and 2
    assert graph_text(sound) == graph_text(whole).replace("[1:a]", "[0:a]").replace("[2:a]", "[1:a]")
    assert sound[sound.index("-b:a") + 1] == whole[whole.index("-b:a") + 1] == "192k"


def test_the_windows_cover_the_unchunked_composes_frames(tmp_path: Path) -> None:
    """The compose's fps filter ends on the frame nearest the narration's end (90.01 s at 30 fps: 2700
    frames, not the 2701 that start before it); the windows must cover exactly those."""
    ctx = ctx_for(tmp_path, can_fork=True)
    done: Any = _Done(tmp_path, 90.01, head=False)
    result = build_chunks.fork(params(chunks=3), ctx, done, compose=build_steps(params(chunks=3))[-1])
    assert result is not None and result.fork is not None
    assert result.fork.state["frames"] == 2700


def test_a_remote_workers_fork_may_name_its_own_jobs_files_only() -> None:
    """jobs/agents.py validates an agent's children in the API's context plus the refs of the files the
    parent stored for them: those pass, another job's do not."""
    compose = {"background": "job://job_1/background", "narration": "job://job_1/narration", "size": "320x180",
               "fps": 10}
    both = {"script": "Hi.", "backgrounds": ["https://example.com/bg.mp4"], "compose": compose,
            "chunk": {"index": 0, "start_frame": 0, "gop": 20}}
    allowed = frozenset({"job://job_1/background", "job://job_1/narration"})
    context = {"source": "api", "job_refs": allowed}
    assert BuildParams.model_validate(both, context=context).compose is not None
    with pytest.raises(ValidationError):
        BuildParams.model_validate(both, context={**context, "job_refs": frozenset({"job://job_1/narration"})})
