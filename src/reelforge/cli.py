"""The `reelforge` command: serve | worker | agent | submit | status | list | cancel | retry | keys | agents |
webhooks | capacity | batch | presets.

submit/status/list/cancel/retry/batch/presets talk to a running service over HTTP (REELFORGE_URL, REELFORGE_API_KEY);
serve/worker/keys act on this machine with the settings from the environment / REELFORGE_CONFIG.

Exit codes (for scripts; README "CLI" lists them too):
    0  done (with --wait: the job succeeded)
    1  with --wait: the job ended failed, cancelled or timed out
    2  usage or input error: bad option, invalid JSON in --params / a job file, missing local file, bad settings
    3  the service cannot be reached (`reelforge agent`: the service refused the agent)
    4  the service refused the request (an HTTP 4xx: invalid params, unknown job, bad key, rate limited, ...)
    5  the service failed (an HTTP 5xx)
    6  with --wait: --max-wait elapsed before the job ended (the job goes on)
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

if TYPE_CHECKING:
    from reelforge.config import Settings

app = typer.Typer(help="ReelForge: a self-hosted video-building service.", no_args_is_help=True,
                  add_completion=False)
keys_app = typer.Typer(help="Manage API keys (stored hashed; a key is shown once).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
agents_app = typer.Typer(help="Remote agents (`reelforge agent`) and their tokens.", no_args_is_help=True)
agent_tokens_app = typer.Typer(help="Agent tokens: worker role only, scoped to queues, stored hashed.",
                               no_args_is_help=True)
agents_app.add_typer(agent_tokens_app, name="token")
app.add_typer(agents_app, name="agents")
webhooks_app = typer.Typer(help="Webhooks: replay a job's events, the secret receivers verify with.",
                           no_args_is_help=True)
app.add_typer(webhooks_app, name="webhooks")
capacity_app = typer.Typer(help="Rented GPU capacity (Vast.ai): `reelforge capacity` alone runs the controller; "
                            "offers | up N | ls | logs ID | down ID | down --all | cost.")
app.add_typer(capacity_app, name="capacity")
batch_app = typer.Typer(help="Batch runs: one job per object under a prefix, per input, or per manifest row.",
                        no_args_is_help=True)
app.add_typer(batch_app, name="batch")
presets_app = typer.Typer(help="Presets: named batch values (op, params, ...) stored by the service.",
                          no_args_is_help=True)
app.add_typer(presets_app, name="presets")
console = Console(stderr=True)
out = Console()

UrlOpt = Annotated[str, typer.Option("--url", envvar="REELFORGE_URL", help="Service base URL")]
KeyOpt = Annotated[str | None, typer.Option("--api-key", envvar="REELFORGE_API_KEY", help="API key")]
DEFAULT_URL = "http://127.0.0.1:8000"
TERMINAL = {"succeeded", "failed", "cancelled", "timed_out"}
EXIT_JOB_FAILED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_API_ERROR, EXIT_SERVER_ERROR, EXIT_WAIT_TIMEOUT = 1, 2, 3, 4, 5, 6
DEFAULT_MAX_WAIT_S = 3600.0


def _version(value: bool) -> None:
    if value:
        from reelforge import __version__

        out.print(f"reelforge {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version and exit")] = False) -> None:
    """ReelForge: a self-hosted video-building service. Exit codes: see `reelforge --help` in README (0 ok,
    1 job failed, 2 usage, 3 unreachable, 4 request refused, 5 server error, 6 wait timed out)."""


def _usage_error(message: str) -> typer.Exit:
    """One line on stderr and exit code 2 (no traceback)."""
    sys.stderr.write(f"reelforge: {message}\n")
    return typer.Exit(EXIT_USAGE)


def _json_value(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _usage_error(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def _param_value(text: str) -> Any:
    """`-p key=value`: the value as JSON when it is valid JSON (2, true, [1,2], {"a":1}, "x"), else the text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _client(url: str, api_key: str | None) -> httpx.Client:
    headers = {"X-API-Key": api_key} if api_key else {}
    return httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=60)


def _check(resp: httpx.Response) -> Any:
    if resp.status_code >= 400:
        try:
            err = resp.json()["error"]
            console.print(f"[red]Error {resp.status_code} {err['code']}:[/red] {err['message']}")
            for d in err.get("details") or []:
                if isinstance(d, dict) and "path" in d:
                    console.print(f"  - {d['path']}: {d['message']}")
        except (ValueError, KeyError, TypeError):
            console.print(f"[red]Error {resp.status_code}:[/red] {resp.text[:500]}")
        raise typer.Exit(EXIT_SERVER_ERROR if resp.status_code >= 500 else EXIT_API_ERROR)
    return resp.json()


def _load_settings(**overrides: Any) -> Settings:
    """Settings for serve/worker/keys; a configuration error is one line on stderr and exit code 2."""
    from pydantic import ValidationError

    from reelforge.config import ConfigError
    from reelforge.config import Settings as _Settings

    try:
        return _Settings(**overrides)
    except ConfigError as exc:
        message = str(exc)
    except ValidationError as exc:
        message = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors())
    sys.stderr.write(f"reelforge: configuration error: {message}\n")
    raise typer.Exit(2)


def _connect_error(url: str, exc: Exception) -> typer.Exit:
    console.print(f"[red]Cannot reach ReelForge at {url}[/red] ({exc}). Is `reelforge serve` (make run) running?")
    return typer.Exit(EXIT_UNREACHABLE)


