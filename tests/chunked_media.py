"""Media and measures for the chunked-render tests (docs/CHUNKED.md): a timeline with a caption track, music
and transitions across the joins, and the seamlessness checks (frames, keyframes, PSNR at the joins, audio)."""

from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np


def make_sources(folder: Path) -> dict[str, Path]:
    """A 40 s clip (picture + tone), a 30 s music bed, an image: small and quick to make."""
    folder.mkdir(parents=True, exist_ok=True)
    clip, music, image = folder / "clip.mp4", folder / "music.mp3", folder / "img.png"
    run = ["ffmpeg", "-v", "error", "-y"]
    subprocess.run([*run, "-f", "lavfi", "-i", "testsrc2=s=192x108:r=10:d=40", "-f", "lavfi", "-i",
                    "sine=f=440:d=40", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest",
                    str(clip)], check=True)
    subprocess.run([*run, "-f", "lavfi", "-i", "sine=f=220:d=30", "-f", "lavfi", "-i", "anoisesrc=d=30:a=0.05",
                    "-filter_complex", "amix=inputs=2", "-c:a", "libmp3lame", str(music)], check=True)
    subprocess.run([*run, "-f", "lavfi", "-i", "mandelbrot=s=192x108", "-frames:v", "1", str(image)], check=True)
    return {"clip": clip, "music": music, "image": image}


def timeline(src: dict[str, str], *, total: float = 180, fps: float = 5, size: str = "160x90",
             caption_word: str = "w", **extra: Any) -> dict[str, Any]:
    """A `total`-second render: captions throughout, music looped, clips whose transitions cross the
    one-third and two-thirds marks (where three chunks are cut)."""
    third = total / 3
    words = [{"text": f"{caption_word}{i}" if i >= total * 2 * 0.7 else f"w{i}", "start": i * 0.5,
              "end": i * 0.5 + 0.45} for i in range(int(total * 2))]
    return {"timeline": {
        "background": "#203040", "duration": total,
        "soundtrack": {"src": src["music"], "loop": True, "volume": 0.8},
        "tracks": [
            {"clips": [{"asset": {"type": "caption", "words": words}, "start": 0, "length": total}]},
            {"clips": [{"asset": {"type": "text", "text": "Across the join", "size": 14}, "start": third - 2,
                        "length": 5, "transition": {"in": "fade", "out": "wipeLeft", "duration": 1}}]},
            {"clips": [
                {"asset": {"type": "video", "src": src["clip"]}, "start": 0, "length": min(40, third - 5)},
                {"asset": {"type": "image", "src": src["image"]}, "start": min(40, third - 5),
                 "length": third - 0.5 - min(40, third - 5), "effect": "zoomIn"},
                {"asset": {"type": "video", "src": src["clip"], "trim": 2}, "start": third - 0.5, "length": third,
                 "transition": {"in": "wipeRight", "duration": 1}},
                {"asset": {"type": "image", "src": src["image"]}, "start": 2 * third - 0.5,
                 "length": third + 0.5, "effect": "zoomOut", "transition": {"in": "fade", "duration": 1}},
            ]},
        ]}, "output": {"format": "mp4", "size": size, "fps": fps}, **extra}


def video_frames(path: Path) -> list[dict[str, Any]]:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                          "frame=pts_time,key_frame", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)["frames"]


def gray_frames(path: Path, width: int, height: int) -> np.ndarray:
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:v:0", "-f", "rawvideo",
                          "-pix_fmt", "gray", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, height, width)


def samples(path: Path) -> np.ndarray:
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:a:0", "-f", "f32le", "-ac", "2",
                          "-ar", "48000", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.float32).reshape(-1, 2)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def compare(reference: Path, chunked: Path, joins: list[int], size: tuple[int, int]) -> dict[str, Any]:
    """The seamlessness measures of a chunked render against the unchunked one."""
    fr, fc = video_frames(reference), video_frames(chunked)
    times = [float(f["pts_time"]) for f in fc]
    a, b = gray_frames(reference, *size), gray_frames(chunked, *size)
    join_psnr = {j: min(psnr(a[k], b[k]) for k in range(max(0, j - 3), min(len(a), j + 3))) for j in joins}
    sa, sb = samples(reference), samples(chunked)
    n = min(len(sa), len(sb))
    return {"frames": (len(fr), len(fc)), "keyframes_ref": [i for i, f in enumerate(fr) if f["key_frame"]],
            "keyframes": [i for i, f in enumerate(fc) if f["key_frame"]],
            "monotonic": all(x < y for x, y in itertools.pairwise(times)),
            "join_psnr": join_psnr, "min_psnr": min(psnr(x, y) for x, y in zip(a, b, strict=False)),
            "samples": (len(sa), len(sb)),
            "audio_max_diff": float(np.abs(sa[:n] - sb[:n]).max()) if n else 1.0}
