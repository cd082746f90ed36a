"""Shotstack edits -> native render params (pure): sizes, fit, offsets, speeds, merge, refusals by name."""

from __future__ import annotations

from typing import Any

import pytest

from reelforge.formats import shotstack
from reelforge.formats.shotstack import InvalidEdit, UnsupportedField, translate
from reelforge.jobs.events import terminal_event
from reelforge.pipelines.timeline import RenderParams

SRC = "https://example.com/a.mp4"


def edit(clip: dict[str, Any] | None = None, **output: Any) -> dict[str, Any]:
    clip = clip or {"asset": {"type": "video", "src": SRC}, "start": 0, "length": 2}
    return {"timeline": {"tracks": [{"clips": [clip]}]}, "output": {"format": "mp4", "resolution": "sd", **output}}


def native(e: dict[str, Any]) -> dict[str, Any]:
    params = translate(e).params
    RenderParams.model_validate(params)  # every translation is a valid native timeline
    return params


@pytest.mark.parametrize(("output", "size", "fps"), [
    ({"resolution": "preview"}, "512x288", 15), ({"resolution": "hd", "aspectRatio": "9:16"}, "720x1280", 25),
    ({"resolution": "1080", "aspectRatio": "1:1"}, "1080x1080", 25),
    ({"resolution": "sd", "aspectRatio": "4:5"}, "460x576", 25),
    ({"size": {"width": 320, "height": 240}, "fps": 30}, "320x240", 30),
])
def test_output_sizes_and_rates(output: dict[str, Any], size: str, fps: float) -> None:
    out = native(edit(**output))["output"]
    assert (out["size"], out["fps"]) == (size, fps)


def test_clip_fields_follow_shotstack_semantics() -> None:
    clip = {"asset": {"type": "image", "src": SRC}, "start": 1, "length": 3, "fit": "cover", "scale": 0.5,
            "position": "topLeft", "offset": {"x": 0.1, "y": 0.2}, "opacity": 0.5, "filter": "greyscale",
            "effect": "zoomInSlow", "transition": {"in": "wipeLeftFast", "out": "carouselUp"}}
    c = native(edit(clip))["timeline"]["tracks"][0]["clips"][0]
    assert c["fit"] == "stretch"  # Shotstack's cover stretches
    assert c["offset"] == {"x": 0.1, "y": -0.2}  # y is up in Shotstack, down natively
    assert (c["effect"], c["effect_speed"]) == ("zoomIn", "slow")
    assert c["transition"] == {"in": "smoothLeft", "in_duration": 0.5, "out": "slideUp", "out_duration": 1.0}
    assert (c["scale"], c["opacity"], c["filter"], c["position"]) == (0.5, 0.5, "greyscale", "topLeft")
    default = native(edit({"asset": {"type": "image", "src": SRC}, "start": 0, "length": 1}))
    assert default["timeline"]["tracks"][0]["clips"][0]["fit"] == "crop"


def test_auto_and_end_lengths_and_starts() -> None:
    e = {"timeline": {"tracks": [
        {"clips": [{"asset": {"type": "title", "text": "Hi"}, "start": 0, "length": "end"}]},
        {"clips": [{"asset": {"type": "image", "src": SRC}, "start": 0, "length": 2},
                   {"asset": {"type": "image", "src": SRC}, "start": "auto", "length": 3}]}]},
         "output": {"format": "mp4", "resolution": "preview"}}
    tracks = native(e)["timeline"]["tracks"]
    assert tracks[1]["clips"][1]["start"] == 2
    assert tracks[0]["clips"][0]["length"] == 5
    video = native(edit({"asset": {"type": "video", "src": SRC}, "start": 0, "length": "auto"}))
    assert "length" not in video["timeline"]["tracks"][0]["clips"][0]  # the rest of the source


