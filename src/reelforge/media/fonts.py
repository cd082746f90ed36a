"""Font files a timeline brings (Shotstack's `timeline.fonts`): checked, named by their family.

A font is accepted only when fontconfig reads it as a font (`fc-scan`); its family name is what text
assets and html CSS refer to it by. Text draws it through drawtext's `fontfile=`, html pages get it as an
inline `@font-face` (a data: URL, the only kind of URL the html renderer loads).
"""

from __future__ import annotations

import base64
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from reelforge.errors import InputError

MAX_FONT_BYTES = 20 * 1024 * 1024
_MIME = {".ttf": "font/ttf", ".otf": "font/otf", ".woff": "font/woff", ".woff2": "font/woff2"}


def installed_families() -> set[str]:
    """Lower-cased family names fontconfig knows on this machine (empty when it cannot say)."""
    try:
        found = subprocess.run(["fc-list", "--format", "%{family}\n"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return set()
    return {name.strip().lower() for line in found.stdout.splitlines() for name in line.split(",") if name.strip()}


@dataclass(frozen=True)
class LoadedFont:
    family: str
    path: Path

    def css(self) -> str:
        """An @font-face rule carrying the font inline."""
        mime = _MIME.get(self.path.suffix.lower(), "font/ttf")
        data = base64.b64encode(self.path.read_bytes()).decode("ascii")
        family = self.family.replace("\\", "").replace('"', "")
        return f'@font-face{{font-family:"{family}";src:url(data:{mime};base64,{data});}}'


def load_font(src: Path, dest_dir: Path, where: str) -> LoadedFont:
    """Check `src` is a font file, copy it into `dest_dir` (a folder of this render's fonts), name it."""
    if src.stat().st_size > MAX_FONT_BYTES:
        raise InputError(f"{where}: a font file may be at most {MAX_FONT_BYTES // 2**20} MB.", code="font_too_large",
                         details={"path": where})
    try:
        found = subprocess.run(["fc-scan", "--format", "%{family}\n", str(src)], capture_output=True, text=True,
                               timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        found = None
    families = [f for f in (found.stdout.splitlines() if found and found.returncode == 0 else []) if f.strip()]
    if not families:
        raise InputError(f"{where}: not a font file fontconfig can read (TTF/OTF/WOFF).", code="bad_font",
                         details={"path": where})
    family = families[0].split(",")[0].strip()
    dest_dir.mkdir(parents=True, exist_ok=True)
    suffix = src.suffix.lower() if src.suffix.lower() in _MIME else ".ttf"
    dest = dest_dir / f"font{len(list(dest_dir.iterdir()))}{suffix}"
    shutil.copyfile(src, dest)
    return LoadedFont(family, dest)