# ------------------------------------------------------------------ serve / worker
@app.command()
def serve(host: Annotated[str | None, typer.Option(help="Bind address (default from settings)")] = None,
          port: Annotated[int | None, typer.Option(help="Port (default from settings)")] = None) -> None:
    """Start the HTTP API with its executor (embedded `local` by default)."""
    import uvicorn

    from reelforge.api.app import create_app
    from reelforge.api.gc_tuning import freeze_startup_heap

    overrides: dict[str, Any] = {}
    if host:
        overrides["host"] = host
    if port:
        overrides["port"] = port
    settings = _load_settings(**overrides)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    svc = settings.service
    console.print(f"ReelForge on http://{svc.host}:{svc.port}  (executor={settings.compute.executor}, "
                  f"storage={settings.storage.backend}, data={svc.data_dir}) — API docs at /docs")
    api = create_app(settings)

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            # At the signal, not after uvicorn has drained its connections (up to 10 s, longer than some
            # supervisors wait): running jobs are stopped and requeued without spending an attempt.
            executor = getattr(api.state, "executor", None)
            if executor is not None:
                executor.begin_shutdown()
            super().handle_exit(sig, frame)

        async def startup(self, sockets: list[Any] | None = None) -> None:
            await super().startup(sockets=sockets)
            # once the lifespan built the stores, executor and caches: full GC collections stop walking them
            freeze_startup_heap()

    Server(uvicorn.Config(api, host=svc.host, port=svc.port, log_level="info", access_log=svc.access_log,
                          timeout_graceful_shutdown=10)).run()


@app.command()
def worker(queues: Annotated[str | None, typer.Option(help="Comma-separated queues, e.g. gpu or cpu,gpu")] = None,
           concurrency: Annotated[int | None, typer.Option(help="Jobs at a time (default: compute.workers)")] = None,
           metrics_port: Annotated[int | None, typer.Option(
               help="Serve this worker's Prometheus /metrics on this port (default: worker_metrics_port; 0: none)",
           )] = None,
           name: Annotated[str | None, typer.Option(help="Celery node name (default: reelforge-<pid>@<host>, "
                                                         "unique per process so workers can be counted)")] = None,
           ) -> None:
    """Start a Celery worker (scale-out mode) that runs jobs from the given queues."""
    from reelforge.config import redact_url
    from reelforge.engine.celery_app import make_celery
    from reelforge.jobs.services import JobServices

    settings = _load_settings()
    # the composition root of a worker: the engine gets database job control, made once per process
    celery = make_celery(settings, services_factory=lambda: JobServices.create(settings).engine)
    q = queues or settings.compute.worker_queues
    n = concurrency or settings.compute.workers
    broker = redact_url(settings.compute.broker_url.get_secret_value())
    console.print(f"ReelForge worker: queues={q} concurrency={n} broker={broker}")
    port = settings.compute.worker_metrics_port if metrics_port is None else metrics_port
    if port:
        from reelforge.engine.metrics import serve_metrics

        bound = serve_metrics(port, settings.compute.worker_metrics_host)
        console.print(f"Metrics: http://{settings.compute.worker_metrics_host}:{bound}/metrics")
    node = name or f"reelforge-{os.getpid()}@%h"
    celery.worker_main(["worker", "--loglevel=INFO", f"--queues={q}", f"--concurrency={n}", "--pool=threads",
                        f"--hostname={node}", "--without-gossip", "--without-mingle"])


@app.command()
def agent(api: Annotated[str, typer.Option("--api", envvar="REELFORGE_AGENT_API", help="The service's base URL")],
          token: Annotated[str, typer.Option("--token", envvar="REELFORGE_AGENT_TOKEN",
                                             help="An agent token (`reelforge agents token create`)")],
          queues: Annotated[str, typer.Option(help="Comma-separated queues to take jobs from")] = "gpu",
          idle_exit: Annotated[float | None, typer.Option(help="Exit after this many minutes without work")] = None,
          concurrency: Annotated[int | None, typer.Option(help="Jobs at a time (default: from VRAM/NVENC)")] = None,
          gpu_name: Annotated[str | None, typer.Option(help="Override the detected GPU name")] = None,
          vram_gb: Annotated[float | None, typer.Option(help="Override the detected GPU memory")] = None,
          cuda: Annotated[str | None, typer.Option(help="Override the detected CUDA version")] = None,
          nvenc_sessions: Annotated[int | None, typer.Option(help="NVENC sessions the GPU holds (0: none)")] = None,
          cpu_cores: Annotated[int | None, typer.Option(help="Override the detected CPU cores")] = None,
          ) -> None:
    """Run jobs for a service over HTTPS on this machine (no database, broker or storage credentials)."""
    from reelforge.engine.agent import EXIT_REFUSED, Agent, detect_resources, install_signal_handlers
    from reelforge.engine.control_http import AgentRefused, HttpControl
    from reelforge.ops.registry import load_plugins

    os.environ.pop("REELFORGE_AGENT_TOKEN", None)  # job hosts (untrusted media) do not inherit the token
    settings = _load_settings()
    settings.ensure_dirs()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    load_plugins(settings.service.plugins)
    resources = detect_resources()
    for name, value in (("gpu_name", gpu_name), ("vram_gb", vram_gb), ("cuda", cuda),
                        ("nvenc_sessions", nvenc_sessions), ("cpu_cores", cpu_cores)):
        if value is not None:
            setattr(resources, name, value)
    control = HttpControl(api, token)
    runner = Agent(settings, control, queues=[q.strip() for q in queues.split(",") if q.strip()],
                   resources=resources, concurrency=concurrency,
                   idle_exit_s=idle_exit * 60 if idle_exit is not None else None)
    install_signal_handlers(runner)
    console.print(f"ReelForge agent -> {api}: queues={queues} slots={runner.concurrency}")
    try:
        code = runner.run()
    except AgentRefused as exc:
        console.print(f"[red]The service refused this agent:[/red] {exc}")
        raise typer.Exit(EXIT_REFUSED) from None
    except httpx.TransportError as exc:
        raise _connect_error(api, exc) from None
    if code == EXIT_REFUSED:
        console.print(f"[red]The service refused this agent:[/red] {control.refused}")
    raise typer.Exit(code)


# ------------------------------------------------------------------ submit / status / list / cancel
def _upload_local_refs(client: httpx.Client, value: Any, base: Path) -> Any:
    """Params may name local files as "@path"; they are uploaded and replaced by their file id."""
    if isinstance(value, str) and value.startswith("@") and len(value) > 1:
        path = Path(value[1:])
        if not path.is_absolute():
            path = base / path if (base / path).exists() else Path.cwd() / path
        if not path.is_file():
            raise _usage_error(f"local file not found: {path}")
        with path.open("rb") as fh:
            resp = client.post("/v1/files", params={"filename": path.name}, content=fh)
        return _check(resp)["id"]
    if isinstance(value, dict):
        return {k: _upload_local_refs(client, v, base) for k, v in value.items()}
    if isinstance(value, list):
        return [_upload_local_refs(client, v, base) for v in value]
    return value


