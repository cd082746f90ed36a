"""Escaping for values placed inside ffmpeg filter graphs, so user text and paths are always literal.

An ffmpeg filter graph is parsed in layers, and each layer has its own special characters:

1. the graph (`-vf` / `-filter_complex`): `[ ] , ;` separate filters and links, `\\` and `'` escape;
2. a filter's option list (`key=value:key=value`): `:` separates options, `\\` and `'` escape;
3. some filters interpret the value again: drawtext expands `%{...}` (unless `expansion=none`).

`option_value()` quotes a value for layer 2 (inside single quotes everything is literal; a `'` is written
as `'\\''`), then backslash-escapes the result for layer 1. The result survives both parses unchanged,
whatever it contains: quotes, colons, backslashes, brackets, commas, semicolons, `%`, newlines, emoji,
right-to-left text. `filter_expr()` builds a whole `name=key=value:...` filter from data so that callers
never paste strings together.

    >>> print(filter_expr("drawtext", text="a:b", fontsize=24))
    drawtext=text=\\'a\\:b\\':fontsize=24

Paths: libass and ffmpeg's protocol layer give some file names a meaning (`foo:bar` looks like a
protocol), so callers copy subtitle files into the work dir under `safe_filename()` first and still pass
the (absolute) path through `filter_path()`.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

# Characters with a meaning in the graph layer (layer 1). Whitespace is escaped too: the parser trims
# leading/trailing blanks of a filter's argument string.
_GRAPH_SPECIAL = set("\\'[],;:= \t\n\r")
_SAFE_NAME_RE = re.compile(r"[^A-Za-z0-9._-]+")


def quote_option(value: str) -> str:
    """Quote `value` for a filter's option list (layer 2): `'...'` with each `'` written as `'\\''`."""
    return "'" + value.replace("'", "'\\''") + "'"


def escape_graph(text: str) -> str:
    """Backslash-escape every graph-layer special character (layer 1)."""
    return "".join("\\" + ch if ch in _GRAPH_SPECIAL else ch for ch in text)


def option_value(value: str | int | float | bool) -> str:
    """A filter option value that ffmpeg will read back exactly as `value`."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("filter option numbers must be finite")
        return repr(value) if isinstance(value, float) else str(value)
    if "\x00" in value:
        raise ValueError("filter option values must not contain NUL characters")
    return escape_graph(quote_option(value))


def filter_path(path: Path | str) -> str:
    """An absolute file path as a filter option value (e.g. `ass=filename=...`)."""
    return option_value(str(Path(path).resolve()))


def drawtext_text(text: str, *, expansion: bool = False) -> str:
    """`text` for drawtext's `text=` option. With `expansion=True` (drawtext's default `expansion=normal`)
    `\\` and `%` are escaped for the text-expansion layer as well; prefer `expansion=none` in the graph."""
    if expansion:
        text = text.replace("\\", "\\\\").replace("%", "\\%")
    return option_value(text)


_FILTER_NAME_RE = re.compile(r"^[a-z0-9_]+$")
_OPTION_KEY_RE = re.compile(r"^[A-Za-z0-9_]+$")


def filter_expr(name: str, /, **options: str | int | float | bool | Path | None) -> str:
    """`name=key=value:key=value` with every value escaped; options that are None are left out.

    Names and keys come from our code, never from users; they are checked so a mistake cannot slip
    graph syntax in either.
    """
    if not _FILTER_NAME_RE.match(name):
        raise ValueError(f"bad filter name {name!r}")
    parts = []
    for key, value in options.items():
        if value is None:
            continue
        if not _OPTION_KEY_RE.match(key):
            raise ValueError(f"bad filter option name {key!r}")
        shown = filter_path(value) if isinstance(value, Path) else option_value(value)
        parts.append(f"{key}={shown}")
    return f"{name}={':'.join(parts)}" if parts else name


def sidechain_duck(track: str, key: str, out: str) -> str:
    """Lower `track` while `key` sounds (labels without brackets): about -24 dB of gain reduction while the
    key is above ~-40 dBFS, back up within ~0.4 s of a pause (music under speech)."""
    return (f"[{track}][{key}]" + filter_expr("sidechaincompress", threshold=0.01, ratio=20, attack=20,
                                              release=400, makeup=1) + f"[{out}]")


def safe_filename(name: str, *, default: str = "file", max_len: int = 80) -> str:
    """A file name made only of `[A-Za-z0-9._-]` (accents folded, anything else replaced by `_`)."""
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    cleaned = _SAFE_NAME_RE.sub("_", folded).strip("._-")
    return (cleaned or default)[:max_len]
