"""Building blocks of reversible model patches (the protocol — `ModelPatch`, `PatchOrder` — is `hiresflow.stage`).

Two kinds, both active for the duration of one model call with the step passed in:
- input patches (`PatchOrder.INPUT`) change what the model is called on: text duplication, shifted patchification;
- module patches swap a diffusers module or attention processor in, call the model, and put the original back in
  a `finally` — so between calls (and after an error) the model is exactly the stock model, and nothing counts
  calls: every decision reads `ctx.step`, `ctx.n_steps`, `ctx.sigma`.
`compose_patches` nests them by `PatchOrder` (outermost first), ties in plan order.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch

from ..stage import ModelPatch, PatchConfig, PatchFn, PatchOrder, StepContext

__all__ = ["PatchFn", "ModelPatch", "ModulePatch", "PatchConfig", "PatchOrder", "swapped", "compose_patches"]


@contextmanager
def swapped(obj: Any, name: str, new: Any) -> Iterator[None]:
    """Set obj.name = new for the duration of the block; always restore the original object."""
    old = getattr(obj, name)
    setattr(obj, name, new)
    try:
        yield
    finally:
        setattr(obj, name, old)


class ModulePatch(ModelPatch):
    """A patch that is applied around each model call (when `active(ctx)`) and removed right after."""

    order = PatchOrder.LAYERS

    def active(self, ctx: StepContext) -> bool:
        return True

    @contextmanager
    def applied(self, x: torch.Tensor, ctx: StepContext) -> Iterator[None]:  # pragma: no cover - interface
        yield

    def wrap(self, fn: PatchFn) -> PatchFn:
        def patched(x, ctx, cond):
            if not self.active(ctx):
                return fn(x, ctx, cond)
            with self.applied(x, ctx):
                return fn(x, ctx, cond)

        return patched


def compose_patches(fn: PatchFn, patches: list[ModelPatch]) -> PatchFn:
    """Wrap fn so that patches nest by `PatchOrder` (INPUT outermost), the first listed outermost on ties."""
    ordered = sorted(enumerate(patches), key=lambda ip: (int(ip[1].order), ip[0]))
    for _, p in reversed(ordered):
        fn = p.wrap(fn)
    return fn
