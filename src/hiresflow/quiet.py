"""Keep the libraries quiet while hiresflow loads models: no optional-backend notices, deprecation warnings or
per-component loading bars on a normal run. Everything is restored when the block ends, so a user's own logging
and progress settings are untouched.

`progress_enabled` is the command line's rule for progress bars: shown on an interactive terminal, never with
`--quiet` or when stderr is a log file or pipe (CI logs stay free of carriage-return noise). `resolve_progress` applies
the same rule to the Python API's `progress="auto"` (True and False force bars on or off).

`encode_prompt` encodes a prompt with the tokenizers' and pipelines' truncation warnings silenced — they echo the
dropped text, ~180 KB for a 10,000-word prompt — and gives one `note` instead, saying how many tokens each text
encoder dropped. Notes go to the `hiresflow` logger (one line on stderr by default); the command line prints them
as `note: …` and drops them under `--quiet` (`notes_to`)."""

from __future__ import annotations

import contextvars
import logging
import sys
import warnings
from contextlib import contextmanager
from typing import Callable, Iterator

__all__ = ["quiet_libraries", "progress_enabled", "resolve_progress", "encode_prompt", "dropped_tokens", "note",
           "notes_to"]

_NOTES: contextvars.ContextVar = contextvars.ContextVar("hiresflow_notes", default=None)


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


@contextmanager
def notes_to(handler: Callable[[str], object]) -> Iterator[None]:
    """Send this block's notes to `handler` (e.g. print them, or drop them under --quiet)."""
    token = _NOTES.set(handler)
    try:
        yield
    finally:
        _NOTES.reset(token)


def note(message: str) -> None:
    """One line for the user: to the `notes_to` handler, else the `hiresflow` logger's warning."""
    handler = _NOTES.get()
    if handler is None:
        logging.getLogger("hiresflow").warning(message)
    else:
        handler(message)


def dropped_tokens(model, text: str) -> list[tuple[str, int, int]]:
    """(encoder, tokens of `text`, tokens it reads) for each text encoder of the model's pipeline that cuts `text`
    (CLIP reads its tokenizer's model_max_length, T5 the adapter's max_sequence_length)."""
    pipe = getattr(model, "pipe", None)
    if pipe is None or not text:
        return []
    found = []
    for suffix in ("", "_2", "_3"):
        tok, enc = getattr(pipe, "tokenizer" + suffix, None), getattr(pipe, "text_encoder" + suffix, None)
        if tok is None or enc is None:
            continue
        kind = "T5" if "T5" in type(enc).__name__ else "CLIP"
        limit = getattr(model, "max_sequence_length", None) if kind == "T5" else None
        limit = int(limit or getattr(tok, "model_max_length", 0) or 0)
        if not 0 < limit < 1_000_000:
            continue
        n = len(tok(text, truncation=False)["input_ids"])
        if n > limit and (kind, n, limit) not in found:
            found.append((kind, n, limit))
    return found


def _truncation_note(what: str, cut: list[tuple[str, int, int]]) -> str:
    parts = ", ".join(f"{kind} dropped {n - limit} of its {n} tokens (reads {limit})" for kind, n, limit in cut)
    return f"the {what} is longer than the text encoders read: {parts}"


def encode_prompt(model, prompt: str, negative_prompt: str = "", report: bool = True):
    """`model.encode_prompt(prompt, negative_prompt)` without the libraries' truncation warnings; when a text
    encoder cuts the prompt (or the negative prompt), one note says how many tokens it dropped (`report=False`:
    none, for a second encoding of the same prompt)."""
    with quiet_libraries():
        cond = model.encode_prompt(prompt, negative_prompt)
        cuts = [(what, dropped_tokens(model, text)) for what, text in (("prompt", prompt),
                                                                      ("negative prompt", negative_prompt))] \
            if report else []
    for what, cut in cuts:
        if cut:
            note(_truncation_note(what, cut))
    return cond
