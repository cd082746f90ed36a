"""Run ffmpeg as a subprocess with progress, cancel and errors translated into our exception tree.

Commands are built as argument lists by pure functions elsewhere (plan as data, then execute); this
module only runs them. Progress comes from `-progress pipe:1` (out_time_us against the expected output
duration). Cancel is polled every 0.2 s and kills ffmpeg. A non-zero exit becomes a ProcessingError (or a
MediaError when the input is at fault) carrying the tail of stderr, with local paths replaced by file names.
Every input of every command gets the protocol and format whitelists (media/inputs.guard_inputs), also
inputs a caller built by hand; ops build theirs with media/inputs, which also forces the demuxer.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from reelforge.errors import JobCancelled, MediaError, ProcessingError
from reelforge.media.inputs import guard_inputs

if TYPE_CHECKING:
    from reelforge.runtime import WorkContext

# stderr phrases that mean the *input* is bad rather than our command or the machine
_INPUT_FAULTS = (
    "Invalid data found when processing input",
    "moov atom not found",
    "could not find codec parameters",
    "Invalid argument",
    "does not contain any stream",
    "Error while decoding stream",
    "End of file",
    "Unknown encoder",
)


def ffmpeg_bin() -> str:
    return os.environ.get("REELFORGE_FFMPEG", "ffmpeg")


def ffprobe_bin() -> str:
    return os.environ.get("REELFORGE_FFPROBE", "ffprobe")


def have_ffmpeg() -> bool:
    return shutil.which(ffmpeg_bin()) is not None and shutil.which(ffprobe_bin()) is not None


# an absolute path (optionally file:-prefixed) at the start of a word: "/srv/data/work/job_x/inputs/a.mp4"
_ABS_PATH = re.compile(r"(?<![\w.:/])(?:file:)?/(?:[^\s'\"/]+/)+([^\s'\"/]*)")


def redact_paths(text: str, names: dict[str, str] | None = None) -> str:
    """`text` without local paths: known ones (`names`: path -> what the user called it) by their names,
    any other absolute path by its last component. Error messages go to users; paths stay here."""
    for path, name in sorted((names or {}).items(), key=lambda kv: -len(kv[0])):
        text = text.replace(f"file:{path}", name).replace(path, name)
    return _ABS_PATH.sub(lambda m: m.group(1) or "(a local folder)", text)


def _stderr_tail(lines: deque[str]) -> str:
    text = "\n".join(line for line in lines if line.strip())
    return redact_paths(text[-1500:])


def run_ffmpeg(
    args: Sequence[str],
    ctx: WorkContext | None = None,
    *,
    duration_s: float | None = None,
    span: tuple[float, float] = (0.0, 1.0),
    stage: str | None = None,
    input_fault_code: str = "media_decode_failed",
    stdin: int | None = subprocess.DEVNULL,
) -> None:
    """Run `ffmpeg <args>` (global flags are added here) and wait for it.

    `duration_s` is the expected output duration, used to turn ffmpeg's out_time into ctx progress within
    `span`. Raises JobCancelled if the job is cancelled meanwhile (ffmpeg is killed first).
    """
    cmd = [ffmpeg_bin(), "-hide_banner", "-nostdin", "-y", "-loglevel", "error", "-progress", "pipe:1",
           "-nostats", *guard_inputs(args)]
    if ctx is not None and stage:
        ctx.progress(0.0 if span == (0.0, 1.0) else span[0], stage)
    proc = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            errors="replace")
    err_lines: deque[str] = deque(maxlen=40)

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            err_lines.append(line.rstrip())

    t_err = threading.Thread(target=read_stderr, daemon=True)
    t_err.start()
    cancelled = threading.Event()

    def watch_cancel() -> None:
        while proc.poll() is None:
            if ctx is not None and ctx.cancelled():
                cancelled.set()
                kill_process(proc)
                return
            time.sleep(0.2)

    t_cancel = threading.Thread(target=watch_cancel, daemon=True)
    t_cancel.start()

    lo, hi = span
    last_report = 0.0
    assert proc.stdout is not None
    for line in proc.stdout:
        if ctx is None or not duration_s or duration_s <= 0:
            continue
        key, _, value = line.strip().partition("=")
        if key == "out_time_us" and value.lstrip("-").isdigit():
            now = time.monotonic()
            if now - last_report >= 0.5:
                last_report = now
                frac = min(1.0, max(0.0, int(value) / 1e6 / duration_s))
                ctx.progress(lo + (hi - lo) * frac)
    rc = proc.wait()
    t_err.join(timeout=2)
    if cancelled.is_set() or (ctx is not None and rc != 0 and ctx.cancelled()):
        raise JobCancelled("The job was cancelled.")
    if rc != 0:
        tail = _stderr_tail(err_lines)
        if "not on whitelist" in tail:  # an input that is (or points to) something other than one media file
            raise MediaError(f"An input is not one ordinary media file ({tail[-300:]}).",
                             code="input_format_not_allowed")
        if any(fault in tail for fault in _INPUT_FAULTS):
            raise MediaError(f"ffmpeg could not process the input: {tail or 'exit code ' + str(rc)}",
                             code=input_fault_code)
        raise ProcessingError(f"ffmpeg failed (exit {rc}): {tail}", code="ffmpeg_failed")
    if ctx is not None and duration_s:
        ctx.progress(hi)


def kill_process(proc: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    """Stop a child quickly: SIGTERM, then SIGKILL after a short grace period."""
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=1.0)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
    except ProcessLookupError:
        pass


def open_ffmpeg_pipe(args: Sequence[str], *, read: bool = False, write: bool = False) -> subprocess.Popen[bytes]:
    """Start ffmpeg with raw frames flowing through stdin (write=True) and/or stdout (read=True).

    The caller owns the process (must close pipes, wait, and check `returncode`); use `kill_process` on
    cancel. stderr goes to a file-like tail that `pipe_error_tail` reads after exit.
    """
    cmd = [ffmpeg_bin(), "-hide_banner", *([] if write else ["-nostdin"]), "-y", "-loglevel", "error",
           *guard_inputs(args)]
    return subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE if write else subprocess.DEVNULL,
        stdout=subprocess.PIPE if read else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        bufsize=0,
    )


def ensure_file_output(path: Path, what: str = "output") -> Path:
    if not path.exists() or path.stat().st_size == 0:
        raise ProcessingError(f"ffmpeg produced no {what}.", code="empty_output")
    return path
