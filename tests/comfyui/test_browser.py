"""ComfyUI's own frontend (`comfyui-frontend-package`) in headless Chromium, against the real server with the pack:
every UI-format example workflow loads without a validation toast or a missing-nodes dialog and the frontend's
"graph to prompt" gives exactly its API graph; the FLUX workflow's screenshot (the one in docs/usage/comfyui.md) is
retaken and checked non-blank and different from the empty canvas.

`HIRESFLOW_COMFYUI_SCREENSHOT=docs/assets/comfyui-flux-workflow.png` also writes the screenshot there (palette PNG).
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from comfy_fixture import fixture_missing
from comfy_harness import PACK

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/chromium.py
from chromium import ARGS, CHROMIUM, requirements  # noqa: E402

FOLDER = PACK / "example_workflows"
NAMES = sorted(p.stem for p in (FOLDER / "api").glob("*.json"))
VIEWPORT = {"width": 1280, "height": 800}
SETTINGS = {  # a returning user's clean canvas: no first-run template dialog, canvas statistics, minimap or tab row
    "Comfy.TutorialCompleted": True,
    "Comfy.Graph.CanvasInfo": False,
    "Comfy.Minimap.Visible": False,
    "Comfy.Workflow.WorkflowTabsPosition": "Sidebar",
}

# The frontend's model-to-node table (`useModelToNodeStore`) names UpscaleModelLoader, which this test environment
# cannot import (no spandrel/torchvision); with it missing the frontend throws while building the `vae_name` and
# `ckpt_name` widgets and leaves VAELoader / CheckpointLoaderSimple unconfigured. A real install has the node; the
# test adds its definition to /object_info in the browser when the server lacks it.
UPSCALE_MODEL_LOADER = {
    "input": {"required": {"model_name": [[]]}}, "input_order": {"required": ["model_name"]},
    "output": ["UPSCALE_MODEL"], "output_is_list": [False], "output_name": ["UPSCALE_MODEL"],
    "name": "UpscaleModelLoader", "display_name": "Load Upscale Model", "description": "",
    "python_module": "comfy_extras.nodes_upscale_model", "category": "loaders", "output_node": False,
}

pytestmark = pytest.mark.slow


def _object_info(route):
    response = route.fetch()
    info = response.json()
    info.setdefault("UpscaleModelLoader", UPSCALE_MODEL_LOADER)
    route.fulfill(response=response, json=info)


@pytest.fixture(scope="module")
def comfy_page(tmp_path_factory):
    """A function opening a fresh page (its own browser context: no tabs left by another test) on the server."""
    reason = fixture_missing()
    if reason:
        pytest.skip(reason)
    sync_api = requirements()
    if not _has_frontend():
        pytest.skip("comfyui-frontend-package is not installed: python tests/comfyui/comfy_fixture.py install")
    from comfy_server import running

    with running(tmp_path_factory.mktemp("comfy-server")) as (url, _info):
        req = urllib.request.Request(f"{url}/settings", data=json.dumps(SETTINGS).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=30).read()
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)

            def open_page():
                pg = browser.new_context(viewport=VIEWPORT).new_page()
                pg.route("**/object_info", _object_info)
                pg.goto(url, wait_until="load")
                pg.wait_for_function("() => window.app && window.app.graph && window.app.canvas", timeout=120_000)
                pg.wait_for_timeout(1500)
                return pg

            try:
                yield open_page
            finally:
                browser.close()


@pytest.fixture(scope="module")
def page(comfy_page):
    return comfy_page()


def _has_frontend() -> bool:
    import importlib.util

    return importlib.util.find_spec("comfyui_frontend_package") is not None


LOAD = """async ([ui, name]) => {
    await window.app.loadGraphData(ui, true, true, name);
    await new Promise(r => setTimeout(r, 300));
    const toasts = [...document.querySelectorAll('.p-toast-message')].map(t => t.innerText);
    const dialogs = [...document.querySelectorAll('.p-dialog')].map(d => d.innerText.slice(0, 200));
    const prompt = await window.app.graphToPrompt();
    return {toasts, dialogs, output: prompt.output, nodes: window.app.graph.nodes.length,
            links: Object.keys(window.app.graph.links ?? {}).length || window.app.graph.links?.size || 0};
}"""


def _strip(output: dict) -> dict:
    return {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in output.items()}


@pytest.mark.parametrize("name", NAMES)
def test_frontend_loads_the_ui_workflow_and_queues_its_api_graph(page, name):
    ui = json.loads((FOLDER / f"{name}.json").read_text())
    api = json.loads((FOLDER / "api" / f"{name}.json").read_text())
    got = page.evaluate(LOAD, [ui, name])
    assert not got["toasts"], got["toasts"]
    assert not got["dialogs"], got["dialogs"]
    assert got["nodes"] == len(ui["nodes"])
    assert _strip(got["output"]) == api


FIT = """async (ui) => {
    if (ui) { await window.app.loadGraphData(ui, true, true, 'flux-hiflow'); }  // its view: extra.ds
    else { window.app.graph.clear(); }
    window.app.canvas.deselectAll?.();
    window.app.canvas.setDirty(true, true);
}"""


def screenshot(page, path: Path, ui: dict | None) -> np.ndarray:
    """The canvas with `ui` loaded in the view it carries (None: an empty graph), as grey levels."""
    from PIL import Image

    page.evaluate(FIT, ui)
    page.mouse.move(VIEWPORT["width"] - 5, VIEWPORT["height"] // 2)  # no hover highlight on a node
    page.wait_for_timeout(800)
    page.screenshot(path=str(path))
    return np.asarray(Image.open(path).convert("L"), dtype=np.float32)


def test_flux_workflow_screenshot_is_not_blank(comfy_page, tmp_path):
    from PIL import Image

    page = comfy_page()

    ui = json.loads((FOLDER / "flux-hiflow.json").read_text())
    empty = screenshot(page, tmp_path / "empty.png", None)
    shot = screenshot(page, tmp_path / "comfyui-flux-workflow.png", ui)
    assert shot.shape == (VIEWPORT["height"], VIEWPORT["width"])
    assert shot.std() > 15, f"blank screenshot (pixel std {shot.std():.1f})"
    changed = np.abs(shot - empty) > 12
    assert changed.mean() > 0.10, f"the workflow changed only {changed.mean():.1%} of the canvas"
    assert (shot > 150).mean() > 0.003  # light text: node titles, widget labels and values
    keep = os.environ.get("HIRESFLOW_COMFYUI_SCREENSHOT")
    if keep:
        img = Image.open(tmp_path / "comfyui-flux-workflow.png").convert("RGB")
        img.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(keep, optimize=True)
