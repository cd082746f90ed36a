"""The Shotstack Edit API's edit JSON -> `render` params, and a ReelForge job -> Shotstack's answers.

Pure functions, no I/O: the HTTP front door (api/routes_shotstack.py) parses the body, calls `translate`,
submits a `render` job through JobService, and answers with `render_response` built from the job; the
job control sends `callback_body` to the edit's `callback` when the job ends.

Shotstack's semantics, onto the native timeline (docs/FRONTDOOR_SHOTSTACK.md has the whole table):
tracks first on top (the same as native), `fit` crop by default (native `crop`), Shotstack `cover`
stretches (native `stretch`), offsets are fractions with y up (native y is down), transitions and
effects carry their speed in the name (`fadeSlow`, `zoomInFast`). Whatever has no faithful translation
is refused with the JSON path of the field (`UnsupportedField`, a 400), never rendered differently.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from reelforge.errors import InvalidParams

SDK_PLAN = "self-hosted"
# output sizes for 16:9; other aspect ratios keep the height (9:16 swaps the sides)
RESOLUTIONS: dict[str, tuple[int, int]] = {
    "preview": (512, 288), "mobile": (640, 360), "sd": (1024, 576), "hd": (1280, 720), "1080": (1920, 1080),
    "4k": (3840, 2160),
}
ASPECTS = ("16:9", "9:16", "1:1", "4:5", "4:3")
FPS = (12, 15, 23.976, 24, 25, 29.97, 30, 48, 50, 59.94, 60)
QUALITY = {"verylow": "draft", "low": "draft", "medium": "standard", "high": "high", "veryhigh": "high"}
TRANSITION_S = {"": 1.0, "Slow": 2.0, "Fast": 0.5}  # our durations for Shotstack's speeds
AUDIO_FADE_S = 1.0  # fadeIn / fadeOut of audio clips, video sound and the soundtrack (at most half the clip)
SOUNDTRACK_FADE_S = 2.0
# Shotstack transition -> native transition (per side: reveal goes left-to-right in, right-to-left out)
TRANSITIONS: dict[str, tuple[str, str]] = {
    "fade": ("fade", "fade"), "reveal": ("wipeRight", "wipeLeft"),
    "wipeLeft": ("smoothLeft", "smoothLeft"), "wipeRight": ("smoothRight", "smoothRight"),
    "slideLeft": ("driftLeft", "driftLeft"), "slideRight": ("driftRight", "driftRight"),
    "slideUp": ("driftUp", "driftUp"), "slideDown": ("driftDown", "driftDown"),
    "carouselLeft": ("slideLeft", "slideLeft"), "carouselRight": ("slideRight", "slideRight"),
    "carouselUp": ("slideUp", "slideUp"), "carouselDown": ("slideDown", "slideDown"),
    "zoom": ("zoom", "zoom"),
}
EFFECTS = ("zoomIn", "zoomOut", "slideLeft", "slideRight", "slideUp", "slideDown")
FILTERS = ("blur", "boost", "contrast", "darken", "greyscale", "lighten", "muted", "negative")
POSITIONS = ("top", "topRight", "right", "bottomRight", "bottom", "bottomLeft", "left", "topLeft", "center")
FITS = {"crop": "crop", "cover": "stretch", "contain": "contain", "none": "none"}
# title sizes as a fraction of the output height, and title styles as (font, weight, upper case, box)
TITLE_SIZES = {"xx-small": 0.022, "x-small": 0.033, "small": 0.045, "medium": 0.062, "large": 0.083,
               "x-large": 0.11, "xx-large": 0.15}
TITLE_STYLES: dict[str, tuple[str, str, bool]] = {
    "minimal": ("DejaVu Sans", "normal", False), "blockbuster": ("DejaVu Sans", "bold", True),
    "vogue": ("DejaVu Serif", "normal", True), "sketchy": ("DejaVu Sans Mono", "normal", False),
    "skinny": ("DejaVu Sans", "light", False), "chunk": ("DejaVu Sans", "bold", True),
    "chunkLight": ("DejaVu Sans", "normal", True), "marker": ("DejaVu Sans Mono", "bold", False),
    "future": ("DejaVu Sans Mono", "normal", True), "subtitle": ("DejaVu Sans", "normal", False),
}
FONT_FAMILIES = ("DejaVu Sans", "DejaVu Serif", "DejaVu Sans Mono")  # what text assets may name
STATUS_TERMINAL = {"succeeded": "done", "failed": "failed", "cancelled": "failed", "timed_out": "failed"}
_MERGE_RE = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")
_HEX3 = re.compile(r"^#([0-9A-Fa-f])([0-9A-Fa-f])([0-9A-Fa-f])$")


class UnsupportedField(InvalidParams):
    code = "unsupported_field"
    http_status = 400


class InvalidEdit(InvalidParams):
    code = "invalid_edit"
    http_status = 400


def _unsupported(path: str, what: str) -> UnsupportedField:
    return UnsupportedField(f"{path}: {what} is not supported by this server.", details={"path": path})


def _invalid(path: str, what: str) -> InvalidEdit:
    return InvalidEdit(f"{path}: {what}", details={"path": path})


@dataclass(frozen=True)
class Translation:
    params: dict[str, Any]  # the render op's params
    callback: str | None
    merged: dict[str, Any]  # the edit after its merge fields were applied
    # native clip path -> the edit's, where they differ (a track with overlapping clips became several)
    paths: dict[str, str] = field(default_factory=dict)

    def edit_path(self, native: str) -> str:
        """A native params path (timeline.tracks[3].clips[0].start) in the edit's terms."""
        for prefix, edit in self.paths.items():
            if native == prefix or native.startswith((prefix + ".", prefix + "[")):
                return edit + native[len(prefix):]
        return native


