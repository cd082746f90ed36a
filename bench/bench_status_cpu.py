"""CPU time per status read (GET /v1/jobs/{id}) through the ASGI app in-process, against a bare FastAPI app.

No sockets and no HTTP parsing (uvicorn's share is the same for both apps): what is left is the app's own
per-request work (middleware, routing, auth dependency, store read, view). CPU time of the process (all its
threads) per request, not wall time, so a loaded shared machine moves it less. CONC requests in flight.
The reference answers the same route with a constant from a sync def route, as bench_api.py's does.

    N=2000 CONC=50 REPS=3 PYTHONPATH=src .venv/bin/python bench/bench_status_cpu.py
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

N = int(os.environ.get("N", "2000"))
CONC = int(os.environ.get("CONC", "50"))
REPS = int(os.environ.get("REPS", "3"))

REFERENCE_APP = '''
from fastapi import FastAPI
app = FastAPI()
@app.get("/v1/jobs/{job_id}")
def status(job_id: str) -> dict:
    return {"id": job_id, "status": "queued"}
'''


def scope_for(path: str) -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
            "headers": [(b"host", b"127.0.0.1")], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}


async def call(app: Any, path: str) -> dict[str, Any]:
    out: dict[str, Any] = {"body": b""}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(m: dict[str, Any]) -> None:
        if m["type"] == "http.response.start":
            out["status"] = m["status"]
        elif m["type"] == "http.response.body":
            out["body"] += m.get("body", b"")

    await app(scope_for(path), receive, send)
    return out


async def drive(app: Any, paths: list[str]) -> float:
    """CPU microseconds of this process per request, CONC in flight."""
    sem = asyncio.Semaphore(CONC)

    async def one(p: str) -> None:
        async with sem:
            r = await call(app, p)
            assert r["status"] == 200, r

    t0 = time.process_time()
    await asyncio.gather(*(one(paths[i % len(paths)]) for i in range(N)))
    return (time.process_time() - t0) / N * 1e6


async def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="rf-bench-status-"))
    (tmp / "refapp.py").write_text(REFERENCE_APP)
    sys.path.insert(0, str(tmp))
    import refapp  # type: ignore[import-not-found]

    from reelforge.api.app import create_app
    from reelforge.config import Settings

    app = create_app(Settings(data_dir=tmp / "data"))
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    try:
        jobs = app.state.services.stores.jobs
        ids = [jobs.create_job(tenant="local", op="probe", params={"input": "file_x"}, queue="nobody",
                               timeout_s=60, max_attempts=3)[0].id for _ in range(20)]  # a queue no slot takes
        paths = [f"/v1/jobs/{i}" for i in ids]
        print(f"N={N} CONC={CONC} cores={os.cpu_count()} load={os.getloadavg()[0]:.2f}")
        for rep in range(REPS):
            a = await drive(refapp.app, ["/v1/jobs/x"])
            b = await drive(app, paths)
            print(f"rep {rep}: bare app {a:.0f} us cpu/req  reelforge {b:.0f} us cpu/req  ratio {a / b:.2f}  "
                  f"load {os.getloadavg()[0]:.1f}")
    finally:
        await lifespan.__aexit__(None, None, None)


if __name__ == "__main__":
    uvloop.run(main())
