"""Atomic file writes: write under a unique temporary name beside the target, then rename it into place.

The temporary name carries the process id and a random token, so concurrent runs writing into one folder never
share one; on any error (or interrupt) the temporary file is removed and the target is left as it was.
`atomic_files` does the same for a set of files that belong together, renaming them only once all are written;
an interrupt between two renames takes the renamed ones back out (a SIGKILL there leaves them for
`hiresflow.naming.clean_stale`). `describe_os_error` words an OSError met while writing (disk full, read-only file
system, permission denied, a folder where a file goes) as one line naming the file a user asked for.
"""

from __future__ import annotations

import errno
import os
import re
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

__all__ = ["TMP_SUFFIX", "temporary_name", "atomic_path", "atomic_files", "write_text_atomic",
           "write_bytes_atomic", "write_result", "describe_os_error"]

TMP_SUFFIX = ".hiresflow-tmp"


def temporary_name(path: str | os.PathLike) -> Path:
    """A hidden, unique sibling of `path` (".name.<pid>-<token>.hiresflow-tmp")."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}{TMP_SUFFIX}")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `path`, on error it is deleted."""
    with atomic_files([path]) as (tmp,):
        yield tmp


@contextmanager
def atomic_files(paths: Sequence[str | os.PathLike],
                 before_last: Callable[[], None] | None = None) -> Iterator[list[Path]]:
    """Yield one temporary path per target; after the block all are renamed into place, in the given order
    (put the file whose presence marks the set complete last; `before_last` runs just before that rename)."""
    targets = [Path(p) for p in paths]
    tmps = [temporary_name(p) for p in targets]
    renamed: list[Path] | None = []
    try:
        yield tmps
        for k, (tmp, target) in enumerate(zip(tmps, targets)):
            if k == len(targets) - 1 and before_last is not None:
                before_last()
            os.replace(tmp, target)
            renamed.append(target)
        renamed = None  # the whole set is in place
    finally:
        for tmp in tmps:
            if tmp.exists():
                tmp.unlink()
        for target in renamed or []:  # interrupted between renames: take the partial set back out
            target.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_result(stem: str | os.PathLike | None, result: object, text: str) -> None:
    """A benchmark script's output: STEM.json (the result, indented) and STEM.md (its table), both written
    atomically (folders created); nothing when `stem` is None (no `--out`)."""
    if stem is None:
        return
    import json

    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(stem.with_suffix(".json"), json.dumps(result, indent=1) + "\n")
    write_text_atomic(stem.with_suffix(".md"), text.rstrip("\n") + "\n")


_HINTS = {
    errno.ENOSPC: "free some space or pick another --out",
    errno.EDQUOT: "free some space (the disk quota is full) or pick another --out",
    errno.EROFS: "pick another --out",
    errno.EACCES: "pick a folder you may write to (--out)",
    errno.EPERM: "pick a folder you may write to (--out)",
    errno.EISDIR: "a folder stands where the file goes; move it away or pick another --out",
    errno.ENOTDIR: "a file stands where a folder goes; pick another --out",
    errno.EADDRINUSE: "pick another --port",
    errno.EADDRNOTAVAIL: "pick an address of this machine (--host)",
}
_TMP_NAME = re.compile(r"^\.(.+)\.\d+-[0-9a-f]{8}" + re.escape(TMP_SUFFIX) + "$")


def _shown(filename) -> str:
    """A temporary name shown as the file it stands for."""
    path = Path(os.fsdecode(filename))
    m = _TMP_NAME.match(path.name)
    return str(path.with_name(m.group(1)) if m else path)


def describe_os_error(err: OSError, doing: str | None = None) -> str:
    """One line for an OSError: what failed (`doing`, default "cannot write <file>" when it names a file), the
    system's reason, and what to do."""
    reason = " ".join((err.strerror or str(err) or type(err).__name__).split())
    name = err.filename2 or err.filename  # os.replace(tmp, target): the target is the file asked for
    if doing is None and name:
        doing = "cannot write"
    head = " ".join(part for part in (doing, _shown(name) if name else None) if part)
    hint = _HINTS.get(err.errno)
    return (f"{head}: {reason}" if head else reason) + (f"; {hint}" if hint else "")
