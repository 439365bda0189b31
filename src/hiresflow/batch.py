"""Batch generation from a prompt file: resumable, crash-safe, and sharded across `accelerate launch` processes.

Input: a `.txt` file (one prompt per line; blank lines and lines starting with `#` are skipped) or a `.jsonl`
file (one object per line: "prompt" required; optional "seed", "negative_prompt", "method", "scale", "size"
as "WxH", "params" {recipe overrides}). Job k (0-based, in file order) has seed `seed + k` unless its line says.
Target: a line's own "size" or "scale" wins over the batch's --size/--scale, and a size wins over a scale (the
native pass stays at the model's native size), as in `hiresflow generate`.

Resources: before the batch starts every job goes through the resource guard (`hiresflow.resources`: the size
floor before the model loads, then the plan's memory and time estimate); a refused job is reported with its index
and reason and left out, the others run, and the result counts the refused jobs (`--allow-large` runs them).
When every job is refused nothing is created in --out.

Identity: a job is everything that changes its image — prompt, negative prompt, seed, model, method, size or
scale, recipe parameters. Their canonical JSON hashes to the job's key (`BatchJob.key`), which ends its file name:
`images/<k:05d>-<slug>-<key>.png` (+ `-native.png`, `.json` sidecar, written as one atomic set by
`hiresflow.output.save_run`, the sidecar recording the key). A changed setting is a new job with a new name, so
re-running a prompt file with another `--seed`, `--scale` or `--model`, or two batches with different settings
on one `--out`, never mistake each other's images for their own. `manifest.jsonl` has one line per image, keyed
by that key: index, key, prompt, seed, model, method, file, sha256 of the file, size, plan, timings.

Resume: a job is done only when the manifest records its key with a file whose sha256 still matches. A
restarted run removes what a killed one left (temporary files, stale locks, incomplete sets:
`hiresflow.naming.clean_stale`); a finished set the manifest does not list yet (a kill between the image and its
manifest line) is taken back only when its sidecar records the same key; any other file under a job's name (a
foreign or edited image) is regenerated, with a line saying so. Manifest lines are appended per process to
`manifest.<rank>.jsonl` with one `write` + fsync each; a torn last line is ignored. At the end the main process
merges the old manifest and every shard into `manifest.jsonl` (atomic rewrite, one line per key, sorted by index)
and deletes the shards.

One batch at a time per `--out`: the main process holds an exclusive `flock` on `DIR/.batch.lock` for the run
(the kernel releases it when the process dies, so a killed run never leaves it stuck); a second batch on the same
folder is refused with one line, on every one of its processes.

Scale-out: under `accelerate launch --num_processes N` process r takes the jobs with k % N == r
(`accelerate.PartialState`); the processes meet at a barrier before the merge.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from .atomic import write_text_atomic

__all__ = ["BatchJob", "BatchConfig", "read_prompts", "run_batch", "read_manifest", "merge_manifests",
           "MANIFEST", "sha256_file"]

MANIFEST = "manifest.jsonl"
IMAGES = "images"
LOCK = ".batch.lock"
KEY_CHARS = 10


@dataclass
class BatchJob:
    """One image of a batch."""

    index: int
    prompt: str
    seed: int
    negative_prompt: str = ""
    method: str | None = None
    scale: float | None = None
    size: str | None = None
    params: dict = field(default_factory=dict)

    def target(self, config: "BatchConfig") -> tuple[str | None, float | None]:
        """(size, scale) of this job, exactly one of them set: the line's own size, its scale, the batch's size,
        the batch's scale, 4 — a size wins over a scale, a line over the batch."""
        for size, scale in ((self.size, self.scale), (config.size, config.scale)):
            if size is not None:
                return size, None
            if scale is not None:
                return None, float(scale)
        return None, 4.0

    def settings(self, config: "BatchConfig") -> dict:
        """Everything that changes this job's image, resolved against the batch's shared options."""
        size, scale = self.target(config)
        model = config.model
        if Path(model).expanduser().is_dir():  # a folder is named by where it is, not how it was typed
            model = str(Path(model).expanduser().resolve())
        return {"prompt": self.prompt, "negative_prompt": self.negative_prompt, "seed": self.seed, "model": model,
                "method": self.method or config.method, "size": size, "scale": scale,
                "params": {**config.params, **self.params}}

    def key(self, config: "BatchConfig") -> str:
        """Hash of `settings`: equal exactly when two jobs would make the same image."""
        text = json.dumps(self.settings(config), sort_keys=True, default=str, ensure_ascii=True)
        return hashlib.sha256(text.encode()).hexdigest()[:KEY_CHARS]

    def stem(self, config: "BatchConfig") -> str:
        from .naming import slug

        return f"{self.index:05d}-{slug(self.prompt, 40)}-{self.key(config)}"


