"""Every recipe on the embedded tiny-flux and tiny-sd at 2× gives the recorded bytes.

The golden file holds, per (model, recipe), the SHA-256 of the final image and latent (float32 bytes) and the
per-channel means of the 8-bit image. It was first recorded before the stage protocol was introduced and
re-recorded when the embedded weights moved to fp16 storage (benchmarks/stored_dtype.py measures that change),
so this test guards that refactors of the core leave outputs bit-identical. Exact hashes are compared on the CPU kind they were
recorded on (`torch.backends.cpu.get_cpu_capability()`); elsewhere the channel means must agree to 0.5 levels.

Re-record (only when outputs change on purpose, e.g. a new default): HIRESFLOW_RECORD_GOLDEN=1 pytest this file.
`freescale` is recorded as the cascade alone (`internals=False`, the recipe's behaviour when the file was recorded);
its U-Net internals are tested in tests/patches/test_unet_patches.py.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch

from hiresflow.models.loading import EMBEDDED_DIR, load_model
from hiresflow.recipes import RECIPES, build_plan
from hiresflow.runner import run_plan

GOLDEN = Path(__file__).parent / "golden" / "recipes-2x.json"
RECORD = os.environ.get("HIRESFLOW_RECORD_GOLDEN") == "1"
FAST = {"direct": dict(steps=4), "upscale": dict(steps=4), "sdedit": dict(steps=6),
        "imax": dict(steps=4, hires_steps=4), "hiflow": dict(base_steps=6, stage_steps=(3,)),
        "demofusion": dict(steps=3, view_batch=64), "freescale": dict(steps=5, internals=False),
        "diffusehigh": dict(steps=5, dwt_steps=2)}
MODELS = {"tiny-flux": "tiny-flux-v1", "tiny-sd": "tiny-sd-v1"}  # frozen v1 weights


def _model_name(key: str) -> str | None:
    for name in (MODELS[key], key):
        folder = EMBEDDED_DIR / name
        if (folder / "model_index.json").is_file() and json.loads((folder / "hiresflow.json").read_text()).get(
                "version", 1) == 1:
            return name
    return None


def _digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().float().contiguous().cpu().numpy().tobytes()).hexdigest()


def _record(model, recipe: str) -> dict:
    plan = build_plan(recipe, model, scale=2, **FAST[recipe])
    res = run_plan(model, plan, "a yellow sun over green hills with two pine trees", seed=7)
    img8 = (res.image.clamp(0, 1) * 255).round()
    return {"image": _digest(res.image), "latent": _digest(res.stages[-1].latent),
            "channel_means": [round(float(c), 4) for c in img8[0].mean(dim=(1, 2))]}


@pytest.fixture(scope="module",
                params=[pytest.param(k, marks=pytest.mark.slow) if k == "tiny-sd" else k for k in MODELS])
def golden_model(request):
    name = _model_name(request.param)
    if name is None:
        pytest.skip(f"embedded {request.param} v1 not in this build")
    return request.param, load_model(name, device="cpu")


@pytest.mark.parametrize("recipe", [r if r in ("direct", "hiflow") else pytest.param(r, marks=pytest.mark.slow)
                                    for r in FAST])
def test_recipe_output_matches_golden(golden_model, recipe):
    key, model = golden_model
    assert recipe in RECIPES
    got = _record(model, recipe)
    table = json.loads(GOLDEN.read_text()) if GOLDEN.is_file() else {"cpu": None, "results": {}}
    if RECORD:
        table["cpu"] = torch.backends.cpu.get_cpu_capability()
        table["torch"] = torch.__version__
        table["results"].setdefault(key, {})[recipe] = got
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
        return
    want = table["results"][key][recipe]
    if table["cpu"] == torch.backends.cpu.get_cpu_capability() and table.get("torch") == torch.__version__:
        assert got["image"] == want["image"] and got["latent"] == want["latent"]
    else:
        assert got["channel_means"] == pytest.approx(want["channel_means"], abs=0.5)
