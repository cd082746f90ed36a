"""Benchmark the Shotstack front door: an edit translated and rendered by `render` vs one hand-written ffmpeg
command making the same video, side by side in one run (same x264 settings, same inputs).

    .venv/bin/python bench/bench_shotstack.py              # 10 s at hd (1280x720, 25 fps)
    .venv/bin/python bench/bench_shotstack.py --seconds 5 --resolution preview

What is measured (media generated here):
1. translate: Shotstack edit -> render params (pure Python), per edit.
2. render: the hello-world shape (title + image + video + soundtrack, a fade in) through the `render`
   op in this process (probes, plan, one ffmpeg) vs the reference: one ffmpeg command with the same
   scale/overlay/drawtext/fade/amix graph written by hand and the same encoder arguments. Ratio = op / ref.
3. html: the first render of an html asset (headless chromium) vs the cached one.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from reelforge.config import Settings  # noqa: E402
from reelforge.formats.shotstack import RESOLUTIONS, translate  # noqa: E402
from reelforge.media.codecs import AAC_ARGS, DEFAULT_VIDEO_ARGS  # noqa: E402
from reelforge.media.html import HtmlPicture, render_html  # noqa: E402
from reelforge.ops.context import OpContext  # noqa: E402
from reelforge.ops.registry import get_operation  # noqa: E402


def ff(*args: str) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--resolution", default="hd", choices=sorted(RESOLUTIONS))
    args = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="bench-shotstack-"))
    T = args.seconds
    W, H = RESOLUTIONS[args.resolution]
    ff("-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate=25:duration={T}", "-f", "lavfi", "-i",
       f"sine=f=440:d={T}", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac",
       "-shortest", str(d / "video.mp4"))
    ff("-f", "lavfi", "-i", "testsrc=size=400x400", "-frames:v", "1", str(d / "logo.png"))
    ff("-f", "lavfi", "-i", f"sine=f=220:d={T + 2}", "-c:a", "libmp3lame", str(d / "music.mp3"))
    edit = {"timeline": {"soundtrack": {"src": str(d / "music.mp3"), "volume": 0.5}, "tracks": [
        {"clips": [{"asset": {"type": "title", "text": "Hello World", "size": "medium"}, "start": 0, "length": T,
                    "position": "top"}]},
        {"clips": [{"asset": {"type": "image", "src": str(d / "logo.png")}, "start": 0, "length": T, "fit": "none",
                    "scale": 0.5, "position": "bottomRight"}]},
        {"clips": [{"asset": {"type": "video", "src": str(d / "video.mp4")}, "start": 0, "length": T,
                    "transition": {"in": "fade"}}]}]},
        "output": {"format": "mp4", "resolution": args.resolution, "fps": 25}}

    n = 2000
    t0 = time.perf_counter()
    for _ in range(n):
        params = translate(edit).params
    per_edit_us = (time.perf_counter() - t0) / n * 1e6

    op = get_operation("render")
    ctx = OpContext.for_test(d / "work", Settings(data_dir=d / "data", workers=1, nvenc="off"))
    t0 = time.perf_counter()
    op.run(op.params_model.model_validate(params), ctx)
    op_s = time.perf_counter() - t0

    font_px = round(H * 0.062)
    text = d / "title.txt"
    text.write_text("Hello World", encoding="utf-8")
    graph = (f"color=c=black:s={W}x{H}:r=25:d={T}[bg];"
             f"[0:v]fps=25,scale={W}:{H},setsar=1,format=yuva420p,fade=t=in:st=0:d=1:alpha=1[v];"
             f"[bg][v]overlay=eof_action=pass[b1];"
             f"[1:v]fps=25,scale=200:200,format=yuva420p[l];[b1][l]overlay=W-w:H-h[b2];"
             f"[b2]drawtext=textfile={text}:font=DejaVu Sans:fontsize={font_px}:fontcolor=#ffffff:"
             f"x=(w-text_w)/2:y={round(H * 0.05)},format=yuv420p[vout];"
             f"[0:a]aresample=48000[a0];[2:a]aresample=48000,volume=0.5[a1];"
             f"[a0][a1]amix=inputs=2:duration=longest:normalize=0,atrim=end={T}[aout]")
    t0 = time.perf_counter()
    ff("-i", str(d / "video.mp4"), "-loop", "1", "-framerate", "25", "-t", str(T), "-i", str(d / "logo.png"),
       "-t", str(T), "-i", str(d / "music.mp3"), "-filter_complex", graph, "-map", "[vout]", "-map", "[aout]",
       *DEFAULT_VIDEO_ARGS, *AAC_ARGS, "-t", str(T), str(d / "ref.mp4"))
    ref_s = time.perf_counter() - t0

    pic = HtmlPicture("<p>Hello <b>World</b></p>", "p{color:#fff;font-size:48px}", 600, 200)
    cache = d / "html"
    t0 = time.perf_counter()
    render_html(pic, cache, Settings().media.chromium_path)
    first_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    render_html(pic, cache, Settings().media.chromium_path)
    cached_ms = (time.perf_counter() - t0) * 1000

    load = Path("/proc/loadavg").read_text().split()[:3]
    print(f"machine load (1/5/15 min): {' '.join(load)}")
    print(f"translate: {per_edit_us:.0f} us per edit")
    print(f"render {args.resolution} {W}x{H} {T:g} s: op {op_s:.2f} s, hand-written ffmpeg {ref_s:.2f} s, "
          f"ratio {op_s / ref_s:.2f}")
    print(f"html asset: first render {first_s:.2f} s (chromium start included), cached {cached_ms:.1f} ms")


if __name__ == "__main__":
    main()
