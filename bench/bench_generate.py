"""generate: tiny-pipeline steps/s, and the op's overhead around the pipeline (image prep + encode) vs the
bare diffusers call measured in the same run, on CPU (CUDA when torch sees one and --device cuda).

    .venv/bin/python bench/bench_generate.py [--families svd,ltx] [--steps 4] [--size 64] [--frames 9] [--repeat 3]

The reference is the bare pipeline call with the same arguments on the same loaded pipeline; the op is the
whole `generate` run (warm: the model is loaded once before timing), so op/bare - 1 is what ReelForge adds
(fitting the image, progress and cancel hooks, raw frames to ffmpeg, x264 encode). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from reelforge.config import Settings
from reelforge.models import generate_pipe as gp
from reelforge.models.generate_plan import FAMILIES, choose_plan, read_model
from reelforge.models.generate_tiny import TINY
from reelforge.ops.context import OpContext
from reelforge.ops.registry import get_operation


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--families", default="svd,ltx")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--frames", type=int, default=9)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-gen-"))
    image = root / "first.png"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=s=640x360", "-frames:v", "1", str(image)],
                   check=True)
    models = {f"tiny-{f}": {"folder": str(TINY[f](root / f"tiny-{f}")), "family": f}
              for f in args.families.split(",")}
    settings = Settings(data_dir=root / "data", generate_models=models, threads_per_job=args.threads,
                        device=args.device)
    op = get_operation("generate")
    gp.use_threads(args.threads)
    rows = []
    for name, cfg in models.items():
        fam = FAMILIES[cfg["family"]]
        entry = settings.models.generate_models[name]
        params = op.params_model.model_validate({
            "image": str(image), "model": name, "frames": args.frames, "fps": 8, "width": args.size,
            "height": args.size, "steps": args.steps, "guidance": 1.0 if fam.name == "svd" else 3.0, "seed": 1,
            "prompt": "a red bird flies over the sea"})
        plan = choose_plan(read_model(name, entry, settings), entry, settings, device=args.device,
                           detected_gb=gp.detected_budget_gb(args.device), width=args.size, height=args.size,
                           frames=args.frames)
        t0 = time.perf_counter()
        loaded, _, _ = gp.PIPELINES.get(plan, plan.budget_gb)
        load_s = time.perf_counter() - t0
        bare, ops, step_rates, prep, enc = [], [], [], [], []
        for i in range(args.repeat + 1):  # the first round warms up and is not counted
            img = gp.Request(image=_fit(image, plan.gen_size), prompt="a red bird flies over the sea",
                             negative_prompt="", steps=args.steps, guidance=params.guidance or 1.0, motion=0.5,
                             fps=8, seed=1)
            marks: list[float] = []
            t0 = time.perf_counter()
            with gp.import_torch().inference_mode():
                loaded.pipe(**gp.call_kwargs(plan, img), generator=gp.import_torch().Generator().manual_seed(1),
                            callback_on_step_end=lambda p, k, t, kw, m=marks: (m.append(time.perf_counter()), kw)[1])
            b = time.perf_counter() - t0
            ctx = OpContext.for_test(root / f"w-{name}-{i}", settings)
            t0 = time.perf_counter()
            result = op.run(params, ctx)
            o = time.perf_counter() - t0
            if i == 0:
                continue
            bare.append(b)
            ops.append(o)
            if len(marks) > 1:
                step_rates.append((len(marks) - 1) / (marks[-1] - marks[0]))
            prep.append(result.data["timings"]["prepare_s"])
            enc.append(result.data["timings"]["encode_s"])
        mb, mo = statistics.median(bare), statistics.median(ops)
        rows.append((name, f"{statistics.median(step_rates):.2f}" if step_rates else "-", f"{mb:.2f}", f"{mo:.2f}",
                     f"{mo / mb:.2f}x", f"{statistics.median(prep) * 1000:.0f}", f"{statistics.median(enc):.2f}",
                     f"{load_s:.1f}"))
    load = os.getloadavg()
    print(f"device {args.device}, {args.threads} torch thread(s), {args.size}x{args.size}, {args.frames} frames, "
          f"{args.steps} steps, median of {args.repeat}; load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
          f"on {os.cpu_count()} cores\n")
    print("| model | steps/s (between step callbacks) | bare pipeline s | op s | op / bare | image prep ms | "
          "encode s | load s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


def _fit(path: Path, size: tuple[int, int]):  # type: ignore[no-untyped-def]
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        return ImageOps.fit(img.convert("RGB"), size)


if __name__ == "__main__":
    main()
