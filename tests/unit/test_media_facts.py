"""The media facts every op reads: exact frame rates, even sizes, one FrameSize, the codec tables."""

from __future__ import annotations

from fractions import Fraction

import pytest

from reelforge.media.codecs import DEFAULT_VIDEO_ARGS, PRORES_4444_ARGS, QUALITIES, VP9_CRF, video_args, vp9_args
from reelforge.media.encoders import cpu_encoder
from reelforge.media.frame_rate import parse_rate, probed_rate, rate_arg
from reelforge.media.frame_size import FrameSize, even, even_ceil, even_floor
from reelforge.media.framepipe import FrameSize as PipeFrameSize


@pytest.mark.parametrize(("value", "rate"), [
    ("30000/1001", Fraction(30000, 1001)), ("29.97", Fraction(30000, 1001)), (29.97, Fraction(30000, 1001)),
    (23.976, Fraction(24000, 1001)), (59.94, Fraction(60000, 1001)), ("119.88", Fraction(120000, 1001)),
    (25, Fraction(25)), ("25", Fraction(25)), (12.5, Fraction(25, 2)), ("2997/100", Fraction(2997, 100)),
    (Fraction(50), Fraction(50)),
])
def test_rates_are_exact_and_ntsc_decimals_mean_the_ntsc_rate(value: str | float, rate: Fraction) -> None:
    assert parse_rate(value) == rate


@pytest.mark.parametrize("bad", ["", "fast", "0", "-25", "1/0", float("nan"), float("inf"), 0, True])
def test_bad_rates_are_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_rate(bad)  # type: ignore[arg-type]


def test_rate_text_for_ffmpeg() -> None:
    assert rate_arg(25) == "25" and rate_arg(29.97) == "30000/1001" and rate_arg(Fraction(25, 2)) == "25/2"
    assert probed_rate(None) == 25 and probed_rate(None, default=Fraction(30)) == 30
    assert probed_rate(29.97) == Fraction(30000, 1001)


def test_even_sizes() -> None:
    assert [even(x) for x in (0, 1, 2.9, 641.3, 643)] == [2, 2, 2, 642, 644]
    assert [even_floor(x) for x in (3.9, 4, 5)] == [2, 4, 4] and [even_ceil(x) for x in (3.1, 4, 5)] == [4, 4, 6]


def test_one_frame_size_type() -> None:
    assert PipeFrameSize is FrameSize
    assert FrameSize.parse("vertical_1080") == FrameSize(1080, 1920) and str(FrameSize(640, 360)) == "640x360"
    rgba = FrameSize(8, 6, 4)
    assert rgba.frame_bytes == 192 and rgba.pix_fmt == "rgba"
    with pytest.raises(ValueError):
        FrameSize.parse("641x360")


def test_codec_tables() -> None:
    assert DEFAULT_VIDEO_ARGS == cpu_encoder("h264", "standard").args == video_args("libx264")
    crfs = [VP9_CRF[q] for q in QUALITIES]
    assert crfs == sorted(crfs, reverse=True)  # higher quality, lower CRF
    alpha = vp9_args("high", alpha=True)
    assert alpha[alpha.index("-crf") + 1] == str(VP9_CRF["high"]) and "yuva420p" in alpha and "alpha_mode=1" in alpha
    assert "yuva420p" not in vp9_args("draft") and "yuva444p10le" in PRORES_4444_ARGS
