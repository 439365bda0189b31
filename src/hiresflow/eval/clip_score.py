"""CLIP score with transformers' CLIP, only when the weights are available locally.

CLIP score (Hessel et al. 2021, "CLIPScore", eq. 1 with w = 100 as in torchmetrics):

    CLIP(x, c) = 100 · max(cos(E_img(x), E_txt(c)), 0),   averaged over images,

with the prompt that produced the image, truncated to the text model's 77 tokens (evaluation.md §1, pitfall 4).
Images go through the model's own image processor (resize shortest side, centre crop, normalise).

Weights: `HIRESFLOW_CLIP_MODEL` (a local folder or a hub id already in the Hugging Face cache), default
`openai/clip-vit-large-patch14` (torchmetrics' default); loaded with `local_files_only=True`, so nothing is ever
downloaded. Without them `load_clip_scorer` raises `MetricUnavailable` and reports print "n/c".
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .inception import to_uint8_hwc
from .score import MetricUnavailable

__all__ = ["ClipScorer", "load_clip_scorer", "DEFAULT_CLIP_MODEL"]

DEFAULT_CLIP_MODEL = "openai/clip-vit-large-patch14"
_ENV = "HIRESFLOW_CLIP_MODEL"


class ClipScorer:
    """Per-image CLIP scores for (image, prompt) pairs (module doc)."""

    def __init__(self, model, tokenizer, image_processor, device: str | torch.device | None = None,
                 name: str = "clip", batch_size: int = 16):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.eval().to(self.device)
        self.tokenizer = tokenizer
        self.processor = image_processor
        self.name = name
        self.batch_size = batch_size
        self.max_length = int(min(77, model.config.text_config.max_position_embeddings))

    @classmethod
    def from_pretrained(cls, name_or_path: str, device: str | torch.device | None = None) -> "ClipScorer":
        """Load model, tokenizer and image processor from a local folder / cached hub id (never downloads)."""
        from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

        try:
            model = CLIPModel.from_pretrained(name_or_path, local_files_only=True)
            tok = AutoTokenizer.from_pretrained(name_or_path, local_files_only=True)
            proc = AutoImageProcessor.from_pretrained(name_or_path, local_files_only=True)
        except (OSError, ValueError) as err:
            raise MetricUnavailable(
                f"CLIP score not computed: CLIP weights {name_or_path!r} are not available locally "
                f"({type(err).__name__}); set {_ENV} to a local CLIP folder or pre-fill the HF cache"
            ) from None
        return cls(model, tok, proc, device, name=str(name_or_path))

    @torch.no_grad()
    def __call__(self, images: Sequence, prompts: Sequence[str]) -> np.ndarray:
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts; pass one prompt per image")
        out = []
        for s in range(0, len(images), self.batch_size):
            ims = [to_uint8_hwc(im) for im in images[s:s + self.batch_size]]
            txt = self.tokenizer(list(prompts[s:s + self.batch_size]), padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt")
            pix = self.processor(images=ims, return_tensors="pt")["pixel_values"]
            res = self.model(input_ids=txt["input_ids"].to(self.device),
                             attention_mask=txt["attention_mask"].to(self.device) if "attention_mask" in txt else None,
                             pixel_values=pix.to(self.device, self.model.dtype))
            ie = torch.nn.functional.normalize(res.image_embeds.double(), dim=-1)
            te = torch.nn.functional.normalize(res.text_embeds.double(), dim=-1)
            out.append((100.0 * (ie * te).sum(-1).clamp(min=0)).cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0)


def load_clip_scorer(device: str | torch.device | None = None, name_or_path: str | None = None) -> ClipScorer:
    """`name_or_path`, else $HIRESFLOW_CLIP_MODEL, else the torchmetrics default — local files only."""
    from ..settings import current

    name = name_or_path or current().clip_model or DEFAULT_CLIP_MODEL
    return ClipScorer.from_pretrained(name, device)
