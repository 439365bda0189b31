"""The node pack in ComfyUI's own executor: registration, ComfyUI-vs-library parity, patches, guider, bad inputs.

Parity: the embedded tiny-flux and tiny-sd, converted to ComfyUI's layouts and built in ComfyUI's classes, run
`direct` and `hiflow` at 2× through the executor (hiresflow Sampler → SaveLatent); `hiresflow.generate` runs the
same recipe on the diffusers weights with the same seed and σ grid (hiresflow's noise and grid on both sides).
Measured (relative L2 of the final latents): tiny-flux direct 4.4e-7, hiflow 5.5e-7; tiny-sd (v3: v-prediction,
zero-terminal SNR, trailing spacing) direct 1.1e-6, hiflow 1.1e-6; the bound is 1e-4.
"""

from __future__ import annotations

import pytest
import torch

PROMPT = "a red sun over snowy mountains"
NODE_IDS = ("HiresflowSampler", "HiresflowRopePatch", "HiresflowUNetPatch", "HiresflowHiFlowGuider",
            "HiresflowEmbeddedLoader")


def sampler_graph(model: str = "tiny-flux", recipe: str = "direct", scale: float = 2.0, cfg: float = 4.0,
                  prefix: str = "parity", seed: int = 0, options: str = "", steps: int = 0) -> dict:
    return {
        "1": {"class_type": "HiresflowEmbeddedLoader", "inputs": {"model_name": model}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": PROMPT}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": ""}},
        "4": {"class_type": "HiresflowSampler", "inputs": {
            "model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0], "vae": ["1", 2], "recipe": recipe,
            "scale": scale, "width": 0, "height": 0, "native": 64, "seed": seed, "steps": steps, "cfg": cfg,
            "options": options}},
        "5": {"class_type": "SaveLatent", "inputs": {"samples": ["4", 0], "filename_prefix": prefix}},
    }


def saved_latent(comfy, prefix: str) -> torch.Tensor:
    from safetensors.torch import load_file

    files = sorted((comfy.output).glob(f"{prefix}_*.latent"))
    assert files, f"SaveLatent wrote no {prefix}_*.latent"
    return load_file(str(files[-1]))["latent_tensor"]


def test_pack_loads_and_registers_its_nodes(comfy):
    assert comfy.pack_loaded, "ComfyUI logged an import failure of comfyui_hiresflow"
    for node_id in NODE_IDS:
        assert node_id in comfy.nodes.NODE_CLASS_MAPPINGS, node_id


@pytest.mark.slow
@pytest.mark.parametrize("model,recipe,cfg,steps", [("tiny-flux", "direct", 4.0, 0), ("tiny-flux", "hiflow", 4.0, 0),
                                                    ("tiny-sd", "direct", 5.0, 12), ("tiny-sd", "hiflow", 5.0, 12)])
def test_executor_matches_library(comfy, model, recipe, cfg, steps):
    """steps 0: the recipe's defaults; tiny-sd runs 12 steps (hiflow: 12 base steps, one stage of 6) instead of
    the DDPM defaults (50 / 30), to keep CI short."""
    import hiresflow
    from hiresflow.comfy.convert import embedded_checkpoint

    prefix = f"parity-{model}-{recipe}"
    options = "stage_steps=[6]" if steps and recipe == "hiflow" else ""
    out = comfy.run(sampler_graph(model, recipe, cfg=cfg, prefix=prefix, steps=steps, options=options))
    assert out.valid and out.success, out.error or out.validation
    raw = saved_latent(comfy, prefix)
    _, meta = embedded_checkpoint(model)
    ours = (raw - meta["shift_factor"]) * meta["scaling_factor"]
    params = {} if not steps else {"steps": steps} if recipe == "direct" else {"base_steps": steps,
                                                                              "stage_steps": (6,)}
    ref = hiresflow.generate(model, PROMPT, method=recipe, scale=2, seed=0, progress=False, device="cpu", **params)
    lib = ref.result.stages[-1].latent
    assert ours.shape == lib.shape
    rel = float((ours - lib).norm() / lib.norm())
    print(f"ComfyUI vs library, {model} {recipe} 2x: relative L2 {rel:.2e}")
    assert rel <= 1e-4


