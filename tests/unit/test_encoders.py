"""Encoder choice: NVENC only when a probe encode works, session cap, and CPU fallback when NVENC fails."""

from __future__ import annotations

import dataclasses

import pytest

from reelforge.config import Settings
from reelforge.errors import JobCancelled, ProcessingError
from reelforge.media.encoders import (
    EncoderChoice,
    choose_video_encoder,
    cpu_encoder,
    encode_with_fallback,
    encoder_args,
    encoder_session,
    nvenc_encoder,
    nvenc_works,
    with_encoder_fallback,
)
from reelforge.ops.context import OpContext
from tests.unit.video_helpers import streams


@pytest.mark.parametrize(("name", "codec", "quality", "expected"), [
    ("libx264", "h264", "draft", ["-preset", "ultrafast", "-crf", "28"]),
    ("libx264", "h264", "standard", ["-preset", "veryfast", "-crf", "21"]),
    ("libx264", "h264", "high", ["-preset", "medium", "-crf", "18"]),
    ("libx265", "hevc", "standard", ["-preset", "veryfast", "-crf", "25"]),
    ("h264_nvenc", "h264", "standard", ["-preset", "p4", "-rc", "vbr", "-cq", "23", "-b:v", "0"]),
    ("hevc_nvenc", "hevc", "high", ["-preset", "p6", "-rc", "vbr", "-cq", "21", "-b:v", "0"]),
])
def test_quality_presets_per_encoder(name, codec, quality, expected):
    args = list(encoder_args(name, codec, quality))
    assert args[:2] == ["-c:v", name]
    assert args[2:2 + len(expected)] == expected
    assert "yuv420p" in args
    assert ("hvc1" in args) == (codec == "hevc")


def test_unknown_encoder_is_rejected():
    with pytest.raises(ValueError):
        encoder_args("libfoo", "h264", "standard")


def test_choice_follows_probe_and_settings(tmp_path):
    ctx = OpContext.for_test(tmp_path / "w", Settings(data_dir=tmp_path / "d"))
    choice = choose_video_encoder(ctx, "standard")
    if nvenc_works("h264"):
        assert choice.name == "h264_nvenc" and choice.hw
    else:  # this CI machine: no GPU, the probe encode fails
        assert choice.name == "libx264" and not choice.hw
        assert "unavailable" in choice.reason
    off = OpContext.for_test(tmp_path / "w2", Settings(data_dir=tmp_path / "d", nvenc="off"))
    assert choose_video_encoder(off, "draft", "hevc").name == "libx265"


def _encode_args(out):
    return lambda c: ["-f", "lavfi", "-i", "testsrc2=size=128x96:rate=10:duration=0.5", *c.args, str(out)]


def _failing_nvenc() -> EncoderChoice:
    """An NVENC choice that fails when encoding: on a GPU worker, point it at a GPU that does not exist."""
    choice = nvenc_encoder("h264", "draft", "forced for the test")
    if nvenc_works("h264"):
        return dataclasses.replace(choice, args=(*choice.args, "-gpu", "99"))
    return choice


def test_nvenc_failure_falls_back_to_cpu_and_is_noted(tmp_path):
    ctx = OpContext.for_test(tmp_path / "w", Settings(data_dir=tmp_path / "d"))
    out = tmp_path / "out.mp4"
    used = encode_with_fallback(_encode_args(out), ctx, "draft", duration_s=0.5, prefer=_failing_nvenc())
    assert used.name == "libx264" and not used.hw
    assert ctx.notes["encoder"] == "libx264"
    assert "h264_nvenc failed" in ctx.notes["encoder_fallback"]
    assert streams(out)[0]["codec_name"] == "h264"


def test_cpu_choice_is_recorded_without_fallback(tmp_path):
    ctx = OpContext.for_test(tmp_path / "w", Settings(data_dir=tmp_path / "d", nvenc="off"))
    out = tmp_path / "out.mp4"
    used = encode_with_fallback(_encode_args(out), ctx, "draft", duration_s=0.5)
    assert used.name == "libx264"
    assert ctx.notes == {"encoder": "libx264"}


def test_cpu_failure_is_not_retried(tmp_path):
    ctx = OpContext.for_test(tmp_path / "w", Settings(data_dir=tmp_path / "d", nvenc="off"))
    calls = []

    def work(choice):
        calls.append(choice.name)
        raise ProcessingError("boom", code="ffmpeg_failed")

    with pytest.raises(ProcessingError):
        with_encoder_fallback(work, ctx)
    assert calls == ["libx264"]


def test_cancel_never_falls_back(tmp_path):
    ctx = OpContext.for_test(tmp_path / "w", Settings(data_dir=tmp_path / "d"))
    calls = []

    def work(choice):
        calls.append(choice.name)
        raise JobCancelled("cancelled")

    with pytest.raises(JobCancelled):
        with_encoder_fallback(work, ctx, prefer=nvenc_encoder())
    assert calls == ["h264_nvenc"]


def test_session_cap_sends_extra_encodes_to_cpu(tmp_path):
    ctx = OpContext.for_test(tmp_path / "w", Settings(data_dir=tmp_path / "d", nvenc_max_sessions=1))
    with encoder_session(ctx, prefer=nvenc_encoder()) as first:
        assert first.hw
        with encoder_session(ctx, prefer=nvenc_encoder()) as second:
            assert not second.hw and second.name == "libx264"
            assert "busy" in second.reason
    with encoder_session(ctx, prefer=nvenc_encoder()) as again:  # released again
        assert again.hw
    assert cpu_encoder().name == "libx264"
