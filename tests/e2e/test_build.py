"""The `build` op end to end: tts narration, looped background, talking-head circle, ducked music, captions.

Media is made here: a dark background clip, a talking head from scikit-image's astronaut, and a 50 Hz
"music" tone (below the voice's pitch, so a low-pass isolates the music from the speech in the mix).
"""

from __future__ import annotations

import json
import subprocess
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reelforge.config import Settings
from reelforge.media.probe import probe
from reelforge.ops.context import OpContext, OpResult
from reelforge.ops.registry import get_operation
from tests.conftest import ffmpeg

W, H, FPS = 480, 270, 25
BG = (0x20, 0x30, 0x50)
SCRIPT = ("ReelForge builds videos from a script. "
          "The narrator reads every sentence aloud. "
          "Captions follow each spoken word. "
          "A talking head sits in the corner. "
          "Music plays softly under the voice. "
          "Everything is encoded only once.")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from skimage import data

    d = tmp_path_factory.mktemp("build_media")
    bg = d / "background.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=0x203050:s=320x180:r=25:d=3", "-c:v", "libx264", "-preset",
           "ultrafast", "-pix_fmt", "yuv420p", str(bg))
    face = d / "astronaut.png"
    import cv2

    cv2.imwrite(str(face), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    head = d / "head.mp4"
    ffmpeg("-loop", "1", "-framerate", "15", "-t", "2", "-i", str(face), "-vf", "scale=240:240",
           "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(head))
    music = d / "music.wav"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=50:duration=4:sample_rate=48000", str(music))
    return {"background": bg, "head": head, "music": music}


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    # one data dir for the module: the second build reuses the first one's cached narration
    return Settings(data_dir=tmp_path_factory.mktemp("data"), whisper_model="packaged:tiny.en", workers=2)


def build(settings: Settings, workdir: Path, body: dict[str, Any]) -> OpResult:
    op = get_operation("build")
    ctx = OpContext.for_test(workdir, settings)
    return op.run(op.params_model.model_validate(body), ctx)


def frame_at(path: Path, t: float) -> np.ndarray:
    raw = subprocess.run(["ffmpeg", "-v", "error", "-ss", f"{t:.3f}", "-i", str(path), "-frames:v", "1",
                          "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(H, W, 3).astype(int)


def music_band(path: Path, rate: int = 4000) -> np.ndarray:
    """The mix low-passed well under the voice's pitch: what is left is the 50 Hz music."""
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-af",
                          "pan=mono|c0=c0,lowpass=f=65,lowpass=f=65,lowpass=f=65", "-ar", str(rate),
                          "-f", "f32le", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.float32)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)))) if x.size else 0.0


