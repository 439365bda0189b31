"""Keep the libraries quiet while hiresflow loads models: no optional-backend notices, deprecation warnings or
per-component loading bars on a normal run. Everything is restored when the block ends, so a user's own logging
and progress settings are untouched.

`progress_enabled` is the command line's rule for progress bars: shown on an interactive terminal, never with
`--quiet` or when stderr is a log file or pipe (CI logs stay free of carriage-return noise). `resolve_progress` applies
the same rule to the Python API's `progress="auto"` (True and False force bars on or off)."""

from __future__ import annotations

import sys
import warnings
from contextlib import contextmanager
from typing import Iterator

__all__ = ["quiet_libraries", "progress_enabled", "resolve_progress"]


def progress_enabled(requested: bool = True, stream=None) -> bool:
    """Whether a command-line progress bar should draw: requested (not --quiet), stderr is a terminal, and
    HIRESFLOW_PROGRESS is not "0" (HIRESFLOW_PROGRESS=1 forces bars on, e.g. under a pseudo-terminal-less runner)."""
    if not requested:
        return False
    from .settings import current

    forced = current().progress
    if forced is not None:
        return forced
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def resolve_progress(progress) -> bool:
    """The API's `progress` argument as a bool: "auto" follows `progress_enabled` (bars only when stderr is a
    terminal), True or False force bars on or off."""
    if isinstance(progress, bool):
        return progress
    if isinstance(progress, str) and progress == "auto":
        return progress_enabled(True)
    raise ValueError(f"progress must be \"auto\", True or False, got {progress!r}")


@contextmanager
def quiet_libraries() -> Iterator[None]:
    import diffusers.utils.logging as dlog
    import transformers.utils.logging as tlog

    levels = (tlog.get_verbosity(), dlog.get_verbosity())
    bars = (tlog.is_progress_bar_enabled(), dlog.is_progress_bar_enabled())
    tlog.set_verbosity_error()
    dlog.set_verbosity_error()
    tlog.disable_progress_bar()
    dlog.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            for module in ("diffusers", "transformers", "huggingface_hub", "torch"):
                warnings.filterwarnings("ignore", category=FutureWarning, module=module)
                warnings.filterwarnings("ignore", category=DeprecationWarning, module=module)
            warnings.filterwarnings("ignore", message=".*torchvision.*")
            yield
    finally:
        tlog.set_verbosity(levels[0])
        dlog.set_verbosity(levels[1])
        if bars[0]:
            tlog.enable_progress_bar()
        if bars[1]:
            dlog.enable_progress_bar()
