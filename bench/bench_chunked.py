"""Benchmark chunked rendering (docs/CHUNKED.md) on real Celery workers, or remote agents: 2 workers vs 1 on a
1080p render.

    flock /tmp/reelforge-services.lock .venv/bin/python bench/bench_chunked.py            # 2 minutes, 1080p25
    flock /tmp/reelforge-services.lock .venv/bin/python bench/bench_chunked.py --backend agents
    flock /tmp/reelforge-services.lock .venv/bin/python bench/bench_chunked.py --seconds 30 --size 1280x720
    flock /tmp/reelforge-services.lock .venv/bin/python bench/bench_chunked.py --op build --seconds 60 --size 640x360
    flock /tmp/reelforge-services.lock .venv/bin/python bench/bench_chunked.py --layout front   # the video first

`--op build`: a build instead (espeak narration of about `--seconds`, the clip as a looped ping-pong
background, looped ducked music, burned karaoke captions; `cache: false`, so both runs make every step);
chunks are cut when the narration is longer than 20 s here (REELFORGE_CHUNK_THRESHOLD_S).

A real `reelforge serve` (Celery executor, a throw-away PostgreSQL database, its own Redis database) and
`reelforge worker` processes, each pinned to its own core with taskset and running one job at a time, with
x264 held to one thread (THREADS_PER_JOB=1: chunked-render encodes use `-threads` from it), and job hosts
not niced (JOB_NICE=0), so the measured encodes compete with other load on equal terms.

`--backend agents`: the same with `reelforge agent` processes (pinned alike, one slot each, an agent token and
no database, broker or storage settings) taking every queue of an embedded service on local storage
(compute.queue_backends): the parent forks on an agent through its job token, every chunk and the join run
on agents, and every file goes through the API (docs/CHUNKED.md, "On agents").

    reference   1 worker, the render in one job (`chunks: 1`)
    chunked     N workers (default 2), the render split into N chunks (`chunks: N`, so a worker count
                taken while the workers start cannot change what is measured); `--chunks C`: C chunks instead,
                so 2 workers can show how evenly an 8-way split's chunks cost (the balance line: the most
                one worker per chunk could reach from those costs, before any overhead)

Printed and written (--write): wall times, the speed-up (reference / chunked, goal >= 1.8x for 2 workers),
the CPU seconds of the worker process trees in each run (so the chunking's extra work shows apart from
what other load on the machine did to wall time), and the per-chunk overhead from the jobs' own records:
the parent's planning run, each chunk's start-up before its encode, the join. The 1-minute load average
is sampled during each run. Before each timed run every worker runs one short render, so its job host
is up, as on a long-lived worker.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.integration.pg import temp_database  # noqa: E402
from tests.integration.service import Service, wait_job  # noqa: E402

REDIS_DB = 13


def make_media(folder: Path, size: str) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    clip, image, music = folder / "clip.mp4", folder / "img.png", folder / "music.mp3"
    run = ["ffmpeg", "-v", "error", "-y"]
    subprocess.run([*run, "-f", "lavfi", "-i", f"testsrc2=s={size}:r=25:d=10", "-f", "lavfi", "-i",
                    "sine=f=330:d=10", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "18", "-c:a", "aac",
                    "-shortest", str(clip)], check=True)
    subprocess.run([*run, "-f", "lavfi", "-i", f"mandelbrot=s={size}", "-frames:v", "1", str(image)], check=True)
    subprocess.run([*run, "-f", "lavfi", "-i", "sine=f=220:d=30", "-f", "lavfi", "-i", "anoisesrc=d=30:a=0.05",
                    "-filter_complex", "amix=inputs=2", "-c:a", "libmp3lame", str(music)], check=True)
    return {"clip": clip, "image": image, "music": music}


def timeline(src: dict[str, str], seconds: float, size: str, fps: float, quality: str,
             layout: str = "alternate") -> dict[str, Any]:
    """10 s video and image clips with fades, a caption track, a title, looped music. `layout`: alternate (video
    and image clips by turns) or front (video clips for the first half, images after: the moving minutes all in
    the first half, which costs about twice the second)."""
    clips, t, i = [], 0.0, 0
    while t < seconds:
        length = min(10.0, seconds - t)
        video = i % 2 == 0 if layout == "alternate" else t < seconds / 2
        asset = {"type": "video", "src": src["clip"]} if video else {"type": "image", "src": src["image"]}
        clips.append({"asset": asset, "start": t, "length": length, "transition": {"in": "fade", "duration": 0.5}})
        t, i = t + length, i + 1
    words = [{"text": f"word{k}", "start": k * 0.5, "end": k * 0.5 + 0.45} for k in range(int(seconds * 2))]
    return {"timeline": {"background": "#101820", "duration": seconds,
                         "soundtrack": {"src": src["music"], "loop": True, "volume": 0.7},
                         "tracks": [{"clips": [{"asset": {"type": "caption", "words": words}, "start": 0,
                                                "length": seconds}]},
                                    {"clips": [{"asset": {"type": "text", "text": "Chunked", "size": 72},
                                                "start": 1, "length": 6}]},
                                    {"clips": clips}]},
            "output": {"format": "mp4", "size": size, "fps": fps, "quality": quality}}


SENTENCE = ("The quick brown fox jumps over the lazy dog while the narrator keeps on talking about the weather "
            "and the long road home.")  # about 6.5 s of espeak


def build_params(src: dict[str, str], seconds: float, size: str, fps: float, quality: str) -> dict[str, Any]:
    """A narrated build of about `seconds` (espeak), background, music, burned captions; no step cache."""
    return {"script": " ".join([SENTENCE] * max(1, round(seconds / 6.5))),
            "voice": {"engine": "espeak", "sentence_pause_s": 0.2}, "backgrounds": [src["clip"]], "music": src["music"],
            "size": size, "fps": round(fps), "quality": quality, "captions": "burn", "cache": False}


def tree_cpu_s(root: int) -> float:
    """CPU seconds of a live process tree: each process's own + its reaped children's (ffmpeg runs end
    before the host that started them, so they are counted once, in the host's children times)."""
    tick = os.sysconf("SC_CLK_TCK")
    kids: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                text = (entry / "stat").read_text()
            except OSError:
                continue
            fields = text[text.rindex(")") + 2:].split()
            stats[int(entry.name)] = fields
            kids.setdefault(int(fields[1]), []).append(int(entry.name))
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        f = stats.get(pid)
        if f is not None:
            total += sum(int(x) for x in f[11:15]) / tick
        todo += kids.get(pid, [])
    return total


# an agent's own settings: what a rented box would be given (no database, broker or storage at all)
AGENT_ENV = ("PATH", "PYTHONPATH", "REELFORGE_THREADS_PER_JOB", "REELFORGE_JOB_NICE", "REELFORGE_CHUNK_THRESHOLD_S",
             "REELFORGE_WHISPER_MODEL", "HF_HUB_OFFLINE")


@contextlib.contextmanager
def workers(svc: Service, cores: list[int], backend: str) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = []
    for core in cores:
        log = (svc.data_dir.parent / f"worker-{core}.log").open("ab")
        if backend == "agents":
            token = svc.cli("agents", "token", "create", "--name", f"bench-{core}-{uuid.uuid4().hex[:4]}",
                            "--queues", "cpu,gpu").stdout.strip().splitlines()[-1]
            home = svc.data_dir.parent / f"agent-{core}-{uuid.uuid4().hex[:4]}"
            home.mkdir()
            env = {k: v for k, v in svc.env.items() if k in AGENT_ENV}
            env.update(HOME=str(home), REELFORGE_DATA_DIR=str(home), REELFORGE_AGENT_TOKEN=token)
            command = ["agent", "--api", svc.url, "--queues", "cpu,gpu", "--concurrency", "1"]
        else:
            env, command = svc.env, ["worker", "--queues", "cpu", "--concurrency", "1", "--name",
                                     f"bench-{core}-{uuid.uuid4().hex[:4]}@%h"]
        procs.append(subprocess.Popen(["taskset", "-c", str(core), sys.executable, "-m", "reelforge.cli", *command],
                                      env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
    time.sleep(4)  # up: answering inspect (Celery), registered and polling (agents)
    try:
        yield procs
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def pair_ceiling(clip: Path, cores: list[int]) -> tuple[float, float]:
    """What this machine gives N independent one-thread x264 encodes at once, pinned one per core, against one
    alone: the ceiling of any N-way split (shared caches, memory bandwidth and clocks cost something).
    Returns (one alone s, N at once s)."""
    def enc(core: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(["taskset", "-c", str(core), "ffmpeg", "-v", "error", "-stream_loop", "1", "-i",
                                 str(clip), "-c:v", "libx264", "-preset", "veryfast", "-qp", "23", "-threads", "1",
                                 "-f", "null", "-"])
    t0 = time.monotonic()
    enc(cores[0]).wait()
    alone = time.monotonic() - t0
    t0 = time.monotonic()
    for p in [enc(core) for core in cores]:
        p.wait()
    return alone, time.monotonic() - t0


class LoadSampler:
    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(5):
            self.samples.append(os.getloadavg()[0])

    def __enter__(self) -> LoadSampler:
        self.samples.append(os.getloadavg()[0])
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.samples.append(os.getloadavg()[0])


def warm_up(c: httpx.Client, op: str, params: dict[str, Any], n: int) -> None:
    """One short job per worker, at once, so every worker has its job host up (a long-lived worker's
    state): a host's first start is a cost per worker, not per chunk."""
    if op == "build":
        short = {**params, "script": SENTENCE, "size": "160x90", "chunks": 1}
    else:
        short = {**params, "timeline": {**params["timeline"], "duration": 2,
                                        "tracks": params["timeline"]["tracks"][:2]},
                 "output": {**params["output"], "size": "160x90"}, "chunks": 1}
    ids = [c.post("/v1/jobs", json={"op": op, "params": short}).json()["id"] for _ in range(n)]
    for job_id in ids:
        wait_job(c, job_id, timeout=300)


def one_run(svc: Service, c: httpx.Client, op: str, params: dict[str, Any], cores: list[int],
            timeout: float, backend: str) -> dict[str, Any]:
    with workers(svc, cores, backend) as procs:
        warm_up(c, op, params, len(cores))
        return _timed(c, op, params, procs, timeout)


def _timed(c: httpx.Client, op: str, params: dict[str, Any], procs: list[subprocess.Popen[bytes]],
           timeout: float) -> dict[str, Any]:
    with LoadSampler() as load:
        cpu0 = sum(tree_cpu_s(p.pid) for p in procs)
        t0 = time.monotonic()
        job_id = c.post("/v1/jobs", json={"op": op, "params": params}).json()["id"]
        job = wait_job(c, job_id, timeout=timeout)
        wall = time.monotonic() - t0
        cpu = sum(tree_cpu_s(p.pid) for p in procs) - cpu0
    assert job["status"] == "succeeded", job
    out: dict[str, Any] = {"wall_s": wall, "cpu_s": cpu, "load": (min(load.samples), max(load.samples)),
                           "job": job}
    kids = (job["notes"].get("fork") or {}).get("children") or []
    if kids:
        everyone = [c.get(f"/v1/jobs/{k}").json() for k in kids]
        # the picture chunks; a render with sound also has one child that mixes and encodes it (no "chunk")
        children = [ch for ch in everyone if "chunk" in ch["result"]["outputs"]]
        sound = [_span(ch) for ch in everyone if "sound" in ch["result"]["outputs"]]
        startups, encodes = [], []
        for ch in children:
            stages = {stage: at for stage, at in ch["notes"].get("stages") or []}
            # seconds into the attempt the encode began (a render's chunk; a build's)
            begin = stages.get("rendering chunk", stages.get("composing", 0.0))
            startups.append(begin)
            encodes.append(_span(ch) - begin)
        first_child = min(_ts(ch["created_at"]) for ch in everyone)
        last_end = max(_ts(ch["finished_at"]) for ch in everyone)
        out.update(join_stages=job["notes"].get("stages"))  # the parent's last run: [stage, s since its start]
        out.update(chunks=len(children), sound_s=sound, plan_s=first_child - _ts(job["started_at"]),
                   join_s=_ts(job["finished_at"]) - last_end, startup_s=startups, encode_s=encodes,
                   child_wall_s=[_span(ch) for ch in children])
    return out


def _ts(value: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _span(job: dict[str, Any]) -> float:
    return _ts(job["finished_at"]) - _ts(job["started_at"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--op", choices=("render", "build"), default="render")
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--fps", type=float, default=25)
    ap.add_argument("--quality", default="standard")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--chunks", type=int, help="chunks of the chunked run (default: one per worker); more chunks "
                    "than workers measure how evenly a wider split's chunks cost (see the balance line)")
    ap.add_argument("--backend", choices=("celery", "agents"), default="celery")
    ap.add_argument("--layout", choices=("alternate", "front"), default="alternate",
                    help="a render's clips: video and images by turns, or all the video in the first half")
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--write", type=Path, help="append a Markdown section to this file")
    args = ap.parse_args()
    cores = list(range(min(args.workers, os.cpu_count() or 1)))
    if len(cores) < args.workers:
        raise SystemExit(f"this machine has {os.cpu_count()} cores; one worker per core")
    tmp = Path(tempfile.mkdtemp(prefix="bench-chunked-"))
    files = make_media(tmp / "media", args.size)
    redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB).flushdb()
    if args.backend == "agents":  # the service's own slots take nothing: every queue is the agents'
        engine = {"REELFORGE_QUEUE_BACKENDS": json.dumps({"cpu": ["agent"], "gpu": ["agent"]})}
    else:
        engine = {"REELFORGE_EXECUTOR": "celery", "REELFORGE_BROKER_URL": f"redis://127.0.0.1:6379/{REDIS_DB}",
                  "REELFORGE_WORKER_QUEUES": "cpu"}
    with temp_database() as db_url:
        svc = Service(tmp / "data", REELFORGE_DATABASE_URL=db_url, **engine,
                      REELFORGE_THREADS_PER_JOB="1", REELFORGE_JOB_NICE="0",
                      REELFORGE_LEASE_TTL_S="20", REELFORGE_HEARTBEAT_S="2",
                      **({"REELFORGE_CHUNK_THRESHOLD_S": "20", "REELFORGE_WHISPER_MODEL": "packaged:tiny.en"}
                         if args.op == "build" else {}))
        svc.start()
        try:
            with svc.client() as c:
                ids = {}
                for name, path in files.items():
                    with path.open("rb") as fh:
                        ids[name] = c.post("/v1/files", params={"filename": path.name}, content=fh).json()["id"]
                if args.op == "build":
                    base = build_params(ids, args.seconds, args.size, args.fps, args.quality)
                else:
                    base = timeline(ids, args.seconds, args.size, args.fps, args.quality, args.layout)
                ref = one_run(svc, c, args.op, {**base, "chunks": 1}, cores[:1], args.timeout, args.backend)
                print(f"reference (1 worker, one job): {ref['wall_s']:.1f} s wall, {ref['cpu_s']:.1f} CPU s, "
                      f"load {ref['load'][0]:.1f}-{ref['load'][1]:.1f}", flush=True)
                chunks = args.chunks or len(cores)
                chk = one_run(svc, c, args.op, {**base, "chunks": chunks}, cores, args.timeout, args.backend)
        finally:
            svc.stop()
    redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB).flushdb()
    speedup = ref["wall_s"] / chk["wall_s"]
    alone, together = pair_ceiling(files["clip"], cores)
    ceiling = len(cores) * alone / together
    lines = [
        f"reference (1 worker, one job): {ref['wall_s']:.1f} s wall, {ref['cpu_s']:.1f} CPU s, load "
        f"{ref['load'][0]:.1f}-{ref['load'][1]:.1f}",
        f"chunked ({len(cores)} workers, {chk.get('chunks')} chunks): {chk['wall_s']:.1f} s wall, "
        f"{chk['cpu_s']:.1f} CPU s, load {chk['load'][0]:.1f}-{chk['load'][1]:.1f}",
        f"speed-up: {speedup:.2f}x (goal >= {0.9 * len(cores):.1f}x); CPU of the chunked run / reference: "
        f"{chk['cpu_s'] / ref['cpu_s']:.3f}",
        f"this machine's ceiling for a {len(cores)}-way split: {len(cores)} one-thread x264 encodes at once, one per "
        f"core, {together:.2f} s against {alone:.2f} s for one alone: {ceiling:.2f}x; the speed-up is "
        f"{speedup / ceiling:.0%} of it",
        f"planning run {chk.get('plan_s', 0):.2f} s; chunk start-up before the encode "
        f"{', '.join(f'{s:.2f}' for s in chk.get('startup_s', []))} s; chunk encodes "
        f"{', '.join(f'{s:.1f}' for s in chk.get('encode_s', []))} s; sound child "
        f"{', '.join(f'{s:.1f}' for s in chk.get('sound_s', [])) or '-'} s; join after the last child "
        f"(requeue + copy) {chk.get('join_s', 0):.2f} s; the join run's stages {chk.get('join_stages')}",
    ]
    encodes = chk.get("encode_s") or [0.0]
    lines.append(f"chunk balance: the longest chunk encode {max(encodes):.1f} s against a mean of "
                 f"{sum(encodes) / len(encodes):.1f} s ({max(encodes) * len(encodes) / max(1e-9, sum(encodes)):.3f}); "
                 f"one worker per chunk would reach at most {sum(encodes) / max(1e-9, max(encodes)):.2f}x of "
                 f"{len(encodes)} from these chunks' costs alone")
    per_chunk = (chk.get("plan_s", 0) + chk.get("join_s", 0)) / max(1, chk.get("chunks", 1)) + (
        sum(chk.get("startup_s", [])) / max(1, chk.get("chunks", 1)))
    lines.append(f"per-chunk overhead (start-up + planning and join shared out): {per_chunk:.2f} s, "
                 f"{100 * per_chunk / (ref['wall_s'] / max(1, chk.get('chunks', 1))):.1f}% of a chunk's share of the "
                 "reference")
    print("\n".join(lines[1:]))
    if args.write:
        with args.write.open("a") as fh:
            fh.write(f"\n### {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {args.op}"
                     f"{f' ({args.layout})' if args.op == 'render' else ''}, {args.seconds:g} s "
                     f"{args.size} at {args.fps:g} fps, quality {args.quality}, {len(cores)} "
                     f"{'agents' if args.backend == 'agents' else 'workers'}\n\n")
            fh.write("\n".join(f"- {line}" for line in lines) + "\n")


if __name__ == "__main__":
    main()
