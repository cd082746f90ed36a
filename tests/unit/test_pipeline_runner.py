"""Running step graphs for real (ffmpeg-made tones), with small ops of the tests' own."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field

from reelforge.config import Settings
from reelforge.errors import JobCancelled, MediaError
from reelforge.media.ffmpeg import run_ffmpeg
from reelforge.media.probe import probe
from reelforge.ops.context import OpContext, OpResult
from reelforge.ops.params import MediaRef, Params
from reelforge.ops.registry import get_operation, operation

ENCODES: list[str] = []  # one entry per real tone encode: proves a cache hit did not encode again
_meeting = threading.Barrier(2, timeout=20)


class ToneParams(Params):
    freq: int = 440
    seconds: float = 1.0


@operation("t_tone", params=ToneParams, summary="test: a sine tone", example={"freq": 440})
def tone(params: ToneParams, ctx: OpContext) -> OpResult:
    out = ctx.output_path("audio", ".wav")
    run_ffmpeg(["-f", "lavfi", "-i", f"sine=frequency={params.freq}:duration={params.seconds}", str(out)],
               ctx, duration_s=params.seconds, stage="tone")
    ENCODES.append(f"tone{params.freq}")
    return OpResult(outputs={"audio": out}, data={"seconds": params.seconds, "freq": params.freq})


class MixParams(Params):
    a: MediaRef
    b: MediaRef
    gain: float = 1.0


@operation("t_mix", params=MixParams, summary="test: mix two audio files", example={"a": "x", "b": "y"})
def mix(params: MixParams, ctx: OpContext) -> OpResult:
    a, b = ctx.fetch(params.a), ctx.fetch(params.b)
    out = ctx.output_path("mix", ".wav")
    run_ffmpeg(["-i", str(a), "-i", str(b), "-filter_complex", f"amix=inputs=2,volume={params.gain}",
                str(out)], ctx, stage="mix")
    ENCODES.append("mix")
    return OpResult(outputs={"mix": out}, data={"inputs": 2})


class FailParams(Params):
    after_s: float = 0.0


@operation("t_fail", params=FailParams, summary="test: fails", example={})
def fail(params: FailParams, ctx: OpContext) -> OpResult:
    time.sleep(params.after_s)
    raise MediaError("The input is not usable.", code="no_audio_stream")


class SlowParams(Params):
    seconds: float = 30.0
    meet: bool = False


@operation("t_slow", params=SlowParams, summary="test: real-time ffmpeg", example={})
def slow(params: SlowParams, ctx: OpContext) -> OpResult:
    if params.meet:
        _meeting.wait()  # both parallel steps must be inside run() at once, or this times out
    out = ctx.output_path("slow", ".wav")
    run_ffmpeg(["-re", "-f", "lavfi", "-i", f"sine=duration={params.seconds}", str(out)], ctx,
               duration_s=params.seconds, stage="slow")
    return OpResult(outputs={"slow": out})


class RepeatParams(Params):
    text: str
    times: int = Field(ge=1)


@operation("t_repeat", params=RepeatParams, summary="test: data only", example={"text": "a", "times": 1})
def repeat(params: RepeatParams, ctx: OpContext) -> OpResult:
    return OpResult(data={"text": params.text * params.times})


def run_pipeline(ctx: OpContext, steps: list[dict[str, Any]], **options: Any) -> OpResult:
    op = get_operation("pipeline")
    return op.run(op.params_model.model_validate({"steps": steps, **options}), ctx)


def fresh_ctx(tmp_path: Path, settings: Settings, name: str, **kw: Any) -> OpContext:
    return OpContext.for_test(tmp_path / name, settings, **kw)


TWO_TONES_MIXED = [
    {"id": "low", "op": "t_tone", "params": {"freq": 300, "seconds": 1.0}},
    {"id": "high", "op": "t_tone", "params": {"freq": 900, "seconds": 1.0}},
    {"id": "both", "op": "t_mix", "params": {"a": {"ref": "low.audio"}, "b": {"ref": "high.audio"}}},
]


def test_refs_wire_outputs_and_final_step_outputs_are_the_jobs(ctx: OpContext) -> None:
    result = run_pipeline(ctx, TWO_TONES_MIXED)
    assert set(result.outputs) == {"mix"}
    info = probe(result.outputs["mix"])
    assert info.audio is not None and abs(info.duration_s - 1.0) < 0.1
    assert result.data["final_step"] == "both"
    assert set(result.data["steps"]) == {"low", "high", "both"}
    assert result.data["steps"]["low"]["data"]["freq"] == 300
    assert all(s["cached"] is False for s in result.data["steps"].values())
    # intermediates are deleted by default
    assert not (ctx.workdir / "steps" / "low" / "out" / "audio.wav").exists()


def test_rerun_reuses_cached_steps_without_encoding(tmp_path: Path, settings: Settings) -> None:
    ENCODES.clear()
    first = run_pipeline(fresh_ctx(tmp_path, settings, "job1"), TWO_TONES_MIXED)
    assert sorted(ENCODES) == ["mix", "tone300", "tone900"]
    second = run_pipeline(fresh_ctx(tmp_path, settings, "job2"), TWO_TONES_MIXED)
    assert sorted(ENCODES) == ["mix", "tone300", "tone900"]  # no second encode
    assert all(s["cached"] for s in second.data["steps"].values())
    assert second.outputs["mix"].read_bytes() == first.outputs["mix"].read_bytes()
    assert second.outputs["mix"].parent.is_relative_to(tmp_path / "job2")
    # a changed param misses for that step and for everything downstream of it, not for its sibling
    changed = [dict(TWO_TONES_MIXED[0], params={"freq": 300, "seconds": 1.5}), *TWO_TONES_MIXED[1:]]
    third = run_pipeline(fresh_ctx(tmp_path, settings, "job3"), changed)
    cached = {sid: s["cached"] for sid, s in third.data["steps"].items()}
    assert cached == {"low": False, "high": True, "both": False}
    # cache: false runs everything again
    ENCODES.clear()
    run_pipeline(fresh_ctx(tmp_path, settings, "job4"), TWO_TONES_MIXED, cache=False)
    assert sorted(ENCODES) == ["mix", "tone300", "tone900"]


def test_cache_key_follows_input_content_not_its_name(tmp_path: Path, settings: Settings,
                                                      make_audio: Any) -> None:
    a = make_audio(duration=1.0, name="a.wav", freq=300)
    b = make_audio(duration=1.0, name="b.wav", freq=500)
    steps = [{"id": "m", "op": "t_mix", "params": {"a": str(a), "b": str(b)}}]
    ENCODES.clear()
    run_pipeline(fresh_ctx(tmp_path, settings, "j1"), steps)
    copy = tmp_path / "copy-of-a.wav"
    copy.write_bytes(a.read_bytes())
    renamed = [{"id": "m", "op": "t_mix", "params": {"a": str(copy), "b": str(b)}}]
    assert run_pipeline(fresh_ctx(tmp_path, settings, "j2"), renamed).data["steps"]["m"]["cached"] is True
    make_audio(duration=1.0, name="copy-of-a.wav", freq=700)  # same name, new bytes
    assert run_pipeline(fresh_ctx(tmp_path, settings, "j3"), renamed).data["steps"]["m"]["cached"] is False
    assert ENCODES == ["mix", "mix"]


def test_keep_intermediates_exposes_every_steps_outputs(ctx: OpContext) -> None:
    result = run_pipeline(ctx, TWO_TONES_MIXED, keep_intermediates=True)
    assert set(result.outputs) == {"mix", "low.audio", "high.audio"}
    assert all(p.exists() for p in result.outputs.values())


def test_data_refs_carry_values(ctx: OpContext) -> None:
    result = run_pipeline(ctx, [
        {"id": "one", "op": "t_repeat", "params": {"text": "ab", "times": 2}},
        {"id": "two", "op": "t_repeat", "params": {"text": {"ref": "one.data.text"}, "times": 2}},
    ])
    assert result.data["text"] == "abababab"


def test_missing_output_at_run_time_names_the_step(ctx: OpContext) -> None:
    with pytest.raises(Exception) as info:
        run_pipeline(ctx, [
            {"id": "one", "op": "t_tone", "params": {}},
            {"id": "two", "op": "t_mix", "params": {"a": {"ref": "one.nothing"}, "b": {"ref": "one.audio"}}},
        ])
    assert info.value.code == "dangling_ref"
    assert info.value.message.startswith("step 'two' (t_mix): ")
    assert "audio" in info.value.message


def test_failing_step_fails_the_job_naming_it_and_stops_siblings(tmp_path: Path, settings: Settings) -> None:
    ctx = fresh_ctx(tmp_path, settings, "job")
    with pytest.raises(MediaError) as info:
        run_pipeline(ctx, [
            {"id": "long", "op": "t_slow", "params": {"seconds": 60}},
            {"id": "bad", "op": "t_fail", "params": {"after_s": 0.5}},
            {"id": "after", "op": "t_tone", "params": {}, "depends_on": ["bad"]},
        ], max_parallel=2)
    err = info.value
    assert err.code == "no_audio_stream"
    assert err.message == "step 'bad' (t_fail): The input is not usable."
    assert err.details["step"] == "bad"
    # the sibling's ffmpeg was killed well before its 60 s of real-time audio
    assert not (ctx.workdir / "steps" / "after").exists()


def test_independent_steps_run_at_the_same_time(ctx: OpContext) -> None:
    result = run_pipeline(ctx, [
        {"id": "x", "op": "t_slow", "params": {"seconds": 0.3, "meet": True}},
        {"id": "y", "op": "t_slow", "params": {"seconds": 0.3, "meet": True}},
    ], max_parallel=2, cache=False)
    assert result.data["final_step"] == "y"


def test_cancel_stops_every_running_step(tmp_path: Path, settings: Settings) -> None:
    cancel = threading.Event()
    ctx = fresh_ctx(tmp_path, settings, "job", is_cancelled=cancel.is_set)
    threading.Timer(1.0, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(JobCancelled):
        run_pipeline(ctx, [
            {"id": "a", "op": "t_slow", "params": {"seconds": 60}},
            {"id": "b", "op": "t_slow", "params": {"seconds": 60}},
            {"id": "c", "op": "t_tone", "params": {}, "depends_on": ["a", "b"]},
        ], max_parallel=2, cache=False)
    assert time.monotonic() - started < 30  # not a timing test: only "did not run its 60 s to the end"


def test_progress_aggregates_steps(tmp_path: Path, settings: Settings) -> None:
    seen: list[tuple[float, str | None]] = []
    ctx = fresh_ctx(tmp_path, settings, "job", on_progress=lambda f, s: seen.append((f, s)))
    run_pipeline(ctx, TWO_TONES_MIXED, cache=False)
    stages = [s for _, s in seen if s]
    assert any(s.startswith("1/3 low") for s in stages)
    assert any(s.startswith("3/3 both") for s in stages)
    assert seen[-1][0] == 1.0
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions)  # the job's bar never goes backwards


def test_an_input_shared_by_parallel_steps_is_fetched_once(tmp_path: Path, settings: Settings,
                                                           make_audio: Any) -> None:
    a = make_audio(duration=0.5, name="shared.wav", freq=300)
    b = make_audio(duration=0.5, name="other.wav", freq=500)
    calls: list[str] = []

    def slow_resolver(ref: str, dest: Path) -> Path:
        calls.append(ref)
        time.sleep(0.3)  # a download: both steps ask while it runs
        return Path(ref)

    ctx = fresh_ctx(tmp_path, settings, "job", resolver=slow_resolver)
    run_pipeline(ctx, [
        {"id": "one", "op": "t_mix", "params": {"a": str(a), "b": str(b)}},
        {"id": "two", "op": "t_mix", "params": {"a": str(a), "b": str(b), "gain": 0.5}},
    ], max_parallel=2, cache=False)
    assert sorted(calls) == sorted([str(a), str(b)])


def test_step_cache_evicts_old_and_least_recently_used_entries(tmp_path: Path, settings: Settings) -> None:
    import os

    from reelforge.pipelines.cache import CacheLimits, StepCache

    cache = StepCache(tmp_path / "steps")
    src = tmp_path / "src"
    src.mkdir()
    now = time.time()
    for i in range(4):  # four 1000-byte results, last used 4, 3, 2 and 1 hours ago
        f = src / f"r{i}.bin"
        f.write_bytes(bytes(1000))
        assert cache.store(f"k{i}", "t_tone", OpResult(outputs={"out": f}, data={"i": i}))
        os.utime(cache.root / f"k{i}" / "result.json", (now - 3600.0 * (4 - i),) * 2)
    # a hit marks the entry used now: k0 becomes the most recently used
    assert cache.load("k0", tmp_path / "job" / "out") is not None
    assert (cache.root / "k0" / "result.json").stat().st_mtime > now - 60
    crashed = cache.root / ".tmp-deadbeef-0000"
    crashed.mkdir()
    os.utime(crashed, (0.0, 0.0))
    # room for two results (each ~1000 bytes + result.json): the least recently used go first
    gone = cache.evict(CacheLimits(max_bytes=2500, max_age_s=86400), now=now)
    assert gone.entries == 2 and gone.kept_entries == 2
    assert sorted(p.name for p in cache.root.iterdir()) == ["k0", "k3"]
    assert cache.load("k1", tmp_path / "job2" / "out") is None  # evicted: a miss, recomputed
    # max age: entries not used within it go whatever the size
    gone = cache.evict(CacheLimits(max_bytes=10**9, max_age_s=600), now=now)
    assert [p.name for p in cache.root.iterdir()] == ["k0"] and gone.entries == 1
    # a job's output made from a cached file survives the entry's eviction (hard link / copy)
    out = cache.load("k0", tmp_path / "job3" / "out")
    assert out is not None
    cache.evict(CacheLimits(max_bytes=0, max_age_s=600), now=now)
    assert not any(cache.root.iterdir()) and out.outputs["out"].read_bytes() == bytes(1000)


def test_runner_applies_the_configured_cache_limits(tmp_path: Path, settings: Settings) -> None:
    small = settings.replace(step_cache_max_gb=0.0)
    ENCODES.clear()
    run_pipeline(fresh_ctx(tmp_path, small, "job1"), TWO_TONES_MIXED)
    # a 0 GB cap keeps nothing once eviction runs (at most once a minute: the throttle is reset here to
    # stand for a minute passing): the rerun's first stored step evicts the rest, so the final step
    # misses and encodes again
    from reelforge.pipelines import cache as cache_module

    cache_module._last_evict.clear()
    run_pipeline(fresh_ctx(tmp_path, small, "job2"), TWO_TONES_MIXED)
    assert ENCODES.count("mix") == 2
