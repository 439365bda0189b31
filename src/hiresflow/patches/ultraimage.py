"""UltraImage (Zhao et al., arXiv 2512.04504): dominant-frequency RoPE correction and entropy-guided attention.

Official code: GitHub `thu-ml/DiT-Extrapolation`, branch `ultra-flux` (FLUX.1-dev; `flux/rope/rope.py`,
`flux/attention_processor.py`, `flux/utils.py`, `flux/base.yaml`), Apache-2.0; branch `ultra-qwenimage` for
Qwen-Image. The formulas below are re-derived from that code and the paper; docs/methods/ultraimage.md.

**Recursive dominant frequency correction (RDFC)** — `UltraImageRope`, a `FrequencyTransform`, so it acts on
every rotary family through `FlowModel.rope_axes` / `rope_applied`. Per spatial axis (d columns, base θ,
ω_j = θ^(−2j/d), period T_j = 2π/ω_j), the *dominant* frequency is the one whose period is closest to the training
length N (paper Eq. 6): k = argmin_j |T_j − N|, N = `train_scale` × the axis' native length (FLUX.1: 2 × 64 = 128
tokens, its 2048² top training size, k = 9 — the official `freq_id: [9]`; Qwen-Image's 1328p native: k = 8).
Only that frequency is changed, so that it stays inside one period over the target length H (positions of the
stage's grid along the axis, the official `length`):

    riflex (official FLUX):        ω_k = r·2π/H,  r = `riflex_scale` = 0.85   (period H/0.85 > H)
                                    r = 1 is the paper's Eq. 8, ω_k = 2π/H (period exactly H)
    interpolate (official Qwen):    ω_k = ω_k / s,  s = H/N, only when s > 1

`freq_ids` lists the corrected indices explicitly (the recursion of the paper's Algorithm 1 re-detects the
repetition period by eye; its Qwen-Image result is the list [8, 9]); every listed frequency gets the same value.
Gate (`gate`): "sequence" (official) changes both spatial axes when the call has more id rows than one text copy
+ the native image tokens (the code's `seq_length > train_length`), "axis" only an axis with n > its native
length. Axes that never extrapolate (Flux's index axis) stay stock.

**Entropy-guided adaptive attention concentration** — `UltraImageAttentionConfig`, an attention-processor patch
(Flux). At the stage's first step (`ctx.step == 0`) a measuring model call records, in every attention layer l
and head h (and batch row, and transformer call of the velocity — true CFG calls twice), the entropy of the
attention map P = softmax(q·kᵀ/√d) over the joint sequence (text + image, after RoPE). Official form (`block`
= 128): q and k are zero-padded to a multiple of 128 rows (the padded keys take part in the softmax, as in the
official Triton kernel), A_ij = Σ_{q ∈ block i} Σ_{k ∈ block j} P_qk, p_ij = A_ij/128, and

    H_lh = mean_i ( −Σ_j p_ij·ln p_ij )      (official: when any term is NaN, p + 1e-8, then NaN → 0)

`block=1` is the paper's token-level Eq. 10. The focus factor per (l, h):

    z = (H − H_min)/(H_max − H_min)
    power (official):  λ = λ_min + (λ_max − λ_min)·(1 − z)^γ          (z not clipped)
    linear:            λ = clip(λ_max − (λ_max − λ_min)·clip(z, 0, 1), λ_min, λ_max)

with the official FLUX constants H_min = 0.44, H_max = 6.0 (`bounds="fixed"`; ≈ ln 400, the block count at
3600²), λ_min = 1.1, λ_max = 1.3, γ = 2; `bounds="observed"` uses the minimum and maximum of the measured
entropies (the paper's Algorithm 2), and the paper states λ_min = 1.0. Every later call of the stage attends with
softmax(λ_lh·q·kᵀ/√d): the queries of head h are multiplied by λ_lh. The official decay path ignores the
proportional-attention scale; its measuring pass (`get_block_avg`) attends with it (√(log_{L_train} L/d), L_train
= 128² + 512 in the joint blocks and 64² + 512 in the single blocks at 1024², i.e. T + 4·N_native and
T + N_native), which `measure_scale="official"` reproduces ("proportional": T + N_native everywhere, hiresflow's
toolkit; "stock": 1/√d). The official kernel quantises q and k to int8 per 128-row block (SageAttention);
hiresflow computes the same logits in the model's dtype.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F

from ..checks import check_choice
from .base import ModulePatch, PatchConfig, PatchOrder
from .rope import RopePatch
from .rope_frequencies import AxisFrequencies, FrequencyTransform, RopeAxis, RopeCall, base_frequencies

__all__ = ["UltraImageRope", "UltraImageRopeConfig", "UltraImageAttentionConfig", "UltraImageAttentionPatch",
           "UltraImageFluxAttnProcessor", "dominant_frequency", "block_entropy", "focus_factors",
           "CORRECTIONS", "GATES", "MAPPINGS", "BOUNDS", "MEASURE_SCALES"]

CORRECTIONS = ("riflex", "interpolate")
GATES = ("sequence", "axis")
MAPPINGS = ("power", "linear")
BOUNDS = ("fixed", "observed")
MEASURE_SCALES = ("official", "proportional", "stock")


def _positive(name: str, value, *, allow_zero: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return float(value)


def _freq_ids(value) -> tuple[int, ...] | None:
    if value is None:
        return None
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if not items or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in items):
        raise ValueError(f"freq_ids must be a non-empty list of frequency indices >= 0 (e.g. [9]), or None for the "
                         f"dominant frequency, got {value!r}")
    return tuple(items)


# ---------------------------------------------------------------- RDFC (RoPE)


def dominant_frequency(axis: RopeAxis, train_len: float) -> int:
    """k = argmin_j |2π/ω_j − N| (paper Eq. 6): the frequency whose period is closest to the training length N
    (positions); the lower index on a tie."""
    periods = 2 * math.pi / base_frequencies(axis.dim, axis.theta)
    return int(torch.argmin((periods - float(train_len)).abs()).item())


@dataclass(frozen=True)
class UltraImageRope(FrequencyTransform):
    """The dominant-frequency correction of the module docstring. `lengths`: per axis of the embedder, the
    positions of the stage's grid (the official `length`, kept on the padded steps of shifted patchification);
    empty or None entries use the call's own n. `text_tokens`, `native_tokens`: the sequence gate's threshold."""

    name: ClassVar[str] = "ultraimage"
    freq_ids: tuple[int, ...] | None = None
    train_scale: float = 2.0
    correction: str = "riflex"
    riflex_scale: float = 0.85
    gate: str = "sequence"
    text_tokens: int = 0
    native_tokens: int = 0
    lengths: tuple[int | None, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "freq_ids", _freq_ids(self.freq_ids))
        _positive("train_scale", self.train_scale)
        check_choice("correction", self.correction, CORRECTIONS)
        _positive("riflex_scale", self.riflex_scale)
        check_choice("rope gate", self.gate, GATES)
        if self.gate == "sequence" and not self.native_tokens >= 1:
            raise ValueError("the sequence gate needs the native token count (native_tokens >= 1)")

    def train_length(self, axis: RopeAxis) -> float:
        """N: the training length of the axis in positions (`train_scale` × native length)."""
        return self.train_scale * axis.native_len

    def corrected(self, axis: RopeAxis) -> tuple[int, ...]:
        """The frequency indices this transform changes on `axis`."""
        ids = self.freq_ids if self.freq_ids is not None else (dominant_frequency(axis, self.train_length(axis)),)
        bad = [i for i in ids if i >= axis.dim // 2]
        if bad:
            raise ValueError(f"freq_ids {list(bad)} out of range: this rotary axis has {axis.dim // 2} frequencies "
                             f"(indices 0..{axis.dim // 2 - 1})")
        return ids

    def active(self, axis: RopeAxis, n: int, call: RopeCall) -> bool:
        if axis.native_len is None:
            return False
        if self.gate == "sequence":
            return call.seq_len > self.text_tokens + self.native_tokens
        return n > axis.native_len

    def _frequencies(self, axis: RopeAxis, n: int, length: int, call: RopeCall) -> AxisFrequencies:
        w = base_frequencies(axis.dim, axis.theta)
        if not self.active(axis, n, call):
            return AxisFrequencies(w)
        ids = list(self.corrected(axis))
        w = w.clone()
        if self.correction == "riflex":
            w[ids] = self.riflex_scale * 2 * math.pi / length
        else:
            s = length / self.train_length(axis)
            if s > 1:
                w[ids] = w[ids] / s
        return AxisFrequencies(w)

    def axis(self, axis, n, call):
        return self._frequencies(axis, n, n, call)

    def frequencies(self, axes, call):
        out = []
        for i, (axis, n) in enumerate(zip(axes, call.lengths)):
            length = self.lengths[i] if i < len(self.lengths) and self.lengths[i] else n
            out.append(self._frequencies(axis, n, length, call))
        return out


@dataclass
class UltraImageRopeConfig(PatchConfig):
    """RDFC on the model's RoPE for one stage (official FLUX defaults: the dominant frequency at 2 × the native
    length, riflex with r = 0.85, the sequence gate). The target length per axis is the stage's token grid."""

    what: ClassVar[str] = "UltraImage dominant-frequency RoPE"
    freq_ids: tuple[int, ...] | None = None
    train_scale: float = 2.0
    correction: str = "riflex"
    riflex_scale: float = 0.85
    gate: str = "sequence"

    def __post_init__(self) -> None:
        self.freq_ids = _freq_ids(self.freq_ids)
        UltraImageRope(self.freq_ids, self.train_scale, self.correction, self.riflex_scale, self.gate,
                       native_tokens=1)  # validates every field

    def build(self, env) -> RopePatch:
        model = env.model
        model.check_patch(self)
        axes = model.rope_axes()
        g = model.geometry
        grid = iter((env.stage.size[0] // g.multiple, env.stage.size[1] // g.multiple))
        lengths = tuple(None if a.native_len is None else next(grid, None) for a in axes)
        transform = UltraImageRope(self.freq_ids, self.train_scale, self.correction, self.riflex_scale, self.gate,
                                   text_tokens=model.text_tokens(env.cond),
                                   native_tokens=(g.native[0] // g.multiple) * (g.native[1] // g.multiple),
                                   lengths=lengths)
        for a in axes:
            if a.native_len is not None:
                transform.corrected(a)  # one line now for indices beyond the axis
        return RopePatch(model, transform)


# ---------------------------------------------------------------- attention concentration


def block_entropy(q: torch.Tensor, k: torch.Tensor, block: int = 128, scale: float | None = None,
                  max_elements: int = 2**26) -> torch.Tensor:
    """Mean block entropy per (batch, head) of softmax(q·kᵀ·scale) (module docstring); q, k [B, H, S, D].

    block > 1: q and k zero-padded to a multiple of `block` rows (padded keys join the softmax, padded queries
    the rows), the attention mass pooled into block × block tiles and divided by `block`; block = 1: the token
    entropy of every query row. Computed in float32, `max_elements` logits at a time. Returns [B, H] float32."""
    B, H, S, D = q.shape
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    q, k = q.float(), k.float()
    pad = (-S) % block
    if pad:
        q, k = F.pad(q, (0, 0, 0, pad)), F.pad(k, (0, 0, 0, pad))
    Sp = S + pad
    nb = Sp // block
    rows = max(block, (max_elements // max(1, B * H * Sp)) // block * block)
    mass = []
    for r0 in range(0, Sp, rows):
        p = torch.softmax(q[:, :, r0:r0 + rows] @ k.transpose(-1, -2) * scale, dim=-1)
        c = p.shape[2] // block
        mass.append(p.reshape(B, H, c, block, nb, block).sum(dim=(3, 5)))
    p = torch.cat(mass, dim=2) / block  # [B, H, nb, nb]: each row a distribution over key blocks
    ent = (-p * torch.log(p)).sum(-1)
    if ent.isnan().any():  # the official fallback: log 0 → p + 1e-8, then NaN → 0
        p = p + 1e-8
        ent = (-p * torch.log(p)).sum(-1)
    ent = torch.nan_to_num(ent, nan=0.0)
    return ent.mean(-1)


def focus_factors(entropy: torch.Tensor, lambda_min: float = 1.1, lambda_max: float = 1.3, gamma: float = 2.0,
                  h_min: float = 0.44, h_max: float = 6.0, mapping: str = "power") -> torch.Tensor:
    """λ per attention pattern from its entropy (module docstring; official FLUX constants as defaults)."""
    e = entropy.double()
    if h_max == h_min:  # one pattern (observed bounds): nothing to tell apart, no extra concentration
        return torch.full_like(e, lambda_min)
    if mapping == "power":
        z = (e - h_min) / (h_max - h_min)
        lam = lambda_min + (lambda_max - lambda_min) * torch.pow(1.0 - z, gamma)
        if not torch.isfinite(lam).all():
            raise ValueError(f"an attention entropy lies above h_max={h_max:g}, where (1 − z)^gamma is undefined for "
                             f"gamma={gamma:g}; raise h_max, use an integer gamma or bounds='observed'")
        return lam
    e = e.clamp(h_min, h_max)
    m = (lambda_min - lambda_max) / (h_max - h_min)
    return (m * e + (lambda_max - m * h_min)).clamp(lambda_min, lambda_max)


@dataclass
class UltraImageAttentionConfig(PatchConfig):
    """Entropy-guided adaptive attention concentration (official FLUX defaults: λ in [1.1, 1.3], γ = 2, power
    mapping, fixed bounds H ∈ [0.44, 6.0], 128-token blocks, the official measuring scale)."""

    what: ClassVar[str] = "UltraImage entropy-guided attention concentration"
    lambda_min: float = 1.1
    lambda_max: float = 1.3
    gamma: float = 2.0
    h_min: float = 0.44
    h_max: float = 6.0
    bounds: str = "fixed"
    mapping: str = "power"
    block: int = 128
    measure_scale: str = "official"

    def __post_init__(self) -> None:
        _positive("lambda_min", self.lambda_min)
        _positive("lambda_max", self.lambda_max)
        if self.lambda_max < self.lambda_min:
            raise ValueError(f"lambda_max must be >= lambda_min, got {self.lambda_max!r} < {self.lambda_min!r}")
        _positive("gamma", self.gamma)
        _positive("h_min", self.h_min, allow_zero=True)
        _positive("h_max", self.h_max)
        if self.h_max <= self.h_min:
            raise ValueError(f"h_max must be > h_min, got h_min={self.h_min!r}, h_max={self.h_max!r}")
        check_choice("entropy bounds", self.bounds, BOUNDS)
        check_choice("mapping", self.mapping, MAPPINGS)
        if isinstance(self.block, bool) or not isinstance(self.block, int) or self.block < 1:
            raise ValueError(f"block must be an integer >= 1 (128 official, 1 = token entropy), got {self.block!r}")
        check_choice("measure_scale", self.measure_scale, MEASURE_SCALES)

    def build(self, env) -> "UltraImageAttentionPatch":
        model = env.model
        model.check_patch(self)
        g = model.geometry
        text = model.text_tokens(env.cond)
        native = (g.native[0] // g.multiple) * (g.native[1] // g.multiple)
        if self.measure_scale == "official":
            train = (text + 4 * native, text + native)  # joint blocks, single blocks
        elif self.measure_scale == "proportional":
            train = (text + native, text + native)
        else:
            train = None
        return UltraImageAttentionPatch(self, model.transformer, train)

    def factors(self, entropy: torch.Tensor, observed: tuple[float, float] | None = None) -> torch.Tensor:
        lo, hi = observed if (self.bounds == "observed" and observed is not None) else (self.h_min, self.h_max)
        return focus_factors(entropy, self.lambda_min, self.lambda_max, self.gamma, lo, hi, self.mapping)


@dataclass
class _State:
    measuring: bool = False
    calls: dict = field(default_factory=dict)  # layer → invocations in the current velocity evaluation
    entropy: dict = field(default_factory=dict)  # (call, layer) → [B, H]
    lambdas: dict = field(default_factory=dict)  # (call, layer) → [B, H]

    def next_call(self, layer: int) -> int:
        n = self.calls.get(layer, 0)
        self.calls[layer] = n + 1
        return n


class UltraImageFluxAttnProcessor:
    """Flux joint/single attention that measures entropies (measuring call) or attends with λ·q (later calls)."""

    def __init__(self, state: _State, layer: int, block: int, train: tuple[int, int] | None):
        self.state, self.layer, self.block, self.train = state, layer, block, train

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, image_rotary_emb=None):
        from .windowed_attention import flux_joint_qkv

        q, k, v, joint = flux_joint_qkv(attn, hidden_states, encoder_hidden_states, image_rotary_emb)
        qh, kh, vh = (t.transpose(1, 2) for t in (q, k, v))  # [B, H, S, D]
        st = self.state
        call = st.next_call(self.layer)
        if st.measuring:
            st.entropy[(call, self.layer)] = block_entropy(qh, kh, self.block)
            scale = None
            if self.train is not None:
                train = self.train[0] if encoder_hidden_states is not None else self.train[1]
                scale = math.sqrt(math.log(kh.shape[2]) / math.log(train)) / math.sqrt(qh.shape[-1])
            out = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=attention_mask, scale=scale)
        else:
            known = [c for c, layer in st.lambdas if layer == self.layer]
            lam = st.lambdas[(min(call, max(known)), self.layer)]
            scaled = (qh.float() * lam[:, :, None, None].to(qh.device)).to(qh.dtype)  # one rounding, λ exact
            out = F.scaled_dot_product_attention(scaled, kh, vh, attn_mask=attention_mask)
        out = out.transpose(1, 2).flatten(2, 3).to(q.dtype)
        if encoder_hidden_states is not None:
            enc, img = out.split_with_sizes([encoder_hidden_states.shape[1],
                                             out.shape[1] - encoder_hidden_states.shape[1]], dim=1)
            img = attn.to_out[1](attn.to_out[0](img.contiguous()))
            enc = attn.to_add_out(enc.contiguous())
            return img, enc
        return out


class UltraImageAttentionPatch(ModulePatch):
    """Measures at the stage's first step (an extra model call), then attends with the per-head λ; the stock
    processors are back after every call, also after an error."""

    name = "ultraimage_attention"
    order = PatchOrder.ATTENTION

    def __init__(self, cfg: UltraImageAttentionConfig, transformer, train: tuple[int, int] | None):
        self.cfg, self.transformer, self.train = cfg, transformer, train
        self.state = _State()

    @contextmanager
    def _processors(self, measuring: bool):
        st = self.state
        st.measuring, st.calls = measuring, {}
        original = self.transformer.attn_processors
        procs = {name: UltraImageFluxAttnProcessor(st, i, self.cfg.block, self.train)
                 for i, name in enumerate(original)}
        self.transformer.set_attn_processor(procs)
        try:
            yield
        finally:
            self.transformer.set_attn_processor(original)

    def measure(self, fn, x, ctx, cond) -> None:
        """The measuring call: entropies → λ per (call, layer, head) for the rest of the stage."""
        st = self.state
        st.entropy = {}
        with self._processors(measuring=True):
            fn(x, ctx, cond)
        values = torch.stack([e.flatten() for e in st.entropy.values()])
        observed = (float(values.min()), float(values.max()))
        st.lambdas = {key: self.cfg.factors(e, observed).float() for key, e in st.entropy.items()}

    def wrap(self, fn):
        def patched(x, ctx, cond):
            if ctx.step == 0 or not self.state.lambdas:
                self.measure(fn, x, ctx, cond)
            with self._processors(measuring=False):
                return fn(x, ctx, cond)

        return patched
