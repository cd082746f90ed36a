"""Op resources and their routing to queues: defaults that match the docs, the operator's table, errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from reelforge.config import Settings
from reelforge.engine.celery_app import make_celery
from reelforge.engine.routing import check_routes, configured_queues, queue_for
from reelforge.errors import ReelForgeError
from reelforge.ops.overlay import OverlayParams
from reelforge.ops.registry import get_operation, load_all
from reelforge.ops.resources import Resources


def settings(tmp_path: Path, **kw) -> Settings:
    return Settings(data_dir=tmp_path / "data", **kw)


def test_default_queues_follow_the_resources(tmp_path: Path):
    s = settings(tmp_path)
    # the shipped ops only: test plugins other tests load into this process declare their own resources
    queues = {name: queue_for(op, None, s) for name, op in load_all().items()
              if op.run.__module__.startswith("reelforge.")}
    gpu = {name for name, q in queues.items() if q == "gpu"}
    assert gpu == {"transcribe"}, queues  # with default params; the rest depends on params (below)
    assert set(queues.values()) == {"cpu", "gpu"}
    overlay = get_operation("overlay")
    rvm = OverlayParams.model_validate({"input": "file_abc", "engine": "rvm"})
    assert queue_for(overlay, rvm, s) == "gpu"
    assert queue_for(overlay, {"input": "file_abc", "engine": "mediapipe"}, s) == "cpu"
    assert overlay.resources_for(rvm) == Resources(gpu="preferred", vram_gb=1, nvenc=True)
    build = get_operation("build")
    assert queue_for(build, {"script": "Hi.", "head": {"engine": "rvm"}}, s) == "gpu"
    assert queue_for(build, {"script": "Hi."}, s) == "cpu"


def test_a_pipeline_needs_what_its_steps_need(tmp_path: Path):
    pipeline, s = get_operation("pipeline"), settings(tmp_path)
    probe_only = {"steps": [{"id": "a", "op": "probe", "params": {"input": "file_x"}}]}
    with_asr = {"steps": [*probe_only["steps"], {"id": "b", "op": "transcribe", "params": {"input": "file_x"}},
                          {"id": "c", "op": "caption", "params": {"input": "file_x"}}]}
    assert queue_for(pipeline, probe_only, s) == "cpu"
    assert queue_for(pipeline, with_asr, s) == "gpu"
    assert pipeline.resources_for(with_asr) == Resources(gpu="preferred", vram_gb=2, nvenc=True)


def test_resource_flags():
    assert Resources().cpu_only and not Resources(nvenc=True).cpu_only
    assert not Resources(gpu="optional").wants_gpu and Resources(gpu="required").wants_gpu
    assert Resources(gpu="optional", vram_gb=3).combine(Resources(gpu="required", vram_gb=1)) == \
        Resources(gpu="required", vram_gb=3)


def test_the_table_overrides_conditions_first(tmp_path: Path):
    s = settings(tmp_path, op_routes={"overlay": "big", "overlay.engine=rvm": "gpu-24g", "transcribe": "cpu",
                                      "loop.crop=true": "x", "probe.n=3": "three"})
    overlay = get_operation("overlay")
    assert queue_for(overlay, {"engine": "rvm"}, s) == "gpu-24g"
    assert queue_for(overlay, {"engine": "mediapipe"}, s) == "big"
    assert queue_for(overlay, None, s) == "big"
    assert queue_for(get_operation("transcribe"), {"input": "file_x"}, s) == "cpu"
    assert queue_for(get_operation("loop"), {"crop": True}, s) == "x"  # values read as JSON
    assert queue_for(get_operation("probe"), {"n": 3}, s) == "three"
    assert queue_for(get_operation("probe"), {"n": "3"}, s) == "cpu"


@pytest.mark.parametrize("table", ["[compute.op_routes]", "[op_routes]"])  # grouped and flat spellings
def test_the_table_from_a_toml_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, table: str):
    cfg = tmp_path / "reelforge.toml"
    cfg.write_text(textwrap.dedent(f'''
        {table}
        "overlay.engine=rvm" = "gpu-24g"
        render = "nvenc"
    '''))
    monkeypatch.setenv("REELFORGE_CONFIG", str(cfg))
    s = settings(tmp_path)
    assert queue_for(get_operation("render"), None, s) == "nvenc"
    assert queue_for(get_operation("overlay"), {"engine": "rvm"}, s) == "gpu-24g"
    assert configured_queues(s) == ["cpu", "gpu", "gpu-24g", "nvenc"]


def test_the_table_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("REELFORGE_COMPUTE__OP_ROUTES", '{"probe": "small"}')
    assert queue_for(get_operation("probe"), None, settings(tmp_path)) == "small"


def test_celery_declares_every_configured_queue(tmp_path: Path):
    s = settings(tmp_path, op_routes={"render": "nvenc"}, worker_queues="cpu,gpu,gpu-80g")
    app = make_celery(s)
    assert [q.name for q in app.conf.task_queues] == ["cpu", "gpu", "nvenc", "gpu-80g"]


def test_bad_tables_are_refused_with_the_reason(tmp_path: Path):
    with pytest.raises(ReelForgeError, match=r"unknown operation.*'overlai'"):
        check_routes(settings(tmp_path, op_routes={"overlai.engine=rvm": "gpu"}))
    with pytest.raises(ReelForgeError, match=r"op\.param=value"):
        check_routes(settings(tmp_path, op_routes={"overlay.engine": "gpu"}))
    with pytest.raises(ValidationError, match="queue names"):
        settings(tmp_path, op_routes={"render": "a queue with spaces"})
    with pytest.raises(ValidationError, match="queue names"):
        settings(tmp_path, op_routes={"render": "q" * 17})  # jobs.queue holds 16 characters
    check_routes(settings(tmp_path, op_routes={"render": "nvenc", "build.head.engine=rvm": "gpu"}))
