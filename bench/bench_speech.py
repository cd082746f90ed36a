"""Speech benchmark: transcription RTF (tiny.en vs base, batched vs not), TTS RTF per engine, and
first-job vs warm-job latency. CPU, threads_per_job=2 (the worker default).

    .venv/bin/python bench/bench_speech.py [--write]   # --write: bench/results/speech.md

RTF = processing seconds / audio seconds (lower is faster). Ratios are against references measured in the
same run (tiny.en unbatched for transcription, piper for TTS), since the machine may be shared.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import tempfile
import time
import wave
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

from reelforge.config import Settings
from reelforge.models import tts as tts_models
from reelforge.models.cache import MODEL_CACHE
from reelforge.models.whisper import (
    SAMPLE_RATE,
    TranscribeOptions,
    choose_whisper,
    load_whisper,
    transcribe_audio,
)
from reelforge.ops.align import align_audio, align_spoken
from reelforge.ops.context import OpContext
from reelforge.ops.registry import get_operation

SENTENCES = [
    "The morning sun rose slowly over the quiet harbor.",
    "Fishing boats were already heading out to sea.",
    "A small dog barked at the seagulls on the pier.",
    "The baker opened his shop and the smell of fresh bread filled the street.",
    "Children walked to school with their bags on their backs.",
    "An old man sat on a bench and read the newspaper.",
    "The wind carried the sound of bells from the church.",
    "A young woman painted the boats in bright colors.",
    "Tourists took photos of the lighthouse on the hill.",
    "The market was full of fruit, vegetables and flowers.",
    "At noon the town became quiet and warm.",
    "People ate lunch in the shade of the trees.",
    "In the afternoon the boats came back with their catch.",
    "The fishermen sold their fish at the busy market.",
    "Clouds gathered slowly over the distant mountains.",
    "A light rain began to fall on the roofs.",
    "The children ran home through the wet streets.",
    "Lights appeared one by one in the windows.",
    "The harbor grew calm as the evening came.",
    "Finally the whole town went to sleep under the stars.",
    "Tomorrow the boats would sail again at dawn.",
    "Nobody in the town could imagine living anywhere else.",
]


def wer(ref: str, hyp: str) -> float:
    r = re.sub(r"[^a-z' ]+", " ", ref.lower()).split()
    h = re.sub(r"[^a-z' ]+", " ", hyp.lower()).split()
    row = list(range(len(h) + 1))
    for i, a in enumerate(r, 1):
        prev, row[0] = row[0], i
        for j, b in enumerate(h, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (a != b))
    return row[-1] / max(1, len(r))


def resample_16k(audio: np.ndarray, rate: int) -> np.ndarray:
    n = round(audio.size * SAMPLE_RATE / rate)
    return np.interp(np.linspace(0, audio.size - 1, n), np.arange(audio.size), audio).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-speech-"))
    base_settings = Settings(data_dir=tmp / "data", threads_per_job=2, device="cpu", workers=1)
    load_start = os.getloadavg()
    lines: list[str] = []

    def out(s: str = "") -> None:
        print(s, flush=True)
        lines.append(s)

    # ---- TTS RTF per engine (and the 60 s clip for transcription, from piper)
    tts_rows = []
    text_60 = " ".join(SENTENCES)
    for engine, text in (("piper", text_60), ("espeak", text_60), ("kokoro", " ".join(SENTENCES[:6]))):
        req = tts_models.resolve_voice(engine, None, None)
        tts_models.synthesize_text("Warm up.", req, speed=1.0, settings=base_settings)  # load once
        t0, c0 = time.perf_counter(), time.process_time()
        speech = tts_models.synthesize_text(text, req, speed=1.0, settings=base_settings)
        audio, rate = speech.audio, speech.rate
        secs, cpu = time.perf_counter() - t0, time.process_time() - c0
        dur = audio.size / rate
        tts_rows.append((engine, req.voice, dur, secs, cpu))
        if engine == "piper":
            clip, clip_rate, piper_speech = audio, rate, speech
    ref_tts = tts_rows[0][3] / tts_rows[0][2]
    clip16 = resample_16k(clip, clip_rate)
    clip_dur = clip16.size / SAMPLE_RATE

    # ---- transcription RTF: models x (unbatched, batched), beam 5, int8, 2 threads
    tr_rows = []
    for model in ("packaged:tiny.en", "packaged:base"):
        settings = base_settings.replace(whisper_model=model)
        choice = choose_whisper(settings)
        t0 = time.perf_counter()
        load_whisper(choice, settings.compute.threads_per_job)
        load_s = time.perf_counter() - t0
        for batched in (False, True):
            opts = TranscribeOptions(language="en", beam_size=5, word_timestamps=True, batched=batched)
            t0, c0 = time.perf_counter(), time.process_time()
            tr = transcribe_audio(clip16, settings, opts)
            secs, cpu = time.perf_counter() - t0, time.process_time() - c0
            tr_rows.append((model.split(":")[1], batched, secs, cpu, load_s, wer(text_60, tr.text)))
    ref_tr = tr_rows[0][2]

    # ---- word timings of tts audio: forced alignment of the known sentence windows (what tts does) vs
    # transcribing and mapping (the reference, what `align` does for audio of unknown layout)
    align_settings = base_settings.replace(whisper_model="packaged:tiny.en")
    piper_wav = tmp / "piper60.wav"
    with wave.open(str(piper_wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(clip_rate)
        w.writeframes((np.clip(clip, -1, 1) * 32767).astype("<i2").tobytes())
    spans = [(s.text, s.start_s, s.end_s) for s in piper_speech.sentences]
    actx = OpContext.for_test(tmp / "align", align_settings)
    align_spoken(piper_wav, spans[:1], spans[0][0], actx, language="en")  # load the model first
    al_rows = []
    for name, run in (("transcribe + map (reference)", lambda: align_audio(piper_wav, text_60, actx, language="en")),
                      ("forced, sentence windows", lambda: align_spoken(piper_wav, spans, text_60, actx,
                                                                        language="en"))):
        t0, c0 = time.perf_counter(), time.process_time()
        result = run()
        al_rows.append((name, time.perf_counter() - t0, time.process_time() - c0, result))
    ref_words = al_rows[0][3].words
    al_diff = [float(np.median([abs(a.start - b.start) for a, b in zip(r.words, ref_words, strict=True)]))
               for *_, r in al_rows]

    # ---- first job vs warm job (whole ops, in this process; first = model load + run)
    lat_rows = []
    wav = tmp / "clip10.wav"


    ten = clip[: int(10 * clip_rate)]
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(clip_rate)
        w.writeframes((np.clip(ten, -1, 1) * 32767).astype("<i2").tobytes())
    for model in ("packaged:tiny.en", "packaged:base"):
        settings = base_settings.replace(whisper_model=model)
        MODEL_CACHE.clear()
        op = get_operation("transcribe")
        times = []
        for i in range(2):
            t0 = time.perf_counter()
            op.run(op.params_model(input=str(wav), language="en"), OpContext.for_test(tmp / f"w{model}{i}", settings))
            times.append(time.perf_counter() - t0)
        lat_rows.append((f"transcribe 10 s ({model.split(':')[1]})", *times))
    for engine in ("piper", "kokoro"):
        MODEL_CACHE.clear()
        op = get_operation("tts")
        times = []
        for i in range(2):
            t0 = time.perf_counter()
            op.run(op.params_model(text="A short sentence for the latency test.", engine=engine, word_timings=False),
                   OpContext.for_test(tmp / f"t{engine}{i}", base_settings))
            times.append(time.perf_counter() - t0)
        lat_rows.append((f"tts one sentence ({engine}, no timings)", *times))
    MODEL_CACHE.clear()
    op = get_operation("tts")
    settings = base_settings.replace(whisper_model="packaged:base")
    times = []
    for i in range(2):
        t0 = time.perf_counter()
        op.run(op.params_model(text="A short sentence for the latency test. With word timings.", engine="piper"),
               OpContext.for_test(tmp / f"tp{i}", settings))
        times.append(time.perf_counter() - t0)
    lat_rows.append(("tts + align (piper, base)", *times))

    load_end = os.getloadavg()
    out("# Speech benchmark")
    out()
    out(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, threads_per_job=2, "
        f"Python {sys.version.split()[0]}; load average at start {load_start[0]:.2f}, at end {load_end[0]:.2f} "
        "(the machine is shared with other engineers: compare ratios within this run).")
    out()
    out(f"## Transcription of a {clip_dur:.1f} s piper clip (int8, beam 5, word timestamps, CPU)")
    out()
    out("CPU RTF = process CPU seconds / 2 threads / audio seconds: what the wall RTF would be with both cores")
    out("to ourselves (a load-independent estimate; the wall figures include waiting for the shared CPU).")
    out()
    out("| model | pipeline | seconds | RTF (wall) | CPU RTF | vs tiny.en unbatched | load s | WER |")
    out("|---|---|---|---|---|---|---|---|")
    for name, batched, secs, cpu, load_s, w in tr_rows:
        out(f"| {name} | {'batched (8)' if batched else 'sequential'} | {secs:.2f} | {secs / clip_dur:.3f} | "
            f"{cpu / 2 / clip_dur:.3f} | {secs / ref_tr:.2f}x | {load_s:.2f} | {w:.3f} |")
    out()
    out("## TTS (synthesis only, sentence by sentence, joined; model warm)")
    out()
    out("(espeak runs as a child process, so its CPU time is not counted in CPU RTF.)")
    out()
    out("| engine | voice | audio s | seconds | RTF (wall) | CPU RTF | vs piper |")
    out("|---|---|---|---|---|---|---|")
    for engine, voice, dur, secs, cpu in tts_rows:
        out(f"| {engine} | {voice} | {dur:.1f} | {secs:.2f} | {secs / dur:.3f} | {cpu / 2 / dur:.3f} | "
            f"{secs / dur / ref_tts:.2f}x |")
    out()
    out(f"## Word timings of the {clip_dur:.1f} s piper clip (tiny.en, 2 threads, model warm)")
    out()
    out("| method | seconds | RTF (wall) | vs reference | matched | median start difference to reference |")
    out("|---|---|---|---|---|---|")
    for (name, secs, _cpu, res), diff in zip(al_rows, al_diff, strict=True):
        out(f"| {name} | {secs:.2f} | {secs / clip_dur:.3f} | {secs / al_rows[0][1]:.2f}x | "
            f"{res.matched_ratio:.3f} | {diff:.3f} s |")
    out()
    out("## First job vs warm job (whole op in one worker process)")
    out()
    out("| job | first (load + run) s | warm (run) s | first / warm |")
    out("|---|---|---|---|")
    for name, first, warm in lat_rows:
        out(f"| {name} | {first:.2f} | {warm:.2f} | {first / warm:.2f}x |")
    if args.write:
        Path(__file__).with_name("results").mkdir(exist_ok=True)
        Path(__file__).with_name("results").joinpath("speech.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
