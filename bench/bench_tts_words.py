"""Word timings of espeak narration: the synthesiser's own word events vs forced alignment, same run.

The tts op speaks ~2 minutes of espeak (the chunked bench's sentence) as wav with word timings, alternating
between the default path (libespeak-ng in a small process per sentence; its word events time the words)
and the reference, the espeak-ng binary with whisper's forced alignment (what REELFORGE_ESPEAK selects).
Prints wall and CPU seconds of each run and the ratio of the medians. Pin it to one core for the numbers in
bench/results/speech.md:

    flock /tmp/rf-cpu.lock taskset -c 0 .venv/bin/python bench/bench_tts_words.py --repeat 3
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from reelforge.config import Settings
from reelforge.ops.context import OpContext
from reelforge.ops.registry import get_operation

SENTENCE = ("The quick brown fox jumps over the lazy dog while the narrator keeps on talking about the weather "
            "and the long road home.")


def cpu_seconds() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sentences", type=int, default=18)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-tts-words-"))
    settings = Settings(data_dir=work / "data", threads_per_job=1, workers=1, whisper_model="packaged:tiny.en")
    op = get_operation("tts")
    params = op.params_model(text=" ".join([SENTENCE] * args.sentences), engine="espeak", format="wav",
                             sample_rate=48000, sentence_pause_s=0.2)
    walls: dict[str, list[float]] = {"voice": [], "alignment": []}
    for i in range(args.repeat):
        for path in ("voice", "alignment"):
            if path == "alignment":
                os.environ["REELFORGE_ESPEAK"] = "espeak-ng"
            try:
                started, cpu0 = time.perf_counter(), cpu_seconds()
                res = op.run(params, OpContext.for_test(work / f"{path}-{i}", settings))
                wall, cpu = time.perf_counter() - started, cpu_seconds() - cpu0
            finally:
                os.environ.pop("REELFORGE_ESPEAK", None)
            assert res.data["word_timings_from"] == path, res.data["word_timings_from"]
            walls[path].append(wall)
            print(f"{path:9s} run {i + 1}: {wall:.2f} s wall, {cpu:.2f} CPU s, {res.data['duration_s']:.1f} s "
                  f"of speech, {len(res.data['words'])} words")
    voice, aligned = statistics.median(walls["voice"]), statistics.median(walls["alignment"])
    print(f"median wall: voice {voice:.2f} s, binary + alignment {aligned:.2f} s: {aligned / voice:.2f}x faster")


if __name__ == "__main__":
    main()