def one_line_error(out) -> str:
    """The one-line message of a prompt that failed validation (ComfyUI's node error) or execution (its error
    panel's exception message, a ValueError without a traceback in the message)."""
    if not out.valid:
        return validation_message(out)
    err = out.error
    assert err is not None, "expected an execution error"
    msg = err["exception_message"].strip()
    assert "\n" not in msg and "Traceback" not in msg, msg
    assert err["exception_type"].endswith("ValueError"), err["exception_type"]
    return msg


def validation_message(out) -> str:
    assert not out.valid
    node_errors = out.validation[3]
    details = [e["details"] or e["message"] for n in node_errors.values() for e in n["errors"]]
    assert details and all("\n" not in d for d in details), details
    return details[0]


def small_run_works(comfy, tag: str):
    out = comfy.run(sampler_graph("tiny-sd", "direct", scale=1.0, cfg=5.0, prefix=f"after-{tag}",
                                  options="steps=2"))
    assert out.valid and out.success, out.error


def test_bad_inputs_give_one_line_errors_and_the_queue_keeps_working(comfy):
    # an unknown recipe and a scale below 1 (caught by ComfyUI's validation or by the node, one line either way)
    bad = sampler_graph(recipe="no-such-recipe")
    assert "no-such-recipe" in one_line_error(comfy.run(bad))
    small_run_works(comfy, "recipe")
    bad = sampler_graph(scale=0.5)
    assert "scale" in one_line_error(comfy.run(bad))
    small_run_works(comfy, "scale")
    # a U-Net patch on a DiT model
    graph = sampler_graph("tiny-flux", options="steps=2")
    graph["6"] = {"class_type": "HiresflowUNetPatch",
                  "inputs": {"model": ["1", 0], "dilation": 2, "dilate_until": 0.7, "msw_msa": True}}
    graph["4"]["inputs"]["model"] = ["6", 0]
    assert "U-Net" in one_line_error(comfy.run(graph))
    small_run_works(comfy, "unet")
    # a RoPE patch on a U-Net model
    graph = sampler_graph("tiny-sd", options="steps=2")
    graph["6"] = {"class_type": "HiresflowRopePatch", "inputs": {
        "model": ["1", 0], "method": "yarn", "dype": True, "native_width": 64, "native_height": 64,
        "vae_factor": 4}}
    graph["4"]["inputs"]["model"] = ["6", 0]
    assert "FLUX" in one_line_error(comfy.run(graph))
    small_run_works(comfy, "rope")
    # a reference latent of the wrong size (larger than the latent being sampled)
    graph = guider_graph(reference_scale=4.0)
    assert "reference latent" in one_line_error(comfy.run(graph))
    small_run_works(comfy, "reference")
    # a recipe option the recipe does not have
    assert "no parameter" in one_line_error(comfy.run(sampler_graph(options="no_such_option=1")))
    small_run_works(comfy, "option")