@dataclass
class BatchConfig:
    """Options shared by every job (a job's own fields win)."""

    model: str = "tiny-flux"
    method: str = "hiflow"
    scale: float | None = None
    size: str | None = None
    seed: int = 0
    params: dict = field(default_factory=dict)
    device: str | None = None
    progress: bool = True
    allow_large: bool = False


def _job_from_json(obj, k: int, base_seed: int, where: str) -> BatchJob:
    from .checks import check_number, check_seed

    if not isinstance(obj, dict) or not isinstance(obj.get("prompt"), str) or not obj["prompt"].strip():
        raise ValueError(f"{where}: each JSONL line must be an object with a non-empty \"prompt\" string")
    unknown = sorted(set(obj) - {"prompt", "seed", "negative_prompt", "method", "scale", "size", "params"})
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)}; use prompt, seed, negative_prompt, "
                         f"method, scale, size, params")
    params = obj.get("params") or {}
    if not isinstance(params, dict):
        raise ValueError(f"{where}: \"params\" must be an object of recipe parameters")
    seed = check_seed(obj["seed"]) if obj.get("seed") is not None else base_seed + k
    if obj.get("scale") is not None:
        try:
            check_number("\"scale\"", obj["scale"], minimum=1)
        except ValueError as err:
            raise ValueError(f"{where}: {err}; e.g. \"scale\": 2") from None
    if obj.get("size") is not None and not isinstance(obj["size"], str):
        raise ValueError(f"{where}: \"size\" must be a string WIDTHxHEIGHT such as \"2048x1024\", got {obj['size']!r}")
    return BatchJob(k, obj["prompt"], seed, str(obj.get("negative_prompt") or ""), obj.get("method"),
                    obj.get("scale"), obj.get("size"), params)


def read_prompts(path: str | Path, base_seed: int = 0) -> list[BatchJob]:
    """The jobs of a .txt or .jsonl prompt file (one-line errors naming the line)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} does not exist; pass a .txt (one prompt per line) or .jsonl prompt file")
    if path.suffix.lower() not in (".txt", ".jsonl"):
        raise ValueError(f"{path}: prompt files must end in .txt (one prompt per line) or .jsonl")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text; save it as UTF-8") from None
    jobs: list[BatchJob] = []
    for n, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        k = len(jobs)
        if path.suffix.lower() == ".jsonl":
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{n}: not valid JSON ({err.msg}); one object per line") from None
            jobs.append(_job_from_json(obj, k, base_seed, f"{path}:{n}"))
        else:
            jobs.append(BatchJob(k, text, base_seed + k))
    if not jobs:
        raise ValueError(f"{path} holds no prompts; write one per line")
    return jobs


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_lines(path: Path) -> Iterator[dict]:
    """Parsed manifest lines; a torn or corrupt line (a kill mid-append) is skipped."""
    if not path.is_file():
        return
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and isinstance(obj.get("index"), int) and isinstance(obj.get("key"), str):
            yield obj


def _shards(out: Path) -> list[Path]:
    return sorted(out.glob("manifest.*.jsonl"))


def read_manifest(out: str | Path) -> dict[str, dict]:
    """Every recorded image of DIR by job key (merged manifest and any shards; later lines win)."""
    out = Path(out)
    entries: dict[str, dict] = {}
    for p in [out / MANIFEST, *_shards(out)]:
        for obj in _read_lines(p):
            entries[obj["key"]] = obj
    return entries


def _intact(out: Path, entry: dict | None) -> bool:
    """The manifest entry's image exists and still has the recorded sha256."""
    return entry is not None and (out / entry["file"]).is_file() and sha256_file(out / entry["file"]) == entry.get(
        "sha256")


def merge_manifests(out: str | Path) -> Path:
    """Rewrite DIR/manifest.jsonl atomically from itself and the shards (one line per index), drop the shards.
    Entries whose image is missing or does not match its hash are left out."""
    out = Path(out)
    entries = read_manifest(out)
    good = sorted((e for e in entries.values() if _intact(out, e)), key=lambda e: (e["index"], e["key"]))
    path = write_text_atomic(out / MANIFEST, "".join(json.dumps(e, sort_keys=True) + "\n" for e in good))
    for shard in _shards(out):
        shard.unlink(missing_ok=True)
    return path


