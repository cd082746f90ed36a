"""Frame rates as exact fractions, the one place every op turns a rate into ffmpeg text.

    parse_rate("30000/1001") == parse_rate("29.97") == parse_rate(29.97) == Fraction(30000, 1001)
    parse_rate(25) == Fraction(25)
    rate_arg(Fraction(30000, 1001)) == "30000/1001"; rate_arg(25) == "25"

NTSC rates are the 1000/1001 family (23.976, 29.97, 47.952, 59.94, 119.88). A decimal close to one of them
(what a user types, or what the probe reports: it rounds to 3 decimals) stands for the exact fraction, so
an output at "29.97" has the same clock as a 30000/1001 camera file (2997/100 would drift a frame every
~9 hours, and concat/xfade of both would not line up exactly).
"""

from __future__ import annotations

from fractions import Fraction

NTSC_RATES: tuple[Fraction, ...] = tuple(Fraction(n * 1000, 1001) for n in (24, 30, 48, 60, 120))
# the probe rounds to 3 decimals (29.97, 23.976, 59.94): within this distance a decimal means the NTSC rate
_NTSC_TOLERANCE = 0.005
DEFAULT_RATE = Fraction(25)


def parse_rate(value: str | float | Fraction) -> Fraction:
    """The exact rate for "30000/1001", "29.97", 29.97, 25 or a Fraction. Raises ValueError if not > 0."""
    if isinstance(value, Fraction):
        rate = value
    elif isinstance(value, str):
        text = value.strip()
        try:
            rate = Fraction(text) if "/" in text else _from_decimal(float(text))
        except (ValueError, ZeroDivisionError) as exc:
            raise ValueError(f"frame rate {value!r} must be a number or N/D, like 25 or 30000/1001") from exc
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"frame rate {value!r} must be a number or N/D, like 25 or 30000/1001")
    else:
        rate = _from_decimal(float(value))
    if rate <= 0:
        raise ValueError(f"frame rate {value!r} must be greater than 0")
    return rate


def _from_decimal(fps: float) -> Fraction:
    if not fps > 0 or fps != fps or fps == float("inf"):
        raise ValueError(f"frame rate {fps!r} must be a finite number greater than 0")
    for rate in NTSC_RATES:
        if abs(float(rate) - fps) < _NTSC_TOLERANCE:
            return rate
    return Fraction(fps).limit_denominator(1001)


def probed_rate(fps: float | None, default: Fraction = DEFAULT_RATE) -> Fraction:
    """The exact rate of a probed stream (`StreamInfo.fps`, rounded), or `default` when it has none."""
    return parse_rate(fps) if fps else default


def rate_arg(rate: str | float | Fraction) -> str:
    """ffmpeg's text for a rate (`-r`, `-framerate`, `fps=`): "25" or "30000/1001"."""
    f = parse_rate(rate)
    return str(f.numerator) if f.denominator == 1 else f"{f.numerator}/{f.denominator}"

