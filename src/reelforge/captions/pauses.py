"""Word timings corrected by the pauses heard in the audio.

Whisper's word times come from cross-attention and drift by 0.1-0.3 s, small models more (tiny.en once
put a word boundary 0.3 s past a pause and gave the next word zero length, where base was right). A pause
in the audio is a fact, not an estimate: a word boundary near a pause belongs in it, and no word spans
one. So each pause (a stretch of low energy long enough not to be a stop consonant) takes the nearest word
boundary within reach: the word before ends where the pause starts, the next starts where it ends. Words
left shorter than a phoneme then share their span with a neighbour by length.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from reelforge.captions.words import Word

FRAME_S = 0.01
MIN_PAUSE_S = 0.15  # shorter quiet stretches are stop closures inside words
QUIET_DB = -35.0  # below the loud speech frames by this much (relative: works at any recording level)
REACH_S = 0.35  # how far a boundary may move to its pause
MIN_WORD_S = 0.08


@dataclass(frozen=True)
class Pause:
    start: float
    end: float


def find_pauses(audio: np.ndarray, rate: int, min_pause_s: float = MIN_PAUSE_S) -> list[Pause]:
    """Quiet stretches of mono float `audio`, at least `min_pause_s` long (edges of the file excluded)."""
    hop = max(1, int(rate * FRAME_S))
    n = audio.size // hop
    if n < 3:
        return []
    frames = audio[: n * hop].astype(np.float64).reshape(n, hop)
    db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    loud = np.percentile(db, 95)
    quiet = db < loud + QUIET_DB
    pauses: list[Pause] = []
    i = 0
    while i < n:
        if not quiet[i]:
            i += 1
            continue
        j = i
        while j < n and quiet[j]:
            j += 1
        if i > 0 and j < n and (j - i) * FRAME_S >= min_pause_s:  # leading/trailing silence is no boundary
            pauses.append(Pause(i * FRAME_S, j * FRAME_S))
        i = j
    return pauses


def snap_to_pauses(words: Sequence[Word], pauses: Sequence[Pause], reach_s: float = REACH_S) -> list[Word]:
    out = list(words)
    used: set[int] = set()
    for pause in pauses:
        best: tuple[float, int] | None = None
        for i in range(len(out) - 1):
            if i in used:
                continue
            a, b = out[i], out[i + 1]
            # the pause must fit between the two words' starts and ends, or the move would reorder them
            if not (a.start < pause.start and pause.end < b.end):
                continue
            boundary = (a.end + b.start) / 2
            distance = max(0.0, pause.start - boundary, boundary - pause.end)
            if distance <= reach_s and (best is None or distance < best[0]):
                best = (distance, i)
        if best is not None:
            i = best[1]
            used.add(i)
            out[i] = Word(out[i].text, out[i].start, pause.start)
            out[i + 1] = Word(out[i + 1].text, pause.end, out[i + 1].end)
    return share_short_words(out)


def share_short_words(words: list[Word], min_s: float = MIN_WORD_S) -> list[Word]:
    """A word shorter than `min_s` shares its neighbour's span (the one not across a gap), split by length."""
    out = list(words)
    for i, w in enumerate(out):
        if w.end - w.start >= min_s or len(out) < 2:
            continue
        j = i + 1 if i + 1 < len(out) and out[i + 1].start - w.end < 0.05 else i - 1
        if j < 0 or j >= len(out):
            continue
        first, second = (i, j) if i < j else (j, i)
        a, b = out[first], out[second]
        start, end = a.start, b.end
        if end - start < 2 * min_s:
            continue
        cut = start + (end - start) * (len(a.text) + 1) / (len(a.text) + len(b.text) + 2)
        out[first] = Word(a.text, start, cut)
        out[second] = Word(b.text, cut, end)
    return out
