"""One image across several processes: diffusers' context parallelism on the transformer of a DiT recipe.

    torchrun --nproc-per-node 4 -m hiresflow generate "a lake at dawn" --model FOLDER --size 4096x4096 --parallel 4

Every process loads the model and runs the same plan with the same seed; inside each transformer call diffusers
splits the token sequence across the processes (`ModelMixin.enable_parallelism(config=ContextParallelConfig(…))`,
the model's `_cp_plan` says which inputs are split and where the output is gathered) and the attention exchanges
keys and values: "ring" (`ring_degree`: K/V all-gathered and the partial attentions merged by their log-sum-exp)
or "ulysses" (`ulysses_degree`: all-to-all from sequence shards to head shards and back). The gathered velocity is
the same on every process, so everything outside the transformer — the sampler, HiFlow's and I-Max's guides,
the VAE — runs unchanged (and identically) on each; rank 0 writes the files. No loop of hiresflow's own splits work.

Choices forced by diffusers 0.42.1 and torch (checked, not patched):
- `_resolve_parallel_config` places rank r on `torch.device(accelerator, r % torch.accelerator.device_count())`,
  a division by zero on a machine without an accelerator; on the CPU hiresflow resolves the config itself (the
  same steps with device "cpu" and a CPU device mesh) and then calls `enable_parallelism`;
- ring attention needs the attention's log-sum-exp, which diffusers' "native" backend does not return and whose
  `_native_flash` backend (`aten._scaled_dot_product_flash_attention`) has no CPU kernel, so on the CPU the mode
  is "ulysses" (gloo has all-to-all in torch ≥ 2.x); on CUDA "ring" (with `_native_flash`) is the default and
  "ulysses" the alternative (heads must divide by the degree);
- xDiT (xfuser 0.7) raises NotImplementedError without an accelerator, so it is not used here.

The batch path (`hiresflow batch` under `accelerate launch`: one prompt per process) is unrelated and unchanged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from .caching import denoiser_of

__all__ = ["ParallelSpec", "world", "init_distributed", "enable_context_parallel", "check_parallel", "is_main"]

MODES = ("auto", "ring", "ulysses")


@dataclass(frozen=True)
class ParallelSpec:
    """`degree` processes on one image; `mode` "ring", "ulysses" or "auto" (ulysses on CPU, ring on CUDA)."""

    degree: int
    mode: str = "auto"

    def __post_init__(self) -> None:
        if isinstance(self.degree, bool) or not isinstance(self.degree, int) or self.degree < 1:
            raise ValueError(f"--parallel must be a whole number of processes >= 1, got {self.degree!r}")
        if self.mode not in MODES:
            raise ValueError(f"parallel mode must be one of {', '.join(MODES)}, got {self.mode!r}")

    def resolved_mode(self, device: torch.device) -> str:
        if self.mode != "auto":
            return self.mode
        return "ring" if device.type == "cuda" else "ulysses"


def world() -> tuple[int, int]:
    """(rank, world size) of this process: torch.distributed when initialised, else torchrun's variables, else
    (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def is_main() -> bool:
    return world()[0] == 0


def check_parallel(spec: ParallelSpec) -> None:
    """One-line errors before anything loads: --parallel N needs exactly N processes from torchrun."""
    rank, size = world()
    if spec.degree == 1:
        return
    if "WORLD_SIZE" not in os.environ and size == 1:
        raise ValueError(f"--parallel {spec.degree} runs one image on {spec.degree} processes; start it with "
                         f"torchrun --nproc-per-node {spec.degree} -m hiresflow generate ...")
    if size != spec.degree:
        raise ValueError(f"--parallel {spec.degree} needs {spec.degree} processes but torchrun started {size}; "
                         f"use --nproc-per-node {spec.degree} or --parallel {size}")


def init_distributed(device: torch.device) -> tuple[int, int]:
    """Initialise the default process group from torchrun's environment (nccl on CUDA, gloo on the CPU)."""
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size()


def _cpu_resolver(module):
    """`ModelMixin._resolve_parallel_config` with the device "cpu" (diffusers divides by the accelerator count)."""
    import torch.distributed as dist
    from diffusers.models._modeling_parallel import ContextParallelConfig, ParallelConfig

    def resolve(config):
        if isinstance(config, ContextParallelConfig):
            config = ParallelConfig(context_parallel_config=config)
        cp = config.context_parallel_config
        mesh = cp.mesh or dist.device_mesh.init_device_mesh("cpu", mesh_shape=cp.mesh_shape,
                                                            mesh_dim_names=cp.mesh_dim_names)
        config.setup(dist.get_rank(), dist.get_world_size(), torch.device("cpu"), mesh=mesh)
        module._parallel_config = config
        return config

    return resolve


def enable_context_parallel(model, spec: ParallelSpec) -> str:
    """Turn on diffusers' context parallelism on `model`'s transformer (torch.distributed already initialised);
    returns a one-line description."""
    den = denoiser_of(model)
    if getattr(den, "_cp_plan", None) is None or not hasattr(den, "enable_parallelism"):
        raise ValueError(f"{model.name!r} ({type(den).__name__}) has no context-parallel plan in diffusers; "
                         f"--parallel works on DiT families whose transformer declares one (e.g. FLUX)")
    _, size = world()
    check_parallel(spec)
    from diffusers import ContextParallelConfig

    device = model.device
    mode = spec.resolved_mode(device)
    if mode == "ring" and device.type != "cuda":
        raise ValueError("ring attention needs the attention's log-sum-exp, which diffusers computes on CUDA only; "
                         "use the ulysses mode on the CPU")
    uneven = device.type == "cuda"  # NCCL gathers shards of unequal length; gloo's all_gather needs equal ones
    if mode == "ulysses":
        heads = int(getattr(den.config, "num_attention_heads", 0) or 0)
        if heads % spec.degree:
            raise ValueError(f"ulysses splits the {heads} attention heads over {spec.degree} processes, which does "
                             f"not divide them; use a degree that divides {heads} or the ring mode on CUDA")
        cfg = ContextParallelConfig(ulysses_degree=spec.degree, ulysses_anything=uneven)
    else:
        cfg = ContextParallelConfig(ring_degree=spec.degree, ring_anything=uneven)
        den.set_attention_backend("_native_flash")
    if device.type == "cpu":
        den._resolve_parallel_config = _cpu_resolver(den)  # instance attribute: shadows the method for this call
        try:
            den.enable_parallelism(config=cfg)
        finally:
            del den._resolve_parallel_config
    else:
        den.enable_parallelism(config=cfg)
    return f"context parallel: {mode}, {size} processes ({device.type})"


def check_plan(model, plan, spec: ParallelSpec) -> None:
    """One-line errors for plans a sequence shard cannot run exactly: patches that read the whole token grid inside
    one call (proportional attention's log N scale, shifted patchification's padded frame, attention processors that
    replace diffusers' dispatched attention), and, on the CPU (gloo gathers equal shards only), token counts that the
    degree does not divide."""
    from .patches.attention import ProportionalAttentionConfig
    from .patches.shifted_patches import ShiftedPatchesConfig
    from .patches.ultraimage import UltraImageAttentionConfig
    from .patches.windowed_attention import WindowedAttentionConfig

    if spec.degree == 1:
        return
    names = {ProportionalAttentionConfig: "proportional_attention=False", ShiftedPatchesConfig: "shifted_patches=False",
             WindowedAttentionConfig: "windowed_attention=None", UltraImageAttentionConfig: "a recipe without it"}
    for s, stage in enumerate(plan.stages):
        for patch in stage.patches:
            for cls, fix in names.items():
                if isinstance(patch, cls):
                    raise ValueError(f"stage {s}: {getattr(patch, 'what', cls.__name__)} reads the whole token grid "
                                     f"inside one call, which a context-parallel shard does not see; --set {fix} "
                                     f"with --parallel")
    if model.device.type == "cuda":
        return
    from .resources import _stage_calls

    g = model.geometry
    for s, stage in enumerate(plan.stages):
        _, lh, lw = g.latent_shape(*stage.size)
        for (ch, cw), _, _ in _stage_calls(model, stage):
            tokens = (ch // g.patch) * (cw // g.patch)
            text = int(getattr(model, "text_len", 0) or 0)
            for what, n in (("image tokens", tokens), ("text tokens", text)):
                if n % spec.degree:
                    raise ValueError(f"stage {s}: {n} {what} do not split evenly over {spec.degree} CPU processes "
                                     f"(gloo gathers equal shards only); choose a size or degree that divides them, "
                                     f"or run on CUDA")
