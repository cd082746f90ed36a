"""Map recognised words onto a known script, so captions show the script verbatim with real times.

Both sides are normalised into comparable tokens (lower case, no punctuation, numbers spelled out, so
"20" in the script matches "twenty" heard and the other way round), then matched with
difflib.SequenceMatcher. Script words that were heard get the recognised times; substituted words share
the time of what was heard in their place; words nobody heard are interpolated between neighbours. The
result is monotonic, non-overlapping and inside [0, duration].
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from reelforge.captions.words import Word

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
         "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_ORDINAL = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
            "nine": "ninth", "twelve": "twelfth"}
_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?(?:st|nd|rd|th)?")
_SYMBOLS = {"&": " and ", "%": " percent ", "+": " plus ", "@": " at "}


def number_words(n: int) -> list[str]:
    if n < 20:
        return [_ONES[n]]
    if n < 100:
        return [_TENS[n // 10]] + ([_ONES[n % 10]] if n % 10 else [])
    if n < 1000:
        return [_ONES[n // 100], "hundred"] + (number_words(n % 100) if n % 100 else [])
    for value, name in _SCALES:
        if n >= value:
            return number_words(n // value) + [name] + (number_words(n % value) if n % value else [])
    return [str(n)]  # unreachable: the scales cover every n >= 1000 below 10**15


def _spell_number(match: re.Match[str]) -> str:
    raw = match.group(0)
    ordinal = raw[-2:] in ("st", "nd", "rd", "th")
    digits = raw[:-2] if ordinal else raw
    whole, _, frac = digits.replace(",", "").partition(".")
    if len(whole) > 15:
        return " ".join(whole)
    words = number_words(int(whole))
    if ordinal:
        last = words[-1]
        words[-1] = _ORDINAL.get(last, last[:-1] + "ieth" if last.endswith("y") else last + "th")
    if frac:
        words += ["point", *(_ONES[int(d)] for d in frac)]
    return " " + " ".join(words) + " "


def normalize_tokens(text: str) -> list[str]:
    """Comparable tokens of one word: 'Don't' -> ['dont'], '20%' -> ['twenty', 'percent']."""
    text = unicodedata.normalize("NFKC", text).lower().replace("'", "").replace("’", "")
    for sym, spoken in _SYMBOLS.items():
        text = text.replace(sym, spoken)
    text = _NUMBER.sub(_spell_number, text)
    return re.findall(r"[^\W_]+", text)


def script_words(script: str) -> list[str]:
    """The script's words exactly as written (whitespace-separated)."""
    return script.split()


@dataclass(frozen=True)
class Alignment:
    words: list[Word]
    matched: int  # script words that got times from recognition (equal or substituted)
    total: int

    @property
    def matched_ratio(self) -> float:
        return self.matched / self.total if self.total else 1.0


def _flatten_heard(heard: Sequence[Word]) -> tuple[list[str], list[tuple[float, float]]]:
    tokens: list[str] = []
    times: list[tuple[float, float]] = []
    for w in heard:
        toks = normalize_tokens(w.text)
        if not toks:
            continue
        weights = [len(t) for t in toks]
        total = float(sum(weights))
        t = w.start
        for tok, weight in zip(toks, weights, strict=True):
            dur = (w.end - w.start) * weight / total
            tokens.append(tok)
            times.append((t, t + dur))
            t += dur
    return tokens, times


def align_words(script: str | Sequence[str], heard: Sequence[Word], duration: float) -> Alignment:
    """Times for exactly the script's words, from `heard` (recognised words with times)."""
    texts = script_words(script) if isinstance(script, str) else list(script)
    owner: list[int] = []
    s_tokens: list[str] = []
    for i, text in enumerate(texts):
        for tok in normalize_tokens(text):
            s_tokens.append(tok)
            owner.append(i)
    h_tokens, h_times = _flatten_heard(heard)

    spans: list[tuple[float, float] | None] = [None] * len(texts)

    def give(word: int, start: float, end: float) -> None:
        cur = spans[word]
        spans[word] = (start, end) if cur is None else (min(cur[0], start), max(cur[1], end))

    matcher = difflib.SequenceMatcher(None, s_tokens, h_tokens, autojunk=False)
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        if op == "equal" or (op == "replace" and a1 - a0 == b1 - b0):
            for k in range(a1 - a0):
                give(owner[a0 + k], *h_times[b0 + k])
        elif op == "replace":
            # different token counts: share the heard stretch among the script tokens by length
            start, end = h_times[b0][0], h_times[b1 - 1][1]
            weights = [len(s_tokens[a]) for a in range(a0, a1)]
            total = float(sum(weights))
            t = start
            for a, weight in zip(range(a0, a1), weights, strict=True):
                dur = (end - start) * weight / total
                give(owner[a], t, t + dur)
                t += dur
    matched = sum(1 for s in spans if s is not None)
    filled = _interpolate(texts, spans, duration)
    return Alignment(_monotonic(texts, filled, duration), matched, len(texts))


def _interpolate(texts: list[str], spans: list[tuple[float, float] | None],
                 duration: float) -> list[tuple[float, float]]:
    """Give unheard words a share (by length) of the gap between their timed neighbours."""
    out: list[tuple[float, float]] = []
    i, n = 0, len(texts)
    while i < n:
        span = spans[i]
        if span is not None:
            out.append(span)
            i += 1
            continue
        j = i
        while j < n and spans[j] is None:
            j += 1
        prev = spans[i - 1] if i > 0 else None
        nxt = spans[j] if j < n else None
        lo = prev[1] if prev is not None else 0.0
        hi = nxt[0] if nxt is not None else duration
        if hi - lo < 0.08 * (j - i):
            # no room between the neighbours: borrow the inner halves of their own spans
            lo = (prev[0] + prev[1]) / 2 if prev is not None else lo
            hi = (nxt[0] + nxt[1]) / 2 if nxt is not None else max(hi, lo)
        weights = [len(texts[k]) + 1 for k in range(i, j)]
        total = float(sum(weights))
        t = lo
        for weight in weights:
            dur = max(0.0, hi - lo) * weight / total
            out.append((t, t + dur))
            t += dur
        i = j
    return out


def _monotonic(texts: list[str], spans: list[tuple[float, float]], duration: float) -> list[Word]:
    words: list[Word] = []
    prev_end = 0.0
    for k, (text, (start, end)) in enumerate(zip(texts, spans, strict=True)):
        start = min(max(start, prev_end, 0.0), duration)
        # a word may not run into the next word's start (borrowed halves can overlap neighbours)
        nxt_start = spans[k + 1][0] if k + 1 < len(spans) else duration
        end = min(max(end, start), duration, max(nxt_start, start))
        words.append(Word(text, round(start, 3), round(end, 3)))
        prev_end = end
    return words
