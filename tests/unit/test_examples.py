"""Every example is a runnable job: {op, params} valid at submit time, media made by make_media.sh."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from reelforge.ops.registry import get_operation, load_all

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FAKE_ID = "file_" + "0" * 32


def local_refs(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value[1:]] if value.startswith("@") else []
    if isinstance(value, dict):
        return [r for v in value.values() for r in local_refs(v)]
    if isinstance(value, list):
        return [r for v in value for r in local_refs(v)]
    return []


def as_uploaded(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("@"):
        return FAKE_ID
    if isinstance(value, dict):
        return {k: as_uploaded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_uploaded(v) for v in value]
    return value


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.json")), ids=lambda p: p.name)
def test_example_is_a_valid_job(path: Path):
    job = json.loads(path.read_text())
    assert set(job) >= {"op", "params"}, "an example is a whole job: {op, params}"
    op = get_operation(job["op"])
    op.params_model.model_validate(as_uploaded(job["params"]), context={"source": "api"})
    text = json.dumps(job["params"])
    assert not re.search(r"https?://", text), "examples must run offline: use @media/... files"
    made = (EXAMPLES / "make_media.sh").read_text()
    for ref in local_refs(job["params"]):
        assert Path(ref).name in made, f"{ref} is not made by examples/make_media.sh"


def test_every_public_op_has_an_example():
    have = {json.loads(p.read_text())["op"] for p in EXAMPLES.glob("*.json")}
    public = {name for name, op in load_all().items() if op.run.__module__.startswith("reelforge.")}
    missing = sorted(public - have - {"probe"})
    assert not missing, f"ops without an example: {missing}"
