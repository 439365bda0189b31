"""Reference-world metrics: does a generated landscape show what its prompt says, once?

The detectors of `hiresflow.world` (exact on ground-truth renders at any size) read each image; the expectations
come from the prompt through `hiresflow.world.parse_prompt`, so listed prompts work as well as sampled scenes.

Per image:
- duplicated: the number of sun/moon discs ≠ 1 (the classic failure of direct high-resolution sampling —
  repeated suns, moons, objects);
- trees_ok / houses_ok: detected counts equal the counts the prompt states (a house = 1, none = 0);
- time_ok: detected time of day (day / sunset / night) equals the prompt's; body_ok: sun vs moon;
  color_ok: colour of the disc equals the prompt's colour word.

Rates over n images (a check is skipped for a prompt that does not state it; n then counts the stated ones):
dup_rate (↓), count_acc = trees_ok ∧ houses_ok (↑), tree_acc, house_acc, attr_acc = time_ok ∧ body_ok (↑),
time_acc, color_acc. Prompts that are not reference-world scene prompts (no sun/moon word) are not scored.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from . import metrics as _metrics
from .score import Score, not_computed

__all__ = ["WorldCheck", "check_world_image", "world_scores", "WORLD_METRICS", "is_world_prompt"]

#: name → (description, higher is better): the registry's metrics computed by the world detectors
WORLD_METRICS: dict[str, tuple[str, bool]] = {
    m.key: (m.about, bool(m.higher_is_better)) for m in _metrics.registry() if m.compute is _metrics.world_checks
}


def is_world_prompt(prompt: str) -> bool:
    """True for reference-world scene prompts (they name a sun or a moon)."""
    from ..world import parse_prompt

    p = parse_prompt(prompt)
    return p.get("kind") == "scene" and p.get("body") is not None


@dataclass
class WorldCheck:
    """Detections on one image and their agreement with the prompt (None = not stated by the prompt)."""

    detected: dict
    expected: dict
    duplicated: bool
    trees_ok: bool | None
    houses_ok: bool | None
    time_ok: bool | None
    body_ok: bool | None
    color_ok: bool | None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def check_world_image(image: np.ndarray, prompt: str) -> WorldCheck:
    """Detect and compare one uint8 (H, W, 3) image against its prompt."""
    from ..world import attributes, parse_prompt

    p = parse_prompt(prompt)
    det = attributes(np.asarray(image))
    exp = {"trees": int(p["trees"]), "houses": int(bool(p["house"])), "time": p["time"], "body": p["body"],
           "color": p["color"]}

    def same(key_det: str, key_exp: str) -> bool | None:
        return None if exp[key_exp] is None else det[key_det] == exp[key_exp]

    return WorldCheck(
        detected=det, expected=exp, duplicated=det["suns"] != 1,
        trees_ok=det["trees"] == exp["trees"], houses_ok=det["houses"] == exp["houses"],
        time_ok=same("time", "time"), body_ok=same("body", "body"), color_ok=same("body_color", "color"),
    )


def _rate(name: str, flags: list[bool | None]) -> Score:
    vals = [bool(f) for f in flags if f is not None]
    if not vals:
        return not_computed(name, "no prompt states this attribute")
    return Score(name, float(np.mean(vals)), None, len(vals))


def world_scores(images: Sequence[np.ndarray], prompts: Sequence[str]) -> tuple[dict[str, Score], list[dict]]:
    """(scores by WORLD_METRICS name, per-image check dicts) for uint8 images and their prompts."""
    if len(images) != len(prompts):
        raise ValueError(f"{len(images)} images but {len(prompts)} prompts; pass one prompt per image")
    checks: list[WorldCheck | None] = [
        check_world_image(im, pr) if is_world_prompt(pr) else None for im, pr in zip(images, prompts)
    ]
    valid = [c for c in checks if c is not None]
    if not valid:
        reason = "no reference-world prompts (world metrics read the sun/moon, trees, houses and time of day)"
        return {k: not_computed(k, reason) for k in WORLD_METRICS}, [{} for _ in checks]
    out = {
        "dup_rate": _rate("dup_rate", [c.duplicated for c in valid]),
        "count_acc": _rate("count_acc", [bool(c.trees_ok and c.houses_ok) for c in valid]),
        "tree_acc": _rate("tree_acc", [c.trees_ok for c in valid]),
        "house_acc": _rate("house_acc", [c.houses_ok for c in valid]),
        "attr_acc": _rate("attr_acc", [None if c.time_ok is None or c.body_ok is None else c.time_ok and c.body_ok
                                       for c in valid]),
        "time_acc": _rate("time_acc", [c.time_ok for c in valid]),
        "color_acc": _rate("color_acc", [c.color_ok for c in valid]),
    }
    return out, [c.to_dict() if c is not None else {} for c in checks]
