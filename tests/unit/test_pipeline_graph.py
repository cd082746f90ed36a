"""Graph checks happen while params validate: each problem is an InvalidParams naming the bad field."""

from __future__ import annotations

from typing import Any

import pytest

from reelforge.errors import InvalidParams
from reelforge.ops.pipeline import PipelineParams
from reelforge.pipelines.graph import Ref, build_graph, format_loc, parse_ref


def validate(steps: list[dict[str, Any]], context: dict[str, Any] | None = None) -> PipelineParams:
    return PipelineParams.model_validate({"steps": steps}, context=context)


def rejected(steps: list[dict[str, Any]], context: dict[str, Any] | None = None) -> InvalidParams:
    with pytest.raises(InvalidParams) as info:
        validate(steps, context)
    return info.value


def test_parse_ref_forms() -> None:
    assert parse_ref("voice.audio") == Ref("voice", "audio")
    assert parse_ref("voice.data.duration_s") == Ref("voice", None, ("duration_s",))
    assert parse_ref("a.data.x.y").data_keys == ("x", "y")
    for bad in ("voice", "voice.", ".audio", "a.b.c", "a.data", 3):
        with pytest.raises(ValueError):
            parse_ref(bad)


def test_format_loc() -> None:
    assert format_loc(("steps", 2, "params", "input")) == "steps[2].params.input"


def test_order_follows_refs_and_depends_on() -> None:
    params = validate([
        {"id": "c", "op": "probe", "params": {"input": {"ref": "b.probe"}}},
        {"id": "b", "op": "probe", "params": {"input": {"ref": "a.probe"}}},
        {"id": "a", "op": "probe", "params": {"input": "/x.mp4"}},
        {"id": "d", "op": "probe", "params": {"input": "/y.mp4"}, "depends_on": ["c"]},
    ])
    graph = params.graph()
    assert [s.id for s in graph.steps] == ["a", "b", "c", "d"]
    assert graph.by_id()["c"].needs == ("b",)
    assert graph.final.id == "d"


def test_duplicate_id_names_the_second_one() -> None:
    err = rejected([
        {"id": "a", "op": "probe", "params": {"input": "/x.mp4"}},
        {"id": "a", "op": "probe", "params": {"input": "/y.mp4"}},
    ])
    assert err.code == "duplicate_step"
    assert err.details["path"] == "steps[1].id"


def test_unknown_op() -> None:
    err = rejected([{"id": "a", "op": "no_such_op", "params": {}}])
    assert err.code == "unknown_op"
    assert err.details["path"] == "steps[0].op"
    assert "no_such_op" in err.message


def test_dangling_ref_points_at_the_ref() -> None:
    err = rejected([
        {"id": "a", "op": "probe", "params": {"input": "/x.mp4"}},
        {"id": "b", "op": "probe", "params": {"input": {"ref": "ghost.probe"}}},
    ])
    assert err.code == "dangling_ref"
    assert err.details["path"] == "steps[1].params.input"


def test_dangling_depends_on() -> None:
    err = rejected([{"id": "a", "op": "probe", "params": {"input": "/x.mp4"}, "depends_on": ["zz"]}])
    assert err.details["path"] == "steps[0].depends_on[0]"


def test_cycle_is_reported_with_its_members() -> None:
    err = rejected([
        {"id": "a", "op": "probe", "params": {"input": {"ref": "c.probe"}}},
        {"id": "b", "op": "probe", "params": {"input": {"ref": "a.probe"}}},
        {"id": "c", "op": "probe", "params": {"input": {"ref": "b.probe"}}},
    ])
    assert err.code == "cyclic_ref"
    assert "a -> c -> b -> a" in err.message or "a ->" in err.message
    assert err.details["path"].startswith("steps[")


def test_self_ref() -> None:
    err = rejected([{"id": "a", "op": "probe", "params": {"input": {"ref": "a.probe"}}}])
    assert err.code == "cyclic_ref"


def test_malformed_ref() -> None:
    err = rejected([{"id": "a", "op": "probe", "params": {"input": {"ref": "nodot"}}}])
    assert err.code == "invalid_ref"
    assert err.details["path"] == "steps[0].params.input.ref"


def test_step_params_checked_against_the_op_model() -> None:
    err = rejected([
        {"id": "a", "op": "probe", "params": {"input": "/x.mp4"}},
        {"id": "b", "op": "probe", "params": {"input": {"ref": "a.probe"}, "colour": "red"}},
    ])
    assert err.code == "invalid_step_params"
    assert err.details["path"] == "steps[1].params.colour"


def test_api_context_accepts_step_placeholders_but_not_local_paths() -> None:
    api = {"source": "api"}
    validate([
        {"id": "a", "op": "probe", "params": {"input": "https://example.com/a.mp4"}},
        {"id": "b", "op": "probe", "params": {"input": {"ref": "a.probe"}}},
    ], api)
    err = rejected([{"id": "a", "op": "probe", "params": {"input": "/etc/passwd"}}], api)
    assert err.details["path"] == "steps[0].params.input"


def test_data_ref_location_is_not_checked_at_submit_time() -> None:
    # the value of a data ref is unknown until the step runs, so its location may not fail yet
    validate([
        {"id": "a", "op": "probe", "params": {"input": "/x.mp4"}},
        {"id": "b", "op": "probe", "params": {"input": {"ref": "a.data.format_name"}}},
    ])


def test_nested_pipeline_error_is_anchored_under_the_outer_step() -> None:
    err = rejected([
        {"id": "outer", "op": "pipeline", "params": {"steps": [
            {"id": "x", "op": "probe", "params": {"input": {"ref": "nope.probe"}}},
        ]}},
    ])
    assert err.details["path"] == "steps[0].params.steps[0].params.input"


def test_empty_and_bad_ids() -> None:
    assert rejected([]).code == "empty_pipeline"
    bad_id = rejected([{"id": "1abc", "op": "probe", "params": {"input": "/x"}}])
    assert bad_id.details["path"] == "steps[0].id"


def test_build_graph_with_a_private_op_table() -> None:
    from reelforge.ops.registry import get_operation

    probe = get_operation("probe")
    from reelforge.pipelines.graph import Step

    graph = build_graph([Step(id="a", op="mine", params={"input": "/x"})], lookup=lambda name: probe)
    assert graph.final.operation is probe
