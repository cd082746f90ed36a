"""Batch values without a service: layer priority and explain, placeholders, manifests, filters."""

from __future__ import annotations

import pytest

from reelforge.errors import InvalidParams
from reelforge.jobs.batch_config import Layer, env_values, resolve
from reelforge.jobs.batch_items import Filters, TemplateError, from_listing, from_manifest, render, render_tree
from reelforge.storage.bucket import ObjectInfo


def test_layers_merge_by_rank_params_key_by_key_and_explain_names_the_layer():
    remote = {"max_concurrent": 7, "params": {"crf": 30}}
    merged = resolve(
        [Layer("flags", "flags", {"params": {"preset": "fast"}, "priority": 3}),
         Layer("env", "env", env_values({"REELFORGE_BATCH_MAX_RETRIES": "4",
                                         "REELFORGE_BATCH_EXTENSIONS": ".mp4,mov"})),
         Layer("file", "config file b.toml", {"remote_config": "https://cfg.example/b.json", "max_concurrent": 9,
                                              "max_retries": 1, "params": {"crf": 20, "width": 640}})],
        fetch_remote=lambda ref, so_far: remote, load_preset=lambda name: {})
    v, why = merged.values, merged.explain
    assert v["max_concurrent"] == 7 and why["max_concurrent"] == "remote config https://cfg.example/b.json"
    assert v["max_retries"] == 4 and why["max_retries"] == "env"
    assert v["extensions"] == [".mp4", "mov"]
    assert v["params"] == {"crf": 30, "width": 640, "preset": "fast", "input": "{input}"}
    assert why["params.width"] == "config file b.toml" and why["params.preset"] == "flags"
    assert why["params.input"] == "default" and why["filename"] == "default"


def test_a_preset_sits_above_defaults_and_below_every_given_layer():
    merged = resolve([Layer("flags", "flags", {"preset": "high"}), Layer("file", "config file", {"max_retries": 2})],
                     fetch_remote=lambda ref, so_far: {},
                     load_preset=lambda name: {"op": "overlay", "max_retries": 5, "params": {"video": "{input}"}})
    assert merged.values["op"] == "overlay" and merged.explain["op"] == "preset high"
    assert merged.values["max_retries"] == 2
    assert merged.values["params"] == {"video": "{input}"}  # no default input: a param already names {input}


def test_a_bad_layer_is_refused_with_its_name():
    with pytest.raises(InvalidParams, match=r"config file b\.toml") as exc:
        resolve([Layer("file", "config file b.toml", {"max_concurent": 3})], fetch_remote=dict,
                load_preset=dict)
    assert exc.value.code == "invalid_config"
    with pytest.raises(InvalidParams, match="remote config"):
        resolve([Layer("flags", "flags", {"remote_config": "https://x.example/c"})],
                fetch_remote=lambda ref, so_far: {"max_retries": "lots"}, load_preset=dict)


def test_placeholders_are_only_names():
    values = {"stem": "a", "index": 3, "input": "s3://b/a.mp4"}
    assert render("{stem}_{index}{{x}}", values) == "a_3{x}"
    assert render_tree({"x": ["{input}", 1], "y": {"z": "{stem}"}}, values) == {"x": ["s3://b/a.mp4", 1],
                                                                                "y": {"z": "a"}}
    for bad in ("{stem.__class__}", "{nope}", "{", "{stem!r}"):
        with pytest.raises(TemplateError):
            render(bad, values)


def test_manifest_rows_params_and_row_numbers():
    items = from_manifest("input,label,param.crf\nhttps://e.example/a.mp4,one,23\nfile_" + "0" * 32 + ",two,\n",
                          None)
    assert [i.row for i in items] == [2, 3]
    assert items[0].params == {"crf": 23} and items[0].vars["label"] == "one" and items[1].params == {}
    jsonl = from_manifest('{"input": "https://e.example/b.mov", "params": {"crf": 20}, "tag": "x"}\n\n', None)
    assert jsonl[0].vars["stem"] == "b" and jsonl[0].params == {"crf": 20} and jsonl[0].row == 1
    with pytest.raises(InvalidParams) as exc:
        from_manifest('{"input": "https://e.example/b.mov"}\n[1]\n{"label": 1}\nnot json\n', "jsonl")
    assert [d["row"] for d in exc.value.details] == [2, 3, 4]


def test_listing_filters():
    objects = [ObjectInfo("in/a.mp4", "e1", 100, 1000.0), ObjectInfo("in/sub/b.MOV", "e2", 5000, 2000.0),
               ObjectInfo("in/c.txt", "e3", 10, 3000.0), ObjectInfo("in/sub/", "", 0, 0.0)]
    keep = from_listing("bkt", "in/", objects, Filters.of({"extensions": ["mp4", ".mov"]}))
    assert [i.source for i in keep] == ["s3://bkt/in/a.mp4", "s3://bkt/in/sub/b.MOV"]
    assert keep[1].vars == {"key": "in/sub/b.MOV", "rel": "sub/b.MOV", "dir": "sub/", "name": "b.MOV", "stem": "b",
                            "ext": ".MOV"}
    assert len(from_listing("bkt", "in/", objects, Filters.of({"min_size": 50, "max_size": 1000}))) == 1
    assert len(from_listing("bkt", "in/", objects, Filters.of({"glob": "*.txt"}))) == 1
    assert len(from_listing("bkt", "in/", objects, Filters.of({"modified_after": "1970-01-01T00:25:00Z"}))) == 2


def test_bucket_errors_become_named_4xx():
    from botocore.exceptions import ClientError, EndpointConnectionError

    from reelforge.errors import UserError
    from reelforge.storage.bucket import Bucket

    class Refusing:
        def __init__(self, code: str, status: int) -> None:
            self.error = ClientError({"Error": {"Code": code, "Message": "no"},
                                      "ResponseMetadata": {"HTTPStatusCode": status}}, "ListObjectsV2")

        def get_paginator(self, _name: str) -> Refusing:
            return self

        def paginate(self, **_kw: object) -> list[dict[str, object]]:
            raise self.error

    for code, status, ours in (("InvalidAccessKeyId", 403, "source_bad_credentials"),
                               ("SignatureDoesNotMatch", 403, "source_bad_credentials"),
                               ("AccessDenied", 403, "source_access_denied"),
                               ("NoSuchBucket", 404, "source_bucket_not_found")):
        with pytest.raises(UserError) as exc:
            list(Bucket(Refusing(code, status), "media").list("input/c1"))
        assert (exc.value.code, exc.value.http_status) == (ours, 422), code
        assert "'media'" in str(exc.value)

    class Unreachable(Refusing):
        def paginate(self, **_kw: object) -> list[dict[str, object]]:
            raise EndpointConnectionError(endpoint_url="http://s3.invalid")

    with pytest.raises(UserError) as exc:
        list(Bucket(Unreachable("x", 0), "media").list("in/"))
    assert exc.value.code == "source_unreachable"
    guarded = Bucket(Unreachable("x", 0), "svc", guarded_prefix="rf/")
    for prefix in ("", "rf/jobs", "r"):
        with pytest.raises(UserError) as exc:
            list(guarded.list(prefix))
        assert exc.value.code == "source_bucket_not_allowed"
