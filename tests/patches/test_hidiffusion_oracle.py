"""Faithfulness: hiresflow's RAU-Net + MSW-MSA against the published `hidiffusion` package (a test oracle only).

On a tiny random U-Net with SD 1.5's exact module tree (so `apply_hidiffusion` recognises it as SD 1.5 by module
names), one whole sampling run through hiresflow's sampler is made twice: with the oracle's patched U-Net (which
counts calls per module to know the step) and with hiresflow's patches (which read the step from the StepContext).
The feature-map size of every block at every step and the final latents must agree. The window shift is fixed
(the oracle draws it from the global RNG; here its `torch.rand` is pinned to the same quarter).

`hidiffusion` 0.1.10 imports `diffusers.pipelines.controlnet.multicontrolnet`, which diffusers ≥ 0.29 moved to
`diffusers.models.controlnets.multicontrolnet`; the test provides the old module name before importing it. Its
step counter needs `pipeline._num_timesteps` and a string `name_or_path`, which a pipeline call would set.
The oracle's threshold table is keyed by the absolute latent size (SD 1.5 rows switch at 256 latent pixels); the
tiny U-Net runs far below that, so the test runs the `< 256` row (T1 0.4, T2 0) and, to exercise the pooled down
block and bicubic up block cheaply, the same row with T2 patched to 0.2.
"""

from __future__ import annotations

import sys
import types

import pytest
import torch

from hiresflow.models.loading import wrap_pipeline
from hiresflow.recipes import build_plan
from hiresflow.runner import run_plan
from unet_builders import sd15_layout_pipeline


def _import_oracle():
    try:
        from diffusers.models.controlnets.multicontrolnet import MultiControlNetModel
    except ImportError:  # pragma: no cover - older diffusers still has the old path
        MultiControlNetModel = None
    if MultiControlNetModel is not None and "diffusers.pipelines.controlnet.multicontrolnet" not in sys.modules:
        shim = types.ModuleType("diffusers.pipelines.controlnet.multicontrolnet")
        shim.MultiControlNetModel = MultiControlNetModel
        sys.modules["diffusers.pipelines.controlnet.multicontrolnet"] = shim
    try:
        import hidiffusion.hidiffusion as oracle
    except ImportError as err:
        pytest.skip(f"the hidiffusion package (test oracle) is not installed or does not import: {err}")
    return oracle


class _PinnedRand:
    """Stands in for the oracle module's `torch`: everything is torch, except rand(1) returns a fixed value."""

    def __init__(self, value: float):
        self._value = value

    def rand(self, *shape, **kwargs):
        return torch.full(shape, self._value)

    def __getattr__(self, name):
        return getattr(torch, name)


SIZE = (320, 192)  # (H, W) px: latent 40×24, non-square; windows 20×12, shift k=1 → (5, 3)


def _builder_pipeline():
    return sd15_layout_pipeline(), SIZE


PIPELINES = {"sd15-layout": _builder_pipeline}
STEPS = 10
PROMPT = "a red sun over snowy mountains"


def _block_sizes(unet) -> tuple[list, list]:
    """Forward hooks recording the output size of every down, mid and up block, per call."""
    log: list = []
    handles = []
    for name, m in [(f"down{i}", b) for i, b in enumerate(unet.down_blocks)] + [("mid", unet.mid_block)] + \
            [(f"up{i}", b) for i, b in enumerate(unet.up_blocks)]:
        def hook(mod, args, out, _n=name):
            t = out[0] if isinstance(out, tuple) else out
            log.append((_n, tuple(t.shape[-2:])))
        handles.append(m.register_forward_hook(hook))
    return log, handles


@pytest.mark.slow
@pytest.mark.parametrize("which,t2", [("sd15-layout", 0.0), ("sd15-layout", 0.2)])
def test_rau_net_and_msw_msa_match_the_official_package(monkeypatch, which, t2):
    """The published package patches the U-Net as it is (no adapter): on the SD1.5-layout builder it recognises
    SD 1.5 by module names, and hiresflow's patches give the same run. (The embedded tiny-sd is the three-level
    v1, whose layout the package does not recognise.)"""
    oracle = _import_oracle()
    monkeypatch.setitem(oracle.switching_threshold_ratio_dict, "sd15_1024", {"T1_ratio": 0.4, "T2_ratio": t2})
    monkeypatch.setattr(oracle, "torch", _PinnedRand(0.4))  # rand in (0.25, 0.5] → shift k = 1

    (ours_pipe, size), (ref_pipe, _) = PIPELINES[which](), PIPELINES[which]()
    ours, ref = wrap_pipeline(ours_pipe, "ours", native=64), wrap_pipeline(ref_pipe, "oracle", native=64)

    ref_pipe.register_to_config(_name_or_path="tiny-sd15-layout")
    ref_pipe._num_timesteps = STEPS
    oracle.apply_hidiffusion(ref_pipe)
    try:
        assert ref_pipe.unet.down_blocks[0].downsamplers[0].conv.model == "sd15"  # recognised by module names
        log_ref, h_ref = _block_sizes(ref_pipe.unet)
        plan_ref = build_plan("direct", ref, size=size, steps=STEPS)
        out_ref = run_plan(ref, plan_ref, PROMPT, seed=5).stages[-1].latent
    finally:
        for h in h_ref:
            h.remove()
        oracle.remove_hidiffusion(ref_pipe)

    log_ours, h_ours = _block_sizes(ours_pipe.unet)
    try:
        plan = build_plan("hidiffusion", ours, size=size, steps=STEPS, t1=0.4, t2=t2, window_shift=1)
        out_ours = run_plan(ours, plan, PROMPT, seed=5).stages[-1].latent
    finally:
        for h in h_ours:
            h.remove()

    assert len(log_ours) == len(log_ref) == STEPS * 9
    assert log_ours == log_ref  # every block's feature-map size at every step
    first = dict(log_ours[:9])
    assert first["down0"] == (10, 6)  # conv ×4 at step 0: 40×24 → 10×6 (not 20×12)
    if t2:
        assert first["down1"] == (3, 2)  # pooled 10×6 → 5×3, then ⌈/2⌉
    assert torch.allclose(out_ours, out_ref, atol=1e-5, rtol=1e-5), float((out_ours - out_ref).abs().max())
