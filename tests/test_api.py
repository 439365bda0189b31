"""hiresflow.generate: on a user's own pipeline (LoRA, bf16) left untouched, and the per-step callback."""

from __future__ import annotations

import io
import sys

import pytest
import torch
from PIL import Image

import hiresflow
from hiresflow.models.tiny import tiny_pipeline

FAST = dict(method="hiflow", scale=2, base_steps=4, stage_steps=[2], progress=False, native=64)


def _snapshot(pipe) -> dict:
    """Everything a run must leave as it was: dtypes, devices, attention processors, forwards, adapters."""
    snap = {}
    for name, comp in pipe.components.items():
        if not isinstance(comp, torch.nn.Module):
            continue
        snap[name, "params"] = {k: (p.dtype, p.device, p.requires_grad) for k, p in comp.named_parameters()}
        snap[name, "forwards"] = {k: m.__dict__.get("forward") for k, m in comp.named_modules()}
        snap[name, "modules"] = [type(m).__name__ for m in comp.modules()]
        snap[name, "checksum"] = float(sum(p.detach().double().sum() for p in comp.parameters()))
        if hasattr(comp, "attn_processors"):
            snap[name, "attn"] = {k: type(v) for k, v in comp.attn_processors.items()}
        snap[name, "training"] = comp.training
    return snap


@pytest.fixture(scope="module")
def lora_bf16_pipe():
    peft = pytest.importorskip("peft", reason="peft (LoRA backend of diffusers) is not installed")
    pipe = tiny_pipeline("flux", dtype=torch.bfloat16)
    pipe.set_progress_bar_config(disable=True)
    torch.manual_seed(0)
    pipe.transformer.add_adapter(peft.LoraConfig(r=4, lora_alpha=4, init_lora_weights=False,
                                                 target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    return pipe


@pytest.mark.slow
def test_generate_on_a_loaded_lora_bf16_pipeline_leaves_it_untouched(lora_bf16_pipe):
    pipe = lora_bf16_pipe
    before = _snapshot(pipe)
    out = hiresflow.generate(pipe, "a red sun over snowy mountains", seed=3, **FAST)
    assert out.images[0].size == (128, 128) and out.native_images[0].size == (64, 64)
    assert out.plan.recipe == "hiflow" and len(out.timings["stages"]) == 2
    assert all(st["seconds"] > 0 for st in out.timings["stages"]) and out.stopped is None
    assert _snapshot(pipe) == before
    assert pipe.transformer.dtype == torch.bfloat16 and "default" in pipe.transformer.peft_config
    again = hiresflow.generate(pipe, "a red sun over snowy mountains", seed=3, **FAST)
    assert again.images[0].tobytes() == out.images[0].tobytes()  # same seed, same bytes


@pytest.fixture(scope="module")
def pipe32():
    pipe = tiny_pipeline("flux")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_callback_sees_every_step_and_can_stop_cleanly(pipe32):
    seen = []

    def watch(info):
        seen.append((info.stage, info.step, info.n_steps, info.latents.shape[-1], info.x0 is not None))
        assert info.sigma > info.sigma_next >= 0
        return None

    hiresflow.generate(pipe32, "a lake", seed=1, callback_on_step_end=watch, **FAST)
    assert [s[:2] for s in seen] == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1)]
    assert seen[0][3] * 2 == seen[-1][3] and all(s[4] for s in seen)

    stopped = hiresflow.generate(pipe32, "a lake", seed=1, callback_on_step_end=lambda i: {"stop": i.step == 1},
                                 **FAST)
    assert stopped.stopped == {"stage": 0, "step": 1}
    assert stopped.images[0].size == (64, 64) and len(stopped.result.stages) == 1


def test_callback_can_replace_latents(pipe32):
    plain = hiresflow.generate(pipe32, "a lake", seed=1, **FAST)
    same = hiresflow.generate(pipe32, "a lake", seed=1, callback_on_step_end=lambda i: {"latents": i.latents},
                              **FAST)
    assert same.images[0].tobytes() == plain.images[0].tobytes()
    zeroed = hiresflow.generate(pipe32, "a lake", seed=1, **FAST,
                                callback_on_step_end=lambda i: {"latents": torch.zeros_like(i.latents)}
                                if (i.stage, i.step) == (1, 0) else {})
    assert zeroed.images[0].tobytes() != plain.images[0].tobytes()
    with pytest.raises(ValueError, match="must be a tensor of shape"):
        hiresflow.generate(pipe32, "a lake", seed=1, **FAST, callback_on_step_end=lambda i: {"latents": 1})
    with pytest.raises(ValueError, match="unknown keys 'stpo'"):
        hiresflow.generate(pipe32, "a lake", seed=1, **FAST, callback_on_step_end=lambda i: {"stpo": True})


def test_generate_by_name_and_bad_input():
    out = hiresflow.generate("random-tiny-flux", "a lake", method="sdedit", size=(96, 128), steps=3,
                             progress=False)
    assert out.images[0].size == (128, 96)
    with pytest.raises(ValueError, match="unknown recipe"):
        hiresflow.generate("random-tiny-flux", "a lake", method="nope")
    with pytest.raises(TypeError, match="pipe_or_id must be"):
        hiresflow.generate(42, "a lake")


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture(scope="module")
def random_flux():
    from hiresflow.models.loading import load_model

    return load_model("random-tiny-flux", device="cpu")


@pytest.mark.parametrize("call", ["generate", "upscale_image"])
def test_progress_auto_draws_bars_only_on_a_terminal(call, random_flux, capsys, monkeypatch, tmp_path):
    """stderr captured (a pipe or log, not a tty): no bar by default; on a terminal, or with progress=True, bars."""
    monkeypatch.delenv("HIRESFLOW_PROGRESS", raising=False)
    photo = tmp_path / "in.png"
    Image.new("RGB", (64, 64), (200, 80, 40)).save(photo)

    def run(**kw):
        if call == "generate":
            return hiresflow.generate(random_flux, "a lake", method="hiflow", scale=2, base_steps=4,
                                      stage_steps=[2], **kw)
        return hiresflow.upscale_image(random_flux, photo, "a lake", method="hiflow", scale=2, base_steps=4,
                                       stage_steps=[2], **kw)

    run()
    assert capsys.readouterr().err == ""
    run(progress=True)
    assert "stage" in capsys.readouterr().err
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    run()
    assert "stage" in terminal.getvalue() and "it/s" in terminal.getvalue()
    with pytest.raises(ValueError, match='progress must be "auto", True or False'):
        run(progress="yes")
