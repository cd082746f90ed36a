"""Which language a text is written in, to pick a voice that speaks it when a job names none.

py3langid (a numpy port of langid.py, BSD-3-Clause, 97 languages, model inside the package) answers in
~1 ms a sentence; its model loads once per process (a few seconds), so this runs on workers at job time,
never on the API's submit path.
"""

from __future__ import annotations

import functools
from typing import Any

MIN_LETTERS = 12  # shorter texts ("Hello", "ok go") are guessed wrongly more often than not
MIN_CONFIDENCE = 0.5


@functools.lru_cache(maxsize=1)
def _identifier() -> Any:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def detect_language(text: str) -> str | None:
    """ISO 639-1 code of the text's language, or None when too short or unsure."""
    if sum(ch.isalpha() for ch in text) < MIN_LETTERS:
        return None
    code, confidence = _identifier().classify(text[:2000])
    return str(code) if confidence >= MIN_CONFIDENCE else None