def _events(client: httpx.Client, job_id: str, read_timeout: float) -> Any:
    """The job's server-sent events as (event, data) pairs; ends when the stream does."""
    timeout = httpx.Timeout(10.0, read=read_timeout)
    with client.stream("GET", f"/v1/jobs/{job_id}/events", timeout=timeout) as resp:
        if resp.status_code >= 400:
            resp.read()
            _check(resp)
        event, data = "message", list[str]()
        for line in resp.iter_lines():
            if not line:
                if data:
                    yield event, json.loads("\n".join(data))
                event, data = "message", []
            elif line.startswith(":"):
                continue  # keep-alive
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())


def _wait(client: httpx.Client, job: dict[str, Any], max_wait: float,
          expect: float | None) -> tuple[dict[str, Any], bool]:
    """Follow the job's event stream until it ends: (the job, whether --max-wait ran out first).

    A dropped stream (the service restarting, a proxy's idle timeout) is opened again until the deadline."""
    expected = expect or job.get("timeout_s", 600) * 0.5
    started = time.monotonic()
    deadline = started + max_wait
    warned = False
    with Progress(TextColumn("[bold]{task.fields[status]}[/bold] {task.description}"), BarColumn(),
                  TextColumn("{task.percentage:>5.1f}%"), TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task(job.get("stage") or "", total=1.0, status=job["status"])

        def tick() -> None:
            nonlocal warned
            elapsed = time.monotonic() - started
            if not warned and elapsed > expected:
                warned = True
                bar.console.print(f"[yellow]Still running after {elapsed:.0f}s (expected about {expected:.0f}s); "
                                  "still waiting.[/yellow]")

        while (remaining := deadline - time.monotonic()) > 0:
            try:
                for event, data in _events(client, job["id"], read_timeout=max(0.2, min(remaining, 20.0))):
                    if event == "done":
                        return data, False
                    job = {**job, **data}
                    bar.update(task, completed=job["progress"], description=job.get("stage") or "",
                               status=job["status"])
                    tick()
                    if time.monotonic() >= deadline:
                        break
            except httpx.ReadTimeout:
                pass  # nothing for a while (keep-alives come every 15 s): check the deadline, listen again
            except httpx.TransportError:
                time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
            tick()
        job = _check(client.get(f"/v1/jobs/{job['id']}"))
        if job["status"] in TERMINAL:
            return job, False
        bar.console.print(f"[yellow]Stopped waiting after {max_wait:.0f}s; the job goes on. "
                          f"Check it with `reelforge status {job['id']}`.[/yellow]")
        return job, True


def _wait_exit(job: dict[str, Any], timed_out: bool) -> None:
    if timed_out:
        raise typer.Exit(EXIT_WAIT_TIMEOUT)
    if job["status"] != "succeeded":
        raise typer.Exit(EXIT_JOB_FAILED)


def _print_job(job: dict[str, Any]) -> None:
    color = {"succeeded": "green", "failed": "red", "timed_out": "red", "cancelled": "yellow"}.get(job["status"], "")
    console.print(f"[bold {color}]{job['status']}[/] {job['id']} op={job['op']} stage={job.get('stage')} "
                  f"progress={job['progress']:.0%} attempts={job['attempts']}"
                  + (f" encoder={job['encoder']}" if job.get("encoder") else ""))
    if job.get("error"):
        console.print(f"[red]{job['error']['code']}:[/red] {job['error']['message']}")
    for name, o in ((job.get("result") or {}).get("outputs") or {}).items():
        console.print(f"  {name}: {o['url']}")
    out.print_json(json.dumps(job))


@app.command()
def submit(
    job_file: Annotated[Path | None, typer.Argument(help="JSON file {op, params, ...}; '-' reads stdin")] = None,
    op: Annotated[str | None, typer.Option(help="Operation (instead of a JSON file)")] = None,
    params: Annotated[str | None, typer.Option(help="Params as a JSON object")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="key=value (repeatable)")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Show live progress until the job ends")] = False,
    max_wait: Annotated[float, typer.Option(help="Give up waiting (without cancelling; exit 6) after N seconds")
                        ] = DEFAULT_MAX_WAIT_S,
    expect: Annotated[float | None, typer.Option(help="Warn when running longer than N seconds")] = None,
    url: UrlOpt = DEFAULT_URL,
    api_key: KeyOpt = None,
) -> None:
    """Submit a job. Local files in params can be given as "@path" and are uploaded first. `-p` values are
    JSON when they parse as JSON (`-p duration_s=2`, `-p mux_audio=false`), else text."""
    base = Path.cwd()
    if job_file is not None:
        if str(job_file) == "-":
            text = sys.stdin.read()
        elif job_file.is_file():
            text = job_file.read_text()
            base = job_file.resolve().parent
        else:
            raise _usage_error(f"job file not found: {job_file}")
        body = _json_value(text, f"the job file {job_file}")
        if not isinstance(body, dict):
            raise _usage_error(f"the job file {job_file} must hold a JSON object {{op, params, ...}}")
    else:
        if not op:
            raise _usage_error("give a JSON job file or --op")
        body = {"op": op, "params": _json_value(params, "--params") if params else {}}
        if not isinstance(body["params"], dict):
            raise _usage_error("--params must be a JSON object, e.g. '{\"input\": \"@clip.mp4\"}'")
    for kv in param or []:
        k, sep, v = kv.partition("=")
        if not sep or not k:
            raise _usage_error(f"-p takes key=value, not {kv!r}")
        body.setdefault("params", {})[k] = _param_value(v)
    timed_out = False
    try:
        with _client(url, api_key) as client:
            body["params"] = _upload_local_refs(client, body.get("params", {}), base)
            job = _check(client.post("/v1/jobs", json=body))
            console.print(f"Submitted {job['id']} ({job['op']})")
            if wait:
                job, timed_out = _wait(client, job, max_wait, expect)
            _print_job(job)
    except httpx.TransportError as exc:
        raise _connect_error(url, exc) from None
    if wait:
        _wait_exit(job, timed_out)


@app.command()
def status(job_id: str, url: UrlOpt = DEFAULT_URL, api_key: KeyOpt = None,
           wait: Annotated[bool, typer.Option("--wait", help="Wait for the job to end (exit 1 unless it succeeded)")
                           ] = False,
           max_wait: Annotated[float, typer.Option(help="Give up waiting after N seconds (exit 6)")
                               ] = DEFAULT_MAX_WAIT_S) -> None:
    """Show a job (optionally wait for it)."""
    timed_out = False
    try:
        with _client(url, api_key) as client:
            job = _check(client.get(f"/v1/jobs/{job_id}"))
            if wait and job["status"] not in TERMINAL:
                job, timed_out = _wait(client, job, max_wait, None)
            _print_job(job)
    except httpx.TransportError as exc:
        raise _connect_error(url, exc) from None
    if wait:
        _wait_exit(job, timed_out)


@app.command("list")
def list_jobs(status: Annotated[str | None, typer.Option(help="Filter by status")] = None,
              op: Annotated[str | None, typer.Option(help="Filter by op")] = None,
              limit: int = 20,
              as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON (all fields)")] = False,
              url: UrlOpt = DEFAULT_URL, api_key: KeyOpt = None) -> None:
    """List recent jobs: a table on a terminal; piped, one tab-separated line per job with full ids."""
    query: dict[str, Any] = {"limit": limit}
    if status:
        query["status"] = status
    if op:
        query["op"] = op
    try:
        with _client(url, api_key) as client:
            data = _check(client.get("/v1/jobs", params=query))
    except httpx.TransportError as exc:
        raise _connect_error(url, exc) from None
    if as_json:
        sys.stdout.write(json.dumps(data) + "\n")
        return
    rows = [(j["id"], j["op"], j["status"], j.get("stage") or "", f"{j['progress']:.0%}", j["created_at"] or "")
            for j in data["jobs"]]
    if not sys.stdout.isatty():  # a pipe or a file: nothing truncated or wrapped
        sys.stdout.write("".join("\t".join(row) + "\n" for row in rows))
        return
    table = Table("id", "op", "status", "stage", "progress", "created")
    for row in rows:
        table.add_row(*row)
    out.print(table)


def _job_action(job_id: str, action: str, url: str, api_key: str | None) -> None:
    """POST /v1/jobs/{id}/{action} and print the job the service answers with."""
    try:
        with _client(url, api_key) as client:
            _print_job(_check(client.post(f"/v1/jobs/{job_id}/{action}")))
    except httpx.TransportError as exc:
        raise _connect_error(url, exc) from None


@app.command()
def cancel(job_id: str, url: UrlOpt = DEFAULT_URL, api_key: KeyOpt = None) -> None:
    """Cancel a queued or running job."""
    _job_action(job_id, "cancel", url, api_key)


@app.command()
def retry(job_id: str, url: UrlOpt = DEFAULT_URL, api_key: KeyOpt = None) -> None:
    """Run a failed, cancelled or timed-out job again, as a new job (printed)."""
    _job_action(job_id, "retry", url, api_key)


# ------------------------------------------------------------------ keys
def _database() -> Any:
    """The service's database, migrated: the keys and agent-token commands write to it directly."""
    from reelforge.jobs.store import Database

    settings = _load_settings()
    settings.ensure_dirs()
    db = Database(settings.service.database_url.get_secret_value())
    db.migrate()
    return db


def _store() -> Any:
    from reelforge.jobs.store import KeysStore

    return KeysStore(_database())


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema (Alembic) and exit; `serve` and `worker` do it too."""
    _database()
    console.print("Database schema is up to date.")


@keys_app.command("create")
def keys_create(name: Annotated[str, typer.Option(help="A name for the key's owner")],
                tenant: Annotated[str | None, typer.Option(help="Tenant (default: the name)")] = None,
                admin: Annotated[bool, typer.Option("--admin", help="An admin key: reads and acts on every "
                                                    "tenant's jobs (its own submissions are its tenant's)")] = False,
                ) -> None:
    """Create an API key and print it once."""
    key, rec = _store().create_api_key(name, tenant, admin=admin)
    kind = "admin key" if rec.admin else "key"
    console.print(f"Created {kind} {rec.id} for tenant {rec.tenant!r}. Store it now; it is not shown again:")
    out.print(key)


@keys_app.command("list")
def keys_list() -> None:
    """List API keys (never the keys themselves: a key's public prefix id, e.g. rf_1a2b3c4d, is the part
    before its secret)."""
    table = Table("id", "name", "tenant", "prefix", "admin", "revoked")
    for k in _store().list_api_keys():
        table.add_row(k.id, k.name, k.tenant, f"{k.prefix}_…", str(k.admin), str(k.revoked))
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: str) -> None:
    """Revoke an API key by its id."""
    if not _store().revoke_api_key(key_id):
        console.print(f"[red]No key {key_id}[/red]")
        raise typer.Exit(2)
    console.print(f"Revoked {key_id}")


# ------------------------------------------------------------------ agent tokens
def _agents_store() -> Any:
    from reelforge.jobs.store import AgentsStore

    return AgentsStore(_database())


@agent_tokens_app.command("create")
def agent_token_create(name: Annotated[str, typer.Option(help="A name for the agent (e.g. its machine)")],
                       queues: Annotated[str, typer.Option(help="Comma-separated queues it may take")] = "gpu",
                       ) -> None:
    """Create an agent token and print it once."""
    from reelforge.config import QUEUE_NAME_RE

    names = [q.strip() for q in queues.split(",") if q.strip()]
    bad = [q for q in names if not QUEUE_NAME_RE.match(q)]
    if not names or bad:
        console.print(f"[red]Give queue names (1-16 letters, digits, '.', '_', '-'), not {queues!r}.[/red]")
        raise typer.Exit(2)
    token, rec = _agents_store().create_token(name, names)
    console.print(f"Created agent token {rec.id} ({rec.name!r}, queues {','.join(rec.queues)}). "
                  "Store it now; it is not shown again:")
    out.print(token)


@agent_tokens_app.command("list")
def agent_token_list() -> None:
    """List agent tokens with what their agent last declared (never the tokens themselves)."""
    table = Table("id", "name", "queues", "revoked", "last seen", "gpu")
    for t in _agents_store().list_tokens():
        seen = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t.last_seen_at)) if t.last_seen_at else "-"
        gpu = (t.resources or {}).get("gpu_name") or "-"
        table.add_row(t.id, t.name, ",".join(t.queues), str(t.revoked), seen, str(gpu))
    out.print(table)


@agent_tokens_app.command("revoke")
def agent_token_revoke(token_id: Annotated[str, typer.Argument(help="The token's id (agt_...) or name")]) -> None:
    """Revoke an agent token: its agent is refused at once, even mid-job."""
    if not _agents_store().revoke(token_id):
        console.print(f"[red]No agent token {token_id}[/red]")
        raise typer.Exit(2)
    console.print(f"Revoked {token_id}")


# ------------------------------------------------------------------ webhooks
@webhooks_app.command("replay")
def webhooks_replay(job_id: str, url: UrlOpt = DEFAULT_URL, api_key: KeyOpt = None) -> None:
    """Send a job's webhook events again (each with its own webhook-id, the retry schedule from the start)."""
    try:
        with _client(url, api_key) as client:
            data = _check(client.post(f"/v1/jobs/{job_id}/webhooks/replay"))
    except httpx.TransportError as exc:
        raise _connect_error(url, exc) from None
    console.print(f"Replaying {data['replayed']} webhook event(s) of {data['job_id']}.")
    out.print(json.dumps(data))


@webhooks_app.command("secret")
def webhooks_secret() -> None:
    """Print the webhook secret in the Standard Webhooks form (whsec_...) for receivers (this machine's
    settings: REELFORGE_WEBHOOK_SECRET or DATA_DIR/webhook_secret)."""
    from reelforge.jobs.webhooks import standard_secret

    out.print(standard_secret(_load_settings().resolved_webhook_secret()), soft_wrap=True)


# ------------------------------------------------------------------ capacity
def _controller(settings: Settings | None = None) -> Any:
    from reelforge.jobs.capacity import CapacityController
    from reelforge.jobs.store import Stores

    settings = settings or _load_settings()
    if settings.capacity.provider != "vast" or not settings.capacity.vast_api_key.get_secret_value():
        console.print("[red]Set REELFORGE_CAPACITY_PROVIDER=vast and REELFORGE_VAST_API_KEY first.[/red]")
        raise typer.Exit(2)
    settings.ensure_dirs()
    stores = Stores.open(settings.service.database_url.get_secret_value(), migrate=True)
    return CapacityController(settings, stores)


def _vast_errors(fn: Any) -> Any:
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from reelforge.engine.vast import VastError

        try:
            return fn(*args, **kwargs)
        except VastError as exc:
            console.print(f"[red]Vast.ai:[/red] {exc}")
            raise typer.Exit(3) from None
    return wrapper


@capacity_app.callback(invoke_without_command=True)
def capacity_run(ctx: typer.Context) -> None:
    """Run the capacity controller alone (when `capacity.in_api` is false), until SIGTERM/SIGINT."""
    if ctx.invoked_subcommand is not None:
        return
    import signal

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = _load_settings()
    from reelforge.ops.registry import load_plugins

    load_plugins(settings.service.plugins)
    ctl = _controller(settings)
    try:
        ctl._check_config()
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None

    def handler(signum: int, _frame: Any) -> None:
        ctl._stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    console.print(f"ReelForge capacity controller: queues={','.join(settings.capacity.queues)} "
                  f"max ${settings.capacity.max_dph:.2f}/h, ${settings.capacity.max_day_usd:.2f}/day")
    ctl.run()
    ctl.stop()


@capacity_app.command("offers")
@_vast_errors
def capacity_offers(gpu: Annotated[list[str] | None, typer.Option(help="GPU name (repeatable)")] = None,
                    max_dph: Annotated[float | None, typer.Option(help="$/hour at most")] = None,
                    min_vram: Annotated[float | None, typer.Option(help="GPU memory in GB at least")] = None,
                    min_reliability: Annotated[float | None, typer.Option(help="0..1")] = None,
                    geo: Annotated[list[str] | None, typer.Option(help="Country code (repeatable)")] = None,
                    queue: Annotated[str, typer.Option(help="Rank for this queue's work")] = "gpu",
                    limit: int = 15) -> None:
    """Offers that pass every filter (checked again here), ranked by expected cost of the queued work."""
    import dataclasses

    from reelforge.engine.capacity import QueueWork, rank_offers
    from reelforge.jobs.capacity import offer_filter

    ctl = _controller()
    flt = offer_filter(ctl.settings)
    changes: dict[str, Any] = {}
    if gpu:
        changes["gpu_names"] = tuple(gpu)
    if max_dph is not None:
        changes["max_dph"] = max_dph
    if min_vram is not None:
        changes["min_gpu_ram_gb"] = min_vram
    if min_reliability is not None:
        changes["min_reliability"] = min_reliability
    if geo:
        changes["geolocations"] = tuple(geo)
    flt = dataclasses.replace(flt, **changes)
    offers = ctl.search(flt)
    if offers is None:
        console.print(f"[red]{ctl.search_note or 'The offer search failed.'}[/red]")
        raise typer.Exit(3)
    work = ctl._work().get(queue) or QueueWork(queue)
    work = dataclasses.replace(work, queued=max(1, work.queued))
    table = Table("offer", "gpu", "vram GB", "$/h", "reliability", "cuda", "where", f"expected $ ({work.queued} jobs)")
    for r in rank_offers(offers, work, slots=ctl.limits.slots, boot_s=min(ctl.limits.boot_timeout_s, 300.0))[:limit]:
        o = r.offer
        table.add_row(str(o.id), o.gpu_name, f"{o.gpu_ram_gb:g}", f"{o.dph_total:.3f}", f"{o.reliability:.3f}",
                      f"{o.cuda:g}", o.geolocation, f"{r.expected_usd:.3f}")
    out.print(table)


@capacity_app.command("up")
@_vast_errors
def capacity_up(n: Annotated[int, typer.Argument(help="Instances to start")],
                queue: Annotated[str, typer.Option(help="The queue they take")] = "gpu",
                dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the offers and $/h; start nothing")]
                = False) -> None:
    """Start N instances now (within max_instances and max_dph); the controller watches them from then on."""
    ctl = _controller()
    if not dry_run:
        try:
            ctl._check_config()
        except ValueError as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from None
    chosen = ctl.up(n, queue, dry_run=dry_run)
    for r in chosen:
        o = r.offer
        console.print(f"{'would start' if dry_run else 'started'} on offer {o.id}: {o.gpu_name} "
                      f"{o.gpu_ram_gb:g} GB at ${o.dph_total:.3f}/h ({o.geolocation})")
    console.print(f"{len(chosen)} instance(s), ${sum(r.offer.dph_total for r in chosen):.3f}/h"
                  + (" (dry run: nothing created)" if dry_run else ""))
    if len(chosen) < n:
        console.print(f"[yellow]{n - len(chosen)} not started: limits, budget or no more matching offers.[/yellow]")


@capacity_app.command("ls")
@_vast_errors
def capacity_ls() -> None:
    """This deployment's instances on Vast.ai."""
    ctl = _controller()
    opened = {i["key"]: i for i in ctl.ledger.summary().instances.values()}
    table = Table("key", "vast id", "status", "gpu", "$/h", "age min", "queue", "agent registered")
    for inst in ctl.client.instances():
        if not inst.label.startswith(ctl.prefix):
            continue
        key = inst.label[len(ctl.prefix):]
        led = opened.get(key) or {}
        age = (time.time() - led["created_at"]) / 60 if led.get("created_at") else None
        table.add_row(key, str(inst.id), inst.actual_status or "provisioning", inst.gpu_name, f"{inst.dph_total:.3f}",
                      f"{age:.1f}" if age is not None else "-", str(led.get("queue") or "-"),
                      "yes" if led.get("registered_at") else "no")
    out.print(table)


@capacity_app.command("logs")
@_vast_errors
def capacity_logs(instance: Annotated[str, typer.Argument(help="Key or Vast.ai id")], tail: int = 200) -> None:
    """An instance's last log lines."""
    ctl = _controller()
    for inst in ctl.client.instances():
        if inst.label.startswith(ctl.prefix) and instance in (str(inst.id), inst.label[len(ctl.prefix):]):
            out.print(ctl.client.logs(inst.id, tail=tail), markup=False, highlight=False)
            return
    console.print(f"[red]No instance {instance} of this deployment.[/red]")
    raise typer.Exit(2)


@capacity_app.command("down")
@_vast_errors
def capacity_down(instance: Annotated[str | None, typer.Argument(help="Key or Vast.ai id")] = None,
                  all_: Annotated[bool, typer.Option("--all", help="Every instance of this deployment")] = False,
                  dry_run: Annotated[bool, typer.Option("--dry-run")] = False) -> None:
    """Destroy an instance (or all of this deployment's); its agent token is revoked."""
    if not all_ and not instance:
        console.print("[red]Give an instance (key or id) or --all.[/red]")
        raise typer.Exit(2)
    ctl = _controller()
    if dry_run:
        for inst in ctl.client.instances():
            key = inst.label[len(ctl.prefix):]
            if inst.label.startswith(ctl.prefix) and (all_ or instance in (key, str(inst.id))):
                console.print(f"would destroy {key} (vast {inst.id}, ${inst.dph_total:.3f}/h)")
        return
    gone = ctl.down(None if all_ else [str(instance)])
    for g in gone:
        console.print(f"destroyed {g}")
    if not gone:
        console.print("[yellow]Nothing to destroy.[/yellow]")


@capacity_app.command("cost")
def capacity_cost() -> None:
    """What rented capacity cost: instance-hours, dollars, $ per job and per finished video minute by op."""
    from reelforge.jobs.capacity import Ledger, ledger_path

    s = Ledger(ledger_path(_load_settings())).summary()
    out.print(f"instances: {len(s.instances)} ({len(s.open())} alive), instance-hours {s.instance_hours:.3f}, "
              f"total ${s.total_usd:.4f}")
    if s.jobs:
        out.print(f"jobs: {s.jobs}, their share ${s.job_usd:.4f}, ${s.total_usd / s.jobs:.5f} per job all included")
    table = Table("op", "jobs", "$", "$ / job", "video min", "$ / video min")
    for op, (n, usd, video_s) in sorted(s.by_op.items()):
        table.add_row(op, str(n), f"{usd:.4f}", f"{usd / n:.5f}" if n else "-", f"{video_s / 60:.1f}",
                      f"{usd / (video_s / 60):.4f}" if video_s else "-")
    out.print(table)
    for batch, usd in sorted(s.by_batch.items()):
        out.print(f"batch {batch}: ${usd:.4f}")


# ------------------------------------------------------------------ batches and presets
def _read_values(path: Path) -> dict[str, Any]:
    """A JSON or TOML file of batch values (a spec, a preset)."""
    from reelforge.jobs.batch_config import parse_config_text

    try:
        return parse_config_text(path.read_text(), str(path))
    except OSError as exc:
        console.print(f"[red]Cannot read {path}:[/red] {exc}")
        raise typer.Exit(2) from None
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


def _env_layer() -> dict[str, Any] | None:
    """REELFORGE_BATCH_* from .env (REELFORGE_ENV_FILE, default ./.env) under those of the environment."""
    from dotenv import dotenv_values

    from reelforge.errors import ReelForgeError
    from reelforge.jobs.batch_config import ENV_NAMES, env_values

    path = Path(os.environ.get("REELFORGE_ENV_FILE") or ".env").expanduser()
    merged: dict[str, str] = {}
    source = []
    if path.is_file():
        file_values = {k: v or "" for k, v in dotenv_values(path).items() if k in ENV_NAMES}
        if file_values:
            merged.update(file_values)
            source.append(str(path))
    env = {k: v for k, v in os.environ.items() if k in ENV_NAMES}
    if env:
        merged.update(env)
        source.insert(0, "environment")
    try:
        values = env_values(merged)
    except ReelForgeError as exc:
        console.print(f"[red]{exc.message}[/red]")
        raise typer.Exit(2) from None
    if not values:
        return None
    return {"rank": "env", "label": f"env ({', '.join(source)})", "values": values}


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 70 else text[:67] + "..."


def _print_explain(plan: dict[str, Any]) -> None:
    config, explain = plan.get("config") or {}, plan.get("explain") or {}
    table = Table("value", "is", "set by")
    for key, layer in explain.items():
        group, _, sub = key.partition(".")
        value = (config.get("params") or {}).get(sub) if group == "params" and sub else config.get(key)
        table.add_row(key, _shown(value), layer)
    out.print(table)
    console.print("Layers, lowest first: default < " + " < ".join(plan.get("layers") or []))


def _print_plan(plan: dict[str, Any]) -> None:
    table = Table("#", "source", "size", "row", "job")
    for item in plan["items"]:
        job = "skip (done before)" if item["skip"] else f"{item['job']['op']} {_shown(item['job']['params'])}"
        table.add_row(str(item["index"]), item["source"], str(item.get("size") or ""), str(item.get("row") or ""),
                      job)
    console.print(table)
    more = " (first 1000 shown)" if plan.get("truncated") else ""
    console.print(f"Dry run: {plan['total']} items{more}, {plan['jobs']} jobs would run, {plan['skipped']} "
                  "skipped as done before. Nothing was created.")
    cap = plan.get("capacity")
    if cap:
        cost = f"about ${cap['estimate_usd']:.2f}" if cap.get("estimate_usd") is not None else "cost unknown"
        console.print(f"Rented capacity ({cap['provider']}): {cap['jobs']} jobs on up to {cap['instances']} "
                      f"instances (at most ${cap['max_dph']}/h, ${cap['max_day_usd']}/day), {cost}: {cap['basis']}.")


def _print_batch(batch: dict[str, Any]) -> None:
    c = batch["counts"]
    eta = f" eta {batch['eta_s']:.0f}s" if batch.get("eta_s") is not None else ""
    console.print(f"[bold]{batch['status']}[/bold] {batch['id']} {batch.get('name') or ''}: {batch['total']} items, "
                  f"{c['succeeded']} done, {c['failed']} failed, {c['submitted']} running, {c['pending']} pending, "
                  f"{c['skipped']} skipped, {c['cancelled']} cancelled{eta}")
    results = batch.get("results")
    if results:
        console.print(f"  results: {results['json']}  {results['csv']}")


def _wait_batch(client: httpx.Client, batch: dict[str, Any]) -> dict[str, Any]:
    with Progress(TextColumn("[bold]{task.fields[status]}[/bold]"), BarColumn(),
                  TextColumn("{task.completed:.0f}/{task.total:.0f}"), TextColumn("{task.fields[counts]}"),
                  TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("batch", total=batch["total"] or 1, status=batch["status"], counts="")
        while True:
            batch = _check(client.get(f"/v1/batches/{batch['id']}"))
            c = batch["counts"]
            eta = f" eta {batch['eta_s']:.0f}s" if batch.get("eta_s") is not None else ""
            bar.update(task, completed=batch["total"] - c["pending"] - c["submitted"], status=batch["status"],
                       counts=f"done {c['succeeded'] + c['skipped']} failed {c['failed']} running {c['submitted']}"
                              f"{eta}")
            if batch["status"] in ("succeeded", "failed", "cancelled"):
                return batch
            time.sleep(0.5)


@batch_app.command("run")
def batch_run(
    spec: Annotated[Path | None, typer.Argument(help="Config file (TOML or JSON) of batch values")] = None,
    prefix: Annotated[str | None, typer.Option(help="s3://bucket/prefix: one job per object under it")] = None,
    input_: Annotated[list[str] | None, typer.Option("--input", help="One input URL / file id / s3:// key "
                                                                    "(repeatable)")] = None,
    manifest: Annotated[Path | None, typer.Option(help="CSV or JSON-lines manifest, one item a row")] = None,
    op: Annotated[str | None, typer.Option(help="The operation each item runs")] = None,
    preset: Annotated[str | None, typer.Option(help="A stored preset (`reelforge presets add`)")] = None,
    params: Annotated[str | None, typer.Option(help="Params as a JSON object (placeholders allowed)")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="key=value (repeatable)")] = None,
    destination: Annotated[str | None, typer.Option(help="Where outputs go: s3://bucket/prefix")] = None,
    filename: Annotated[str | None, typer.Option(help="Output name pattern, e.g. {stem}_{output}{out_ext}")] = None,
    glob: Annotated[str | None, typer.Option(help="Only keys matching this pattern")] = None,
    ext: Annotated[list[str] | None, typer.Option("--ext", help="Only these extensions (repeatable)")] = None,
    max_concurrent: Annotated[int | None, typer.Option(help="Jobs of this batch at a time")] = None,
    max_retries: Annotated[int | None, typer.Option(help="Retries of a failed item")] = None,
    priority: Annotated[int | None, typer.Option(help="Job priority, -10..10")] = None,
    webhook_url: Annotated[str | None, typer.Option(help="POSTed when the batch ends")] = None,
    remote_config: Annotated[str | None, typer.Option(help="URL or s3://bucket/key of more batch values")] = None,
    name: Annotated[str | None, typer.Option(help="A label for the batch")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the items and jobs; create nothing")] = False,
    explain: Annotated[bool, typer.Option("--explain", help="Show which layer set each value (a dry run)")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Show live progress until the batch ends")] = False,
    url: UrlOpt = DEFAULT_URL,
    api_key: KeyOpt = None,
) -> None:
    """Run a batch. Values merge: default < preset < SPEC < remote config < REELFORGE_BATCH_* env/.env < flags."""
    body: dict[str, Any] = {"layers": []}
    if spec is not None:
        body["layers"].append({"rank": "file", "label": f"config file {spec}", "values": _read_values(spec)})
    env_layer = _env_layer()
    if env_layer:
        body["layers"].append(env_layer)
    flags: dict[str, Any] = {"prefix": prefix, "inputs": input_ or None, "op": op, "preset": preset,
                             "destination": destination, "filename": filename, "glob": glob, "extensions": ext or None,
                             "max_concurrent": max_concurrent, "max_retries": max_retries, "priority": priority,
                             "webhook_url": webhook_url, "remote_config": remote_config, "name": name}
    if manifest is not None:
        try:
            flags["manifest"] = manifest.read_text()
        except OSError as exc:
            console.print(f"[red]Cannot read {manifest}:[/red] {exc}")
            raise typer.Exit(2) from None
        flags["manifest_format"] = "jsonl" if manifest.suffix.lower() in (".jsonl", ".ndjson") else None
    given_params: dict[str, Any] = json.loads(params) if params else {}
    for kv in param or []:
        k, _, v = kv.partition("=")
        given_params[k] = v
    if given_params:
        flags["params"] = given_params
    body.update({k: v for k, v in flags.items() if v is not None})
    body["dry_run"] = dry_run or explain
    try:
        with _client(url, api_key) as client:
            answer = _check(client.post("/v1/batches", json=body))
            if explain:
                _print_explain(answer)
                return
            if dry_run:
                _print_plan(answer)
                shown = ("total", "jobs", "skipped", "capacity")
                out.print_json(json.dumps({k: answer[k] for k in shown if k in answer}))
                return
            console.print(f"Created batch {answer['id']} ({answer['total']} items)")
            if wait:
                answer = _wait_batch(client, answer)
            _print_batch(answer)
            out.print_json(json.dumps(answer))
    except httpx.TransportError as exc:
        raise _connect_error(url, exc) from None
    if wait and answer["status"] != "succeeded":
        raise typer.Exit(1)


@batch_app.command("status")
def batch_status(batch_id: str, wait: Annotated[bool, typer.Option("--wait")] = False,
                 url: UrlOpt = DEFAULT_URL, api_key: KeyOpt = None) -> None:
    """Show a batch: counts by item state, ETA, results (optionally wait for it)."""
    try:
        with _client(url, api_key) as client:
            batch = _check(client.get(f"/v1/batches/{batch_id}"))
            if wait:
                batch = _wait_batch(client, batch)
    except httpx.TransportError as exc:
        raise _connect_error(url, exc) from None
    _print_batch(batch)
    out.print_json(json.dumps(batch))


def _batch_action(batch_id: str, action: str, url: str, api_key: str | None) -> None:
    try:
        with _client(url, api_key) as client:
            _print_batch(_check(client.post(f"/v1/batches/{batch_id}/{action}")))
    except httpx.TransportError as exc:
        raise _connect_error(url, exc) from None


@batch_app.command("cancel")
def batch_cancel(batch_id: str, url: UrlOpt = DEFAULT_URL, api_key: KeyOpt = None) -> None:
    """Cancel a batch: pending items never run, running jobs are stopped."""
    _batch_action(batch_id, "cancel", url, api_key)


@batch_app.command("pause")
def batch_pause(batch_id: str, url: UrlOpt = DEFAULT_URL, api_key: KeyOpt = None) -> None:
    """Pause a batch: no new jobs start; running ones finish."""
    _batch_action(batch_id, "pause", url, api_key)


@batch_app.command("resume")
def batch_resume(batch_id: str, url: UrlOpt = DEFAULT_URL, api_key: KeyOpt = None) -> None:
    """Resume a paused batch."""
    _batch_action(batch_id, "resume", url, api_key)


@batch_app.command("results")
def batch_results(batch_id: str,
                  format_: Annotated[str, typer.Option("--format", help="json or csv")] = "json",
                  output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file")] = None,
                  url: UrlOpt = DEFAULT_URL, api_key: KeyOpt = None) -> None:
    """results.json / results.csv of a batch: item -> status, outputs, error code, seconds."""
    try:
        with _client(url, api_key) as client:
            resp = client.get(f"/v1/batches/{batch_id}/results", params={"format": format_})
            if resp.status_code >= 400:
                _check(resp)
    except httpx.TransportError as exc:
        raise _connect_error(url, exc) from None
    if output is not None:
        output.write_bytes(resp.content)
        console.print(f"Wrote {output}")
    else:
        sys.stdout.write(resp.text)


@batch_app.command("list")
def batch_list(limit: int = 20, url: UrlOpt = DEFAULT_URL, api_key: KeyOpt = None) -> None:
    """List recent batches."""
    try:
        with _client(url, api_key) as client:
            data = _check(client.get("/v1/batches", params={"limit": limit}))
    except httpx.TransportError as exc:
        raise _connect_error(url, exc) from None
    table = Table("id", "name", "status", "items", "done", "failed")
    for b in data["batches"]:
        c = b["counts"]
        table.add_row(b["id"], b.get("name") or "", b["status"], str(b["total"]), str(c["succeeded"] + c["skipped"]),
                      str(c["failed"]))
    out.print(table)


@presets_app.command("add")
def presets_add(name: str, from_: Annotated[Path, typer.Option("--from", help="JSON or TOML file of batch values")],
                url: UrlOpt = DEFAULT_URL, api_key: KeyOpt = None) -> None:
    """Store (or replace) a preset: batch values such as op and params."""
    values = _read_values(from_)
    try:
        with _client(url, api_key) as client:
            preset = _check(client.put(f"/v1/presets/{name}", json={"values": values}))
    except httpx.TransportError as exc:
        raise _connect_error(url, exc) from None
    console.print(f"Stored preset {preset['name']!r}")
    out.print_json(json.dumps(preset["values"]))


@presets_app.command("list")
def presets_list(url: UrlOpt = DEFAULT_URL, api_key: KeyOpt = None) -> None:
    """List stored presets."""
    try:
        with _client(url, api_key) as client:
            data = _check(client.get("/v1/presets"))
    except httpx.TransportError as exc:
        raise _connect_error(url, exc) from None
    table = Table("name", "values")
    for p in data["presets"]:
        table.add_row(p["name"], _shown(p["values"]))
    out.print(table)


@presets_app.command("rm")
def presets_rm(name: str, url: UrlOpt = DEFAULT_URL, api_key: KeyOpt = None) -> None:
    """Remove a preset."""
    try:
        with _client(url, api_key) as client:
            resp = client.delete(f"/v1/presets/{name}")
            if resp.status_code >= 400:
                _check(resp)
    except httpx.TransportError as exc:
        raise _connect_error(url, exc) from None
    console.print(f"Removed preset {name!r}")


def main() -> None:  # pragma: no cover
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
