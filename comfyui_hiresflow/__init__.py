"""hiresflow for ComfyUI: high-resolution generation recipes (HiFlow, I-Max, DyPE, DemoFusion, FreeScale, …) on
ComfyUI's own models. Needs the `hiresflow` package installed in ComfyUI's Python (see pyproject.toml)."""

from .nodes import NODE_IDS, comfy_entrypoint

__all__ = ["NODE_IDS", "comfy_entrypoint"]
