"""One ffmpeg audio encode fed with mono PCM while the audio is still being made.

Speech comes sentence by sentence; encoding it only once the last sentence is spoken puts the whole encode
(~18 CPU s for 15 minutes of 48 kHz AAC, one thread) after the synthesis. Fed as it grows, the encoder works
beside the synthesis and is done moments after it. The samples are the 16-bit PCM a wav of the same audio
holds, so the encoded file is the one encoding that wav gives.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from reelforge.errors import ProcessingError
from reelforge.media.ffmpeg import kill_process, open_ffmpeg_pipe
from reelforge.media.framepipe import PipedFfmpeg, grow_pipe


def pcm16(samples: np.ndarray) -> bytes:
    """float32 in [-1, 1] -> little-endian 16-bit PCM (as write_wav stores it)."""
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


class PcmEncoder:
    """Started by the first `write` (which fixes the rate); `close()` waits and checks the encode, `abort()`
    stops it. `output_args` are ffmpeg's arguments after the raw mono input (codec, rate, container)."""

    def __init__(self, output_args: Sequence[str], out: Path) -> None:
        self._output_args = list(output_args)
        self._out = out
        self._child: PipedFfmpeg | None = None
        self.rate = 0

    @property
    def _proc(self) -> subprocess.Popen[bytes] | None:
        return self._child.proc if self._child is not None else None

    def _start(self, rate: int) -> None:
        args = ["-f", "s16le", "-ar", str(rate), "-ac", "1", "-i", "pipe:0", *self._output_args, str(self._out)]
        self._child = PipedFfmpeg(open_ffmpeg_pipe(args, write=True), "encoder")
        assert self._child.proc.stdin is not None
        grow_pipe(self._child.proc.stdin.fileno())  # ~24 s of 22 kHz speech: a sentence in one write
        self.rate = rate

    def write(self, samples: np.ndarray, rate: int) -> None:
        if self._child is None:
            self._start(rate)
        elif rate != self.rate:
            raise ValueError("one encode takes one sample rate")
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(pcm16(samples))
        except BrokenPipeError:
            self.close()  # ffmpeg stopped early: its exit status and stderr say why
            raise ProcessingError("ffmpeg stopped while encoding the speech.", code="ffmpeg_failed") from None

    def close(self) -> Path:
        """Wait for the encode; the output file is complete when this returns."""
        if self._child is None:
            raise ProcessingError("No audio was given to encode.", code="empty_output")
        proc = self._child.proc
        with contextlib.suppress(BrokenPipeError, OSError, ValueError):
            if proc.stdin is not None:
                proc.stdin.close()
        rc = proc.wait()
        if rc != 0:
            raise ProcessingError(f"ffmpeg failed encoding the speech (exit {rc}): {self._child.stderr_tail()}",
                                  code="ffmpeg_failed")
        return self._out

    def abort(self) -> None:
        if self._child is not None:
            with contextlib.suppress(OSError, ValueError):
                if self._child.proc.stdin is not None:
                    self._child.proc.stdin.close()
            kill_process(self._child.proc)
