"""Procedural reference world: landscapes renderable at any resolution.

Used to train tiny text-to-image models (64 px native) and to measure
high-resolution outputs against ground truth::

    from hiresflow.world import sample_scene, render, prompt_for, attributes
    scene = sample_scene(0)
    img = render(scene, 512, 512)          # uint8 HxWx3, detail grows with size
    prompt_for(scene)                      # "a yellow sun shining over ..."
    attributes(img)                        # {"time": "day", "suns": 1, "trees": 3, ...}
"""

from .detectors import (
    attributes,
    detect_body_color,
    detect_houses,
    detect_suns,
    detect_time_of_day,
    detect_trees,
)
from .heldout import heldout_prompt
from .prompts import closeup_prompt, parse_prompt, prompt_for, vocabulary
from .render import default_window, render, render_batch, render_float
from .scene import Body, Cloud, House, Lake, Mountains, Scene, Tree, sample_scene
from .views import dataset_batch, sample_view

__all__ = [
    "Scene",
    "Body",
    "Mountains",
    "Lake",
    "Tree",
    "House",
    "Cloud",
    "sample_scene",
    "render",
    "render_float",
    "render_batch",
    "default_window",
    "prompt_for",
    "closeup_prompt",
    "heldout_prompt",
    "vocabulary",
    "parse_prompt",
    "sample_view",
    "dataset_batch",
    "detect_suns",
    "detect_trees",
    "detect_houses",
    "detect_time_of_day",
    "detect_body_color",
    "attributes",
]
