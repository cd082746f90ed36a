"""Timed words: the one shape every speech op exchanges (transcribe, tts, align -> subtitles)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pysubs2


@dataclass(frozen=True)
class Word:
    text: str
    start: float  # seconds
    end: float

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "start": round(self.start, 3), "end": round(self.end, 3)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Word:
        text = d.get("text", d.get("word"))
        if not isinstance(text, str):
            raise ValueError("each word needs a text")
        start, end = float(d["start"]), float(d["end"])
        if not (start >= 0 and end >= start):
            raise ValueError(f"word {text!r} needs 0 <= start <= end (got {start}..{end})")
        return cls(text.strip(), start, end)


def words_from_json(data: Any) -> list[Word]:
    """Words from a words.json document: a list of {text,start,end} or {"words": [...]}."""
    items = data.get("words") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise ValueError("expected a list of words or an object with a 'words' list")
    return [w for w in (Word.from_dict(i) for i in items) if w.text]


def load_words(path: Path) -> list[Word]:
    return words_from_json(json.loads(path.read_text(encoding="utf-8")))


def words_to_json(words: Sequence[Word], **extra: Any) -> str:
    return json.dumps({"words": [w.to_dict() for w in words], **extra}, ensure_ascii=False, indent=1)


def write_words_json(words: Sequence[Word], path: Path, **extra: Any) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(words_to_json(words, **extra), encoding="utf-8")
    tmp.replace(path)
    return path


def words_from_subs(subs: pysubs2.SSAFile, breaks: set[int] | None = None) -> list[Word]:
    """Word timings guessed from subtitle lines: each line's time shared by its words by length.

    When `breaks` is given, the index of each line's first word is added to it, so captions built from
    these words can keep the file's own line boundaries.

    A user's SRT only knows when whole lines show; spreading by character count is a fair stand-in so the
    word styles (karaoke, highlight) still work on it.
    """
    out: list[Word] = []
    for event in sorted((e for e in subs if not e.is_comment), key=lambda e: e.start):
        tokens = event.plaintext.split()
        if not tokens or event.end <= event.start:
            continue
        start, end = event.start / 1000.0, event.end / 1000.0
        weights = [len(t) + 1 for t in tokens]
        total = float(sum(weights))
        t = start
        if breaks is not None:
            breaks.add(len(out))
        for token, weight in zip(tokens, weights, strict=True):
            dur = (end - start) * weight / total
            out.append(Word(token, t, t + dur))
            t += dur
    return out


def plain_text(words: Iterable[Word]) -> str:
    return " ".join(w.text for w in words)