def _append_line(path: Path, entry: dict) -> None:
    data = (json.dumps(entry, sort_keys=True) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _entry(job: BatchJob, key: str, out: Path, paths: dict[str, Path], rank: int) -> dict:
    """A manifest line for a finished image, from its sidecar (works for sets finished by a killed run too)."""
    side = json.loads(paths["metadata"].read_text())
    return {"index": job.index, "key": key, "prompt": job.prompt, "negative_prompt": job.negative_prompt, "seed": job.seed,
            "method": side["recipe"], "model": side["model"]["name"],
            "file": str(paths["image"].relative_to(out)), "native": str(paths["native"].relative_to(out)),
            "sidecar": str(paths["metadata"].relative_to(out)), "sha256": sha256_file(paths["image"]),
            "size": side["size"], "plan": side["plan"],
            "timings": {"seconds": side.get("seconds"),
                        "stages": [{k: s.get(k) for k in ("index", "size", "seconds", "model_seconds",
                                                           "guide_seconds")} for s in side["stages"]]},
            "process": rank}


def _sidecar_key(paths: dict[str, Path]) -> str | None:
    """The batch key a finished set's sidecar records (None for a foreign or unreadable one)."""
    try:
        side = json.loads(paths["metadata"].read_text())
        return side["batch"]["key"] if paths["image"].is_file() else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


@contextlib.contextmanager
def batch_lock(out: Path, rank: int, world: int):
    """Exclusive use of `out` by one batch: the main process holds `flock(out/.batch.lock)`; its verdict is
    broadcast so every process of a refused launch stops with the same one-line error."""
    import fcntl

    fd, busy = None, False
    if rank == 0:
        fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except BlockingIOError:
            busy = True
    if world > 1:
        from accelerate.utils import broadcast_object_list

        busy = broadcast_object_list([busy])[0]
    try:
        if busy:
            raise ValueError(f"{out} is in use by another running batch (it holds {out / LOCK}); wait for it to "
                             f"finish or pick another --out")
        yield
    finally:
        if fd is not None:
            os.close(fd)  # closing releases the flock


def _process_state():
    """(rank, world size, barrier) from accelerate when launched by it, else a single process."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 or "ACCELERATE_PROCESS_INDEX" in os.environ \
            or "LOCAL_RANK" in os.environ:
        import torch
        from accelerate import PartialState

        cpu = not torch.cuda.is_available() or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true")
        state = PartialState(cpu=cpu)  # CPU-only: gloo process group (accelerate's MULTI_CPU)
        return state.process_index, state.num_processes, state.wait_for_everyone
    return 0, 1, (lambda: None)


def run_batch(prompts: str | Path, out: str | Path, config: BatchConfig,
              log: Callable[[str], Any] = lambda msg: None, warn: Callable[[str], Any] | None = None) -> dict:
    """Generate every job of `prompts` not yet in `out`; returns counts for this process. `log` gets progress
    lines, `warn` (default `log`) the refused jobs, one line each: "prompt K: refused: …"."""
    from .models.base import parse_size
    from .models.loading import check_device
    from .naming import output_folder
    from .recipes import recipe_params

    warn = warn or log
    jobs = read_prompts(prompts, config.seed)
    for job in jobs:  # every job's method and overrides are checked before the model loads
        method = job.method or config.method
        valid = recipe_params(method)
        unknown = sorted(set({**config.params, **job.params}) - set(valid))
        if unknown:
            raise ValueError(f"prompt {job.index}: recipe {method!r} has no parameter {', '.join(unknown)}; "
                             f"list them with `hiresflow recipes --params {method}`")
        size, _ = job.target(config)
        if size is not None:
            parse_size(size)
    device = check_device(config.device)
    rank, world, barrier = _process_state()
    out = Path(out)
    guard = _Guard(config, device)
    mine = [j for j in jobs if j.index % world == rank]
    refused = guard.check(mine, out)
    if world == 1 and len(mine) == 1 and refused:
        raise ValueError(f"prompt {mine[0].index}: {refused[mine[0].index]}")
    for index, reason in refused.items():
        warn(f"prompt {index}: refused: {reason}")
    if world == 1 and mine and len(refused) == len(mine):
        raise ValueError(f"all {len(refused)} jobs were refused (see above); nothing ran")
    keep = [j for j in jobs if j.index not in refused]
    with output_folder(out) as out:
        with batch_lock(out, rank, world):
            info = _run_locked(keep, out, config, device, rank, world, barrier, log, guard)
    info["refused"] = sorted(refused.items())
    return info


class _Guard:
    """The resource guard for a batch's jobs: the size floor before the model loads (`preflight`), then each
    distinct plan's estimate (`check_resources`, one timing probe for the model); keeps the model and plans."""

    def __init__(self, config: BatchConfig, device):
        self.config, self.device = config, device
        self.model = None
        self.plans: dict[tuple, Any] = {}

    def load(self):
        from .models.loading import load_model

        if self.model is None:
            self.model = load_model(self.config.model, device=self.device)
        return self.model

    def plan(self, job: BatchJob):
        from .models.base import parse_size
        from .recipes import build_plan

        st = job.settings(self.config)
        key = (st["method"], st["scale"], st["size"], json.dumps(st["params"], sort_keys=True, default=str))
        if key not in self.plans:
            self.plans[key] = build_plan(st["method"], self.load(), scale=st["scale"],
                                         size=parse_size(st["size"]) if st["size"] else None, **st["params"])
        return self.plans[key]

    def check(self, jobs: list[BatchJob], out: Path) -> dict[int, str]:
        """{index: reason} of the refused jobs among `jobs`; jobs already done in `out` are not checked."""
        from .models.base import parse_size
        from .resources import CLI, ResourceLimitError, check_resources, preflight

        refused: dict[int, str] = {}
        if self.config.allow_large:
            return refused
        done = read_manifest(out) if out.is_dir() else {}
        pending = []
        for job in jobs:
            if _intact(out, done.get(job.key(self.config))):
                continue
            size, scale = job.target(self.config)
            try:
                preflight(self.config.model, self.device, size=parse_size(size) if size else None, scale=scale)
                pending.append(job)
            except ResourceLimitError as err:
                refused[job.index] = err.describe(CLI)
        checked: dict[int, str | None] = {}
        for job in pending:
            plan = self.plan(job)
            if id(plan) not in checked:
                try:
                    check_resources(plan, self.model)
                    checked[id(plan)] = None
                except ResourceLimitError as err:
                    checked[id(plan)] = err.describe(CLI)
            if checked[id(plan)] is not None:
                refused[job.index] = checked[id(plan)]
        return refused


def _run_locked(jobs, out: Path, config: BatchConfig, device, rank: int, world: int, barrier, log,
                guard: "_Guard") -> dict:
    from .naming import clean_stale, reserve_stem, set_paths
    from .output import save_run
    from .quiet import progress_enabled
    from .runner import run_plan
    from tqdm.auto import tqdm

    images = out / IMAGES
    images.mkdir(exist_ok=True)
    if rank == 0:
        clean_stale(images)
    barrier()
    done = read_manifest(out)
    shard = out / f"manifest.{rank}.jsonl"
    mine = [j for j in jobs if j.index % world == rank]
    todo, recovered = [], 0
    for job in mine:
        key = job.key(config)
        if _intact(out, done.get(key)):
            continue
        paths = set_paths(images, job.stem(config))
        if _sidecar_key(paths) == key:  # finished by a run killed before its manifest line
            _append_line(shard, _entry(job, key, out, paths, rank))
            recovered += 1
            continue
        if paths["image"].is_file():
            log(f"{paths['image'].name}: not recorded by this batch (foreign or edited); generating it again")
        todo.append(job)
    log(f"process {rank}/{world}: {len(mine) - len(todo)} of {len(mine)} done, {len(todo)} to go")
    model = guard.load() if todo else None
    written = 0
    bar = tqdm(todo, desc=f"batch [{rank}]" if world > 1 else "batch", position=rank if world > 1 else None,
               disable=not progress_enabled(config.progress), unit="img")
    for job in bar:
        key = job.key(config)
        plan = guard.plan(job)
        with reserve_stem(images, job.stem(config), overwrite=True) as slot:
            result = run_plan(model, plan, job.prompt, seed=job.seed, negative_prompt=job.negative_prompt)
            paths = save_run(result, model, job.prompt, job.seed, images, slot.stem,
                             negative_prompt=job.negative_prompt, extra={"batch": {"key": key, "index": job.index}})
        _append_line(shard, _entry(job, key, out, paths, rank))
        written += 1
    barrier()
    if rank == 0:
        merge_manifests(out)
    barrier()
    return {"process": rank, "processes": world, "jobs": len(jobs), "mine": len(mine), "written": written,
            "skipped": len(mine) - len(todo), "recovered": recovered, "manifest": str(out / MANIFEST)}
