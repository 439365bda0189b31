"""Generation and evaluation of a bench: models × recipes × sizes × prompts (`hiresflow bench SPEC --out DIR`).

Where everything goes in DIR, and the typed results, are `layout`'s; the tables and pictures are `report`'s;
`driver.run_bench` drives the three.

Resumable: an image whose PNG and JSON (with its "bench" record, written last) exist is not generated again;
evaluation always reads the saved 8-bit PNGs, so a resumed run reports what a fresh run would.

Timing: each image is generated `timing.repeats` times (after `timing.warmup` untimed runs per group); per image
the median total and per-stage seconds are kept, split into model calls and guides (the sampler's timings,
CUDA-synchronised) and the rest (text encoding, VAE, resizing). Peak memory per image: CUDA max allocated (reset
before each run) on GPU, else the process RSS peak from `resource.getrusage` (reset through /proc/self/clear_refs
where the kernel allows it; otherwise it is the process's peak so far, marked as such).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
import time
import traceback
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..atomic import atomic_path
from ..settings import current as current_settings
from .layout import (BenchItem, BenchLayout, BenchResults, GroupResult, GroupTiming, ReferenceResult, StageTiming,
                     bench_items, image_png, is_done, meta_json, native_png, shard_items, write_json)
from .spec import BenchSpec, RecipeEntry

try:  # Unix only
    import resource
except ImportError:  # pragma: no cover
    resource = None  # type: ignore[assignment]

__all__ = ["BenchItem", "generate_all", "evaluate_all", "is_done", "machine_info", "bench_results", "carry_groups",
           "previous_results"]


# ------------------------------------------------------------------ memory


class SpecError(ValueError):
    """A spec entry that cannot be built (bad recipe parameter): the bench stops with a one-line error."""


class PeakMemory:
    """Peak memory of one run: CUDA max allocated, else process RSS peak (reset per run where possible)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.device = device
        self.kind = "cuda_max_allocated" if self.cuda else "rss_peak"

    def reset(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets the RSS high-water mark (Linux ≥ 4.0)
            self.kind = "rss_peak"
        except OSError:
            self.kind = "rss_peak_process_lifetime"

    def read(self) -> int:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            return int(torch.cuda.max_memory_allocated(self.device))
        if resource is None:  # pragma: no cover - Windows
            return 0
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(kb * (1 if platform.system() == "Darwin" else 1024))


# ------------------------------------------------------------------ generation


def _timing_record(result) -> dict:
    return {
        "seconds": result.seconds,
        "stages": [{"index": st.index, "size": [st.size[1], st.size[0]], "seconds": st.seconds,
                    "model": st.timings.model_total, "guides": st.timings.guides_total} for st in result.stages],
    }


def generate_item(model, plan, item: BenchItem, folder: Path, repeats: int, memory: PeakMemory) -> dict:
    """Run `repeats` times, save the first result (PNG, native PNG, JSON), then add the bench record."""
    from ..output import save_run
    from ..runner import run_plan

    runs = []
    for r in range(repeats):
        memory.reset()
        res = run_plan(model, plan, item.prompt.prompt, seed=item.seed)
        rec = _timing_record(res)
        rec["peak_memory_bytes"] = memory.read()
        runs.append(rec)
        if r == 0:
            save_run(res, model, item.prompt.prompt, item.seed, folder, item.stem)
        del res
    js = meta_json(folder, item.stem)
    meta = json.loads(js.read_text())
    meta["bench"] = {"repeats": runs, "memory_kind": memory.kind, "prompt_index": item.prompt.index,
                     "scene": item.prompt.scene}
    write_json(js, meta)
    return meta


def generate_all(spec: BenchSpec, out: Path | BenchLayout, device: str | None = None, progress: bool = True,
                 log=print, items: list[BenchItem] | None = None) -> dict:
    """Generate every missing image (of `items`, default all the spec's); returns counts and per-group errors (a
    failing group does not stop the rest)."""
    from tqdm.auto import tqdm

    from ..models.loading import load_model
    from ..recipes import build_plan

    layout = out if isinstance(out, BenchLayout) else BenchLayout(out)
    items = bench_items(spec) if items is None else items
    todo: list[tuple[str, str, float | None, tuple | None, RecipeEntry, list[BenchItem]]] = []
    for model_name in spec.models:
        for tag, scale, size in spec.targets():
            for entry in spec.recipes:
                folder = layout.group_dir(model_name, tag, entry.label)
                missing = [it for it in items if not is_done(folder, it.stem)]
                if missing:
                    todo.append((model_name, tag, scale, size, entry, missing))
    total = sum(len(t[-1]) for t in todo)
    skipped = len(spec.models) * len(spec.targets()) * len(spec.recipes) * len(items) - total
    errors: dict[str, str] = {}
    t0 = time.perf_counter()
    bar = tqdm(total=total, desc="generate", disable=not progress or total == 0)
    models: dict[str, object] = {}
    done = 0
    for gi, (model_name, tag, scale, size, entry, missing) in enumerate(todo):
        key = f"{model_name}/{tag}/{entry.label}"
        try:
            if model_name not in models:
                models.clear()  # one model in memory at a time
                models[model_name] = load_model(model_name, device=device or spec.device)
            model = models[model_name]
            memory = PeakMemory(model.device)
            try:
                plan = build_plan(entry.recipe, model, scale=scale, size=size, **entry.params(spec.common))
            except (ValueError, TypeError) as err:  # the spec asks for something invalid: stop, do not record
                raise SpecError(f"spec recipe {entry.label!r} at {tag}: {err}") from None
            folder = layout.group_dir(model_name, tag, entry.label)
            folder.mkdir(parents=True, exist_ok=True)
            for _ in range(spec.timing.warmup):
                from ..runner import run_plan

                run_plan(model, plan, missing[0].prompt.prompt, seed=missing[0].seed)
            for it in missing:
                bar.set_postfix_str(f"{entry.label} {tag} {it.stem}", refresh=False)
                generate_item(model, plan, it, folder, spec.timing.repeats, memory)
                done += 1
                bar.update(1)
        except SpecError:
            bar.close()
            raise
        except Exception as err:  # noqa: BLE001 - record and continue with the other groups
            errors[key] = f"{type(err).__name__}: {err}"
            log(f"error in {key}: {errors[key]}")
            if current_settings().bench_debug:
                traceback.print_exc()
            bar.n = sum(len(t[-1]) for t in todo[:gi + 1])
            bar.refresh()
    bar.close()
    return {"generated": done, "skipped": skipped, "seconds": time.perf_counter() - t0, "errors": errors}


# ------------------------------------------------------------------ evaluation


def _load_png(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"unreadable image {path} ({err}); delete it and rerun the bench to regenerate it") from None


def _save_png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")


def reference_images(spec: BenchSpec, items: list[BenchItem], out: Path | BenchLayout,
                     size: tuple[int, int]) -> list[np.ndarray] | None:
    """Ground-truth renders at `size` = (H, W) for world prompts (cached as PNGs), None for listed prompts."""
    if any(it.prompt.scene is None for it in items):
        return None
    from ..world import render

    layout = out if isinstance(out, BenchLayout) else BenchLayout(out)
    h, w = size
    refs = []
    for it in items:
        f = layout.reference_png((w, h), it.stem)
        if f.is_file():
            refs.append(_load_png(f))
            continue
        seed = spec.render_seed if spec.render_seed is not None else it.seed
        arr = render(it.prompt.scene_obj(), h, w, seed=seed)
        _save_png(f, arr)
        refs.append(arr)
    return refs


def timing_summary(metas: list[dict]) -> GroupTiming:
    """Median over images of each image's median over repeats; max peak memory."""
    per_item = []
    for m in metas:
        runs = m["bench"]["repeats"]
        n_st = len(runs[0]["stages"])
        per_item.append({
            "seconds": statistics.median(r["seconds"] for r in runs),
            "model": statistics.median(sum(s["model"] for s in r["stages"]) for r in runs),
            "guides": statistics.median(sum(s["guides"] for s in r["stages"]) for r in runs),
            "stages": [statistics.median(r["stages"][k]["seconds"] for r in runs) for k in range(n_st)],
            "stage_sizes": [s["size"] for s in runs[0]["stages"]],
            "peak": max(r.get("peak_memory_bytes", 0) for r in runs),
            "runs": len(runs),
        })
    med = lambda key: statistics.median(p[key] for p in per_item)  # noqa: E731
    total, model_s, guides = med("seconds"), med("model"), med("guides")
    n_st = len(per_item[0]["stages"])
    return GroupTiming(
        seconds=total, model_seconds=model_s, guide_seconds=guides, other_seconds=max(total - model_s - guides, 0.0),
        guide_overhead=guides / model_s if model_s > 0 else None,
        stages=[StageTiming(per_item[0]["stage_sizes"][k], statistics.median(p["stages"][k] for p in per_item))
                for k in range(n_st)],
        peak_memory_bytes=max(p["peak"] for p in per_item), memory_kind=metas[0]["bench"].get("memory_kind", ""),
        n_images=len(per_item), n_runs=sum(p["runs"] for p in per_item),
    )


def _scores_by_seed(spec: BenchSpec, items, gen, prompts, tools, nat_size, refs, natives, anchors) -> dict:
    """The same metrics on each seed's subset (one image per prompt), for the spread across seed sets;
    {} with a single seed. Inception features come from the cache filled by the full set."""
    from .evaluate import evaluate_set

    if len(spec.seeds) < 2:
        return {}
    out = {}
    for seed in spec.seeds:
        idx = [i for i, it in enumerate(items) if it.seed == seed]
        pick = lambda seq: None if seq is None else [seq[i] for i in idx]  # noqa: E731
        scores, _ = evaluate_set(pick(gen), pick(prompts), tools, spec.metrics, nat_size, references=pick(refs),
                                 natives=pick(natives), anchors=anchors[idx])
        out[str(seed)] = scores
    return out


def evaluate_all(spec: BenchSpec, out: Path | BenchLayout, device: str | None = None, progress: bool = True,
                 log=print) -> dict:
    """Evaluate every generated group; returns {"tools", "groups" (GroupResult), "references" (ReferenceResult),
    "seconds", "inception_passes"}."""
    from tqdm.auto import tqdm

    from .evaluate import EvalTools, evaluate_set
    from .patches import crop_anchors
    from .world_metrics import world_scores

    layout = out if isinstance(out, BenchLayout) else BenchLayout(out)
    t0 = time.perf_counter()
    dev = device or spec.device
    tools = EvalTools.load(spec.metrics, dev, cache_dir=layout.inception_cache)
    items = bench_items(spec)
    prompts = [it.prompt.prompt for it in items]
    groups: list[GroupResult] = []
    references: list[ReferenceResult] = []
    jobs = [(m, t, e) for m in spec.models for t in spec.targets() for e in spec.recipes]
    bar = tqdm(jobs, desc="evaluate", disable=not progress)
    ref_cache: dict[tuple[int, int], tuple[list | None, dict | None]] = {}
    for model_name, (tag, scale, size_req), entry in bar:
        bar.set_postfix_str(f"{entry.label} {tag}", refresh=False)
        folder = layout.group_dir(model_name, tag, entry.label)
        base = dict(model=model_name, label=entry.label, recipe=entry.recipe, set=entry.set, tag=tag, scale=scale)
        if not all(is_done(folder, it.stem) for it in items):
            groups.append(GroupResult(**base, error="images missing (generation failed or incomplete)"))
            continue
        metas = [json.loads(meta_json(folder, it.stem).read_text()) for it in items]
        gen = [_load_png(image_png(folder, it.stem)) for it in items]
        h, w = gen[0].shape[:2]
        nat_size = tuple(int(v) for v in metas[0]["model"]["native_size"])  # (H, W) as stored by describe()
        native_imgs = []
        for it, m in zip(items, metas):
            f = native_png(folder, it.stem)
            first = m["stages"][0]["size"]  # [w, h]
            native_imgs.append(_load_png(f) if f.is_file() and first[1] < h else None)
        if (h, w) not in ref_cache:
            refs = reference_images(spec, items, layout, (h, w))
            ref_world = None
            if refs is not None and spec.metrics.world:
                ref_world, _ = world_scores(refs, prompts)
            ref_cache[(h, w)] = (refs, ref_world)
        refs, ref_world = ref_cache[(h, w)]
        if ref_world is not None and not any(r.model == model_name and r.size == [w, h] for r in references):
            references.append(ReferenceResult(model_name, tag, [w, h], ref_world))
        anchors = crop_anchors(len(items), (h, w), nat_size, spec.metrics.patches, spec.metrics.patch_seed)
        try:
            scores, per_image = evaluate_set(gen, prompts, tools, spec.metrics, nat_size, references=refs,
                                             natives=native_imgs, anchors=anchors, progress=progress)
        except Exception as err:  # noqa: BLE001
            groups.append(GroupResult(**base, size=[w, h],
                                      error=f"evaluation failed: {type(err).__name__}: {err}"))
            log(f"evaluation of {model_name}/{tag}/{entry.label} failed: {err}")
            continue
        for rec, it in zip(per_image, items):
            rec["stem"] = it.stem
        by_seed = _scores_by_seed(spec, items, gen, prompts, tools, nat_size, refs, native_imgs, anchors)
        groups.append(GroupResult(
            **base, size=[w, h], native=[nat_size[1], nat_size[0]], params=metas[0]["plan"].get("params"),
            n_images=len(items), n_crops=int(anchors.shape[0] * anchors.shape[1]), metrics=scores,
            timing=timing_summary(metas), per_image=per_image, by_seed=by_seed, error=None,
        ))
    bar.close()
    return {"tools": tools.describe(), "groups": groups, "references": references,
            "seconds": time.perf_counter() - t0,
            "inception_passes": tools.inception.passes if tools.inception else 0}


# ------------------------------------------------------------------ driver


def machine_info(device: str | None = None) -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpu": platform.processor() or
            platform.machine(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    if torch.cuda.is_available() and (device is None or str(device).startswith("cuda")):
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


#: spec entries that may differ between the run that evaluated a carried group and the `--only` run
_PER_RUN_SPEC_KEYS = frozenset({"name", "description", "recipes", "comparison", "ablation", "grid", "device"})


def previous_results(spec: BenchSpec, layout: BenchLayout) -> BenchResults:
    """The evaluated results.json of an earlier run of the same bench (what `--only` keeps the other rows of).

    "Same bench": models, resolutions, prompts, seeds, common parameters, timing and metric settings equal (the
    entries both specs have); recipes, comparison order and grid may differ."""
    if not layout.results_json.is_file():
        raise ValueError(f"--only keeps the other rows of {layout.results_json}, which does not exist; run the whole "
                         f"bench once (without --only)")
    previous = BenchResults.load(layout)
    if not previous.evaluated:
        raise ValueError(f"{layout.results_json} holds no evaluation (written with --no-eval); run the bench with "
                         f"--eval-only first, or without --only")
    now = spec.to_dict()
    differ = sorted(k for k in set(now) & set(previous.spec) - _PER_RUN_SPEC_KEYS if now[k] != previous.spec[k])
    if differ:
        raise ValueError(f"{layout.results_json} was made with different {', '.join(differ)}; its rows cannot sit "
                         f"beside this run's: run the whole bench (without --only) or use another --out")
    return previous


def _inception_id(tools: dict) -> tuple | None:
    net = tools.get("inception")
    return None if net is None else (net.get("sha1"), net.get("preprocess"))


def carry_groups(spec: BenchSpec, fresh: list[GroupResult], previous: BenchResults,
                 only: list[str]) -> list[GroupResult]:
    """All the spec's groups in its order: the `only` labels from this run, the others from `previous` (marked
    `carried` with the date and versions of the run that evaluated them). A group absent from `previous`, or whose
    recipe or parameters changed since, becomes a failed group saying so."""
    new = {g.key: g for g in fresh}
    old = {g.key: g for g in previous.groups}
    out = []
    for model in spec.models:
        for tag, scale, _ in spec.targets():
            for entry in spec.recipes:
                key = f"{model}/{tag}/{entry.label}"
                if entry.label in only:
                    out.append(new[key])
                    continue
                g = old.get(key)
                if g is None or g.recipe != entry.recipe or (g.set or {}) != (entry.set or {}):
                    why = "absent from" if g is None else "changed since"
                    out.append(GroupResult(model, entry.label, entry.recipe, entry.set, tag, scale,
                                           error=f"not evaluated: not in --only and {why} the earlier results.json"))
                    continue
                if g.ok and g.carried is None:
                    g = dataclasses.replace(g, carried={"date": previous.date, "versions": previous.versions})
                out.append(g)
    return out


SHARD_NEEDS_NO_EVAL = ("--shard generates one part of the images: add --no-eval, and evaluate once every part is "
                       "done with --eval-only")


def bench_results(spec: BenchSpec, out: Path | BenchLayout, device: str | None = None, progress: bool = True,
                  generate: bool = True, evaluate: bool = True, log=print,
                  only: list[str] | None = None, shard: tuple[int, int] | None = None) -> BenchResults:
    """Write DIR/spec.json, generate what is missing (resumable) and evaluate; the results, not yet reported.

    only: recipe labels to generate and evaluate; the other rows are kept from DIR/results.json (which must be an
    evaluated run of the same bench, see `previous_results`), so a recipe can join a long bench without
    regenerating the rest.
    shard: (K, N) — generate only the K-th of N round-robin parts of the images (`layout.shard_items`), so N
    processes can fill one folder side by side; generation only, evaluate once afterwards (``--eval-only``)."""
    from ..output import versions

    if shard is not None and evaluate:
        raise ValueError(SHARD_NEEDS_NO_EVAL)
    layout = out if isinstance(out, BenchLayout) else BenchLayout(out)
    run_spec = spec.restricted(only) if only else spec
    previous = previous_results(spec, layout) if only and evaluate else None
    layout.root.mkdir(parents=True, exist_ok=True)
    write_json(layout.spec_json, spec.to_dict())
    items = shard_items(bench_items(run_spec), *shard) if shard else None
    gen_info = (generate_all(run_spec, layout, device, progress, log, items=items) if generate
                else {"skipped_stage": True, "errors": {}})
    results = BenchResults(spec=spec.to_dict(), machine=machine_info(device or spec.device), versions=versions(),
                           date=time.strftime("%Y-%m-%d %H:%M:%S %Z"), generation=gen_info)
    if evaluate:
        ev = evaluate_all(run_spec, layout, device, progress, log)
        results.tools, results.groups, results.references = ev["tools"], ev["groups"], ev["references"]
        results.seconds, results.inception_passes = ev["seconds"], ev["inception_passes"]
        if previous is not None:
            if _inception_id(previous.tools) != _inception_id(results.tools):
                raise ValueError(f"{layout.results_json} was evaluated with another Inception network; its rows "
                                 f"cannot sit beside this run's: run the whole bench (without --only)")
            results.groups = carry_groups(spec, results.groups, previous, only)
            sizes = {(r.model, tuple(r.size)) for r in results.references}
            results.references += [r for r in previous.references if (r.model, tuple(r.size)) not in sizes]
    return results