def test_overlapping_clips_of_a_track_become_lanes_later_on_top() -> None:
    """Shotstack's filters example overlaps each clip with the next by 1 s and wipes the later one in over
    it; natively a track's clips may not overlap, so the track becomes lanes (native tracks, first on top)."""
    def video(start: float, length: float, name: str) -> dict[str, Any]:
        return {"asset": {"type": "video", "src": f"https://example.com/{name}.mp4"}, "start": start,
                "length": length, "transition": {"in": "wipeRight"}}

    e = {"timeline": {"tracks": [
        {"clips": [{"asset": {"type": "title", "text": "t"}, "start": 0, "length": 2},
                   {"asset": {"type": "title", "text": "u"}, "start": 2, "length": 3}]},
        {"clips": [video(0, 3, "a"), video(2, 4, "b"), video(5, 4, "c"), video(10, 1, "d")]}]},
        "output": {"format": "mp4", "resolution": "sd"}}
    tracks = native(e)["timeline"]["tracks"]  # validates: no native track has overlapping clips
    srcs = [[c["asset"].get("src", c["asset"].get("text", ""))[-5:] for c in t["clips"]] for t in tracks]
    # touching titles stay one track; c over b over a; d overlaps nothing and stays in the bottom lane
    assert srcs == [["t", "u"], ["c.mp4"], ["b.mp4"], ["a.mp4", "d.mp4"]]
    luma = {"timeline": {"tracks": [{"clips": [
        {"asset": {"type": "luma", "src": SRC}, "start": 0, "length": 1}, video(0, 1, "a")]}]},
        "output": {"format": "mp4", "resolution": "sd"}}
    assert len(native(luma)["timeline"]["tracks"]) == 1  # a matte and the clip it masks stay together
    # native paths name the edit's own clips (for errors found by the native checks)
    t = translate(e)
    assert t.edit_path("timeline.tracks[2].clips[0].start") == "timeline.tracks[1].clips[1].start"
    assert t.edit_path("timeline.tracks[3].clips[1]") == "timeline.tracks[1].clips[3]"
    assert t.edit_path("timeline.tracks[0].clips[1].asset") == "timeline.tracks[0].clips[1].asset"


def test_merge_fields_replace_strings_and_whole_values() -> None:
    e = edit({"asset": {"type": "title", "text": "Hello {{ NAME }}!"}, "start": 0, "length": "{{LEN}}"})
    e["merge"] = [{"find": "NAME", "replace": "World"}, {"find": "LEN", "replace": 2.5}]
    c = native(e)["timeline"]["tracks"][0]["clips"][0]
    assert (c["asset"]["text"], c["length"]) == ("Hello World!", 2.5)