def caption_pixels(img: np.ndarray) -> int:
    """Bright pixels (white/yellow text) in the lower third, left of the head corner."""
    band = img[H * 2 // 3:, : W * 3 // 4]
    return int((band.max(axis=2) > 200).sum())


def test_build_narrated_video_with_head_music_and_burned_captions(
        media: dict[str, Path], settings: Settings, tmp_path: Path) -> None:
    body = {
        "script": SCRIPT,
        "voice": {"engine": "piper", "sentence_pause_s": 1.5},
        "backgrounds": [str(media["background"])],
        "talking_head": str(media["head"]),
        "head": {"corner": "top_right", "size": 0.4, "border_width": 6},
        "music": str(media["music"]),
        "music_options": {"volume": 0.5, "fade_in": 0, "fade_out": 0},
        "captions": "burn",
        "caption_style": {"style": "karaoke", "font_size": 22, "margin_v": 20, "max_gap_s": 0.8},
        "size": f"{W}x{H}", "fps": FPS, "quality": "draft",
        "keep_intermediates": True,
    }
    result = build(settings, tmp_path / "job1", body)
    video = result.outputs["video"]
    assert video.suffix == ".mp4"
    assert result.outputs["srt"].parent == video.parent and result.outputs["ass"].parent == video.parent

    # duration: the narration's, within one frame; audio present
    narration = probe(result.outputs["narration.audio"])
    info = probe(video)
    assert info.video is not None and info.audio is not None
    assert (info.video.width, info.video.height) == (W, H)
    assert abs((info.video.duration_s or 0) - narration.duration_s) <= 1 / FPS + 1e-3
    assert abs(info.duration_s - narration.duration_s) <= 1 / FPS + 1e-3

    words = json.loads(result.outputs["narration.words"].read_text())["words"]
    assert len(words) >= 25
    # the words are the script's, so sentences split at full stops
    sentences: list[list[dict[str, Any]]] = [[]]
    for word in words:
        sentences[-1].append(word)
        if word["text"].endswith("."):
            sentences.append([])
    sentences = [s for s in sentences if s]
    assert len(sentences) == 6
    # pauses long enough for the music to come back up (word ends can stretch into a pause)
    pauses = [(a[-1]["end"], b[0]["start"]) for a, b in pairwise(sentences)
              if b[0]["start"] - a[-1]["end"] >= 1.0]
    assert len(pauses) >= 2

    # captions: visible while a sentence is spoken, gone in the pauses
    for sentence in sentences:
        speaking = (sentence[0]["start"] + sentence[-1]["end"]) / 2
        assert caption_pixels(frame_at(video, speaking)) > 100, speaking
    for a, b in pauses:
        assert caption_pixels(frame_at(video, (a + b) / 2)) < 10, (a, b)

    # overlay: the circle with its ring in the top-right corner; the top-left stays background
    frame = frame_at(video, 1.0)
    head_h = round(H * 0.4)
    corner = frame[8:8 + head_h, W - 8 - head_h:W - 8]
    assert np.abs(corner - np.array(BG)).mean() > 40
    assert np.abs(frame[8:60, 8:60] - np.array(BG)).mean() < 8

    # music ducked: quieter under speech than in the pauses
    band, rate = music_band(video), 4000
    under = [rms(band[int((s[0]["start"] + 0.3) * rate):int((s[-1]["end"] - 0.3) * rate)]) for s in sentences]
    free = [rms(band[int(((a + b) / 2) * rate):int((b - 0.1) * rate)]) for a, b in pauses]
    print("music rms under speech", under, "in pauses", free)
    assert np.median(free) > 0.01  # the music is really there in the pauses
    assert np.median(under) < np.median(free) * 0.5  # at least 6 dB lower under speech

    # the steps ran, none from cache on this first build
    assert {"narration", "background", "head", "captions", "compose"} <= set(result.data["steps"])
    assert result.data["video"] == "libx264"


def test_soft_captions_copy_the_background_and_reuse_the_cached_narration(
        media: dict[str, Path], settings: Settings, tmp_path: Path) -> None:
    body = {
        "script": SCRIPT,
        "voice": {"engine": "piper", "sentence_pause_s": 1.5},
        "backgrounds": [str(media["background"])],
        "captions": "soft",
        "size": f"{W}x{H}", "fps": FPS, "quality": "draft",
    }
    first = build(settings, tmp_path / "a", body)
    info = probe(first.outputs["video"])
    assert [s.kind for s in info.streams] == ["video", "audio", "subtitle"]
    assert first.data["video"] == "copy"  # nothing drawn: the looped background is stream-copied
    assert info.audio is not None and info.audio.channels == 1  # mono narration, no music: mono AAC
    # the background cycle repeats by stream copy, cut on the narration's last frame
    video = info.video
    assert video is not None and video.frames is not None
    assert abs(video.frames - first.data["duration_s"] * FPS) <= 1
    # the narration's AAC, made by the tts step beside the alignment and copied: as long as the picture
    assert info.audio.codec == "aac" and info.audio.sample_rate == 48000
    assert info.audio.duration_s is not None and video.duration_s is not None
    assert abs(info.audio.duration_s - video.duration_s) <= 1 / FPS
    again = build(settings, tmp_path / "b", body)
    assert all(step["cached"] for step in again.data["steps"].values())
    assert again.outputs["video"].read_bytes() == first.outputs["video"].read_bytes()


def test_bad_build_params_are_rejected_at_submit_time() -> None:
    from reelforge.errors import InvalidParams

    model = get_operation("build").params_model
    with pytest.raises(ValueError):
        model.model_validate({"script": "Hi.", "backgrounds": ["https://x/a.mp4"], "images": ["https://x/b.png"]})
    with pytest.raises(ValueError):
        model.model_validate({"backgrounds": ["https://x/a.mp4"]})
    with pytest.raises(InvalidParams) as info:
        model.model_validate({"script": "Hi.", "backgrounds": ["https://x/a.mp4"],
                              "voice": {"engine": "piper", "voice": "no-such-voice"}})
    assert info.value.details["path"].startswith("voice")


def test_compose_reads_a_decoded_loop_period_with_the_same_picture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     settings: Settings) -> None:
    """A short background repeated under a long narration is decoded once to raw frames and read from
    there; the encoded picture equals the one made by decoding the loop as it plays."""
    from reelforge.ops import build as op_build

    cycle = tmp_path / "cycle.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=320x180:r=25:d=1.2", "-c:v", "libx264", "-preset", "ultrafast",
           "-bf", "0", "-pix_fmt", "yuv420p", str(cycle))
    voice = tmp_path / "voice.wav"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=300:duration=5:sample_rate=48000", str(voice))
    ass = tmp_path / "c.ass"
    ass.write_text("[Script Info]\nPlayResX: 320\nPlayResY: 180\n\n[V4+ Styles]\nFormat: Name, Fontname, Fontsize, "
                   "PrimaryColour, Alignment\nStyle: Default,DejaVu Sans,20,&H00FFFFFF,2\n\n[Events]\nFormat: Layer, "
                   "Start, End, Style, Text\nDialogue: 0,0:00:01.00,0:00:03.00,Default,Hello\n")
    compose = op_build.lookup_op("build.compose")
    body = {"background": str(cycle), "narration": str(voice), "ass": str(ass), "captions": "burn",
            "size": "320x180", "fps": 25, "quality": "high"}
    raw = compose.run(compose.params_model.model_validate(body), OpContext.for_test(tmp_path / "raw", settings))
    from reelforge.ops import build_compose

    monkeypatch.setattr(build_compose, "RAW_LOOP_MAX_BYTES", 0)
    decoded = compose.run(compose.params_model.model_validate(body), OpContext.for_test(tmp_path / "dec", settings))
    assert raw.data["decoded_loop"] and not decoded.data["decoded_loop"]
    for result in (raw, decoded):
        video = probe(result.outputs["video"]).video
        assert video is not None and video.frames == 125  # 5 s at 25 fps: the 30-frame period repeated
    psnr = subprocess.run(["ffmpeg", "-i", str(raw.outputs["video"]), "-i", str(decoded.outputs["video"]),
                           "-lavfi", "psnr", "-f", "null", "-"], capture_output=True, text=True).stderr
    average = float(psnr.rsplit("average:", 1)[1].split()[0].replace("inf", "99"))
    assert average > 45, psnr[-300:]