def guider_graph(reference_scale: float = 1.0, prefix: str = "guided") -> dict:
    """First pass at 64 px (KSampler; EmptyLatentImage counts 8 px per latent pixel, the tiny VAE 4), its image upscaled 2×, encoded, re-noised and sampled with the HiFlow guider."""
    return {
        "1": {"class_type": "HiresflowEmbeddedLoader", "inputs": {"model_name": "tiny-flux"}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": PROMPT}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": ""}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 128, "height": 128, "batch_size": 1}},
        "5": {"class_type": "KSampler", "inputs": {
            "model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["4", 0], "seed": 0,
            "steps": 6, "cfg": 4.0, "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0}},
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "ImageScaleBy", "inputs": {"image": ["6", 0], "upscale_method": "bicubic",
                                                      "scale_by": 2.0}},
        "8": {"class_type": "VAEEncode", "inputs": {"pixels": ["7", 0], "vae": ["1", 2]}},
        "9": {"class_type": "LatentUpscaleBy", "inputs": {"samples": ["5", 0], "upscale_method": "bicubic",
                                                         "scale_by": reference_scale}},
        "10": {"class_type": "HiresflowHiFlowGuider", "inputs": {
            "model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0], "cfg": 4.0, "reference": ["9", 0],
            "alpha": 1.0, "beta": 0.5, "cutoff": 0.2}},
        "11": {"class_type": "BasicScheduler", "inputs": {"model": ["1", 0], "scheduler": "simple", "steps": 6,
                                                          "denoise": 0.6}},
        "12": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "13": {"class_type": "RandomNoise", "inputs": {"noise_seed": 0}},
        "14": {"class_type": "SamplerCustomAdvanced", "inputs": {
            "noise": ["13", 0], "guider": ["10", 0], "sampler": ["12", 0], "sigmas": ["11", 0],
            "latent_image": ["8", 0]}},
        "15": {"class_type": "SaveLatent", "inputs": {"samples": ["14", 0], "filename_prefix": prefix}},
    }


@pytest.mark.slow
def test_hiflow_guider_pulls_toward_the_reference(comfy):
    out = comfy.run(guider_graph(prefix="guided"))
    assert out.valid and out.success, out.error
    guided = saved_latent(comfy, "guided")
    plain = guider_graph(prefix="plain")
    plain["10"]["inputs"].update(alpha=0.0, beta=0.0)
    out = comfy.run(plain)
    assert out.valid and out.success, out.error
    unguided = saved_latent(comfy, "plain")
    assert guided.shape == unguided.shape == (1, 4, 32, 32)
    assert float((guided - unguided).abs().max()) > 1e-4  # the guidance acts (α = β = 0 is plain CFG)


@pytest.mark.slow
def test_rope_and_unet_patches_run_with_stock_samplers(comfy):
    def ksampler(model: str, patch: dict | None, prefix: str, size: int = 128) -> torch.Tensor:
        g = {
            "1": {"class_type": "HiresflowEmbeddedLoader", "inputs": {"model_name": model}},
            "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": PROMPT}},
            "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": ""}},
            "4": {"class_type": "EmptyLatentImage", "inputs": {"width": size * 4, "height": size * 4, "batch_size": 1}},
            "5": {"class_type": "KSampler", "inputs": {
                "model": ["6", 0] if patch else ["1", 0], "positive": ["2", 0], "negative": ["3", 0],
                "latent_image": ["4", 0], "seed": 0, "steps": 4, "cfg": 4.0, "sampler_name": "euler",
                "scheduler": "simple", "denoise": 1.0}},
            "7": {"class_type": "SaveLatent", "inputs": {"samples": ["5", 0], "filename_prefix": prefix}},
        }
        if patch:
            g["6"] = {**patch, "inputs": {"model": ["1", 0], **patch["inputs"]}}
        out = comfy.run(g)
        assert out.valid and out.success, out.error
        return saved_latent(comfy, prefix)

    rope = {"class_type": "HiresflowRopePatch", "inputs": {"method": "yarn", "dype": True, "native_width": 64,
                                                            "native_height": 64, "vae_factor": 4}}
    unet = {"class_type": "HiresflowUNetPatch", "inputs": {"dilation": 2, "dilate_until": 0.7, "msw_msa": True}}
    for model, patch in (("tiny-flux", rope), ("tiny-sd", unet)):
        plain = ksampler(model, None, f"plain-{model}", size=64)
        patched = ksampler(model, patch, f"patched-{model}", size=64)
        assert plain.shape == patched.shape
        assert float((plain - patched).abs().max()) > 1e-4, model
