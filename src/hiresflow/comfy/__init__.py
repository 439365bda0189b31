"""hiresflow on ComfyUI's model backend: every recipe on a ComfyUI MODEL / VAE (the node pack `comfyui_hiresflow`).

- `hiresflow.comfy.model`: `ComfyFlowModel`, a `FlowModel` over a ComfyUI `ModelPatcher`, its conditioning and
  `VAE` (velocity in hiresflow's flow frame, CFG as ComfyUI applies it, encode/decode through ComfyUI's VAE);
- `hiresflow.comfy.convert`: the embedded models converted to ComfyUI's checkpoint layouts (key renaming);
- `hiresflow.comfy.loader`: ComfyUI's own model classes built with widths read from a checkpoint's tensors;
- `hiresflow.comfy.text`: the embedded models' text encoders as a ComfyUI CLIP input;
- `hiresflow.comfy.rope`: the RoPE family and proportional attention on ComfyUI's FLUX position embedder.

Everything but `convert` imports ComfyUI's `comfy` package, so import those modules inside a ComfyUI process only.
"""