def test_title_text_html_and_soundtrack() -> None:
    e = {"timeline": {"soundtrack": {"src": SRC, "effect": "fadeInFadeOut", "volume": 0.5}, "tracks": [
        {"clips": [{"asset": {"type": "title", "text": "big", "style": "blockbuster", "size": "large",
                              "background": "#000", "position": "bottom"}, "start": 0, "length": 2}]},
        {"clips": [{"asset": {"type": "text", "text": "boxed", "width": 200, "height": 80,
                              "font": {"family": "DejaVu Serif", "size": 20, "color": "#ff0000"},
                              "alignment": {"horizontal": "left"}, "background": {"color": "#000000",
                                                                                  "opacity": 0.5}},
                    "start": 0, "length": 2}]},
        {"clips": [{"asset": {"type": "html", "html": "<p>x</p>", "css": "p{color:red}", "width": 100,
                              "height": 50, "background": "transparent"}, "start": 0, "length": 2}]}]},
        "output": {"format": "mp4", "resolution": "hd"}}
    p = native(e)
    title, text, html = (t["clips"][0] for t in p["timeline"]["tracks"])
    assert title["asset"]["text"] == "BIG" and title["asset"]["weight"] == "bold"
    assert title["asset"]["size"] == round(720 * shotstack.TITLE_SIZES["large"]) and title["position"] == "bottom"
    assert title["asset"]["box_colour"] == "#000000"
    assert text["asset"]["background"] == "#00000080" and text["asset"]["align"] == "left"
    assert "background" not in html["asset"]
    assert p["timeline"]["soundtrack"] == {"src": SRC, "loop": False, "volume": 0.5, "fade_in": 2.0,
                                           "fade_out": 2.0}


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda e: e["timeline"]["tracks"][0]["clips"][0].update(transform={"skew": {"x": 0.5}}),
     "timeline.tracks[0].clips[0].transform.skew"),
    (lambda e: e["timeline"]["tracks"][0]["clips"][0].update(transition={"in": "shuffleTopRight"}),
     "timeline.tracks[0].clips[0].transition.in"),
    (lambda e: e["timeline"]["tracks"][0]["clips"][0]["asset"].update(type="shape"),
     "timeline.tracks[0].clips[0].asset.type"),
    (lambda e: e["timeline"]["tracks"][0]["clips"][0]["asset"].update(speed=2),
     "timeline.tracks[0].clips[0].asset.speed"),
    (lambda e: e["timeline"]["tracks"][0]["clips"][0].update(opacity=[{"from": 0, "to": 1}]),
     "timeline.tracks[0].clips[0].opacity"),
    (lambda e: e["output"].update(format="bmp"), "output.format"),
    (lambda e: e["output"].update(destinations=[{"provider": "mux"}]), "output.destinations[0].provider"),
    (lambda e: e["timeline"].update(fonts=[{"src": SRC, "family": "X"}]), "timeline.fonts[0].family"),
    (lambda e: e["timeline"].update(wobble=1), "timeline.wobble"),
])
def test_unsupported_fields_are_refused_by_name(mutate: Any, field: str) -> None:
    e = edit()
    mutate(e)
    with pytest.raises(UnsupportedField) as info:
        translate(e)
    assert info.value.details == {"path": field}
    assert field in info.value.message and info.value.http_status == 400


def test_invalid_values_name_the_field() -> None:
    with pytest.raises(InvalidEdit, match=r"timeline.tracks\[0\].clips\[0\].start"):
        translate(edit({"asset": {"type": "image", "src": SRC}, "length": 1}))


def test_status_mapping_and_answers() -> None:
    assert shotstack.status_of("queued", None, 0) == "queued"
    assert shotstack.status_of("running", "fetching inputs", 0.01) == "fetching"
    assert shotstack.status_of("running", "rendering", 0.5) == "rendering"
    assert shotstack.status_of("running", "writing the poster", 1.0) == "saving"
    assert shotstack.status_of("succeeded", None, 1) == "done"
    assert shotstack.status_of("timed_out", None, 0.3) == "failed"
    assert shotstack.job_id(shotstack.render_id("job_" + "ab" * 16)) == "job_" + "ab" * 16
    assert shotstack.render_id("job_" + "ab" * 16) == "abababab-abab-abab-abab-abababababab"
    facts = shotstack.JobFacts(id="job_1", owner="t", status="succeeded", stage=None, progress=1, created_at=0,
                               updated_at=1, started_at=0.5, finished_at=1.0, error=None,
                               result={"data": {"duration_s": 2.0}})
    body = shotstack.render_response(facts, {"render": "http://x/r.mp4"}, None)["response"]
    assert body["status"] == "done" and body["url"] == "http://x/r.mp4" and body["duration"] == 2.0
    assert body["renderTime"] == 500.0 and body["created"] == "1970-01-01T00:00:00.000Z"
    assert "error" not in body and body["poster"] is None


def test_terminal_events_keep_the_native_shape_unless_asked() -> None:
    class Row:
        id, tenant, op, stage, progress = "job_1", "t", "render", None, 1.0
        created_at, updated_at, started_at, finished_at = 0.0, 1.0, 0.5, 1.0

    native_event = terminal_event(Row(), "failed", None, {"code": "x", "message": "boom"})
    assert native_event["type"] == "job.failed"
    cb = terminal_event(Row(), "failed", None, {"code": "x", "message": "boom"}, webhook_format="shotstack",
                        row=Row())  # type: ignore[arg-type]
    assert cb == {"type": "edit", "action": "render", "id": "job_1", "owner": "t", "status": "failed", "url": None,
                  "error": "boom", "completed": "1970-01-01T00:00:01.000Z"}
