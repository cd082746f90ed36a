"""Benchmark the `build` op: an N-minute narrated 1080p30 video, burned karaoke captions vs a soft track.

    .venv/bin/python bench/bench_build.py --write bench/results/build.md   # 15 minutes (the issue's case)
    .venv/bin/python bench/bench_build.py --minutes 2 --variants soft      # quick look

Each variant runs from an empty step cache (its own data dir), in this process, exactly as a job would:
tts (piper) with word timings (forced alignment) in parallel with the background's loop period (fitted
and ping-ponged in one encode) -> captions -> compose (the one final encode, or a stream copy).
The background is an 8 s 1080p30 synthetic clip with grain (testsrc2 + noise, --grain).

Reference, measured in the same run: one plain libx264 encode of the looped background at the build's
quality ("standard": veryfast, CRF 21) — the floor of any build that encodes the picture once — timed on
--reference-minutes of it and scaled to the build's length. Peak RSS is sampled every 0.25 s over this
process and all its children together. With --minutes below 15 the 15-minute figures are extrapolated
(the background's loop period is a fixed cost, every other step is linear in length).
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from reelforge.config import Settings  # noqa: E402
from reelforge.ops.context import OpContext  # noqa: E402
from reelforge.ops.registry import get_operation  # noqa: E402

WORDS = (
    "video", "builder", "narration", "caption", "background", "music", "voice", "render", "frame",
    "scene", "story", "camera", "light", "colour", "motion", "picture", "sound", "script", "moment",
    "detail", "screen", "picture", "viewer", "channel", "editor", "studio", "morning", "evening",
    "river", "mountain", "city", "garden", "window", "coffee", "journey", "project", "simple",
    "quick", "bright",
)
CONSTANT_STEPS = {"background"}  # depends on the background clip, not on the narration's length
VERBS = (
    "shows", "explains", "carries", "follows", "brings", "frames", "opens", "builds", "shapes",
    "guides", "lifts", "joins",
)


def script_for(minutes: float, seed: int = 7) -> str:
    """About 156 words a minute (the piper voice's rate with its pauses), in plain sentences of 8 to 14 words."""
    rng = random.Random(seed)
    target = int(minutes * 156)
    sentences, count = [], 0
    while count < target:
        n = rng.randint(8, 14)
        words = [rng.choice(WORDS) for _ in range(n - 2)]
        words.insert(1, rng.choice(VERBS))
        sentence = "The " + " ".join(words) + "."
        sentences.append(sentence)
        count += n
    return " ".join(sentences)


def tree_rss_bytes(root: int) -> int:
    """RSS of `root` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            pages = int(Path(f"/proc/{entry}/statm").read_text().split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
        rss[int(entry)] = pages * os.sysconf("SC_PAGE_SIZE")
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


class PeakRSS:
    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss_bytes(os.getpid()))
            time.sleep(0.25)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def make_background(path: Path, grain: int) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=s=1920x1080:r=30:d=8",
                    "-vf", f"noise=alls={grain}:allf=t", "-c:v", "libx264", "-preset", "veryfast", "-crf", "21",
                    "-pix_fmt", "yuv420p", str(path)], check=True)


def make_stills(folder: Path, count: int, grain: int) -> list[Path]:
    """`count` grainy 1920x1080 stills (frames of the background's pattern), for a Ken Burns background."""
    stills = []
    for i in range(count):
        still = folder / f"still_{i}.png"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=s=1920x1080:r=30:d={i + 1}",
                        "-vf", f"noise=alls={grain}:allf=t,select=eq(n\\,{i * 30})", "-frames:v", "1", str(still)],
                       check=True)
        stills.append(still)
    return stills


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (ffmpeg runs are waited for, so they count)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def run_build(workdir: Path, body: dict[str, Any], whisper: str) -> tuple[float, float, int, dict[str, Any]]:
    settings = Settings(data_dir=workdir / "data", whisper_model=whisper, workers=2)
    op = get_operation("build")
    params = op.params_model.model_validate(body)
    ctx = OpContext.for_test(workdir / "job", settings)
    with PeakRSS() as rss:
        started, cpu0 = time.perf_counter(), cpu_seconds()
        result = op.run(params, ctx)
        seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu0
    return seconds, cpu, rss.peak, result.data


