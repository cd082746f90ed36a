"""Loudness normalisation onto a silent video (regression: loudnorm's output layout broke encoding)."""

from __future__ import annotations

import re
import subprocess

from reelforge.ops.registry import get_operation


def test_loudnorm_reaches_target_on_video_without_audio(ctx, make_video, make_audio):
    video = make_video(duration=3.0, audio=False)
    music = make_audio(duration=6.0, name="music.wav")
    op = get_operation("add_audio")
    params = op.params_model(video=str(video), audio=str(music), mode="mix", fit="loop_audio",
                             audio_volume=0.35, fade_in_s=0.5, fade_out_s=1.0, loudness_lufs=-16)
    out = op.run(params, ctx).outputs["video"]
    report = subprocess.run(["ffmpeg", "-hide_banner", "-nostats", "-i", str(out), "-af", "ebur128", "-f", "null",
                             "-"], capture_output=True, text=True).stderr
    integrated = float(re.findall(r"I:\s+(-?[\d.]+) LUFS", report)[-1])
    assert abs(integrated - -16) < 1.5, integrated
    streams = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_type,channels", "-of", "csv=p=0",
                              str(out)], capture_output=True, text=True).stdout.split()
    assert "audio,2" in streams