# ---- merge fields
def apply_merge(edit: Mapping[str, Any]) -> dict[str, Any]:
    """Replace `{{ FIND }}` in every string of the edit; a string that is only a placeholder takes the
    replacement's own JSON type (so `"length": "{{ LENGTH }}"` can become a number)."""
    fields = edit.get("merge") or []
    if not isinstance(fields, list):
        raise _invalid("merge", "must be a list of {find, replace}")
    table: dict[str, Any] = {}
    for i, f in enumerate(fields):
        if not isinstance(f, dict) or not isinstance(f.get("find"), str) or "replace" not in f:
            raise _invalid(f"merge[{i}]", "each merge field is {\"find\": <string>, \"replace\": <value>}")
        extra = set(f) - {"find", "replace"}
        if extra:
            raise _unsupported(f"merge[{i}].{sorted(extra)[0]}", "this merge field option")
        table[f["find"].strip()] = f["replace"]

    def sub(value: Any) -> Any:
        if isinstance(value, str):
            whole = _MERGE_RE.fullmatch(value)
            if whole and whole.group(1) in table:
                return table[whole.group(1)]
            return _MERGE_RE.sub(lambda m: str(table[m.group(1)]) if m.group(1) in table else m.group(0), value)
        if isinstance(value, list):
            return [sub(v) for v in value]
        if isinstance(value, dict):
            return {k: sub(v) for k, v in value.items()}
        return value

    return {k: (v if k == "merge" else sub(v)) for k, v in edit.items()}


