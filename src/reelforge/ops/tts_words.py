"""Word timings of synthesised speech: the voice's own where it gives them, forced alignment for the rest.

A piper voice knows how many samples each phoneme got (its duration predictor decides the audio's length),
so the time of every spoken word is exact and costs nothing (models.tts_piper.word_spans: which phonemes
are which word); whisper's forced alignment listens to the audio afterwards and estimates them (~27 CPU s
for 15 minutes of speech, often ~0.1 s late). A sentence the voice could not time (no durations from its
graph, a word whose sounds were not found) is aligned by whisper instead. Words equal the script verbatim
either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from reelforge.captions.align import Alignment, script_words
from reelforge.captions.words import Word
from reelforge.models.tts import Speech, Spoken
from reelforge.ops.align import align_spoken
from reelforge.ops.context import OpContext


def voice_words(sentence: Spoken) -> list[Word] | None:
    """The sentence's script words with the voice's own times, or None when the voice gave none."""
    texts = script_words(sentence.text)
    if sentence.words is None or len(sentence.words) != len(texts) or not texts:
        return None
    words: list[Word] = []
    prev = sentence.start_s
    for text, (start, end) in zip(texts, sentence.words, strict=True):
        start = max(start, prev)  # monotonic, whatever rounding did
        end = max(end, start)
        words.append(Word(text, round(start, 3), round(end, 3)))
        prev = end
    return words


def _covers(words: Sequence[Word], script: str) -> bool:
    return [w.text for w in words] == script_words(script)


def voice_alignment(speech: Speech, script: str) -> Alignment | None:
    """The script's words all timed by the voice, or None when some sentence needs alignment."""
    timed = [voice_words(s) for s in speech.sentences]
    words = [w for ws in timed if ws is not None for w in ws]
    if all(ws is not None for ws in timed) and _covers(words, script):
        return Alignment(words, len(words), len(words))
    return None


def speech_alignment(joined: Path, speech: Speech, script: str, ctx: OpContext, *, language: str,
                     span: tuple[float, float]) -> tuple[Alignment, str]:
    """Times for exactly the script's words when the voice could not time them all (voice_alignment gave
    None), and where they came from: "voice+alignment" (whisper aligned only the sentences the voice could
    not time) or "alignment" (all of them)."""
    timed = [voice_words(s) for s in speech.sentences]
    todo = [i for i, ws in enumerate(timed) if ws is None]
    if 0 < len(todo) < len(timed):
        rest = [speech.sentences[i] for i in todo]
        # a window must not reach over a sentence the voice timed: its words are not in the window's text
        breaks = [k > 0 and todo[k] != todo[k - 1] + 1 for k in range(len(todo))]
        heard = align_spoken(joined, [(s.text, s.start_s, s.end_s) for s in rest], " ".join(s.text for s in rest),
                             ctx, language=language, span=span, breaks=breaks)
        aligned = iter(heard.words)
        merged: list[Word] = []
        for sentence, ws in zip(speech.sentences, timed, strict=True):
            merged += ws if ws is not None else [next(aligned) for _ in script_words(sentence.text)]
        if _covers(merged, script):
            exact = len(merged) - heard.total
            return Alignment(merged, exact + heard.matched, len(merged)), "voice+alignment"
    spoken = [(s.text, s.start_s, s.end_s) for s in speech.sentences]
    return align_spoken(joined, spoken, script, ctx, language=language, span=span), "alignment"
