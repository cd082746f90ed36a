"""add_audio: stream copy when possible, fit modes, mix, fades, loudness, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from reelforge.errors import MediaError
from reelforge.media.probe import probe
from reelforge.ops.add_audio import AddAudioParams, add_audio_args, output_duration, plan_add_audio
from reelforge.ops.registry import get_operation
from tests.unit.video_helpers import audio_samples, duration, ffmpeg, streams

OP = get_operation("add_audio")


@pytest.fixture
def aac_audio(tmp_path):
    def make(seconds: float, freq: int = 880, name: str = "music.m4a"):
        out = tmp_path / name
        ffmpeg("-f", "lavfi", "-i", f"sine=frequency={freq}:duration={seconds}:sample_rate=48000",
               "-c:a", "aac", str(out))
        return out

    return make


@pytest.mark.parametrize(("fit", "v", "a", "expected"), [
    ("shortest", 2, 3, 2), ("shortest", 3, 2, 2), ("loop_video", 1, 3, 3), ("loop_audio", 3, 1, 3),
    ("pad", 3, 1, 3), ("pad", 2, 5, 2),
])
def test_output_duration_table(fit, v, a, expected):
    assert output_duration(fit, v, a) == expected


def test_replace_with_compatible_codecs_is_a_remux(ctx, make_video, aac_audio):
    video = make_video(duration=2.0, audio=False)
    audio = aac_audio(3.0)
    result = OP.run(AddAudioParams(video=str(video), audio=str(audio)), ctx)
    assert result.data["video_copied"] and result.data["audio_copied"]
    out = result.outputs["video"]
    kinds = [(s["codec_type"], s["codec_name"]) for s in streams(out)]
    assert kinds == [("video", "h264"), ("audio", "aac")]
    assert abs(duration(out) - 2.0) <= 0.04 + 1e-6
    assert ctx.notes["encoder"] == "copy"


def test_loop_video_to_audio_length(ctx, make_video, make_audio):
    video = make_video(duration=1.0, audio=False)
    audio = make_audio(duration=2.6, name="voice.wav")
    result = OP.run(AddAudioParams(video=str(video), audio=str(audio), fit="loop_video"), ctx)
    out = result.outputs["video"]
    assert result.data["video_copied"] and not result.data["audio_copied"]  # wav -> aac
    assert abs(duration(out, "v:0") - 2.6) <= 0.04 + 1e-6
    assert abs(duration(out, "a:0") - 2.6) <= 0.04 + 1e-6


def test_pad_with_silence_and_fades(ctx, make_video, make_audio):
    video = make_video(duration=2.0, audio=False)
    audio = make_audio(duration=1.0, name="short.wav")
    result = OP.run(AddAudioParams(video=str(video), audio=str(audio), fit="pad", fade_in_s=0.3), ctx)
    out = result.outputs["video"]
    assert abs(duration(out, "a:0") - 2.0) <= 0.05
    s = audio_samples(out)
    rms = lambda a, b: float(np.sqrt(np.mean(s[int(a * 8000):int(b * 8000)] ** 2)))  # noqa: E731
    assert rms(0.0, 0.05) < rms(0.5, 0.9) / 4  # fading in
    assert rms(0.5, 0.9) > 0.05
    assert rms(1.2, 1.9) < 0.003  # padded silence


def test_mix_keeps_both_tracks(ctx, make_video, aac_audio):
    video = make_video(duration=2.0, audio=True)  # 440 Hz
    music = aac_audio(2.0, freq=1500)
    result = OP.run(AddAudioParams(video=str(video), audio=str(music), mode="mix", audio_volume=0.5,
                                   loudness_lufs=-16), ctx)
    assert result.data["mixed"]
    s = audio_samples(result.outputs["video"], rate=8000)[2000:12000]
    spectrum = np.abs(np.fft.rfft(s))
    freqs = np.fft.rfftfreq(len(s), 1 / 8000)
    peak = lambda f: spectrum[np.abs(freqs - f) < 20].max()  # noqa: E731
    floor = np.median(spectrum)
    assert peak(440) > 20 * floor and peak(1500) > 20 * floor


def test_audio_without_audio_stream(ctx, make_video):
    video = make_video(duration=1.0, audio=False)
    other = make_video(duration=1.0, audio=False, name="silent.mp4")
    with pytest.raises(MediaError) as err:
        OP.run(AddAudioParams(video=str(video), audio=str(other)), ctx)
    assert err.value.code == "no_audio_stream"


def test_video_without_video_stream(ctx, make_audio):
    a = make_audio(duration=1.0)
    with pytest.raises(MediaError) as err:
        OP.run(AddAudioParams(video=str(a), audio=str(a)), ctx)
    assert err.value.code == "no_video_stream"


def test_plan_builds_escaped_graph(make_video, make_audio):
    video, audio = probe(make_video(duration=2.0)), probe(make_audio(duration=1.0))
    plan = plan_add_audio(AddAudioParams(video="v", audio="a", mode="mix", fit="pad", fade_out_s=0.5), video, audio)
    assert plan.mix and plan.copy_video and not plan.copy_audio
    assert "amix" in plan.filter_complex and "afade" in plan.filter_complex
    args = add_audio_args(plan, "v.mp4", "a.wav", "o.mp4", (), "192k")
    assert args[args.index("-c:v") + 1] == "copy" and args[-1] == "o.mp4"


@pytest.mark.parametrize("bad", [{"audio_volume": -1}, {"fade_in_s": -1}, {"loudness_lufs": 0},
                                 {"fit": "stretch"}, {"mode": "add"}])
def test_bad_params(bad):
    with pytest.raises(ValidationError):
        AddAudioParams(**{"video": "v", "audio": "a", **bad})


def tone_level(samples: np.ndarray, rate: int, freq: float) -> float:
    """Amplitude of one frequency in a window (the added track and the video's sound differ in pitch)."""
    t = np.arange(samples.size) / rate
    return float(2 * abs(np.dot(samples, np.exp(-2j * np.pi * freq * t))) / samples.size)


def test_loop_video_with_b_frames_ends_with_the_audio(ctx, tmp_path, make_audio):
    # x264's default preset uses B-frames: a stream copy cut mid-loop would run ~3 frames past the audio
    video = tmp_path / "b.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x180:rate=24:duration=1", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", str(video))
    assert (probe(video).video.b_frames or 0) > 0
    audio = make_audio(duration=2.3, name="voice.wav")
    result = OP.run(AddAudioParams(video=str(video), audio=str(audio), fit="loop_video"), ctx)
    out = result.outputs["video"]
    assert not result.data["video_copied"]
    assert abs(duration(out, "v:0") - 2.3) <= 1 / 24 + 1e-6
    assert abs(duration(out) - 2.3) <= 1 / 24 + 1e-6


@pytest.mark.parametrize("duck", ["added", "original"])
def test_ducking_lowers_one_track_while_the_other_sounds(ctx, tmp_path, aac_audio, duck):
    # the video's own sound (440 Hz) plays only in its first half; the added track (880 Hz) plays throughout
    video = tmp_path / "talk.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x90:rate=25:duration=4", "-f", "lavfi",
           "-i", "sine=frequency=440:duration=4:sample_rate=48000,volume=volume=0:enable='gte(t,2)'",
           "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(video))
    added = aac_audio(4.0, freq=880)
    if duck == "added":
        result = OP.run(AddAudioParams(video=str(video), audio=str(added), mode="mix", duck="added"), ctx)
        speech, rate = audio_samples(result.outputs["video"]), 8000
        during, after = speech[int(0.8 * rate):int(1.8 * rate)], speech[int(2.8 * rate):int(3.8 * rate)]
        # the added 880 Hz track is at least 10 dB lower while the video's sound plays than after it stops
        assert tone_level(during, rate, 880) < tone_level(after, rate, 880) / 3.16
        assert tone_level(during, rate, 440) > 0.1  # the video's own sound is untouched
    else:
        result = OP.run(AddAudioParams(video=str(video), audio=str(added), mode="mix", duck="original"), ctx)
        mixed, rate = audio_samples(result.outputs["video"]), 8000
        during = mixed[int(0.8 * rate):int(1.8 * rate)]
        plain = OP.run(AddAudioParams(video=str(video), audio=str(added), mode="mix"), ctx)
        undone = audio_samples(plain.outputs["video"])[int(0.8 * rate):int(1.8 * rate)]
        # the video's 440 Hz sound is lowered under the added track, which itself keeps its level
        assert tone_level(during, rate, 440) < tone_level(undone, rate, 440) / 3.16
        assert tone_level(during, rate, 880) > 0.8 * tone_level(undone, rate, 880)


def test_duck_needs_mix_mode():
    with pytest.raises(ValidationError, match="duck needs mode 'mix'"):
        AddAudioParams(video="v", audio="a", duck="added")


def test_mix_onto_a_silent_video_says_so(ctx, make_video, aac_audio):
    video = make_video(duration=1.0, audio=False)
    result = OP.run(AddAudioParams(video=str(video), audio=str(aac_audio(1.0)), mode="mix"), ctx)
    assert not result.data["mixed"]
    assert "no audio track" in ctx.notes["mix"]