def _psnr(a: Path, b: Path, frames: int) -> float:
    out = subprocess.run(["ffmpeg", "-i", str(a), "-i", str(b), "-lavfi", f"[0]trim=end_frame={frames}[x];"
                          f"[1]trim=end_frame={frames}[y];[x][y]psnr", "-f", "null", "-"],
                         capture_output=True, text=True).stderr
    return float(out.rsplit("average:", 1)[1].split()[0].replace("inf", "99"))


def test_a_loop_period_the_compose_encodes_again_is_a_near_lossless_intermediate(tmp_path: Path,
                                                                                  settings: Settings) -> None:
    from reelforge.ops import build as op_build

    clip = tmp_path / "clip.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=320x180:r=25:d=2", "-vf", "noise=alls=8:allf=t", "-c:v", "libx264",
           "-qp", "0", "-pix_fmt", "yuv420p", str(clip))  # lossless: the source the periods are compared with
    cycle = op_build.lookup_op("build.cycle")
    body = {"input": str(clip), "mode": "pingpong", "size": "320x180", "fps": 25, "quality": "standard"}
    final = cycle.run(cycle.params_model.model_validate(body), OpContext.for_test(tmp_path / "a", settings))
    inter = cycle.run(cycle.params_model.model_validate({**body, "reencoded": True}),
                      OpContext.for_test(tmp_path / "b", settings))
    for result in (final, inter):
        video = probe(result.outputs["video"]).video
        assert video is not None and video.frames == 50 + 48 and video.b_frames == 0
    # x264 writes its settings into the stream: the intermediate is its fastest preset at a low CRF
    assert b"crf=20.0" in inter.outputs["video"].read_bytes() and b"cabac=0" in inter.outputs["video"].read_bytes()
    assert b"crf=21.0" in final.outputs["video"].read_bytes()
    # and it is closer to the source than the quality encode that is stream-copied into a soft build
    near, lossy = _psnr(inter.outputs["video"], clip, 50), _psnr(final.outputs["video"], clip, 50)
    assert near > lossy + 2, (near, lossy)  # measured 39.1 vs 35.4 dB on this heavy grain


