"""Output names that never collide: a readable stem, reserved by a lock file before the run writes anything.

Stem: <prompt slug>-<method>-<model>-<W>x<H>-s<seed>, where the slug keeps letters of any script (a prompt in
Japanese stays Japanese) and falls back to a short hash when nothing printable is left. `reserve_stem` claims
the first free stem (the plain one, then -2, -3, …) by creating `.<stem>.lock` exclusively, so two runs writing
into one folder at once never pick the same name; with `overwrite=True` the plain stem is reused.
`clean_stale` removes what a killed run left: its temporary files and lock, and an incomplete image set
(a native image or sidecar whose final image never appeared). `output_folder` prepares --out for a run and takes
the folders it created back out when the run fails before writing anything.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import unicodedata
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .atomic import TMP_SUFFIX

__all__ = ["slug", "image_stem", "Reservation", "reserve_stem", "clean_stale", "set_paths", "check_out_dir",
           "output_folder"]

LOCK_SUFFIX = ".lock"


def slug(text: str, limit: int = 48) -> str:
    """Lower-case words of any script joined by '-', at most `limit` characters; 'prompt-<hash>' if empty."""
    norm = unicodedata.normalize("NFKC", text).lower()
    s = re.sub(r"[\W_]+", "-", norm, flags=re.UNICODE).strip("-")[:limit].strip("-")
    return s or "prompt-" + hashlib.sha256(text.encode()).hexdigest()[:8]


def image_stem(prompt: str, method: str, model: str, size: tuple[int, int], seed: int) -> str:
    """<slug>-<method>-<model>-<W>x<H>-s<seed>; `size` is (height, width)."""
    model_name = slug(Path(str(model)).name or str(model), 32)
    return f"{slug(prompt)}-{slug(method, 24)}-{model_name}-{size[1]}x{size[0]}-s{seed}"


def set_paths(out_dir: Path, stem: str) -> dict[str, Path]:
    """The files of one image set."""
    return {"image": out_dir / f"{stem}.png", "native": out_dir / f"{stem}-native.png",
            "metadata": out_dir / f"{stem}.json"}


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class Reservation:
    out_dir: Path
    stem: str
    lock: Path

    @property
    def paths(self) -> dict[str, Path]:
        return set_paths(self.out_dir, self.stem)

    def release(self) -> None:
        self.lock.unlink(missing_ok=True)

    def __enter__(self) -> "Reservation":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _try_lock(lock: Path) -> bool:
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(str(os.getpid()))
    return True


def reserve_stem(out_dir: Path, stem: str, overwrite: bool = False, attempts: int = 10_000) -> Reservation:
    """Claim a stem in out_dir: the first of stem, stem-2, stem-3, … with no image set and no live lock."""
    out_dir = Path(out_dir)
    for k in range(1, attempts + 1):
        cand = stem if k == 1 else f"{stem}-{k}"
        lock = out_dir / f".{cand}{LOCK_SUFFIX}"
        if not overwrite and any(p.exists() for p in set_paths(out_dir, cand).values()):
            continue
        folders = [p for p in set_paths(out_dir, cand).values() if p.is_dir()]
        if folders:
            raise ValueError(f"{folders[0]} is a folder; --overwrite replaces image files only: move it away or pick "
                             f"another --out")
        if _try_lock(lock):
            if not overwrite and any(p.exists() for p in set_paths(out_dir, cand).values()):
                lock.unlink(missing_ok=True)  # a run finished this stem between the check and the lock
                continue
            return Reservation(out_dir, cand, lock)
        if overwrite:
            raise ValueError(f"another hiresflow run is writing {cand} in {out_dir} right now; wait for it or "
                             f"drop --overwrite")
    raise ValueError(f"no free output name for {stem} in {out_dir} after {attempts} tries; use another --out")


def _owner(path: Path) -> int:
    """The pid in a lock file, or the pid in a temporary name (.name.<pid>-<token>.hiresflow-tmp)."""
    if path.name.endswith(LOCK_SUFFIX):
        try:
            return int(path.read_text().strip() or 0)
        except (OSError, ValueError):
            return 0
    m = re.search(r"\.(\d+)-[0-9a-f]{8}" + re.escape(TMP_SUFFIX) + "$", path.name)
    return int(m.group(1)) if m else 0


def clean_stale(out_dir: Path) -> list[Path]:
    """Remove temporary files and locks of runs that are no longer alive, and the partial image sets they left."""
    out_dir = Path(out_dir)
    removed: list[Path] = []
    if not out_dir.is_dir():
        return removed
    for p in list(out_dir.glob(f".*{TMP_SUFFIX}")):
        if not _pid_alive(_owner(p)):
            p.unlink(missing_ok=True)
            removed.append(p)
    for lock in list(out_dir.glob(f".*{LOCK_SUFFIX}")):
        if _pid_alive(_owner(lock)):
            continue
        stem = lock.name[1:-len(LOCK_SUFFIX)]
        paths = set_paths(out_dir, stem)
        if not paths["image"].exists():  # the final image is renamed last: without it the set is incomplete
            for p in (paths["native"], paths["metadata"]):
                if p.exists():
                    p.unlink()
                    removed.append(p)
        lock.unlink(missing_ok=True)
        removed.append(lock)
    return removed


def check_out_dir(out_dir: Path) -> Path:
    """Create the output folder and prove it is writable (a one-line error otherwise) before any work starts."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} is a file, not a folder; pick a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".write-test.{os.getpid()}{TMP_SUFFIX}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"cannot write to --out {out_dir} ({err.strerror or err}); pick a writable folder") from None
    return out_dir


def _scaffolding(path: Path) -> bool:
    """What a run puts into an output folder before any image: empty folders, empty manifests, locks, temporary
    files and the write probe."""
    if path.is_symlink():
        return False
    if path.is_dir():
        return all(_scaffolding(p) for p in path.iterdir())
    name = path.name
    if name.endswith((TMP_SUFFIX, LOCK_SUFFIX)) and name.startswith("."):
        return True
    return name.startswith("manifest") and name.endswith(".jsonl") and path.stat().st_size == 0


@contextmanager
def output_folder(out_dir: Path) -> Iterator[Path]:
    """`check_out_dir` for a run: when the block fails (a refusal, a bad record, an interrupt, a full disk), the
    folders this call created are removed again if they hold nothing but scaffolding (`_scaffolding`), so an
    early error leaves no empty output folder behind. Folders that existed before are never removed."""
    out_dir = Path(out_dir)
    created: list[Path] = []
    p = out_dir.absolute()
    while not p.exists() and p != p.parent:
        created.append(p)
        p = p.parent
    try:
        yield check_out_dir(out_dir)
    except BaseException:
        for folder in created:  # innermost first
            try:
                if folder.is_dir() and _scaffolding(folder):
                    shutil.rmtree(folder)
            except OSError:
                break
        raise