def reference_encode(background: Path, seconds: float, out: Path) -> tuple[float, float]:
    with PeakRSS():
        started, cpu0 = time.perf_counter(), cpu_seconds()
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-stream_loop", "-1", "-t", f"{seconds:.3f}", "-i",
                        str(background), "-an", "-c:v", "libx264", "-preset", "veryfast", "-crf", "21",
                        "-pix_fmt", "yuv420p", str(out)], check=True)
        took, cpu = time.perf_counter() - started, cpu_seconds() - cpu0
    return took, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--variants", default="burn,burn:draft,soft",
                    help="captions mode[:quality], comma-separated")
    ap.add_argument("--whisper", default="packaged:base", help="whisper_model setting (English word timings "
                                                                 "use align_model=auto: packaged tiny.en)")
    ap.add_argument("--grain", type=int, default=6,
                    help="temporal noise strength of the synthetic background: 6 encodes at about the "
                         "BASELINES.md veryfast rate (~13 Mbit/s, like 1080p stock footage); 12 is ~4x harder")
    ap.add_argument("--reference-minutes", type=float, default=2.0,
                    help="length of the reference encode (its time is scaled to the build's length: encoding "
                         "is linear in frames)")
    ap.add_argument("--images", type=int, default=0,
                    help="a Ken Burns background from this many 1080p stills instead of the looped clip")
    ap.add_argument("--write", type=Path, help="write a markdown report here")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench_build_"))
    background = work / "background.mp4"
    make_background(background, args.grain)
    stills = make_stills(work, args.images, args.grain)
    script = script_for(args.minutes)
    load_before = os.getloadavg()
    rows: dict[str, dict[str, Any]] = {}
    duration = 0.0
    for variant in args.variants.split(","):
        captions, _, quality = variant.partition(":")
        source = {"images": [str(p) for p in stills]} if stills else {"backgrounds": [str(background)]}
        body = {"script": script, **source, "captions": captions,
                "caption_style": {"style": "karaoke"}, "size": "1920x1080", "fps": 30,
                "quality": quality or "standard"}
        seconds, cpu, peak, data = run_build(work / variant.replace(":", "_"), body, args.whisper)
        duration = data["duration_s"]
        rows[variant] = {"seconds": seconds, "cpu": cpu, "peak": peak, "steps": data["steps"],
                         "video": data["video"]}
        print(f"{variant}: {seconds:.1f} s wall, {cpu:.1f} s CPU for {duration:.1f} s of video, "
              f"peak RSS {peak / 2**20:.0f} MB, video {data['video']}", flush=True)
        for sid, step in data["steps"].items():
            print(f"   {sid:<11} {step['op']:<15} {step['seconds']:8.1f} s", flush=True)
    ref_len = min(duration, args.reference_minutes * 60)
    ref_s, ref_cpu = reference_encode(background, ref_len, work / "reference.mp4")
    ref_s, ref_cpu = ref_s * duration / ref_len, ref_cpu * duration / ref_len
    load_after = os.getloadavg()
    print(f"reference (plain veryfast encode, {ref_len:.0f} s measured, scaled to {duration:.1f} s): "
          f"{ref_s:.1f} s wall, {ref_cpu:.1f} s CPU")
    scale = 15 * 60 / duration
    cores = os.cpu_count() or 1
    measured = abs(scale - 1) < 0.05

    def at_15_min(row: dict[str, Any]) -> float:
        """Steps that depend only on the background clip cost the same at any length; the rest grows
        linearly. (Only used when the run was shorter than 15 minutes.)"""
        steps = row["steps"]
        constant = set() if stills else CONSTANT_STEPS  # a Ken Burns background grows with the length
        fixed = sum(st["seconds"] for sid, st in steps.items() if sid in constant)
        wall_steps = sum(st["seconds"] for st in steps.values()) or 1.0
        fixed_part = row["seconds"] * fixed / wall_steps
        return fixed_part + (row["seconds"] - fixed_part) * scale

    lines = [
        "# build benchmark",
        "",
        f"Narrated 1080p30 build, {duration / 60:.2f} min of narration (piper voice, word timings by forced "
        f"alignment with whisper tiny.en, karaoke captions), background: 8 s 1080p30 synthetic clip "
        f"(testsrc2 + temporal grain {args.grain}) ping-pong looped. CPU: {cores} cores; load average "
        f"{load_before[0]:.1f} before, {load_after[0]:.1f} after. Each variant from an empty step cache. "
        f"Reference in the same run: a plain libx264 veryfast CRF 21 encode of the looped background "
        f"({ref_len:.0f} s measured, scaled to {duration:.0f} s: {ref_s:.1f} s wall, {ref_cpu:.1f} s CPU).",
        "",
        "| variant | wall s | CPU s | wall x reference | 15 min wall s | goal | peak RSS MB | video |",
        "|---|---|---|---|---|---|---|---|",
    ]
    goals = {"burn": "<= 600 s", "soft": "<= 120 s", "none": "-"}
    for variant, row in rows.items():
        at15 = f"{row['seconds']:.0f} (measured)" if measured else f"{at_15_min(row):.0f} (extrapolated)"
        lines.append(f"| {variant} | {row['seconds']:.1f} | {row['cpu']:.1f} | {row['seconds'] / ref_s:.2f} | "
                     f"{at15} | {goals.get(variant.split(':')[0], '-')} | {row['peak'] / 2**20:.0f} | "
                     f"{row['video']} |")
    lines += ["", "Per step, wall seconds (the narration runs in parallel with the background's loop period):",
              "", "| step | op | " + " | ".join(rows) + " |", "|---|---|" + "---|" * len(rows)]
    step_ids = list(next(iter(rows.values()))["steps"])
    for sid in step_ids:
        op = next(iter(rows.values()))["steps"][sid]["op"]
        cells = [f"{r['steps'].get(sid, {}).get('seconds', 0):.1f}" for r in rows.values()]
        lines.append(f"| {sid} | {op} | " + " | ".join(cells) + " |")
    report = "\n".join(lines) + "\n"
    print(report)
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(report)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
