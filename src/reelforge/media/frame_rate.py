"""Frame rates as exact fractions for ffmpeg (so 29.97 means 30000/1001, not 2997/100)."""

from __future__ import annotations

from fractions import Fraction

_NTSC = (Fraction(24000, 1001), Fraction(30000, 1001), Fraction(60000, 1001), Fraction(120000, 1001))


def fps_fraction(fps: float) -> Fraction:
    """The exact rate a probed (rounded) frame rate stands for."""
    for rate in _NTSC:
        if abs(float(rate) - fps) < 0.005:
            return rate
    return Fraction(fps).limit_denominator(1001)


def fps_arg(fps: float | Fraction) -> str:
    f = fps if isinstance(fps, Fraction) else fps_fraction(fps)
    return str(f.numerator) if f.denominator == 1 else f"{f.numerator}/{f.denominator}"
