"""Reversible model patches, active for the duration of one model call with the step passed in.

A patch wraps the velocity function of a stage: `wrap(fn)` returns fn'(x, ctx, cond). Two kinds:
- input patches (level 0) change what the model is called on: text duplication, shifted patchification;
- module patches (level 1) swap a diffusers module or attention processor in, call the model, and put the
  original back in a `finally` — so between calls (and after an error) the model is exactly the stock model,
  and nothing counts calls: every decision reads `ctx.step`, `ctx.n_steps`, `ctx.sigma`.
The runner wraps input patches outside module patches, so module patches see the final (padded) input.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch

from ..flow.sampler import StepContext

__all__ = ["PatchFn", "Patch", "ModulePatch", "PatchConfig", "swapped", "compose_patches", "require_family"]

PatchFn = Callable[[torch.Tensor, StepContext, Any], torch.Tensor]


@contextmanager
def swapped(obj: Any, name: str, new: Any) -> Iterator[None]:
    """Set obj.name = new for the duration of the block; always restore the original object."""
    old = getattr(obj, name)
    setattr(obj, name, new)
    try:
        yield
    finally:
        setattr(obj, name, old)


class Patch:
    level = 0
    name = "patch"

    def wrap(self, fn: PatchFn) -> PatchFn:  # pragma: no cover - interface
        raise NotImplementedError


class ModulePatch(Patch):
    """A patch that is applied around each model call (when `active(ctx)`) and removed right after."""

    level = 1

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


class PatchConfig:
    """Base for patch configs (plain dataclasses): `build(env)` → Patch for one stage."""

    def build(self, env) -> Patch:  # pragma: no cover - interface
        raise NotImplementedError


def require_family(model, families: tuple[str, ...], what: str) -> None:
    if getattr(model, "family", None) not in families:
        raise ValueError(f"{what} applies to {'/'.join(families)} models; {model.name!r} is {model.family}; "
                         f"switch it off for this model")


def compose_patches(fn: PatchFn, patches: list[Patch]) -> PatchFn:
    """Wrap fn so that the first listed patch of the lowest level is outermost."""
    ordered = sorted(enumerate(patches), key=lambda ip: (ip[1].level, ip[0]))
    for _, p in reversed(ordered):
        fn = p.wrap(fn)
    return fn
