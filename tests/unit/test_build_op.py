"""The build as data: params -> step graph, and the final compose -> one ffmpeg argument list."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reelforge.errors import InvalidParams
from reelforge.media.probe import MediaInfo, StreamInfo
from reelforge.ops.build import BuildParams, build_steps, lookup_op
from reelforge.pipelines.compose_plan import (
    ComposeInputs,
    HeadLayout,
    MusicMix,
    background_fits,
    plan_compose,
    plan_compose_sound,
)
from reelforge.pipelines.graph import build_graph

BG = MediaInfo("/m/bg.mp4", "mov,mp4", 60.0, 1, None, (StreamInfo(0, "video", "h264", width=1920, height=1080,
                                                                  fps=30.0, pix_fmt="yuv420p"),))
SMALL_BG = MediaInfo("/m/small.mp4", "mov,mp4", 3.0, 1, None, (StreamInfo(0, "video", "h264", width=640,
                                                                          height=360, fps=25.0,
                                                                          pix_fmt="yuv420p"),))
NARRATION = MediaInfo("/m/voice.wav", "wav", 42.5, 1, None, (StreamInfo(0, "audio", "pcm_s16le"),))
HEAD = MediaInfo("/m/head.webm", "webm", 5.0, 1, None, (StreamInfo(0, "video", "vp9", width=400, height=400,
                                                                   fps=25.0, alpha=True),))
MUSIC = MediaInfo("/m/music.mp3", "mp3", 30.0, 1, None, (StreamInfo(0, "audio", "mp3"),))


def params(**kw: Any) -> BuildParams:
    body = {"script": "Hello there. Second sentence.", "backgrounds": ["/m/bg.mp4"], **kw}
    return BuildParams.model_validate(body)


def ids(p: BuildParams) -> list[str]:
    return [s.id for s in build_graph(build_steps(p), lookup=lookup_op).steps]


def graph_text(args: list[str]) -> str:
    return args[args.index("-filter_complex") + 1]


def test_tts_build_graph() -> None:
    p = params(talking_head="/m/head.mp4", music="/m/music.mp3")
    graph = build_graph(build_steps(p), lookup=lookup_op)
    by_id = graph.by_id()
    assert set(by_id) == {"narration", "background", "head", "captions", "compose"}
    assert by_id["narration"].step.op == "tts"
    # one loop period, independent of the narration's length: it runs in parallel with the narration
    assert by_id["background"].step.op == "build.cycle" and by_id["background"].needs == ()
    # ... bounded by how long the script can take to speak (bucketed: similar scripts share the cache)
    assert by_id["background"].step.params["longest_s"] in (30.0, 60.0, 120.0)
    audio_steps = {s.id: s for s in build_steps(params(audio="/m/voice.wav"))}
    assert "longest_s" not in audio_steps["background"].params  # a given narration's length is unknown
    # the compose encodes this build's picture again (a head, burned captions): the period is an intermediate
    assert by_id["background"].step.params["reencoded"] is True
    soft = {s.id: s for s in build_steps(params(captions="soft"))}
    assert "reencoded" not in soft["background"].params  # stream-copied into the output: the quality encode
    assert by_id["head"].needs == ()  # runs in parallel with the narration
    assert set(by_id["compose"].needs) == {"background", "narration", "head", "captions"}
    assert graph.final.id == "compose"


def test_given_audio_with_script_aligns_and_without_transcribes() -> None:
    with_script = ids(params(audio="/m/voice.wav"))
    assert "words" in with_script
    steps = {s.id: s for s in build_steps(params(audio="/m/voice.wav"))}
    assert steps["narration"].op == "build.audio" and steps["words"].op == "align"
    no_script = {s.id: s for s in build_steps(params(script=None, audio="/m/voice.wav"))}
    assert no_script["words"].op == "transcribe"
    none = {s.id for s in build_steps(params(audio="/m/voice.wav", captions="none"))}
    assert "words" not in none and "captions" not in none


def test_images_and_several_backgrounds() -> None:
    steps = {s.id: s for s in build_steps(params(backgrounds=[], images=["/m/a.png", "/m/b.png"]))}
    assert steps["background"].op == "build.images"
    assert steps["background"].params["duration_s"] == {"ref": "narration.data.duration_s"}
    assert steps["background"].params["reencoded"] is True  # burned captions: the compose encodes it again
    soft = {s.id: s for s in build_steps(params(backgrounds=[], images=["/m/a.png"], captions="soft"))}
    assert "reencoded" not in soft["background"].params
    joined = {s.id: s for s in build_steps(params(backgrounds=["/m/a.mp4", "/m/b.mp4"]))}
    assert joined["joined"].op == "concat"
    assert joined["background"].params["input"] == {"ref": "joined.video"}


def test_submit_time_errors() -> None:
    with pytest.raises(ValueError):
        params(backgrounds=[])
    with pytest.raises(InvalidParams) as info:
        params(voice={"engine": "piper", "voice": "nobody"})
    assert info.value.details["path"].startswith("voice")
    with pytest.raises(ValueError):
        params(size="1921x1080")


def test_background_fits() -> None:
    assert background_fits(BG, (1920, 1080), 30)
    assert not background_fits(BG, (1080, 1920), 30)
    assert not background_fits(BG, (1920, 1080), 25)


def test_soft_captions_without_head_copy_the_video() -> None:
    inp = ComposeInputs(background=BG, narration=NARRATION, duration_s=42.5, srt=Path("/w/c.srt"),
                        ass=Path("/w/c.ass"))
    plan = plan_compose(inp, Path("/w/out.mp4"), size=(1920, 1080), fps=30, mode="soft")
    assert plan.copy_video
    args = plan.args
    assert args[args.index("-c:v") + 1] == "copy"
    assert "mov_text" in args and "ass=" not in graph_text(args)
    assert args[:4] == ["-t", "42.5", "-i", "/m/bg.mp4"]  # 60 s of background: cut, not looped


def test_burned_captions_head_and_ducked_music_make_one_graph() -> None:
    inp = ComposeInputs(background=SMALL_BG, narration=NARRATION, duration_s=42.5, head=HEAD, music=MUSIC,
                        ass=Path("/w/c.ass"))
    plan = plan_compose(inp, Path("/w/out.mp4"), size=(1080, 1920), fps=30, mode="burn",
                        head=HeadLayout(corner="top_left", size=0.25), music=MusicMix(volume=0.3))
    assert not plan.copy_video
    g = graph_text(plan.args)
    assert "scale=1080:1920:force_original_aspect_ratio=increase,crop=1080:1920" in g
    assert "scale=-2:480" in g  # a quarter of 1920
    assert "overlay=x=" in g and "ass=filename=" in g
    assert "sidechaincompress" in g and "volume=0.3" in g and "afade=t=out:st=40.5:d=2" in g
    head_at = plan.args.index("/m/head.webm")
    assert plan.args[head_at - 3:head_at] == ["-c:v", "libvpx-vp9", "-i"]  # the decoder that keeps alpha
    assert plan.args.count("-filter_complex") == 1
    assert plan.args.index("/m/small.mp4") > plan.args.index("-stream_loop")  # 3 s background loops


def test_no_music_no_head_no_captions() -> None:
    inp = ComposeInputs(background=SMALL_BG, narration=NARRATION, duration_s=42.5)
    plan = plan_compose(inp, Path("/w/out.mp4"), size=(1920, 1080), fps=30, mode="none")
    g = graph_text(plan.args)
    assert "amix" not in g and "[aout]" in g and "apad=whole_dur=42.5" in g
    # a mono narration with nothing to mix stays mono (half the AAC work); music makes the mix stereo
    assert "channel_layouts=mono" in g and plan.args[plan.args.index("-b:a") + 1] == "128k"
    stereo_voice = MediaInfo("/m/v.wav", "wav", 42.5, 1, None, (StreamInfo(0, "audio", "pcm_s16le", channels=2),))
    for inputs in (ComposeInputs(background=SMALL_BG, narration=NARRATION, duration_s=42.5, music=MUSIC),
                   ComposeInputs(background=SMALL_BG, narration=stereo_voice, duration_s=42.5)):
        args = plan_compose(inputs, Path("/w/out.mp4"), size=(1920, 1080), fps=30, mode="none").args
        assert "channel_layouts=stereo" in graph_text(args) and args[args.index("-b:a") + 1] == "192k"


AAC_NARRATION = MediaInfo("/m/speech.m4a", "mov,mp4,m4a,3gp,3g2,mj2", 42.5, 1, None,
                          (StreamInfo(0, "audio", "aac", sample_rate=48000, channels=1, duration_s=42.49),))


def test_tts_narration_is_aac_without_music_and_wav_with_it() -> None:
    narration = {s.id: s for s in build_steps(params())}["narration"]
    assert narration.params["format"] == "m4a" and narration.params["sample_rate"] == 48000
    with_music = {s.id: s for s in build_steps(params(music="/m/music.mp3"))}["narration"]
    assert with_music.params["format"] == "wav"  # mixed from the lossless narration: one AAC generation


def test_an_aac_narration_without_music_is_stream_copied() -> None:
    inp = ComposeInputs(background=BG, narration=AAC_NARRATION, duration_s=42.5, srt=Path("/w/c.srt"))
    plan = plan_compose(inp, Path("/w/out.mp4"), size=(1920, 1080), fps=30, mode="soft")
    assert plan.copy_video and plan.copy_audio
    args = plan.args
    assert "-filter_complex" not in args  # nothing decoded at all
    assert args[args.index("-c:a") + 1] == "copy" and args[args.index("1:a:0") - 1] == "-map"
    assert "mov_text" in args
    # burned captions: the picture is encoded, the narration still copied
    burn = plan_compose(ComposeInputs(background=BG, narration=AAC_NARRATION, duration_s=42.5, ass=Path("/w/c.ass")),
                        Path("/w/out.mp4"), size=(1920, 1080), fps=30, mode="burn")
    assert not burn.copy_video and burn.copy_audio and "[aout]" not in graph_text(burn.args)
    # a chunked build's sound child copies it too, to the same length
    sound = plan_compose_sound(ComposeInputs(background=BG, narration=AAC_NARRATION, duration_s=42.5),
                               Path("/w/sound.m4a"))
    assert sound[sound.index("-c:a") + 1] == "copy" and "-filter_complex" not in sound
    assert sound[sound.index("-t") + 1] == "42.5"
    # music is mixed under it, and another rate or codec is converted: encoded as before
    for inputs in (
        ComposeInputs(background=BG, narration=AAC_NARRATION, duration_s=42.5, music=MUSIC),
        ComposeInputs(background=BG, duration_s=42.5, narration=MediaInfo(
            "/m/s.m4a", "mov,mp4,m4a,3gp,3g2,mj2", 42.5, 1, None,
            (StreamInfo(0, "audio", "aac", sample_rate=24000, channels=1),))),
        ComposeInputs(background=BG, narration=NARRATION, duration_s=42.5),
        ComposeInputs(background=BG, duration_s=42.5, narration=MediaInfo(  # a given file, its sound ends early
            "/m/talk.mp4", "mov,mp4,m4a,3gp,3g2,mj2", 42.5, 1, None,
            (StreamInfo(0, "audio", "aac", sample_rate=48000, channels=1, duration_s=40.0),))),
    ):
        other = plan_compose(inputs, Path("/w/out.mp4"), size=(1920, 1080), fps=30, mode="none")
        assert not other.copy_audio and other.args[other.args.index("-c:a") + 1] == "aac"
