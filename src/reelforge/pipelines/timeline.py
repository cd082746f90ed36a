"""The `render` op's JSON timeline: tracks of clips, a soundtrack and an output, as pydantic models.

The JSON schema in docs/TIMELINE.md is generated from these models (`python -m
reelforge.pipelines.timeline`), so the models are the single source of truth. Tracks are listed top to
bottom: the first track is drawn over the others. Times are seconds on the output's clock.

Validation that needs only the JSON happens here (the API answers 422 with the path of the bad field);
limits that need probed media (a clip's "auto" length) are checked again at run time.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from reelforge.captions import CaptionStyle
from reelforge.errors import InvalidParams
from reelforge.media.codecs import Quality
from reelforge.media.frame_size import parse_frame_size
from reelforge.refs import MediaRef
from reelforge.runtime import Params

MAX_TIMELINE_S = 3 * 3600.0  # longest timeline accepted at submit time (the worker's setting also applies)
MAX_CLIPS = 100  # every media clip is an ffmpeg input; beyond this, split the work into a pipeline
MAX_TEXT_CHARS = 5000
COLOUR_RE = re.compile(r"^(#[0-9A-Fa-f]{6}([0-9A-Fa-f]{2})?|[a-zA-Z]{3,20})$")
FONT_RE = re.compile(r"^[A-Za-z0-9 ._-]{1,64}$")

Position = Literal["center", "top", "bottom", "left", "right", "topLeft", "topRight", "bottomLeft",
                   "bottomRight"]
Fit = Literal["cover", "contain", "crop", "none", "stretch"]
Effect = Literal["zoomIn", "zoomOut", "slideLeft", "slideRight", "slideUp", "slideDown"]
Speed = Literal["slow", "normal", "fast"]
TransitionKind = Literal["fade", "wipeLeft", "wipeRight", "wipeUp", "wipeDown", "slideLeft", "slideRight",
                         "slideUp", "slideDown", "smoothLeft", "smoothRight", "smoothUp", "smoothDown",
                         "driftLeft", "driftRight", "driftUp", "driftDown", "zoom"]
Look = Literal["blur", "boost", "contrast", "darken", "greyscale", "lighten", "muted", "negative"]
Seconds = Annotated[float, Field(ge=0, le=MAX_TIMELINE_S, allow_inf_nan=False)]


def _colour(value: str) -> str:
    if not COLOUR_RE.match(value):
        raise ValueError("a colour is #RRGGBB, #RRGGBBAA or a colour name like 'white'")
    return value


def _font(value: str) -> str:
    if not FONT_RE.match(value):
        raise ValueError("a font is a family name of letters, digits, spaces, '.', '_' or '-'")
    return value


Colour = Annotated[str, AfterValidator(_colour)]
FontName = Annotated[str, AfterValidator(_font)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---- assets
class Crop(_Model):
    """Fractions of the source cut away from each side before the clip is fitted."""

    top: float = Field(default=0.0, ge=0, le=1)
    bottom: float = Field(default=0.0, ge=0, le=1)
    left: float = Field(default=0.0, ge=0, le=1)
    right: float = Field(default=0.0, ge=0, le=1)

    @model_validator(mode="after")
    def _something_left(self) -> Crop:
        if self.top + self.bottom > 0.98 or self.left + self.right > 0.98:
            raise ValueError("a crop must leave at least 2% of the source in each direction")
        return self


class VideoAsset(_Model):
    type: Literal["video"]
    src: MediaRef
    trim: Seconds = Field(default=0.0, description="Seconds cut from the start of the source.")
    volume: float = Field(default=1.0, ge=0, le=4, description="Volume of the video's own sound (0: mute).")
    crop: Crop | None = None
    audio_fade_in: float = Field(default=0.0, ge=0, le=60, description="Fade the sound (only) in, s.")
    audio_fade_out: float = Field(default=0.0, ge=0, le=60, description="Fade the sound (only) out, s.")


class ImageAsset(_Model):
    type: Literal["image"]
    src: MediaRef
    crop: Crop | None = None


class LumaAsset(_Model):
    """A luma matte: not drawn itself; its brightness is the opacity of the clips of the same track that it
    overlaps in time (white shows them, black hides them). Outside its time the clips are unmasked."""

    type: Literal["luma"]
    src: MediaRef
    trim: Seconds = 0.0


class HtmlAsset(_Model):
    """HTML + CSS rendered once by a headless browser into a transparent picture of width x height."""

    type: Literal["html"]
    html: str = Field(min_length=1, max_length=100_000)
    css: str = Field(default="", max_length=100_000)
    width: int | None = Field(default=None, ge=1, le=4096, description="Default: the output's width.")
    height: int | None = Field(default=None, ge=1, le=4096, description="Default: the output's height.")
    background: Colour | None = Field(default=None, description="Default: transparent.")
    position: Position = Field(default="center", description="Where the content sits inside its box.")


class AudioAsset(_Model):
    type: Literal["audio"]
    src: MediaRef
    trim: Seconds = 0.0
    volume: float = Field(default=1.0, ge=0, le=4)


class TextAsset(_Model):
    type: Literal["text"]
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS,
                      description="Shown literally (newlines start new lines); never interpreted.")
    font: FontName = Field(default="DejaVu Sans", description="Font family name (fontconfig).")
    size: int = Field(default=48, ge=4, le=1000, description="Font size in output pixels.")
    colour: Colour = Field(default="white", description="#RRGGBB, #RRGGBBAA or a colour name.")
    box: bool = Field(default=False, description="Draw a box behind the text.")
    box_colour: Colour = Field(default="#000000A0")
    box_padding: int = Field(default=12, ge=0, le=200)
    width: int | None = Field(default=None, ge=1, le=8192, description="A box of this size (with height) "
                              "placed like a picture, the text aligned inside it; default: the whole frame.")
    height: int | None = Field(default=None, ge=1, le=8192)
    background: Colour | None = Field(default=None, description="Box mode: the box's colour (default clear).")
    align: Literal["left", "center", "right"] = Field(default="center", description="Box mode: horizontal.")
    valign: Literal["top", "center", "bottom"] = Field(default="center", description="Box mode: vertical.")
    line_spacing: int = Field(default=0, ge=-200, le=1000, description="Extra pixels between lines.")
    weight: Literal["normal", "bold", "light"] = "normal"

    @model_validator(mode="after")
    def _box_mode(self) -> TextAsset:
        if (self.width is None) != (self.height is None):
            raise ValueError("give a text box both width and height, or neither")
        return self

    @field_validator("text")
    @classmethod
    def _check_text(cls, v: str) -> str:
        if "\x00" in v or not v.strip():
            raise ValueError("text must have visible characters and no NUL")
        return v


class Word(_Model):
    text: str = Field(min_length=1, max_length=200)
    start: Seconds
    end: Seconds

    @model_validator(mode="after")
    def _ordered(self) -> Word:
        if self.end < self.start:
            raise ValueError("a word's end must not be before its start")
        return self


class CaptionAsset(_Model):
    type: Literal["caption"]
    src: MediaRef | None = Field(default=None, description="An SRT, VTT or ASS file.")
    words: list[Word] | None = Field(default=None, max_length=100_000,
                                     description="Word timings (seconds from the clip's start).")
    font: FontName = "DejaVu Sans"
    size: int = Field(default=0, ge=0, le=400, description="Font size in output pixels; 0: 1/18 of the height.")
    colour: Colour = "white"
    outline_colour: Colour = "black"
    position: Literal["bottom", "center", "top"] = "bottom"
    keep_style: bool = Field(default=False, description="Keep an ASS file's own styles instead of ours.")
    style: CaptionStyle | None = Field(default=None, description="The caption style the other caption ops take "
                                       "(sizes in output pixels; with words: grouping and word styles too). "
                                       "Replaces font, size, colour, outline_colour and position.")

    @model_validator(mode="after")
    def _one_source(self) -> CaptionAsset:
        if (self.src is None) == (self.words is None):
            raise ValueError("a caption asset needs exactly one of 'src' (SRT/VTT/ASS file) or 'words'")
        flat = self.model_fields_set & {"font", "size", "colour", "outline_colour", "position"}
        if self.style is not None and flat:
            raise ValueError(f"give the look either in style or as {', '.join(sorted(flat))}, not both")
        return self


Asset = Annotated[VideoAsset | ImageAsset | AudioAsset | TextAsset | CaptionAsset | LumaAsset | HtmlAsset,
                  Field(discriminator="type")]


# ---- clips
class Offset(_Model):
    x: float = Field(default=0.0, ge=-10, le=10, description="Fraction of the output width, + is right.")
    y: float = Field(default=0.0, ge=-10, le=10, description="Fraction of the output height, + is down.")


class Transition(_Model):
    in_: TransitionKind | None = Field(default=None, alias="in")
    out: TransitionKind | None = None
    duration: float = Field(default=0.5, gt=0, le=10)
    in_duration: float | None = Field(default=None, gt=0, le=10, description="Default: duration.")
    out_duration: float | None = Field(default=None, gt=0, le=10, description="Default: duration.")

    @property
    def in_s(self) -> float:
        return self.in_duration or self.duration

    @property
    def out_s(self) -> float:
        return self.out_duration or self.duration

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Clip(_Model):
    asset: Asset
    start: Seconds = Field(description="When the clip appears on the output's clock.")
    length: Annotated[float, Field(gt=0, le=MAX_TIMELINE_S, allow_inf_nan=False)] | None = Field(
        default=None, description="Seconds on screen; omitted for video/audio: the rest of the source.")
    fit: Fit = Field(default="cover", description="cover: fill the frame keeping aspect (overflow hidden); "
                                                  "contain: fit inside; crop: fill then crop to the frame; "
                                                  "stretch: exactly the frame, aspect not kept; none: source "
                                                  "pixels.")
    scale: float = Field(default=1.0, gt=0, le=10, description="Multiplies the fitted size.")
    position: Position = "center"
    offset: Offset = Field(default_factory=Offset)
    opacity: float = Field(default=1.0, ge=0, le=1)
    fade_in: float = Field(default=0.0, ge=0, le=60, description="Fade from transparent (or silent), s.")
    fade_out: float = Field(default=0.0, ge=0, le=60)
    effect: Effect | None = Field(default=None, description="Motion over the clip's length.")
    effect_speed: Speed = Field(default="normal", description="slow: half the motion, fast: double.")
    filter: Look | None = Field(default=None, description="A colour or blur filter on the clip's picture.")
    rotate: float = Field(default=0.0, ge=-360, le=360, description="Degrees, + is clockwise (the whole clip, "
                                                                   "transitions included).")
    flip_h: bool = Field(default=False, description="Mirror the picture left to right.")
    flip_v: bool = Field(default=False, description="Mirror the picture top to bottom.")
    transition: Transition | None = None

    @model_validator(mode="after")
    def _check(self) -> Clip:
        kind = self.asset.type
        if self.length is None and kind not in ("video", "audio", "luma"):
            raise ValueError(f"a {kind} clip needs a 'length'")
        if self.length is not None:
            if self.fade_in + self.fade_out > self.length + 1e-9:
                raise ValueError("fade_in + fade_out must not exceed the clip's length")
            if self.transition is not None:
                tr = self.transition
                used = (tr.in_s if tr.in_ is not None else 0.0) + (tr.out_s if tr.out is not None else 0.0)
                if used > self.length + 1e-9:
                    raise ValueError("the clip is too short for its transitions")
        if kind in ("audio", "caption", "luma") and (self.effect or self.transition or self.filter or self.rotate
                                                     or self.flip_h or self.flip_v):
            raise ValueError(f"a {kind} clip cannot have an effect, a filter, a transform or a transition")
        return self

    @property
    def end(self) -> float | None:
        return None if self.length is None else self.start + self.length


class Track(_Model):
    clips: list[Clip] = Field(min_length=1, max_length=MAX_CLIPS)


class Soundtrack(_Model):
    src: MediaRef
    volume: float = Field(default=1.0, ge=0, le=4)
    fade_in: float = Field(default=0.0, ge=0, le=60)
    fade_out: float = Field(default=0.0, ge=0, le=60)
    loop: bool = Field(default=True, description="Repeat a short soundtrack to the timeline's length.")


class Timeline(_Model):
    tracks: list[Track] = Field(min_length=1, max_length=20,
                                description="First track on top; each track's clips may not overlap.")
    soundtrack: Soundtrack | None = None
    background: Colour = Field(default="#000000", description="Colour behind every track.")
    duration: Annotated[float, Field(gt=0, le=MAX_TIMELINE_S, allow_inf_nan=False)] | None = Field(
        default=None, description="Output length; default: the end of the last clip.")
    fonts: list[MediaRef] = Field(default_factory=list, max_length=20,
                                  description="Font files (TTF/OTF/WOFF); text assets and html CSS name them by "
                                              "their family.")


OutputFormat = Literal["mp4", "webm", "gif", "mp3", "jpg", "png"]


class OutputRange(_Model):
    start: Seconds = 0.0
    length: Annotated[float, Field(gt=0, le=MAX_TIMELINE_S, allow_inf_nan=False)] | None = Field(
        default=None, description="Default: to the end of the timeline.")


class Thumbnail(_Model):
    at: Seconds = 0.0
    scale: float = Field(default=0.25, gt=0, le=1, description="Of the output size.")


class Output(_Model):
    format: OutputFormat = "mp4"
    size: str = Field(default="1280x720", description="WIDTHxHEIGHT or a preset: 1080p, 720p, "
                                                     "vertical_1080, square_1080, 9:16, 1:1, ...")
    fps: float = Field(default=25, ge=1, le=60)
    quality: Quality = "standard"
    poster_at: Seconds | None = Field(default=None, description="jpg/png: the frame at this time "
                                                                "(default: the middle).")
    range: OutputRange | None = Field(default=None, description="Render only this part of the timeline.")
    scale_to: str | None = Field(default=None, description="Lay out at `size`, then scale the result to "
                                                           "this WIDTHxHEIGHT (or preset).")
    mute: bool = Field(default=False, description="No sound in the output.")
    repeat: bool = Field(default=True, description="gif: loop forever (false: play once).")
    poster: Seconds | None = Field(default=None, description="Also write a `poster` jpg of the frame at this "
                                                             "time (output size).")
    thumbnail: Thumbnail | None = Field(default=None, description="Also write a small `thumbnail` jpg.")

    @field_validator("scale_to")
    @classmethod
    def _check_scale_to(cls, v: str | None) -> str | None:
        if v is not None:
            parse_frame_size(v)
        return v

    @field_validator("size")
    @classmethod
    def _check_size(cls, v: str) -> str:
        parse_frame_size(v)
        return v

    @property
    def frame_size(self) -> tuple[int, int]:
        return parse_frame_size(self.size)

    @property
    def final_size(self) -> tuple[int, int]:
        return parse_frame_size(self.scale_to) if self.scale_to else self.frame_size


class ChunkSpec(_Model):
    """Set by the service on the child jobs of a chunked render (docs/CHUNKED.md), not by clients: render
    only output frames start_frame..end_frame (exclusive; none: to the end), picture only, keyframe every
    `gop` frames. `sound`: instead, the sound of the whole length, mixed and encoded once (a render's last
    child: it runs beside the picture chunks, so the join only copies)."""

    index: int = Field(ge=0, le=255)
    start_frame: int = Field(ge=0)
    end_frame: int | None = Field(default=None, ge=1)
    gop: int = Field(ge=1, le=1200)
    sound: bool = False


class RenderParams(Params):
    timeline: Timeline
    output: Output = Field(default_factory=Output)
    chunks: int | None = Field(default=None, ge=1, le=64, description=(
        "mp4 renders longer than the chunk threshold (60 s by default): how many time chunks to render as "
        "parallel child jobs (1: never split). Default: as many as the workers for the job's queue."))
    chunk: ChunkSpec | None = Field(default=None, description="Internal: set on a chunked render's child jobs.")

    @model_validator(mode="after")
    def _check_lengths(self) -> RenderParams:
        # Raised as InvalidParams (not ValueError) so the answer carries the exact path of the clip.
        count = 0
        for ti, track in enumerate(self.timeline.tracks):
            last_end, last_i = 0.0, -1
            ordered = sorted(enumerate(track.clips), key=lambda c: c[1].start)
            for ci, clip in ordered:
                count += 1
                path = f"timeline.tracks[{ti}].clips[{ci}]"
                if count > MAX_CLIPS:
                    raise _invalid(f"a timeline may have at most {MAX_CLIPS} clips", path, "too_many_clips")
                if clip.end is not None and clip.end > MAX_TIMELINE_S:
                    raise _invalid(f"the clip ends at {clip.end:.0f} s, after the {MAX_TIMELINE_S:.0f} s "
                                   "limit of a timeline", f"{path}.length", "timeline_too_long")
                if clip.asset.type == "luma":  # a matte lies over the clips it masks
                    continue
                if last_i >= 0 and clip.start < last_end - 1e-6:
                    raise _invalid(f"the clip starts at {clip.start} s, before clips[{last_i}] of the same "
                                   f"track ends ({last_end} s); put overlapping clips on separate tracks",
                                   f"{path}.start", "overlapping_clips")
                last_end = clip.end if clip.end is not None else clip.start  # auto length: checked at run time
                last_i = ci
        return self


def _invalid(message: str, path: str, code: str) -> InvalidParams:
    return InvalidParams(f"{path}: {message}", code=code, details={"path": path})


def timeline_schema() -> dict[str, Any]:
    """The JSON schema of the render op's params (published in docs/TIMELINE.md)."""
    return RenderParams.model_json_schema(by_alias=True)


SCHEMA_MARKER = "<!-- schema: generated by `python -m reelforge.pipelines.timeline --docs docs/TIMELINE.md` -->"


def write_docs_schema(path: Path) -> None:
    """Replace everything after the schema marker in the timeline docs with the current schema."""
    text = path.read_text(encoding="utf-8")
    head = text.split(SCHEMA_MARKER, 1)[0]
    path.write_text(f"{head}{SCHEMA_MARKER}\n\n```json\n{json.dumps(timeline_schema(), indent=2)}\n```\n",
                    encoding="utf-8")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--docs":
        write_docs_schema(Path(sys.argv[2]))
    else:
        print(json.dumps(timeline_schema(), indent=2))
