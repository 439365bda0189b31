"""The memory plan: size parsing, the predictor's scaling laws, the chooser, applying mechanisms, the CLI."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from hiresflow import memory_plan as mp
from hiresflow.cli import app


def test_parse_memory_units_and_one_line_errors():
    assert mp.parse_memory("24GB") == 24 * 10**9
    assert mp.parse_memory("24GiB") == 24 * 2**30
    assert mp.parse_memory("512 MB") == 512 * 10**6
    assert mp.parse_memory("1.5G") == int(1.5 * 2**30)
    for bad in ("0", "abc", "12 parsecs", "-3GB", "10"):
        with pytest.raises(ValueError) as err:
            mp.parse_memory(bad)
        assert "\n" not in str(err.value) and "--max-memory" in str(err.value)


def test_dit_activations_linear_with_fused_attention_quadratic_with_math():
    a = mp.ARCHITECTURES["flux-dev"]
    n1, n2 = 64 * 64 + 512, 128 * 128 + 512  # tokens at 1024² and 2048²
    f1 = mp.denoiser_call_bytes(a, (1024, 1024), dtype_bytes=2)
    f2 = mp.denoiser_call_bytes(a, (2048, 2048), dtype_bytes=2)
    assert f2 / f1 == pytest.approx(n2 / n1, rel=1e-6)
    m1 = mp.denoiser_call_bytes(a, (1024, 1024), dtype_bytes=2, attention="_native_math")
    assert m1 - f1 == 2 * 24 * n1 * n1 * 2
    # the block count: (7 + 2·4) live N·D maps plus the rotary tables
    assert f1 == int((15 * n1 * 3072 * 2) + 2 * n1 * 128 * 4)


def test_vae_tiling_bounds_the_decode():
    vae = mp.ARCHITECTURES["flux-dev"].vae
    full = mp.vae_decode_bytes(vae, (4096, 4096), dtype_bytes=2)
    tiled = mp.vae_decode_bytes(vae, (4096, 4096), dtype_bytes=2, tile=vae.tile)
    assert tiled < full / 4
    assert mp.vae_decode_bytes(vae, (512, 512), tile=1024) == mp.vae_decode_bytes(vae, (512, 512))


def test_weights_counted_on_the_meta_device():
    w = mp.weights_of_architecture(mp.ARCHITECTURES["flux-dev"])
    assert 11.8e9 < w["denoiser"].total < 12.0e9  # FLUX.1-dev: 11.9 B parameters
    assert len(w["denoiser"].blocks) == 19 + 38
    assert 0 < w["denoiser"].castable < w["denoiser"].total


@pytest.fixture(scope="module")
def flux_model():
    from hiresflow.models.loading import load_model

    return load_model("random-tiny-flux", device="cpu")


def _flux_dev_plan(flux_model, size=4096):
    from dataclasses import replace

    from hiresflow.recipes import build_plan

    flux_model.geometry = replace(flux_model.geometry, native=(1024, 1024), vae_scale=8)
    try:
        return build_plan("hiflow", flux_model, size=(size, size))
    finally:
        flux_model.geometry = replace(flux_model.geometry, native=(64, 64), vae_scale=4)


def test_choose_cheapest_that_fits_and_refuse_in_one_line(flux_model):
    arch = mp.ARCHITECTURES["flux-dev"]
    weights = mp.weights_of_architecture(arch)
    plan = _flux_dev_plan(flux_model)
    roomy = mp.choose(arch, weights, plan, 200 * 2**30, "cuda")
    assert roomy.mechanisms == mp.Mechanisms()
    tight = mp.choose(arch, weights, plan, 24 * 10**9, "cuda")
    assert tight.mechanisms.offload != "none" and tight.peak.total <= 24 * 10**9
    # every candidate tried before the chosen one predicted more than the budget
    assert all(peak > 24 * 10**9 for _, peak in tight.tried[:-1])
    with pytest.raises(ValueError) as err:
        mp.choose(arch, weights, plan, 2 * 10**9, "cuda")
    assert "nothing fits" in str(err.value) and "\n" not in str(err.value)
    cpu = mp.choose(arch, weights, plan, 10**12, "cpu")
    assert all(m.offload == "none" for m, _ in cpu.tried)


def test_apply_on_the_cpu_tiling_and_fp8_runs_offload_refused():
    from hiresflow.models.loading import load_model
    from hiresflow.recipes import build_plan
    from hiresflow.runner import run_plan

    m = load_model("random-tiny-flux", device="cpu")
    plan = build_plan("direct", m, scale=2, steps=2)
    done = mp.apply_mechanisms(m, mp.Mechanisms(vae_tiling=True, fp8=True))
    assert done[0] == "VAE tiling" and "float8" in done[1]
    assert m.codec.tile_above == 0 and m.denoiser.dtype == torch.float32
    assert any(p.dtype == torch.float8_e4m3fn for p in m.denoiser.parameters())
    out = run_plan(m, plan, "a lake", seed=0)
    assert torch.isfinite(out.image).all()
    with pytest.raises(ValueError, match="needs a GPU"):
        mp.apply_mechanisms(m, mp.Mechanisms(offload="model"))


def test_memory_plan_for_a_loaded_model_prices_every_phase(flux_model):
    from hiresflow.recipes import build_plan

    plan = build_plan("hiflow", flux_model, scale=4)
    p = mp.memory_plan_for(flux_model, plan, None, "cpu")
    names = [ph.name for ph in p.phases]
    assert any(n.startswith("text encoder") for n in names)
    assert sum(n.startswith("stage") and "denoise" in n for n in names) == len(plan.stages)
    assert "chosen: none" in mp.explain(p)


def test_the_vae_roundtrip_of_the_upscale_baseline_is_priced_and_shown():
    runner = CliRunner()
    args = ["plan", "--arch", "flux-dev", "--method", "upscale", "--size", "4096x4096"]
    plain = runner.invoke(app, [*args, "--explain"])
    both = runner.invoke(app, [*args, "--set", "vae_roundtrip=true", "--explain"])
    assert plain.exit_code == 0 and both.exit_code == 0, both.output
    assert "upscale decode 4096x4096" in both.output and "upscale decode" not in plain.output
    assert "then bicubic to 4096x4096, through the VAE once" in both.output


def test_cli_plan_explain_and_bad_max_memory(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["plan", "--arch", "flux-dev", "--size", "4096x4096", "--max-memory", "24GB",
                              "--explain"])
    assert res.exit_code == 0, res.output
    assert "chosen: VAE tiling, group offloading (block level)" in res.output
    res = runner.invoke(app, ["generate", "a lake", "--max-memory", "0", "--out", str(tmp_path)])
    assert res.exit_code == 2
    assert res.output.strip().startswith("error: --max-memory") and len(res.output.strip().splitlines()) == 1


def test_gpu_benchmark_script_cpu_plumbing(tmp_path):
    """benchmarks/gpu/run.sh on its CPU config: every recipe and variant runs (offloading is reported as needing a
    GPU) and the JSON and table are written."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, CONFIG="cpu", OUT=str(tmp_path / "gpu"), PYTHON=sys.executable, OMP_NUM_THREADS="1")
    proc = subprocess.run(["bash", str(root / "benchmarks" / "gpu" / "run.sh")], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads((tmp_path / "gpu.json").read_text())["rows"]
    ran = {(r["variant"], r["recipe"]) for r in rows if "seconds" in r}
    assert ran == {(v, r) for v in ("plain", "cache") for r in ("direct", "hiflow", "imax")}
    assert any(r.get("skipped") == "offloading needs a GPU" for r in rows)
    assert "| plain | hiflow | 128² |" in (tmp_path / "gpu.md").read_text()


REAL_CONFIGS = __import__("pathlib").Path(__file__).parent / "models" / "data" / "real_configs"


def _narrow(cls: str, cfg: dict) -> dict:
    """A published transformer config at toy width (one head, small text width), the rest as published."""
    cfg = dict(cfg)
    if "ZImage" in cls:
        cfg.update(dim=128, n_heads=1, n_kv_heads=1, cap_feat_dim=32)
    else:
        head = int(cfg["attention_head_dim"])
        cfg.update(num_attention_heads=1, joint_attention_dim=32)
        if "caption_projection_dim" in cfg:
            cfg.update(caption_projection_dim=head, pooled_projection_dim=32)
        if "approximator_hidden_dim" in cfg:
            cfg.update(approximator_hidden_dim=32)
    return cfg


@pytest.mark.parametrize("family", ["chroma", "flux2", "qwenimage", "sd35", "zimage"])
def test_family_cases_build_and_run_at_toy_width(family):
    """Each family's real_widths case: the published block structure with 1 (+1) block(s) and the inputs its adapter
    passes (`example_inputs`), run at toy width and 128² pixels; the VAE decodes `example_latents`."""
    import json
    from dataclasses import replace

    d = json.loads((REAL_CONFIGS / f"{family}.json").read_text())
    arch = mp.architecture_from_dict(d)
    assert arch.denoiser.text_tokens == (333 if family == "sd35" else 512)
    assert arch.denoiser.width >= 2432 and arch.denoiser.head_dim == (64 if family == "sd35" else 128)
    assert arch.vae.factor == 8 and arch.vae.latent_channels == {"flux2": 32}.get(family, 16)
    meta = mp.build_module(arch.denoiser, blocks=(1, 1), device="meta", refiners=1)
    lists = [m for m in meta.children() if isinstance(m, torch.nn.ModuleList) and len(m)]
    assert lists and all(len(m) == 1 for m in lists)  # every block (and refiner) list cut to one
    small = replace(arch, denoiser=replace(arch.denoiser, config=_narrow(d["transformer_class"], d["transformer"]),
                                           text_tokens=7))
    torch.manual_seed(0)
    module = mp.build_module(small.denoiser, blocks=(1, 1), refiners=1)
    inputs = mp.example_inputs(small, module, 128)
    with torch.inference_mode():
        out = module(**inputs)[0]
    out = torch.stack(out) if isinstance(out, list) else out
    assert out.numel() == small.vae.latent_channels * (128 // 8) ** 2  # FLUX.2: 128 channels at 8², packed
    assert torch.isfinite(out).all()
    vcfg = dict(arch.vae.config)
    if "base_dim" in vcfg:
        vcfg.update(base_dim=8, num_res_blocks=1)
    else:
        vcfg.update(block_out_channels=[32] * 4, layers_per_block=1)
    vae = replace(arch.vae, config=vcfg)
    with torch.inference_mode():
        img = mp.build_module(vae).decode(mp.example_latents(vae, 64)).sample
    assert img.shape[-2:] == (64, 64) and img.shape[:2] == (1, 3)