def test_an_images_build_under_burned_captions_makes_its_ken_burns_as_an_intermediate(
        media: dict[str, Path], settings: Settings, tmp_path: Path) -> None:
    """Images + burned captions: the Ken Burns background is decoded and encoded again by the compose, so
    it is made as the fast near-lossless intermediate; with soft captions it is the output's picture,
    stream-copied, so it is the quality encode."""
    still = tmp_path / "still.png"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=480x270", "-frames:v", "1", str(still))
    body = {"script": "Images move slowly. Words appear on them.", "voice": {"engine": "espeak"},
            "images": [str(media["head"].with_name("astronaut.png")), str(still)],
            "captions": "burn", "caption_style": {"style": "karaoke", "font_size": 22, "margin_v": 20},
            "size": f"{W}x{H}", "fps": FPS, "quality": "standard", "keep_intermediates": True, "cache": False}
    burned = build(settings, tmp_path / "burn", body)
    background = burned.outputs["background.video"].read_bytes()
    assert b"crf=20.0" in background and b"cabac=0" in background  # x264 ultrafast, near-lossless
    narration = probe(burned.outputs["narration.audio"]).duration_s
    info = probe(burned.outputs["video"])
    assert info.video is not None and abs((info.video.duration_s or 0) - narration) <= 1 / FPS + 1e-3
    assert burned.data["video"] == "libx264"
    words = json.loads(burned.outputs["narration.words"].read_text())["words"]
    first = words[0]
    assert caption_pixels(frame_at(burned.outputs["video"], (first["start"] + first["end"]) / 2)) > 100
    assert np.abs(frame_at(burned.outputs["video"], 0.1) - frame_at(burned.outputs["video"], 1.0)).mean() > 1

    soft = build(settings, tmp_path / "soft", {**body, "captions": "soft"})
    assert b"crf=21.0" in soft.outputs["background.video"].read_bytes()  # the output's own picture
    assert soft.data["video"] == "copy"


def test_a_background_longer_than_the_script_can_take_is_encoded_only_that_far(tmp_path: Path,
                                                                               settings: Settings) -> None:
    from reelforge.ops import build as op_build

    clip = tmp_path / "long.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=640x360:r=25:d=4", "-c:v", "libx264", "-preset", "ultrafast",
           "-pix_fmt", "yuv420p", str(clip))  # not the output size: it must be encoded
    cycle = op_build.lookup_op("build.cycle")
    body = {"input": str(clip), "mode": "pingpong", "size": "320x180", "fps": 25, "quality": "draft"}
    limited = cycle.run(cycle.params_model.model_validate({**body, "longest_s": 1.0}),
                        OpContext.for_test(tmp_path / "a", settings))
    assert limited.data["mode"] == "forward" and limited.data["limited_to_s"] == 1.0
    video = probe(limited.outputs["video"]).video
    assert video is not None and video.frames == 25  # 1 s forward: no reversed leg, no more of the clip
    whole = cycle.run(cycle.params_model.model_validate({**body, "longest_s": 60.0}),
                      OpContext.for_test(tmp_path / "b", settings))
    video = probe(whole.outputs["video"]).video
    assert whole.data["mode"] == "pingpong" and video is not None and video.frames == 100 + 98
    # the bound holds for the real narration of this module's build script
    bound = op_build.narration_upper_bound_s(SCRIPT, op_build.VoiceOptions(sentence_pause_s=1.5))
    speech = get_operation("tts")
    spoken = speech.run(speech.params_model(text=SCRIPT, sentence_pause_s=1.5, word_timings=False),
                        OpContext.for_test(tmp_path / "tts", settings))
    assert spoken.data["duration_s"] < bound
