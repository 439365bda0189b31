"""Every `HIRESFLOW_*` environment variable, parsed in one place before any work.

| variable | accepted form | default |
|---|---|---|
| HIRESFLOW_MAX_SECONDS | seconds > 0, at most 30 days (2592000) | 21600 (6 h) |
| HIRESFLOW_SAVE_PAUSE | seconds >= 0, at most 3600 (a testing aid) | 0 |
| HIRESFLOW_PROGRESS | 0 (no bars) or 1 (bars even without a terminal) | bars on a terminal only |
| HIRESFLOW_BENCH_DEBUG | 0 or 1 (print the traceback of a failed bench group) | 0 |
| HIRESFLOW_INCEPTION, HIRESFLOW_IS_TORCHSCRIPT, HIRESFLOW_IS_WEIGHTS | a file path | none |
| HIRESFLOW_CLIP_MODEL | a folder or a hub id already in the cache | torchmetrics' CLIP |

`load()` parses them all; a bad value (`nan`, `abc`, `inf`, a negative number, an empty path) is a one-line
`SettingsError` (a ValueError) naming the variable and its accepted form. The command line calls it before any
subcommand runs and the Python API at the start of each call; everything else reads `current()`, which parses
again only when a `HIRESFLOW_*` variable changed. No value turns a guard off: the time limit is finite and the
memory check has no variable — only `--allow-large` / `allow_large=True` override them.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass
from typing import Callable, Mapping

__all__ = ["Settings", "SettingsError", "VARIABLES", "load", "current", "DEFAULT_MAX_SECONDS"]

DEFAULT_MAX_SECONDS = 6 * 3600.0
MAX_SECONDS_CEILING = 30 * 24 * 3600.0
SAVE_PAUSE_CEILING = 3600.0


class SettingsError(ValueError):
    """A HIRESFLOW_* variable holds a value hiresflow does not accept."""


@dataclass(frozen=True)
class Settings:
    max_seconds: float = DEFAULT_MAX_SECONDS
    save_pause: float = 0.0
    progress: bool | None = None  # None: bars only on a terminal
    bench_debug: bool = False
    inception: str | None = None
    is_torchscript: str | None = None
    is_weights: str | None = None
    clip_model: str | None = None


def _seconds(low: float, high: float, low_inclusive: bool):
    def parse(text: str) -> float:
        value = float(text)  # ValueError for 'abc'
        ok = math.isfinite(value) and (value >= low if low_inclusive else value > low) and value <= high
        if not ok:
            raise ValueError
        return value

    return parse


def _flag(text: str) -> bool:
    if text not in ("0", "1"):
        raise ValueError
    return text == "1"


def _path(text: str) -> str:
    if not text.strip() or "\x00" in text:
        raise ValueError
    return text


# variable -> (Settings field, parser of a non-empty value, accepted form)
VARIABLES: dict[str, tuple[str, Callable[[str], object], str]] = {
    "HIRESFLOW_MAX_SECONDS": ("max_seconds", _seconds(0.0, MAX_SECONDS_CEILING, False),
                              "a number of seconds > 0 and at most 2592000 (30 days), e.g. 21600"),
    "HIRESFLOW_SAVE_PAUSE": ("save_pause", _seconds(0.0, SAVE_PAUSE_CEILING, True),
                             "a number of seconds >= 0 and at most 3600, e.g. 0.5"),
    "HIRESFLOW_PROGRESS": ("progress", _flag, "0 (no progress bars) or 1 (bars even without a terminal)"),
    "HIRESFLOW_BENCH_DEBUG": ("bench_debug", _flag, "0 or 1"),
    "HIRESFLOW_INCEPTION": ("inception", _path, "the path of the Inception TorchScript file"),
    "HIRESFLOW_IS_TORCHSCRIPT": ("is_torchscript", _path, "the path of a TorchScript logits network"),
    "HIRESFLOW_IS_WEIGHTS": ("is_weights", _path, "the path of the Inception weights file"),
    "HIRESFLOW_CLIP_MODEL": ("clip_model", _path, "a CLIP folder or a hub id in the Hugging Face cache"),
}

_lock = threading.Lock()
_cache: tuple[tuple, Settings] | None = None


def _relevant(environ: Mapping[str, str]) -> tuple:
    return tuple((k, environ.get(k)) for k in VARIABLES)


def parse(environ: Mapping[str, str]) -> Settings:
    """The Settings of `environ` (unset or empty variables keep their defaults)."""
    values = {}
    for name, (fld, parser, accepted) in VARIABLES.items():
        raw = environ.get(name)
        if raw is None or raw == "":
            continue
        try:
            values[fld] = parser(raw.strip() if parser is not _path else raw)
        except (ValueError, OverflowError):
            raise SettingsError(f"{name}={raw[:60]!r} is not valid; it takes {accepted} (or unset it for the "
                                f"default)") from None
    return Settings(**values)


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Parse every HIRESFLOW_* variable (of `environ`, default the process environment) and keep the result."""
    global _cache
    environ = os.environ if environ is None else environ
    key = _relevant(environ)
    with _lock:
        if _cache is not None and _cache[0] == key:
            return _cache[1]
    settings = parse(environ)
    with _lock:
        _cache = (key, settings)
    return settings


def current() -> Settings:
    """The parsed settings of the process environment (parsed again only if a HIRESFLOW_* variable changed)."""
    return load()
