"""Which method runs on which model family: the support matrix of the docs, from what the adapters declare.

    python benchmarks/support_matrix.py [--out benchmarks/results/support_matrix.json]

For the embedded models and every family with a random tiny model (`hiresflow.models.loading.RANDOM`: FLUX.1, SD 1.x, SDXL, SD3, and the
newer families registered there) it builds that model and, for every recipe of `hiresflow.recipes.RECIPES`,
asks the recipe for a plan at 2× the native size. A plan that builds is a ✓ cell and is then *run* (tiny step
counts, `hiresflow.recipes.SMOKE_STEPS`), so a ✓ means "ran here", not "should run"; a recipe that refuses the family is a ✗ cell whose
reason is the recipe's own one-line error. A DiT toolkit option is ✓ when the adapter turns the switch alone into
a patch it accepts (`FlowModel.toolkit_patches`, `check_patch`), ✗ with the adapter's one-line refusal or "no
form of it" otherwise; the U-Net methods ask `FlowModel.unet_patches`. tests/test_support_matrix.py recomputes the matrix and compares it with the committed JSON;
the docs page (docs/models/index.md) shows the committed tables.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "support_matrix.json"
PROMPT = "three pine trees by a lake at night"

# toolkit options: (column, the DiT toolkit switch that asks for it); the U-Net methods are one column
OPTIONS = [
    ("NTK / PI RoPE", {"ntk": 10.0, "pi_floor": True}),
    ("DyPE / YaRN", {"rope": "dype"}),
    ("proportional attention", {"proportional_attention": True}),
    ("text duplication", {"text_duplication": True}),
    ("shifted patches", {"shifted_patches": True}),
    ("windowed attention", {"windowed_attention": 0.5}),
    ("RAU-Net / MSW-MSA / dilated conv / FreeU", None),
]


def _option(model, switches: dict | None) -> tuple[bool, str]:
    """(supported, reason) of one toolkit option on `model`: the patches the adapter adds for the switch alone
    (`FlowModel.toolkit_patches`, each checked by `check_patch`), its one-line refusal, or no patch at all."""
    from hiresflow.patches.toolkit import DiTToolkit
    from hiresflow.patches.unet_toolkit import UNetToolkit

    try:
        if switches is None:
            model.unet_patches(UNetToolkit(rau_net=True), strict=True)
            return True, ""
        if switches.get("rope") == "dype":
            from hiresflow.recipes import dype_rope

            model.rope_axes()
            switches = {"rope": dype_rope(True)}
        base = {type(p).__name__ for p in model.toolkit_patches(DiTToolkit())}
        added = [p for p in model.toolkit_patches(DiTToolkit(**switches)) if type(p).__name__ not in base]
        for patch in added:
            model.check_patch(patch)
    except ValueError as err:
        return False, str(err)
    if not added:
        return False, f"the {model.family} adapter has no form of it; the switch is ignored on this family"
    return True, ""


def family_row(name: str, run: bool = True, log=print) -> dict:
    """One family: its recipes (✓ with run seconds, or ✗ with the refusal) and its toolkit options."""
    import torch

    from hiresflow.models.loading import load_model
    from hiresflow.recipes import RECIPES, SMOKE_STEPS, build_plan
    from hiresflow.runner import run_plan

    torch.manual_seed(0)
    model = load_model(name, device="cpu")
    row = {"model": name, "family": model.family, "pipeline": type(getattr(model, "pipe", model)).__name__,
           "recipes": {}, "options": {}}
    for recipe in RECIPES:
        try:
            plan = build_plan(recipe, model, scale=2, **SMOKE_STEPS.get(recipe, {}))
        except ValueError as err:
            row["recipes"][recipe] = {"ok": False, "why": str(err)}
            continue
        cell = {"ok": True}
        if run:
            t0 = time.perf_counter()
            res = run_plan(model, plan, PROMPT, seed=1, progress=False)
            h, w = plan.target_size
            if tuple(res.image.shape[-2:]) != (h, w) or not torch.isfinite(res.image).all():
                raise RuntimeError(f"{recipe} on {name}: image {tuple(res.image.shape)} not finite or not {w}x{h}")
            cell["seconds"] = round(time.perf_counter() - t0, 2)
        row["recipes"][recipe] = cell
        log(f"{name:24s} {recipe:12s} {'ok' if cell['ok'] else 'refused'}")
    for column, switches in OPTIONS:
        ok, why = _option(model, switches)
        row["options"][column] = {"ok": ok, "why": why}
    return row


def families() -> list[str]:
    """The embedded models (the only ones sharing the CFM upsampler's VAE) and every random tiny family."""
    from hiresflow.models.loading import RANDOM

    return ["tiny-flux", "tiny-sd", *RANDOM]


def compute(run: bool = True, log=print) -> dict:
    return {"families": [family_row(n, run=run, log=log) for n in families()]}


def _cell(c: dict) -> str:
    return "✓" if c["ok"] else "✗"


def tables(data: dict) -> dict[str, str]:
    """`recipes`: family × recipe (✓ ran at 2× in the matrix run; ✗ refused); `options`: family × toolkit option;
    `why`: the one-line reason of every ✗."""
    fams = data["families"]
    recipes = list(fams[0]["recipes"]) if fams else []
    head = "| model (family) | " + " | ".join(recipes) + " |"
    lines = [head, "|---|" + "---|" * len(recipes)]
    for f in fams:
        lines.append(f"| {f['model']} ({f['family']}) | " + " | ".join(_cell(f["recipes"][r]) for r in recipes) + " |")
    cols = [c for c, _ in OPTIONS]
    opt = ["| model (family) | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for f in fams:
        opt.append(f"| {f['model']} ({f['family']}) | " + " | ".join(_cell(f["options"][c]) for c in cols) + " |")
    why = ["| model | method or option | why not |", "|---|---|---|"]
    for f in fams:
        for kind in ("recipes", "options"):
            for k, c in f[kind].items():
                if not c["ok"]:
                    why.append(f"| {f['model']} | {k} | {c['why'].replace('|', '/')} |")
    return {"recipes": "\n".join(lines), "options": "\n".join(opt), "why": "\n".join(why)}


def comparable(data: dict) -> dict:
    """The matrix without timings (what a rerun must reproduce exactly)."""
    return {"families": [{"model": f["model"], "family": f["family"], "pipeline": f["pipeline"],
                          "recipes": {k: {"ok": c["ok"], "why": c.get("why", "")} for k, c in f["recipes"].items()},
                          "options": f["options"]} for f in data["families"]]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    data = compute()
    args.out.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
