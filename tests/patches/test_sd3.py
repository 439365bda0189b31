"""SD3 adapter and SD3-family patches on a tiny random StableDiffusion3Pipeline built offline."""

import pytest
import torch

from hiresflow.flow.sampler import StepContext
from hiresflow.models.loading import wrap_pipeline
from hiresflow.patches.base import compose_patches
from hiresflow.patches.sd3 import SD3PositionConfig, SD3ProportionalAttentionConfig
from hiresflow.patches.text_dup import TextDuplicationConfig
from hiresflow.recipes import build_plan
from hiresflow.runner import run_plan


@pytest.fixture(scope="module")
def sd3(tiny_sd3):
    return wrap_pipeline(tiny_sd3, "tiny-sd3", native=64)


class Env:
    def __init__(self, model, cond):
        self.model, self.cond = model, cond


def ctx():
    return StepContext(stage=1, step=1, n_steps=4, index=1, sigma=0.5, sigma_next=0.4, x=None)


def test_adapter_matches_the_pipeline_convention(sd3, tiny_sd3):
    assert sd3.family == "sd3" and sd3.geometry.patch == 2 and sd3.geometry.multiple == 16
    cond = sd3.encode_prompt("a red sun")
    x = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(0))
    v1 = sd3.velocity(x, 0.7, cond, guidance=1.0)
    direct = tiny_sd3.transformer(hidden_states=x, timestep=torch.tensor([700.0]), encoder_hidden_states=cond.prompt_embeds,
                                  pooled_projections=cond.pooled, return_dict=False)[0]
    assert torch.allclose(v1, direct, atol=1e-5)
    sig = sd3.schedule(28, (64, 64))
    assert float(sig[0]) == 1.0 and float(sig[-1]) == 0.0


def test_position_extension_beyond_the_table(sd3):
    cond = sd3.encode_prompt("a lake")
    M = sd3.transformer.pos_embed.pos_embed_max_size
    big = torch.randn(1, 16, 2 * (M + 4), 2 * (M + 4))
    with pytest.raises(ValueError, match="pos_embed_max_size"):
        sd3.velocity(big, 0.5, cond)
    table = sd3.transformer.pos_embed.pos_embed.clone()

    def core(x, c, cc):
        return sd3.velocity(x, c.sigma, cc)

    for mode in ("interpolate", "stretch"):
        fn = compose_patches(core, [SD3PositionConfig(mode).build(Env(sd3, cond))])
        assert torch.isfinite(fn(big, ctx(), cond)).all()
        assert torch.equal(sd3.transformer.pos_embed.pos_embed, table)
        assert sd3.transformer.pos_embed.pos_embed_max_size == M
    small = torch.randn(1, 16, 8, 8)
    fn = compose_patches(core, [SD3PositionConfig("stretch").build(Env(sd3, cond))])
    assert torch.equal(fn(small, ctx(), cond), sd3.velocity(small, 0.5, cond))  # within the table: stock crop


def test_proportional_and_text_duplication_are_reversible(sd3):
    cond = sd3.encode_prompt("three pine trees")
    x = torch.randn(1, 16, 16, 16, generator=torch.Generator().manual_seed(2))
    before = sd3.velocity(x, 0.5, cond)

    def core(xx, c, cc):
        return sd3.velocity(xx, c.sigma, cc)

    for cfg in (SD3ProportionalAttentionConfig(), TextDuplicationConfig()):
        out = compose_patches(core, [cfg.build(Env(sd3, cond))])(x, ctx(), cond)
        assert not torch.equal(out, before), cfg
        assert torch.equal(sd3.velocity(x, 0.5, cond), before)


@pytest.mark.parametrize("recipe,kw", [("hiflow", dict(base_steps=4, stage_steps=(3, 3), text_duplication=True)),
                                       ("imax", dict(steps=3, hires_steps=3))])
@pytest.mark.parametrize("scale", [2, pytest.param(4, marks=pytest.mark.slow)])
def test_sd3_generation_with_patches(sd3, recipe, kw, scale):
    plan = build_plan(recipe, sd3, scale=scale, **kw)
    names = {type(p).__name__ for p in plan.stages[-1].patches}
    assert {"SD3PositionConfig", "SD3ProportionalAttentionConfig", "ShiftedPatchesConfig", "TextDuplicationConfig"} <= names
    res = run_plan(sd3, plan, "a house at night", seed=1)
    assert res.image.shape[-1] == 64 * scale and torch.isfinite(res.image).all()


def test_proportional_attention_counts_duplicated_text(sd3):
    """With text duplication (an outer patch), L = image tokens + every text copy; L_train keeps one copy."""
    from hiresflow.patches.attention import proportional_multiplier

    cond = sd3.encode_prompt("a house by a lake")
    T = sd3.text_tokens(cond)
    x = torch.randn(1, 16, 16, 16, generator=torch.Generator().manual_seed(2))  # 8×8 tokens, native 4×4
    seen = {}

    def core(xx, c, cc):
        attn = next(m for m in sd3.transformer.modules() if getattr(m, "add_q_proj", None) is not None)
        q = attn.norm_q if getattr(attn, "norm_q", None) is not None else attn.to_q
        seen["m"], seen["text"] = q.factor, sd3.text_tokens(cc)
        return torch.zeros_like(xx)

    patches = [TextDuplicationConfig().build(Env(sd3, cond)), SD3ProportionalAttentionConfig().build(Env(sd3, cond))]
    compose_patches(core, patches)(x, ctx(), cond)
    assert seen["text"] == 4 * T
    assert seen["m"] == pytest.approx(proportional_multiplier(64 + 4 * T, 16 + T))
