"""No input can make ffmpeg or ffprobe read what it should not (issue 11, items 1 and 2).

Hostile inputs are files that are not one media file but point at others: HLS playlists (absolute paths,
file:// URLs, ../ traversal; also uploaded under a .mp4 name, ffmpeg sniffs content), ffconcat lists and
image-sequence patterns. Each names a canary (a red frame with a 1 kHz tone) outside the job's folder;
every operation that reads media must refuse each of them, and nothing any of them produces may show it.
Oversized inputs (a 7680x4320 video, an image over max_image_pixels) are refused by every operation too.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reelforge.config import Settings
from reelforge.errors import InputError, MediaError, ReelForgeError
from reelforge.media.ffmpeg import run_ffmpeg
from reelforge.media.inputs import guard_inputs, input_args
from reelforge.media.probe import probe
from reelforge.ops.context import OpContext
from reelforge.ops.registry import get_operation
from tests.conftest import ffmpeg

SRT = "1\n00:00:00,000 --> 00:00:01,000\nHello\n"
_FILES: dict[str, Path] = {}  # reference -> file, like uploaded file ids


def ref(path: Path) -> str:
    """An opaque reference to `path` (as an upload's file id is): messages may name it, never the path."""
    name = "file_" + hashlib.md5(str(path).encode()).hexdigest()
    _FILES[name] = path
    return name


def _resolve(reference: str, dest: Path) -> Path:
    if reference not in _FILES:
        raise InputError(f"Input file {reference!r} does not exist.", code="input_not_found")
    return _FILES[reference]  # in place, as uploaded: a ../ in a playlist would reach its neighbours


@pytest.fixture
def ctx(tmp_path: Path, settings: Settings) -> OpContext:
    return OpContext.for_test(tmp_path / "work", settings, resolver=_resolve)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Good inputs, the canary (outside every job folder) and the hostile files that point at it."""
    root = tmp_path_factory.mktemp("safety")
    secret, up = root / "secret", root / "uploads"
    secret.mkdir()
    up.mkdir()
    canary = secret / "canary.ts"
    ffmpeg("-f", "lavfi", "-i", "color=c=red:s=160x120:r=25:d=3", "-f", "lavfi", "-i", "sine=frequency=1000:d=3",
           "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(canary))
    ffmpeg("-f", "lavfi", "-i", "color=c=red:s=160x120", "-frames:v", "1", str(up / "frame001.png"))
    ffmpeg("-f", "lavfi", "-i", "color=c=red:s=160x120", "-frames:v", "1", str(up / "frame002.png"))
    good_video = up / "good.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=blue:s=160x120:r=25:d=1", "-f", "lavfi", "-i", "sine=frequency=440:d=1",
           "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest",
           str(good_video))
    good_audio = up / "good.wav"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:d=1", str(good_audio))
    # a literal file named like a pattern: image2 would read frame001.png, frame002.png (the red canary)
    ffmpeg("-f", "lavfi", "-i", "color=c=blue:s=160x120", "-frames:v", "1", str(up / "frame%03d.png"))

    def playlist(segment: str) -> str:
        return (f"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:3\n#EXT-X-MEDIA-SEQUENCE:0\n"
                f"#EXTINF:3.0,\n{segment}\n#EXT-X-ENDLIST\n")

    hostile = {
        "m3u8_abs": ("abs.m3u8", playlist(str(canary))),
        "m3u8_file_url": ("url.m3u8", playlist(f"file://{canary}")),
        "m3u8_traversal": ("trav.m3u8", playlist("../secret/canary.ts")),
        "m3u8_as_mp4": ("playlist.mp4", playlist(str(canary))),
        "ffconcat": ("list.ffconcat", f"ffconcat version 1.0\nfile '{canary}'\n"),
        "ffconcat_as_mp4": ("list.mp4", f"ffconcat version 1.0\nfile '{canary}'\n"),
    }
    out = {"canary": canary, "good_video": good_video, "good_audio": good_audio,
           "pattern": up / "frame%03d.png"}
    for key, (name, text) in hostile.items():
        (up / name).write_text(text)
        out[key] = up / name
    return out


HOSTILE = ["m3u8_abs", "m3u8_file_url", "m3u8_traversal", "m3u8_as_mp4", "ffconcat", "ffconcat_as_mp4", "pattern"]


def _render(asset: dict[str, Any], soundtrack: str | None = None) -> dict[str, Any]:
    timeline: dict[str, Any] = {"tracks": [{"clips": [{"asset": asset, "start": 0, "length": 1}]}]}
    if soundtrack:
        timeline["soundtrack"] = {"src": soundtrack}
    return {"timeline": timeline, "output": {"size": "160x120", "fps": 25}}


# every op that reads media, with the hostile (or oversized) file in each place it reads one
CASES: dict[str, tuple[str, Callable[[str, dict[str, Path]], dict[str, Any]]]] = {
    "probe": ("probe", lambda h, m: {"input": h}),
    "caption.input": ("caption", lambda h, m: {"input": h, "subtitles_text": SRT}),
    "loop.input": ("loop", lambda h, m: {"input": h, "duration_s": 1}),
    "loop.audio": ("loop", lambda h, m: {"input": ref(m["good_video"]), "audio": h}),
    "concat.inputs": ("concat", lambda h, m: {"inputs": [ref(m["good_video"]), h]}),
    "add_audio.video": ("add_audio", lambda h, m: {"video": h, "audio": ref(m["good_audio"])}),
    "add_audio.audio": ("add_audio", lambda h, m: {"video": ref(m["good_video"]), "audio": h}),
    "img2vid.images": ("img2vid", lambda h, m: {"images": [h], "size": "160x120", "duration_s": 1}),
    "overlay.input": ("overlay", lambda h, m: {"input": h}),
    "overlay.background": ("overlay", lambda h, m: {"input": ref(m["good_video"]), "output": "composite",
                                                    "background": h}),
    "mux_subtitles.input": ("mux_subtitles", lambda h, m: {"input": h, "subtitles_text": SRT}),
    "transcribe.input": ("transcribe", lambda h, m: {"input": h}),
    "align.audio": ("align", lambda h, m: {"audio": h, "script": "Hello there."}),
    "render.video": ("render", lambda h, m: _render({"type": "video", "src": h})),
    "render.image": ("render", lambda h, m: _render({"type": "image", "src": h})),
    "render.soundtrack": ("render", lambda h, m: _render({"type": "text", "text": "hi"}, soundtrack=h)),
    "build.background": ("build", lambda h, m: {"audio": ref(m["good_audio"]), "backgrounds": [h],
                                                "captions": "none", "size": "160x120", "cache": False}),
    "build.music": ("build", lambda h, m: {"audio": ref(m["good_audio"]), "backgrounds": [ref(m["good_video"])],
                                           "music": h, "captions": "none", "size": "160x120", "cache": False}),
    "build.audio": ("build", lambda h, m: {"audio": h, "backgrounds": [ref(m["good_video"])],
                                           "captions": "none", "size": "160x120", "cache": False}),
}
# ops that read a subtitle file: a hostile one is not subtitles
SUBTITLE_CASES: dict[str, tuple[str, Callable[[str, dict[str, Path]], dict[str, Any]]]] = {
    "caption.subtitles": ("caption", lambda h, m: {"input": ref(m["good_video"]), "subtitles": h}),
    "mux_subtitles.subtitles": ("mux_subtitles", lambda h, m: {"input": ref(m["good_video"]), "subtitles": h}),
    "subtitles.input": ("subtitles", lambda h, m: {"input": h}),
    "render.caption": ("render", lambda h, m: _render({"type": "caption", "src": h})),
}


def _run(op_name: str, params: dict[str, Any], ctx: OpContext) -> Any:
    op = get_operation(op_name)
    return op.run(op.params_model.model_validate(params), ctx)


def _assert_no_canary(outputs: dict[str, Path]) -> None:
    """Whatever an op produced holds no red frame and no canary-length stream."""
    for path in outputs.values():
        if path.suffix not in (".mp4", ".webm", ".mov", ".mkv", ".m4a", ".wav", ".mp3"):
            continue
        info = probe(path)
        assert abs(info.duration_s - 3.0) > 0.2, f"{path.name} has the canary's length"
        if info.video is not None:
            w, h = info.video.width, info.video.height
            raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24",
                                  "-"], capture_output=True, check=True).stdout
            frames = np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3).astype(int)
            red = (frames[..., 0] > 180) & (frames[..., 1] < 70) & (frames[..., 2] < 70)
            assert red.mean() < 0.2, f"{path.name} shows the canary's red frame"


@pytest.mark.parametrize("hostile", HOSTILE)
@pytest.mark.parametrize("case", sorted(CASES))
def test_every_op_refuses_inputs_that_point_at_other_files(case: str, hostile: str, media: dict[str, Path],
                                                           ctx: OpContext) -> None:
    op_name, make = CASES[case]
    with pytest.raises(MediaError) as err:
        _assert_no_canary(_run(op_name, make(ref(media[hostile]), media), ctx).outputs)
    assert err.value.code == "input_format_not_allowed", err.value.message
    assert str(media[hostile].parent) not in err.value.message and "/" not in err.value.message


@pytest.mark.parametrize("hostile", ["m3u8_abs", "m3u8_as_mp4", "ffconcat_as_mp4"])
@pytest.mark.parametrize("case", sorted(SUBTITLE_CASES))
def test_subtitle_readers_refuse_playlists_and_lists(case: str, hostile: str, media: dict[str, Path],
                                                     ctx: OpContext) -> None:
    op_name, make = SUBTITLE_CASES[case]
    with pytest.raises((MediaError, InputError)) as err:
        _assert_no_canary(_run(op_name, make(ref(media[hostile]), media), ctx).outputs)
    assert err.value.code in ("unsupported_subtitles", "bad_subtitles", "input_format_not_allowed",
                              "unsupported_words", "invalid_words"), err.value


@pytest.mark.parametrize("url", ["concat:/etc/passwd|/etc/hosts", "subfile,,start,0,end,0,,:/etc/hosts",
                                 "data:video/mp4;base64,AAAA", "file:///etc/hosts", "pipe:0"])
def test_protocol_urls_are_refused(url: str, ctx: OpContext) -> None:
    """Locally (tests, CLI) a reference is a path; these are none (over HTTP they are refused at submit)."""
    with pytest.raises(ReelForgeError) as err:
        _run("probe", {"input": url}, OpContext.for_test(ctx.workdir))
    assert err.value.code in ("input_not_found", "not_media", "input_format_not_allowed")


def test_probe_forces_the_found_demuxer_on_later_commands(media: dict[str, Path], tmp_path: Path) -> None:
    info = probe(media["good_video"])
    args = guard_inputs(["-ss", "0.5", "-i", str(media["good_video"]), "-f", "lavfi", "-i", "anullsrc",
                         "-i", str(tmp_path / "never-probed.mp4"), "out.mp4"])
    first = args[:args.index("-i") + 2]
    assert first == input_args(media["good_video"], "mov", "-ss", "0.5")
    assert first[first.index("-f") + 1] == info.demuxer == "mov" and "-protocol_whitelist" in first
    lavfi = args[len(first):args.index("anullsrc") + 1]
    assert lavfi[lavfi.index("-format_whitelist") + 1] == "lavfi"
    rest = args[args.index("anullsrc") + 1:]
    assert "-f" not in rest[:rest.index("-i")] and "hls" not in rest[rest.index("-format_whitelist") + 1]


def test_a_hand_built_command_still_cannot_read_a_playlist(media: dict[str, Path], tmp_path: Path,
                                                           ctx: OpContext) -> None:
    """run_ffmpeg guards inputs no probe has seen (e.g. a plugin's own command)."""
    with pytest.raises(MediaError) as err:
        run_ffmpeg(["-i", str(media["m3u8_as_mp4"]), "-c", "copy", str(tmp_path / "x.mp4")], ctx)
    assert err.value.code == "input_format_not_allowed"
    assert not (tmp_path / "x.mp4").exists() or (tmp_path / "x.mp4").stat().st_size == 0


def test_internal_concat_lists_name_only_their_own_folder(media: dict[str, Path], tmp_path: Path,
                                                          ctx: OpContext) -> None:
    from reelforge.media.concat_list import concat_copy_args, write_concat_list

    lst = write_concat_list([media["good_video"], media["good_video"]], tmp_path / "join.txt")
    text = lst.read_text()
    assert "/" not in text and text.count("file '") == 2
    out = tmp_path / "joined.mp4"
    run_ffmpeg(concat_copy_args(lst, out), ctx)
    assert abs(probe(out).duration_s - 2.0) < 0.2
    # a list the project did not write (absolute path to the canary) is refused in safe mode
    evil = tmp_path / "evil.txt"
    evil.write_text(f"ffconcat version 1.0\nfile '{media['canary']}'\n")
    with pytest.raises(ReelForgeError):
        run_ffmpeg(concat_copy_args(evil, tmp_path / "evil.mp4"), ctx)
    with pytest.raises(MediaError):
        run_ffmpeg(["-f", "concat", "-safe", "0", "-i", str(evil), str(tmp_path / "evil2.mp4")], ctx)


# ---------------------------------------------------------------- caps on every input
@pytest.fixture(scope="module")
def huge(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("huge")
    video = root / "8k.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=7680x4320:r=2:d=1", "-c:v", "libx264", "-preset", "ultrafast",
           "-pix_fmt", "yuv420p", str(video))
    y4m = root / "big.y4m"  # a header is all it takes to claim a size
    y4m.write_bytes(b"YUV4MPEG2 W16000 H16000 F25:1 Ip A1:1 C420jpeg\nFRAME\n" + bytes(64))
    fast = root / "fast.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=64x48:r=1000:d=0.05", "-c:v", "libx264", "-preset", "ultrafast",
           "-pix_fmt", "yuv420p", str(fast))
    return {"video": video, "y4m": y4m, "fast": fast}


@pytest.mark.parametrize("case", sorted(c for c in CASES if c != "probe" and not c.endswith(
    (".audio", ".soundtrack", ".music"))))
def test_every_op_refuses_a_7680x4320_video(case: str, huge: dict[str, Path], media: dict[str, Path],
                                            ctx: OpContext) -> None:
    op_name, make = CASES[case]
    with pytest.raises(MediaError) as err:
        _run(op_name, make(ref(huge["video"]), media), ctx)
    assert err.value.code in ("video_too_large", "image_too_large"), err.value.message
    assert "7680x4320" in err.value.message and "/" not in err.value.message


@pytest.mark.parametrize("case", ["caption.input", "loop.input", "overlay.input", "concat.inputs"])
def test_claimed_sizes_and_rates_are_capped_too(case: str, huge: dict[str, Path], media: dict[str, Path],
                                                ctx: OpContext) -> None:
    op_name, make = CASES[case]
    with pytest.raises(MediaError) as err:
        _run(op_name, make(ref(huge["y4m"]), media), ctx)
    assert err.value.code == "video_too_large"
    with pytest.raises(MediaError) as err:
        _run(op_name, make(ref(huge["fast"]), media), ctx)
    assert err.value.code == "frame_rate_too_high"


def test_images_are_held_to_max_image_pixels(media: dict[str, Path], tmp_path: Path, make_image: Any) -> None:
    small = Settings(data_dir=tmp_path / "d", max_image_pixels=10_000)
    ctx = OpContext.for_test(tmp_path / "w", small, resolver=_resolve)
    image = make_image(size="200x100")
    for case in ("img2vid.images", "render.image", "overlay.background"):
        op_name, make = CASES[case]
        with pytest.raises(MediaError) as err:
            _run(op_name, make(ref(image), media), ctx)
        assert err.value.code == "image_too_large", case


def test_audio_inputs_are_held_to_the_duration_and_stream_caps(media: dict[str, Path], tmp_path: Path,
                                                               ctx: OpContext) -> None:
    tight = OpContext.for_test(tmp_path / "w", Settings(data_dir=tmp_path / "d", max_media_duration_s=0.5,
                                                        max_input_streams=1), resolver=_resolve)
    for case in ("loop.audio", "add_audio.audio", "transcribe.input", "render.soundtrack", "build.audio"):
        op_name, make = CASES[case]
        with pytest.raises(ReelForgeError) as err:
            _run(op_name, make(ref(media["good_audio"]), media), tight)
        assert err.value.code in ("media_too_long", "duration_too_long", "too_many_streams"), (case, err.value)


def test_probe_describes_an_oversized_input_and_says_it_is_over_the_caps(huge: dict[str, Path],
                                                                        ctx: OpContext) -> None:
    result = _run("probe", {"input": ref(huge["video"])}, ctx)
    assert (result.data["streams"][0]["width"], result.data["streams"][0]["height"]) == (7680, 4320)
    assert result.data["limits"]["ok"] is False
    assert [p["code"] for p in result.data["limits"]["problems"]] == ["video_too_large"]
    saved = json.loads(result.outputs["probe"].read_text())
    assert saved["limits"]["ok"] is False


def test_errors_name_the_input_never_a_local_path(tmp_path: Path, ctx: OpContext) -> None:
    junk = tmp_path / "deep" / "er" / "junk.mp4"
    junk.parent.mkdir(parents=True)
    junk.write_bytes(b"\x00\x01 not a video at all" * 50)
    junk_ref = ref(junk)
    for op_name, params in (("probe", {"input": junk_ref}), ("caption", {"input": junk_ref, "subtitles_text": SRT}),
                            ("loop", {"input": junk_ref, "duration_s": 1})):
        with pytest.raises(MediaError) as err:
            _run(op_name, params, ctx)
        assert err.value.code == "not_media"
        assert junk_ref in err.value.message and "/" not in err.value.message, err.value.message
    shutil.rmtree(junk.parent)


def test_a_still_that_image2_claims_is_read_by_its_one_file_demuxer(tmp_path: Path) -> None:
    photo = tmp_path / "photo.jpg"  # ffmpeg's own JPEGs are claimed by image2 (by extension)
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=1600x1000", "-frames:v", "1", str(photo))
    info = probe(photo)
    assert info.demuxer == "jpeg_pipe" and info.is_image and (info.video.width, info.video.height) == (1600, 1000)
    args = guard_inputs(["-loop", "1", "-i", str(photo)])
    assert args[args.index("-f") + 1] == "jpeg_pipe"
