"""The pack's example workflows in API format (`example_workflows/api/`): the embedded-model ones run in ComfyUI's
executor; the FLUX, SDXL and Qwen-Image ones pass ComfyUI's validation except for their model files, which this
machine does not have. Their UI-format twins are checked in test_ui_workflows.py and test_browser.py."""

from __future__ import annotations

import json

import pytest

from comfy_harness import PACK

FOLDER = PACK / "example_workflows" / "api"
FILE_INPUTS = {"unet_name", "ckpt_name", "clip_name", "clip_name1", "clip_name2", "vae_name"}


def workflows(embedded: bool) -> list[str]:
    names = sorted(p.name for p in FOLDER.glob("*.json"))
    return [n for n in names if n.startswith("tiny-") == embedded]


def test_examples_are_shipped():
    assert len(workflows(True)) >= 4 and len(workflows(False)) >= 3


@pytest.mark.slow
@pytest.mark.parametrize("name", workflows(True))
def test_embedded_workflow_runs(comfy, name):
    graph = json.loads((FOLDER / name).read_text())
    out = comfy.run(graph)
    assert out.valid, out.validation
    assert out.success, out.error
    prefixes = [n["inputs"]["filename_prefix"] for n in graph.values() if n["class_type"] == "SaveImage"]
    for prefix in prefixes:
        assert list(comfy.output.glob(f"{prefix}_*.png")), f"{name} saved no image {prefix}"


@pytest.mark.parametrize("name", workflows(False))
def test_checkpoint_workflow_validates_but_for_the_model_files(comfy, name):
    graph = json.loads((FOLDER / name).read_text())
    out = comfy.run(graph)
    assert not out.valid  # the checkpoints are not on this machine
    errors = [(node, e) for node, info in out.validation[3].items() for e in info["errors"]]
    assert errors
    for node, e in errors:
        assert e["type"] == "value_not_in_list", (node, e)
        assert e["extra_info"]["input_name"] in FILE_INPUTS, (node, e)
