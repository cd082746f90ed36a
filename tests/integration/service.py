"""Start a real `reelforge serve` (uvicorn in a subprocess) on a free loopback port for tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
TERMINAL = {"succeeded", "failed", "cancelled", "timed_out"}
# a CLI call's own work besides waiting for a job: interpreter start and imports, uploads of "@path" inputs,
# the submit and the final read (generous: the suite runs on a loaded two-core machine)
CLI_OVERHEAD_S = 120.0
CLI_DEFAULT_MAX_WAIT_S = 3600.0  # `reelforge submit/status --wait` without --max-wait (src/reelforge/cli.py)


def cli_timeout(args: tuple[str, ...] | list[str]) -> float:
    """The subprocess limit for `reelforge *args`, following from the work asked for: a call that waits for
    a job may take its --max-wait (the CLI's default when not given) plus the CLI's own overhead."""
    if "--wait" not in args:
        return CLI_OVERHEAD_S
    max_wait = CLI_DEFAULT_MAX_WAIT_S
    for i, arg in enumerate(args):
        if arg == "--max-wait" and i + 1 < len(args):
            max_wait = float(args[i + 1])
        elif arg.startswith("--max-wait="):
            max_wait = float(arg.partition("=")[2])
    return max_wait + CLI_OVERHEAD_S


def stop_group(proc: subprocess.Popen[Any], timeout: float) -> None:
    """Stop a process started with start_new_session=True as a supervisor would: SIGTERM to its whole group,
    then SIGKILL to the group if it has not exited within `timeout` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    def __init__(self, data_dir: Path, **env: Any) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
            "REELFORGE_DATA_DIR": str(data_dir),
            "REELFORGE_PORT": str(self.port),
            "REELFORGE_HOST": "127.0.0.1",
            "REELFORGE_PLUGINS": "tests.plugins.slow_ops",
            "REELFORGE_WORKERS": "2",
            "REELFORGE_LEASE_TTL_S": "3",
            "REELFORGE_HEARTBEAT_S": "0.5",
            "HF_HUB_OFFLINE": "1",
            **{k: str(v) for k, v in env.items()},
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / f"serve-{self.port}.log"

    def start(self) -> Service:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        logf = self.log.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "reelforge.cli", "serve"], env=self.env,
                                     stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code in (200, 503):
                    return self
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError("server did not start")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self.proc = None

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "reelforge.cli", *args], env={**self.env,
                              "REELFORGE_URL": self.url}, capture_output=True, text=True,
                              timeout=cli_timeout(args))

    def client(self, key: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"X-API-Key": key} if key else {}, timeout=30)


def wait_job(client: httpx.Client, job_id: str, timeout: float = 120, until: set[str] | None = None) -> dict[str, Any]:
    until = until or TERMINAL
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in until:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not reach {until}: {job}")


def download(client: httpx.Client, job: dict[str, Any], name: str, dest: Path) -> Path:
    """A job's output `name` written to `dest` (redirects followed: S3 storage answers with one)."""
    resp = client.get(f"/v1/jobs/{job['id']}/outputs/{name}", follow_redirects=True)
    assert resp.status_code == 200, resp.text
    dest.write_bytes(resp.content)
    return dest


def pids_with(marker: str, program: str = "ffmpeg") -> list[int]:
    """ffmpeg processes whose command line contains marker (e.g. started by a test op)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            except OSError:
                continue
            if Path(argv[0]).name == program and any(marker in a for a in argv):
                found.append(int(entry.name))
    return found


def parent_pid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2:].split()[1])


@contextlib.contextmanager
def moto_bucket() -> Any:
    """moto's S3 server on a loopback port with one fresh bucket; yields the REELFORGE_* settings that point
    a service at it (storage s3, endpoint, bucket, prefix rf/, test credentials)."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        bucket = f"rf-{uuid.uuid4().hex[:10]}"
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                     aws_secret_access_key="testing").create_bucket(Bucket=bucket)
        yield {"REELFORGE_STORAGE": "s3", "REELFORGE_S3_ENDPOINT_URL": endpoint, "REELFORGE_S3_BUCKET": bucket,
               "REELFORGE_S3_PREFIX": "rf/", "REELFORGE_S3_ACCESS_KEY_ID": "testing",
               "REELFORGE_S3_SECRET_ACCESS_KEY": "testing"}
    finally:
        server.stop()
