"""The embedded models' text encoders as a ComfyUI `CLIP` input (what `CLIPTextEncode` calls on it).

The embedded models use their own small tokenizers (93-token vocabularies), which ComfyUI's CLIP classes cannot
host; this object encodes through the library's own adapter (`hiresflow.models.loading.load_model`), so a
ComfyUI conditioning carries exactly the embeddings `hiresflow.generate` uses:
- FLUX: [[T5 embeddings [1, L, D], {"pooled_output": CLIP pooled [1, P]}]] (diffusers `FluxPipeline.encode_prompt`),
- SD: [[CLIP embeddings [1, 77, D], {}]] (diffusers `StableDiffusionPipeline.encode_prompt`).
`CLIPTextEncode` calls `tokenize(text)` then `encode_from_tokens_scheduled(tokens)` (ComfyUI's nodes.py).
"""

from __future__ import annotations

from functools import cached_property

import torch

__all__ = ["EmbeddedTextEncoder"]


class EmbeddedTextEncoder:
    """Duck-typed ComfyUI CLIP for an embedded model name ("tiny-flux", "tiny-sd")."""

    def __init__(self, name: str):
        self.name = name

    @cached_property
    def model(self):
        from ..models.loading import load_model

        return load_model(self.name, device="cpu")

    def tokenize(self, text: str, **_) -> dict:
        if not isinstance(text, str):
            raise ValueError(f"the prompt must be text, got {type(text).__name__}")
        return {"hiresflow_text": text}

    @torch.no_grad()
    def encode_text(self, text: str) -> list:
        model = self.model
        if model.family == "flux":
            cond = model._encode(text)
            return [[cond.prompt_embeds.float().cpu(), {"pooled_output": cond.pooled.float().cpu()}]]
        pe, _ = model.pipe.encode_prompt(text, model.device, 1, False)
        return [[pe.float().cpu(), {}]]

    def encode_from_tokens_scheduled(self, tokens: dict, add_dict: dict | None = None, **_) -> list:
        out = self.encode_text(tokens.get("hiresflow_text", ""))
        if add_dict:
            out = [[c, {**d, **add_dict}] for c, d in out]
        return out

    def encode_from_tokens(self, tokens: dict, return_pooled: bool = False, **_):
        cond, extra = self.encode_text(tokens.get("hiresflow_text", ""))[0]
        return (cond, extra.get("pooled_output")) if return_pooled else cond
