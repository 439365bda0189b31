"""Reversible tools the U-Net patches are built from: temporary hooks, conv geometry, processor swaps, seeds.

Everything here is undone in a `finally`, so after a model call — also one that raised — the U-Net is the stock
module again (hooks removed, convs back to their stride/padding/dilation, processors restored). Convs wrapped
by a peft LoRA layer are handled: the base conv and the LoRA down-projection convs (same kernel) change together,
so the LoRA delta is applied with the same geometry as the weight it adapts.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator

import torch
from torch import nn

__all__ = ["TemporaryHooks", "spatial_convs", "conv_geometry", "swapped_processors", "feature_grids",
           "derived_seed", "replace_output"]


class TemporaryHooks:
    """Forward (pre-)hooks registered for one model call; `remove()` (always run) takes them all off."""

    def __init__(self) -> None:
        self.handles: list[Any] = []

    def pre(self, module: nn.Module, fn: Callable, with_kwargs: bool = False) -> None:
        self.handles.append(module.register_forward_pre_hook(fn, with_kwargs=with_kwargs))

    def post(self, module: nn.Module, fn: Callable) -> None:
        self.handles.append(module.register_forward_hook(fn))

    def remove(self) -> None:
        while self.handles:
            self.handles.pop().remove()

    def __enter__(self) -> "TemporaryHooks":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def replace_output(out: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """Apply fn to a module's main output: a tensor, or the first element of a tuple (return_dict=False)."""
    if isinstance(out, torch.Tensor):
        return fn(out)
    if isinstance(out, tuple) and out and isinstance(out[0], torch.Tensor):
        return (fn(out[0]),) + tuple(out[1:])
    raise TypeError(f"cannot patch a module output of type {type(out).__name__}; expected a tensor or a tuple")


def spatial_convs(module: nn.Module) -> list[nn.Conv2d]:
    """The `nn.Conv2d`s that carry `module`'s spatial kernel: itself, or a peft LoRA layer's base conv plus its
    LoRA down-projections of the same kernel size."""
    if isinstance(module, nn.Conv2d):
        return [module]
    base = module.get_base_layer() if hasattr(module, "get_base_layer") else None
    if isinstance(base, nn.Conv2d):
        convs = [base]
        for a in dict(getattr(module, "lora_A", {}) or {}).values():
            if isinstance(a, nn.Conv2d) and tuple(a.kernel_size) == tuple(base.kernel_size):
                convs.append(a)
        return convs
    raise TypeError(f"expected a Conv2d (or a LoRA layer around one), got {type(module).__name__}")


@contextmanager
def conv_geometry(modules: Iterable[nn.Module], *, stride=None, padding=None, dilation=None) -> Iterator[None]:
    """Run the convs of `modules` with another stride / padding / dilation (same weights) inside the block."""
    saved: list[tuple[nn.Conv2d, Any, Any, Any]] = []
    try:
        for m in modules:
            for c in spatial_convs(m):
                saved.append((c, c.stride, c.padding, c.dilation))
                if stride is not None:
                    c.stride = tuple(stride)
                if padding is not None:
                    c.padding = tuple(padding)
                if dilation is not None:
                    c.dilation = tuple(dilation)
        yield
    finally:
        for c, s, p, d in reversed(saved):
            c.stride, c.padding, c.dilation = s, p, d


@contextmanager
def swapped_processors(pairs: Iterable[tuple[nn.Module, Callable[[Any], Any]]]) -> Iterator[None]:
    """For each (attention module, make) set the processor to make(current processor); restore all after."""
    saved: list[tuple[nn.Module, Any]] = []
    try:
        for attn, make in pairs:
            old = attn.processor
            saved.append((attn, old))
            attn.set_processor(make(old))
        yield
    finally:
        for attn, old in reversed(saved):
            attn.set_processor(old)


def feature_grids(hooks: TemporaryHooks, transformers: Iterable[nn.Module], on_grid: Callable) -> None:
    """Call on_grid(transformer, (H, W)) with the feature-map size each `Transformer2DModel` is called on."""
    for t in transformers:
        def pre(module, args, kwargs, _t=t):
            x = args[0] if args else kwargs["hidden_states"]
            on_grid(_t, (int(x.shape[-2]), int(x.shape[-1])))
        hooks.pre(t, pre, with_kwargs=True)


def derived_seed(base: int, *parts: object) -> int:
    """A 63-bit seed from a base seed and labels (step, block index, patch name): same inputs ⇒ same seed."""
    h = hashlib.blake2b(repr((int(base),) + tuple(parts)).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & (2**63 - 1)
