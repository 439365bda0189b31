"""CPU seconds per image of several recipes, interleaved, on one torch thread: a time comparison that a machine
shared with other jobs does not skew.

The bench's s/img column is wall time, taken recipe after recipe: when other jobs share the cores, two recipes
measured an hour apart see different loads (on the n = 48 benches the same native pass timed 1.8 s in one cell and
2.5 s in another). Here each prompt runs every recipe in turn (round robin, so load drifts hit all recipes alike)
and the process CPU time of each run is recorded; with one torch thread that is the work done. The table gives the
median over the prompts and the ratio to the first recipe.

    nice -n 10 env OMP_NUM_THREADS=1 python benchmarks/recipe_cpu_time.py --scale 4 \\
        --recipes hiflow,anchored,diffusehigh,dype,direct,imax --n 3 --out benchmarks/results/recipe_cpu_time-x4

With `--spec`, `--recipes` names labels of that bench spec, each built with its recipe and `set` (knob variants:
`--spec benchmarks/specs/anchored-tuning.yaml --recipes hiflow,stage-cfg-1`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from hiresflow.atomic import write_result


def run(args) -> dict:
    from hiresflow.eval.layout import bench_items
    from hiresflow.eval.spec import BenchSpec
    from hiresflow.models.loading import load_model
    from hiresflow.recipes import build_plan
    from hiresflow.runner import run_plan

    torch.set_num_threads(args.threads)
    model = load_model(args.model, device="cpu")
    spec = BenchSpec.from_dict({"name": "cpu-time", "models": [args.model], "scales": [args.scale],
                                "prompts": {"world": {"n": args.n, "seed": args.prompt_seed}}, "seeds": [args.seed],
                                "recipes": {"direct": {}}})
    recipes = args.recipes.split(",")
    if args.spec is not None:
        from hiresflow.eval.spec import load_spec

        variants = load_spec(args.spec)
        try:
            entries = {r: variants.entry(r) for r in recipes}  # an unknown label fails before any run
        except ValueError as e:
            raise SystemExit(f"error: {e}") from None
        plans = {r: build_plan(e.recipe, model, scale=args.scale, **e.params(variants.common))
                 for r, e in entries.items()}
    else:
        plans = {r: build_plan(r, model, scale=args.scale) for r in recipes}  # bad names fail before any run
    times: dict[str, list[float]] = {r: [] for r in recipes}
    run_plan(model, plans[recipes[0]], "warm up", seed=0)  # first-call allocations and lazy imports
    for it in bench_items(spec):
        for r in recipes:
            c0 = time.process_time()
            run_plan(model, plans[r], it.prompt.prompt, seed=it.seed)
            times[r].append(time.process_time() - c0)
            print(json.dumps({"recipe": r, "stem": it.stem, "cpu_seconds": round(times[r][-1], 3)}), flush=True)
    base = statistics.median(times[recipes[0]])
    rows = [{"recipe": r, "cpu_s_per_img": round(statistics.median(t), 2), "n": len(t),
             "ratio": round(statistics.median(t) / base, 2), "runs": [round(v, 2) for v in t]} for r, t in times.items()]
    return {"model": args.model, "scale": args.scale, "spec": str(args.spec) if args.spec else None,
            "threads": args.threads, "n": args.n, "seed": args.seed,
            "prompt_seed": args.prompt_seed, "rows": rows}


def table(result: dict) -> str:
    first = result["rows"][0]["recipe"]
    lines = [f"{result['model']} at {result['scale']:g}x, n = {result['n']} prompts (world seed {result['prompt_seed']}, "
             f"image seed {result['seed']}), {result['threads']} torch thread(s), recipes interleaved", "",
             f"| recipe | CPU s/img (median) | × {first} |", "|---|---|---|"]
    lines += [f"| {r['recipe']} | {r['cpu_s_per_img']} | {r['ratio']} |" for r in result["rows"]]
    return "\n".join(lines)


def tables(data: dict) -> dict[str, str]:
    """The docs' table of a recipe_cpu_time JSON (`cpu_time`)."""
    return {"cpu_time": table(data)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny-flux")
    ap.add_argument("--recipes", default="hiflow,anchored,diffusehigh")
    ap.add_argument("--spec", type=Path, default=None, help="bench spec whose labels --recipes names (recipe + set)")
    ap.add_argument("--scale", type=float, default=4)
    ap.add_argument("--n", type=int, default=3)
    ap.add_argument("--seed", type=int, default=3407)
    ap.add_argument("--prompt-seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="path stem: writes STEM.json and STEM.md")
    args = ap.parse_args()
    result = run(args)
    text = table(result)
    write_result(args.out, result, text)
    print(text)


if __name__ == "__main__":
    main()