# ---- small readers
def _obj(value: Any, path: str, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _invalid(path, "must be an object")
    for key in value:
        if key not in allowed:
            raise _unsupported(f"{path}.{key}", f"'{key}'")
    return value


def _num(value: Any, path: str, lo: float | None = None, hi: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        if isinstance(value, list):
            raise _unsupported(path, "keyframe animation (a list of tweens)")
        raise _invalid(path, "must be a number")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise _invalid(path, f"must be between {lo} and {hi}")
    return float(value)


def _choice(value: Any, path: str, options: tuple[str, ...] | Mapping[str, Any]) -> str:
    if not isinstance(value, str) or value not in options:
        shown = ", ".join(options)
        raise _unsupported(path, f"{value!r} (known: {shown})") if isinstance(value, str) else _invalid(
            path, f"must be one of {shown}")
    return value


def _colour(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise _invalid(path, "must be a colour string")
    m = _HEX3.match(value)
    if m:
        return "#" + "".join(c * 2 for c in m.groups())
    if value.lower() == "transparent":
        return "#00000000"
    return value


def _with_opacity(colour: str, opacity: float) -> str:
    if opacity >= 1 or not colour.startswith("#") or len(colour) != 7:
        return colour
    return f"{colour}{round(opacity * 255):02X}"


def _speed(name: str, known: tuple[str, ...] | Mapping[str, Any], path: str) -> tuple[str, str]:
    """('zoomIn', 'Slow') from 'zoomInSlow'."""
    for suffix in ("Slow", "Fast"):
        if name.endswith(suffix) and name[: -len(suffix)] in known:
            return name[: -len(suffix)], suffix
    if name in known:
        return name, ""
    if name.startswith("shuffle"):
        raise _unsupported(path, f"the {name!r} transition (rotating shuffles)")
    raise _unsupported(path, f"{name!r} (known: {', '.join(known)}, each also with Slow or Fast)")


# ---- the edit
def translate(edit: Any, *, src_of: Callable[[str, str], str] | None = None) -> Translation:
    """The render params for a Shotstack edit (merge fields applied first). Raises UnsupportedField /
    InvalidEdit (400) naming the field. `src_of(src, path)` may rewrite asset URLs (default: as given)."""
    if not isinstance(edit, dict):
        raise _invalid("body", "an edit is a JSON object {timeline, output, ...}")
    _obj(edit, "edit", {"timeline", "output", "merge", "callback", "disk"})
    merged = apply_merge(edit)
    if "timeline" not in merged or "output" not in merged:
        raise _invalid("timeline" if "timeline" not in merged else "output", "is required")
    if merged.get("disk") not in (None, "local", "mount"):
        raise _unsupported("disk", repr(merged.get("disk")))
    callback = merged.get("callback")
    if callback is not None and not isinstance(callback, str):
        raise _invalid("callback", "must be a URL")
    output, size = _output(merged["output"])
    origins: dict[int, str] = {}
    timeline = _timeline(merged["timeline"], size, src_of or (lambda src, _path: src), origins)
    paths = {f"timeline.tracks[{ti}].clips[{ci}]": origins[id(clip)]
             for ti, track in enumerate(timeline["tracks"]) for ci, clip in enumerate(track["clips"])}
    return Translation(params={"timeline": timeline, "output": output}, callback=callback or None, merged=merged,
                       paths={k: v for k, v in paths.items() if k != v})


def output_size(output: Mapping[str, Any]) -> tuple[int, int]:
    """The frame size Shotstack lays an edit out at: size, else resolution x aspectRatio."""
    return _output(dict(output))[1]


def _sized(resolution: str, aspect: str) -> tuple[int, int]:
    w, h = RESOLUTIONS[resolution]
    if aspect == "9:16":
        return h, w
    if aspect == "1:1":
        return h, h
    if aspect == "4:5":
        return _even(h * 4 / 5), h
    if aspect == "4:3":
        return _even(h * 4 / 3), h
    return w, h


def _even(x: float) -> int:
    return max(2, round(x / 2) * 2)


def _output(raw: Any) -> tuple[dict[str, Any], tuple[int, int]]:
    o = _obj(raw, "output", {"format", "resolution", "aspectRatio", "size", "fps", "scaleTo", "quality", "repeat",
                             "mute", "range", "poster", "thumbnail", "destinations"})
    fmt = _choice(o.get("format", "mp4"), "output.format", ("mp4", "gif", "mp3", "jpg", "png", "bmp"))
    if fmt == "bmp":
        raise _unsupported("output.format", "'bmp'")
    aspect = _choice(o.get("aspectRatio", "16:9"), "output.aspectRatio", ASPECTS)
    resolution = o.get("resolution")
    if "size" in o:
        s = _obj(o["size"], "output.size", {"width", "height"})
        if "width" not in s or "height" not in s:
            raise _invalid("output.size", "needs width and height")
        w = int(_num(s["width"], "output.size.width", 2, 4096))
        h = int(_num(s["height"], "output.size.height", 2, 4096))
        if w % 2 or h % 2:
            raise _invalid("output.size", "width and height must be even numbers")
        size = (w, h)
    else:
        resolution = _choice(resolution if resolution is not None else "sd", "output.resolution", RESOLUTIONS)
        size = _sized(resolution, aspect)
    default_fps = 15 if resolution == "preview" else 25
    fps = o.get("fps", default_fps)
    if fps not in FPS:
        raise _unsupported("output.fps", f"{fps!r} (known: {', '.join(map(str, FPS))})")
    out: dict[str, Any] = {"format": fmt, "size": f"{size[0]}x{size[1]}", "fps": fps,
                           "quality": QUALITY[_choice(o.get("quality", "medium"), "output.quality", QUALITY)]}
    if "scaleTo" in o:
        target = _sized(_choice(o["scaleTo"], "output.scaleTo", tuple(k for k in RESOLUTIONS if k != "4k")), aspect)
        if target != size:
            out["scale_to"] = f"{target[0]}x{target[1]}"
    for flag in ("repeat", "mute"):
        if flag in o:
            if not isinstance(o[flag], bool):
                raise _invalid(f"output.{flag}", "must be true or false")
            out[flag] = o[flag]
    if "range" in o:
        r = _obj(o["range"], "output.range", {"start", "length"})
        rng: dict[str, Any] = {"start": _num(r.get("start", 0), "output.range.start", 0)}
        if "length" in r:
            rng["length"] = _num(r["length"], "output.range.length", 0.01)
        out["range"] = rng
    if "poster" in o:
        p = _obj(o["poster"], "output.poster", {"capture"})
        out["poster"] = _num(p.get("capture", 0), "output.poster.capture", 0)
    if "thumbnail" in o:
        t = _obj(o["thumbnail"], "output.thumbnail", {"capture", "scale"})
        out["thumbnail"] = {"at": _num(t.get("capture", 0), "output.thumbnail.capture", 0),
                            "scale": _num(t.get("scale", 0.25), "output.thumbnail.scale", 0.01, 1)}
    for i, dest in enumerate(o.get("destinations") or []):
        d = _obj(dest, f"output.destinations[{i}]", {"provider", "exclude", "options"})
        if d.get("provider") != "shotstack":
            raise _unsupported(f"output.destinations[{i}].provider",
                               f"{d.get('provider')!r} (outputs go to this server's storage: 'shotstack')")
        if d.get("exclude") is True:
            raise _unsupported(f"output.destinations[{i}].exclude", "excluding the server's own storage")
    return out, size


def _timeline(raw: Any, size: tuple[int, int], src_of: Callable[[str, str], str],
              origins: dict[int, str]) -> dict[str, Any]:
    """The native timeline; `origins` gets id(native clip) -> the clip's path in the edit."""
    t = _obj(raw, "timeline", {"tracks", "soundtrack", "background", "fonts", "cache"})
    fonts = t.get("fonts") or []
    if not isinstance(fonts, list):
        raise _invalid("timeline.fonts", "must be a list of {src}")
    font_srcs = []
    for i, font in enumerate(fonts):
        f = _obj(font, f"timeline.fonts[{i}]", {"src"})
        font_srcs.append(src_of(_str(f.get("src"), f"timeline.fonts[{i}].src"), f"timeline.fonts[{i}].src"))
    if "cache" in t and not isinstance(t["cache"], bool):
        raise _invalid("timeline.cache", "must be true or false")
    tracks_raw = t.get("tracks")
    if not isinstance(tracks_raw, list) or not tracks_raw:
        raise _invalid("timeline.tracks", "needs at least one track")
    out: dict[str, Any] = {"background": _colour(t.get("background", "#000000"), "timeline.background")}
    if font_srcs:
        out["fonts"] = font_srcs
    clips_per_track: list[list[dict[str, Any]]] = []
    ends: list[float | None] = []
    pending_end: list[tuple[dict[str, Any], str]] = []
    for ti, track in enumerate(tracks_raw):
        tr = _obj(track, f"timeline.tracks[{ti}]", {"clips"})
        if not isinstance(tr.get("clips"), list) or not tr["clips"]:
            raise _invalid(f"timeline.tracks[{ti}].clips", "needs at least one clip")
        clips: list[dict[str, Any]] = []
        previous_end: float | None = 0.0
        for ci, clip in enumerate(tr["clips"]):
            path = f"timeline.tracks[{ti}].clips[{ci}]"
            native, end, wants_end = _clip(clip, path, size, previous_end, src_of, bool(font_srcs))
            if wants_end:
                pending_end.append((native, path))
            else:
                ends.append(end)
            previous_end = end
            origins[id(native)] = path
            clips.append(native)
        clips_per_track.append(clips)
    if pending_end:
        if any(e is None for e in ends):
            raise _unsupported(pending_end[0][1] + ".length", "'end' together with a clip of 'auto' length")
        known = [e for e in ends if e is not None]
        timeline_end = max(known) if known else 0.0
        for native, path in pending_end:
            native["length"] = round(timeline_end - native["start"], 6)
            if native["length"] <= 0:
                raise _invalid(path + ".length", "'end': the clip starts at or after the end of the timeline")
            _fit_transitions(native)
    out["tracks"] = [{"clips": lane} for clips in clips_per_track for lane in _lanes(clips)]
    if "soundtrack" in t:
        out["soundtrack"] = _soundtrack(t["soundtrack"], src_of)
    return out


def _lanes(clips: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """One Shotstack track as native tracks, top first. Shotstack lets the clips of a track overlap, the later
    one drawn over the earlier (its own examples wipe from one clip to the next that way); a native track may
    not. Each clip goes one lane above every earlier-starting clip it overlaps, so the order on screen is
    Shotstack's. A track with a luma matte stays whole (the matte masks the clips of its own track), and a clip
    whose end depends on its media counts as ending where it starts (checked when the media is known)."""
    if len(clips) < 2 or any(c["asset"]["type"] == "luma" for c in clips):
        return [clips]
    lanes: list[list[dict[str, Any]]] = []  # bottom first
    placed: list[tuple[float, float, int]] = []  # start, end, lane
    for clip in sorted(clips, key=lambda c: float(c["start"])):  # stable: listed order among equal starts
        start = float(clip["start"])
        end = start + float(clip.get("length", 0.0))
        lane = max((lane + 1 for s, e, lane in placed if s < end - 1e-6 and start < e - 1e-6), default=0)
        if lane == len(lanes):
            lanes.append([])
        lanes[lane].append(clip)
        placed.append((start, end, lane))
    return lanes[::-1]


def _soundtrack(raw: Any, src_of: Callable[[str, str], str]) -> dict[str, Any]:
    s = _obj(raw, "timeline.soundtrack", {"src", "effect", "volume"})
    if not isinstance(s.get("src"), str):
        raise _invalid("timeline.soundtrack.src", "is required")
    st: dict[str, Any] = {"src": src_of(s["src"], "timeline.soundtrack.src"), "loop": False,
                          "volume": _num(s.get("volume", 1), "timeline.soundtrack.volume", 0, 4)}
    effect = s.get("effect")
    if effect is not None:
        effect = _choice(effect, "timeline.soundtrack.effect", ("fadeIn", "fadeOut", "fadeInFadeOut"))
        if effect in ("fadeIn", "fadeInFadeOut"):
            st["fade_in"] = SOUNDTRACK_FADE_S
        if effect in ("fadeOut", "fadeInFadeOut"):
            st["fade_out"] = SOUNDTRACK_FADE_S
    return st


_CLIP_KEYS = {"asset", "start", "length", "fit", "scale", "position", "offset", "transition", "effect", "filter",
              "opacity", "transform", "alias", "width", "height"}


def _clip(raw: Any, path: str, size: tuple[int, int], previous_end: float | None,
          src_of: Callable[[str, str], str], any_family: bool = False) -> tuple[dict[str, Any], float | None, bool]:
    """(native clip, its end or None when it depends on the media, whether its length is 'end')."""
    c = _obj(raw, path, _CLIP_KEYS)
    for key in ("alias", "width", "height"):
        if key in c:
            raise _unsupported(f"{path}.{key}", {"alias": "clip aliases", "width": "a clip width",
                                                 "height": "a clip height"}[key])
    if "asset" not in c:
        raise _invalid(f"{path}.asset", "is required")
    asset, kind = _asset(c["asset"], f"{path}.asset", size, src_of, any_family)
    clip: dict[str, Any] = {"asset": asset}
    start = c.get("start", None)
    if start == "auto":
        if previous_end is None:
            raise _unsupported(f"{path}.start", "'auto' after a clip of 'auto' length")
        clip["start"] = previous_end
    elif start is None:
        raise _invalid(f"{path}.start", "is required")
    else:
        clip["start"] = _num(start, f"{path}.start", 0)
    length = c.get("length", None)
    wants_end = False
    end: float | None
    if length == "auto" or (length is None and kind in ("video", "audio", "luma")):
        if kind not in ("video", "audio", "luma"):
            raise _unsupported(f"{path}.length", f"'auto' for a {kind} asset (give seconds)")
        end = None  # the rest of the source: known when the media is probed
    elif length == "end":
        wants_end, end = True, None
        clip["length"] = 1.0  # replaced once the timeline's end is known
    elif length is None:
        raise _invalid(f"{path}.length", "is required")
    else:
        clip["length"] = _num(length, f"{path}.length", 0.001)
        end = clip["start"] + clip["length"]
    if wants_end:
        end = None
    if kind in ("video", "image", "luma"):
        clip["fit"] = FITS[_choice(c.get("fit", "crop"), f"{path}.fit", FITS)]
    elif "fit" in c and kind not in ("audio",):
        _choice(c["fit"], f"{path}.fit", FITS)  # accepted: titles, text and html are not fitted
    if "scale" in c:
        clip["scale"] = _num(c["scale"], f"{path}.scale", 0.001, 10)
    if "position" in c:
        clip["position"] = _choice(c["position"], f"{path}.position", POSITIONS)
    if "offset" in c:
        clip["offset"] = _offset(c["offset"], f"{path}.offset")
    if "opacity" in c:
        clip["opacity"] = _num(c["opacity"], f"{path}.opacity", 0, 1)
    if "effect" in c:
        name, speed = _speed(_str(c["effect"], f"{path}.effect"), EFFECTS, f"{path}.effect")
        clip["effect"] = name
        clip["effect_speed"] = {"": "normal", "Slow": "slow", "Fast": "fast"}[speed]
    if "filter" in c:
        clip["filter"] = _choice(c["filter"], f"{path}.filter", FILTERS)
    if "transform" in c:
        clip.update(_transform(c["transform"], f"{path}.transform"))
    if "transition" in c:
        tr = _obj(c["transition"], f"{path}.transition", {"in", "out"})
        native: dict[str, Any] = {}
        for side, key in (("in", "in"), ("out", "out")):
            if tr.get(key) is None:
                continue
            name, speed = _speed(_str(tr[key], f"{path}.transition.{key}"), TRANSITIONS, f"{path}.transition.{key}")
            native[side] = TRANSITIONS[name][0 if side == "in" else 1]
            native[f"{side}_duration"] = TRANSITION_S[speed]
        if native:
            clip["transition"] = native
    if kind == "title":  # the title's own position/offset place it (the clip's apply when it has none)
        title = c["asset"]
        if "position" in title:
            clip["position"] = _choice(title["position"], f"{path}.asset.position", POSITIONS)
        if "offset" in title:
            o = _offset(title["offset"], f"{path}.asset.offset")
            base = clip.get("offset", {"x": 0.0, "y": 0.0})
            clip["offset"] = {"x": base["x"] + o["x"], "y": base["y"] + o["y"]}
    visual_only = ("effect", "filter", "transition", "rotate", "flip_h", "flip_v")
    if kind in ("audio", "luma", "caption") and any(k in clip for k in visual_only):
        key = next(k for k in visual_only if k in clip)
        raise _unsupported(f"{path}.{'transform' if key in ('rotate', 'flip_h', 'flip_v') else key}",
                           f"an effect, filter, transform or transition on a {kind} clip")
    if kind == "audio" or kind == "video":
        _audio_effect(clip, c["asset"], f"{path}.asset", kind)
    if "length" in clip and not wants_end:
        _fit_transitions(clip)
    return clip, end, wants_end


def _transform(raw: Any, path: str) -> dict[str, Any]:
    t = _obj(raw, path, {"rotate", "skew", "flip"})
    if "skew" in t:
        raise _unsupported(f"{path}.skew", "skewing a clip")
    out: dict[str, Any] = {}
    if "rotate" in t:
        r = _obj(t["rotate"], f"{path}.rotate", {"angle"})
        out["rotate"] = _num(r.get("angle", 0), f"{path}.rotate.angle", -360, 360)
    if "flip" in t:
        f = _obj(t["flip"], f"{path}.flip", {"horizontal", "vertical"})
        for key, native in (("horizontal", "flip_h"), ("vertical", "flip_v")):
            if key in f:
                if not isinstance(f[key], bool):
                    raise _invalid(f"{path}.flip.{key}", "must be true or false")
                out[native] = f[key]
    return out


def _audio_effect(clip: dict[str, Any], raw: dict[str, Any], path: str, kind: str) -> None:
    key = "effect" if kind == "audio" else "volumeEffect"
    effect = raw.get(key)
    if effect is None:
        return
    effect = _choice(effect, f"{path}.{key}", ("fadeIn", "fadeOut", "fadeInFadeOut"))
    length = clip.get("length")
    fade = AUDIO_FADE_S if length is None else min(AUDIO_FADE_S, length / 2)
    prefix = "" if kind == "audio" else "audio_"
    target = clip if kind == "audio" else clip["asset"]
    if effect in ("fadeIn", "fadeInFadeOut"):
        target[f"{prefix}fade_in"] = fade
    if effect in ("fadeOut", "fadeInFadeOut"):
        target[f"{prefix}fade_out"] = fade


def _fit_transitions(clip: dict[str, Any]) -> None:
    """Shorten the in/out transitions (keeping their ratio) when together they are longer than the clip."""
    tr = clip.get("transition")
    if not tr:
        return
    used = tr.get("in_duration", 0.0) + tr.get("out_duration", 0.0)
    if used > clip["length"]:
        k = clip["length"] / used
        for key in ("in_duration", "out_duration"):
            if key in tr:
                tr[key] = tr[key] * k * 0.999


def _str(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise _invalid(path, "must be a string")
    return value


def _offset(raw: Any, path: str) -> dict[str, float]:
    o = _obj(raw, path, {"x", "y"})
    return {"x": _num(o.get("x", 0), f"{path}.x", -10, 10), "y": -_num(o.get("y", 0), f"{path}.y", -10, 10)}


_ASSET_KEYS: dict[str, set[str]] = {
    "video": {"type", "src", "trim", "volume", "volumeEffect", "speed", "crop"},
    "image": {"type", "src", "crop"},
    "audio": {"type", "src", "trim", "volume", "effect", "speed"},
    "luma": {"type", "src", "trim"},
    "title": {"type", "text", "style", "color", "size", "background", "position", "offset"},
    "text": {"type", "text", "width", "height", "font", "background", "alignment"},
    "html": {"type", "html", "css", "width", "height", "background", "position"},
    "caption": {"type", "src", "font"},
}


def _family(value: Any, path: str, any_family: bool) -> str:
    """A font family: the installed DejaVu ones, or any name when the timeline brings font files (the render
    then checks the name against them)."""
    if any_family and isinstance(value, str) and value.strip():
        return value.strip()
    return _choice(value, path, FONT_FAMILIES)


def _asset(raw: Any, path: str, size: tuple[int, int], src_of: Callable[[str, str], str],
           any_family: bool = False) -> tuple[dict[str, Any], str]:
    if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
        raise _invalid(path, "an asset is an object with a 'type'")
    kind = raw["type"]
    if kind not in _ASSET_KEYS:
        raise _unsupported(f"{path}.type", f"the {kind!r} asset")
    a = _obj(raw, path, _ASSET_KEYS[kind])
    out: dict[str, Any] = {"type": kind}
    if kind in ("video", "image", "audio", "luma", "caption"):
        if not isinstance(a.get("src"), str):
            raise _invalid(f"{path}.src", "is required")
        out["src"] = src_of(a["src"], f"{path}.src")
    if kind in ("video", "audio", "luma") and "trim" in a:
        out["trim"] = _num(a["trim"], f"{path}.trim", 0)
    if kind in ("video", "audio") and "volume" in a:
        out["volume"] = _num(a["volume"], f"{path}.volume", 0, 4)
    if "speed" in a and _num(a["speed"], f"{path}.speed", 0, 10) != 1:
        raise _unsupported(f"{path}.speed", "changing the playback speed")
    if kind in ("video", "image") and "crop" in a:
        cr = _obj(a["crop"], f"{path}.crop", {"top", "bottom", "left", "right"})
        out["crop"] = {k: _num(v, f"{path}.crop.{k}", 0, 1) for k, v in cr.items()}
    if kind == "title":
        return _title(a, path, size), kind
    if kind == "text":
        return _text(a, path, any_family), kind
    if kind == "html":
        if not isinstance(a.get("html"), str) or not a["html"].strip():
            raise _invalid(f"{path}.html", "is required")
        out["html"] = a["html"]
        if "css" in a:
            out["css"] = _str(a["css"], f"{path}.css")
        for dim in ("width", "height"):
            if dim in a:
                out[dim] = int(_num(a[dim], f"{path}.{dim}", 1, 4096))
        if "background" in a and str(a["background"]).lower() != "transparent":
            out["background"] = _colour(a["background"], f"{path}.background")
        if "position" in a:
            out["position"] = _choice(a["position"], f"{path}.position", POSITIONS)
    if kind == "caption" and "font" in a:
        f = _obj(a["font"], f"{path}.font", {"family", "color", "size"})
        if "family" in f:
            out["font"] = _family(f["family"], f"{path}.font.family", any_family)
        if "color" in f:
            out["colour"] = _colour(f["color"], f"{path}.font.color")
        if "size" in f:
            out["size"] = int(_num(f["size"], f"{path}.font.size", 1, 400))
    return out, kind


def _title(a: dict[str, Any], path: str, size: tuple[int, int]) -> dict[str, Any]:
    text = _str(a.get("text", ""), f"{path}.text")
    if not text.strip():
        raise _invalid(f"{path}.text", "is required")
    font, weight, upper = TITLE_STYLES[_choice(a.get("style", "minimal"), f"{path}.style", TITLE_STYLES)]
    px = max(8, round(size[1] * TITLE_SIZES[_choice(a.get("size", "medium"), f"{path}.size", TITLE_SIZES)]))
    out: dict[str, Any] = {"type": "text", "text": text.upper() if upper else text, "font": font, "weight": weight,
                           "size": px, "colour": _colour(a.get("color", "#ffffff"), f"{path}.color")}
    if a.get("background") not in (None, "transparent"):
        out.update(box=True, box_colour=_colour(a["background"], f"{path}.background"), box_padding=max(4, px // 3))
    return out


def _text(a: dict[str, Any], path: str, any_family: bool = False) -> dict[str, Any]:
    text = _str(a.get("text", ""), f"{path}.text")
    if not text.strip():
        raise _invalid(f"{path}.text", "is required")
    out: dict[str, Any] = {"type": "text", "text": text}
    font = _obj(a.get("font", {}), f"{path}.font", {"family", "color", "opacity", "size", "weight", "lineHeight"})
    size = int(_num(font.get("size", 32), f"{path}.font.size", 4, 1000))
    out["size"] = size
    if "family" in font:
        out["font"] = _family(font["family"], f"{path}.font.family", any_family)
    colour = _colour(font.get("color", "#ffffff"), f"{path}.font.color")
    out["colour"] = _with_opacity(colour, _num(font.get("opacity", 1), f"{path}.font.opacity", 0, 1))
    if "weight" in font:
        w = font["weight"]
        weight = int(w) if isinstance(w, int | float) and not isinstance(w, bool) else {"normal": 400, "bold": 700}.get(
            str(w), -1)
        if weight < 0:
            raise _invalid(f"{path}.font.weight", "is a number 100..900, 'normal' or 'bold'")
        out["weight"] = "bold" if weight >= 600 else ("light" if weight <= 300 else "normal")
    if "lineHeight" in font:
        out["line_spacing"] = round((_num(font["lineHeight"], f"{path}.font.lineHeight", 0.5, 5) - 1.2) * size)
    if ("width" in a) != ("height" in a):
        raise _invalid(f"{path}.{'height' if 'width' in a else 'width'}", "a text box needs both width and height")
    if "width" in a:
        out["width"] = int(_num(a["width"], f"{path}.width", 1, 8192))
        out["height"] = int(_num(a["height"], f"{path}.height", 1, 8192))
    if "background" in a:
        bg = _obj(a["background"], f"{path}.background", {"color", "opacity"})
        colour = _with_opacity(_colour(bg.get("color", "#000000"), f"{path}.background.color"),
                               _num(bg.get("opacity", 1), f"{path}.background.opacity", 0, 1))
        if "width" in out:
            out["background"] = colour
        else:
            out.update(box=True, box_colour=colour)
    if "alignment" in a:
        al = _obj(a["alignment"], f"{path}.alignment", {"horizontal", "vertical"})
        if "width" not in out:
            raise _unsupported(f"{path}.alignment", "alignment without a text box (give width and height)")
        if "horizontal" in al:
            out["align"] = _choice(al["horizontal"], f"{path}.alignment.horizontal", ("left", "center", "right"))
        if "vertical" in al:
            out["valign"] = _choice(al["vertical"], f"{path}.alignment.vertical", ("top", "center", "bottom"))
    return out


# ---- answers
def render_id(job_id: str) -> str:
    """Shotstack's render id (a UUID, which its SDK checks) for a job id `job_<32 hex>`."""
    try:
        return str(uuid.UUID(hex=job_id.removeprefix("job_")))
    except ValueError:
        return job_id


def job_id(render: str) -> str:
    """The job id of a render id (a job id is accepted as it is)."""
    try:
        return f"job_{uuid.UUID(render).hex}"
    except ValueError:
        return render


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def status_of(status: str, stage: str | None, progress: float) -> str:
    """Shotstack's render status for a job's status, stage and progress."""
    if status in STATUS_TERMINAL:
        return STATUS_TERMINAL[status]
    if status == "queued":
        return "queued"
    stage = (stage or "").lower()
    if "fetch" in stage or "probing" in stage or (not stage and progress < 0.05):
        return "fetching"
    if progress >= 0.999 or "sav" in stage or "stor" in stage or "poster" in stage or "thumbnail" in stage:
        return "saving"
    return "rendering"


@dataclass(frozen=True)
class JobFacts:
    """What the answers need from a job (jobs/ fills it from its row)."""

    id: str
    owner: str
    status: str
    stage: str | None
    progress: float
    created_at: float
    updated_at: float
    started_at: float | None
    finished_at: float | None
    error: dict[str, Any] | None
    result: dict[str, Any] | None


def render_response(job: JobFacts, urls: Mapping[str, str], edit: Any | None) -> dict[str, Any]:
    """`GET /edit/{v}/render/{id}`'s body."""
    status = status_of(job.status, job.stage, job.progress)
    data = (job.result or {}).get("data") or {}
    body: dict[str, Any] = {"id": render_id(job.id), "owner": job.owner, "plan": SDK_PLAN, "status": status}
    if status == "failed":
        err = job.error or {}
        body["error"] = str(err.get("message") or err.get("code") or job.status)
    if "duration_s" in data:
        body["duration"] = float(data["duration_s"])
    if job.started_at is not None and job.finished_at is not None:
        body["renderTime"] = round((job.finished_at - job.started_at) * 1000, 1)
    if status == "done" and "render" in urls:
        body["url"] = urls["render"]
    body["poster"] = urls.get("poster") if status == "done" else None
    body["thumbnail"] = urls.get("thumbnail") if status == "done" else None
    if edit is not None:
        body["data"] = edit
    body["created"] = _iso(job.created_at)
    body["updated"] = _iso(job.updated_at)
    return {"success": True, "message": "OK", "response": body}


def queued_response(job: str) -> dict[str, Any]:
    """`POST /edit/{v}/render`'s 201 body."""
    return {"success": True, "message": "Created", "response": {"message": "Render Successfully Queued",
                                                                "id": render_id(job)}}


def error_response(message: str, code: str, path: str | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"error": message, "code": code}
    if path:
        response["field"] = path
    return {"success": False, "message": message, "response": response}


def callback_body(job: JobFacts, urls: Mapping[str, str]) -> dict[str, Any]:
    """What Shotstack POSTs to an edit's `callback` when the render is done or failed."""
    status = status_of(job.status, job.stage, job.progress)
    err = job.error or {}
    return {"type": "edit", "action": "render", "id": render_id(job.id), "owner": job.owner, "status": status,
            "url": urls.get("render") if status == "done" else None,
            "error": (str(err.get("message") or err.get("code") or job.status) if status == "failed" else None),
            "completed": _iso(job.finished_at)}
