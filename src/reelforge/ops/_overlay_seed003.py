"""The seed-003 overlay function's parameter names, translated onto the `overlay` op's own (one foreign
format, one module; overlay.py calls `translate` before validating).

The users' earlier function was `process_video_overlay(video_url, container="mov", threshold=0.6, feather=7,
engine="mediapipe", rembg_model="u2net_human_seg", shape="circle", circle_radius=0.35, circle_center_x=0.5,
circle_center_y=0.5)`. Names map one to one (`video_url` -> input, `container` -> output, `circle_radius`
-> radius, `circle_center_x/y` -> cx/cy; threshold, feather, shape keep theirs). `engine: rembg` asked for a
rembg model, which this service does not ship: it runs the best person-segmentation engine installed
(`best_person_engine`) and keeps what was asked in `engine_requested`, which the op writes into the job's
notes together with the engine that ran. A `rembg_model` without `engine: rembg` was ignored by the original
function, and is ignored here too.
"""

from __future__ import annotations

from typing import Any

from reelforge.models.segmentation import best_person_engine

ALIASES = {"video_url": "input", "container": "output", "circle_radius": "radius",
           "circle_center_x": "cx", "circle_center_y": "cy"}
# rembg's model names (rembg 2.x sessions); u2net is its default
REMBG_MODELS = ("u2net", "u2netp", "u2net_human_seg", "u2net_cloth_seg", "silueta", "isnet-general-use",
                "isnet-anime", "sam", "birefnet-general", "birefnet-general-lite", "birefnet-portrait",
                "birefnet-dis", "birefnet-hrsod", "birefnet-cod", "birefnet-massive", "bria-rmbg")
ENGINE_WORDS = {"rvm": "RobustVideoMatting (people only, soft hair edges, temporally stable)",
                "mediapipe": "MediaPipe selfie segmentation (people, per frame)"}


def uses_seed003(data: dict[str, Any]) -> bool:
    return any(k in data for k in (*ALIASES, "rembg_model")) or data.get("engine") == "rembg"


def translate(data: Any) -> Any:
    """Params in seed-003 names -> the op's names (anything else is passed through untouched)."""
    if not isinstance(data, dict) or not uses_seed003(data):
        return data
    out = dict(data)
    for old, new in ALIASES.items():
        if old in out:
            if new in out:
                raise ValueError(f"give {new!r} or its seed-003 name {old!r}, not both")
            out[new] = out.pop(old)
    model = out.pop("rembg_model", None)
    if out.get("engine") == "rembg":
        model = model or "u2net"
        if not isinstance(model, str) or model not in REMBG_MODELS:
            raise ValueError(f"unknown rembg_model {model!r}; rembg's models are: {', '.join(REMBG_MODELS)}")
        out["engine"] = best_person_engine()
        out["engine_requested"] = f"rembg:{model}"
    return out


def mapping_note(requested: str, engine: str) -> str:
    return (f"{requested} was asked for; rembg models are not shipped with this service, so the best "
            f"person-segmentation engine installed ran instead: {engine}, {ENGINE_WORDS.get(engine, engine)}")
