"""The UI-format example workflows (`example_workflows/<name>.json`, litegraph "workflow" version 0.4) against their
API-format graphs (`example_workflows/api/<name>.json`), with the node definitions of the ComfyUI loaded in-process:
each UI file is what `make_ui.py` writes today, converts back to exactly its API graph, and its widget values sit in
the node's widget order. `test_browser.py` checks the same files in ComfyUI's own frontend."""

from __future__ import annotations

import copy
import importlib.util
import json

import pytest

from comfy_harness import PACK

FOLDER = PACK / "example_workflows"
NAMES = sorted(p.stem for p in (FOLDER / "api").glob("*.json"))


def make_ui():
    spec = importlib.util.spec_from_file_location("hiresflow_make_ui", FOLDER / "make_ui.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def info(comfy):
    mu = make_ui()
    graphs = [json.loads((FOLDER / "api" / f"{name}.json").read_text()) for name in NAMES]
    types = sorted({n["class_type"] for g in graphs for n in g.values()})
    return mu.object_info(comfy.nodes, types)


def load(name: str, kind: str) -> dict:
    path = FOLDER / "api" / f"{name}.json" if kind == "api" else FOLDER / f"{name}.json"
    return json.loads(path.read_text())


def test_every_api_workflow_has_its_ui_twin_and_nothing_else_is_listed():
    assert len(NAMES) >= 8
    ui = sorted(p.stem for p in FOLDER.glob("*.json"))
    assert ui == NAMES  # ComfyUI's template browser lists example_workflows/*.json: only loadable UI graphs there


@pytest.mark.parametrize("name", NAMES)
def test_ui_file_is_current(info, name):
    mu = make_ui()
    text = mu.render(mu.api_to_ui(load(name, "api"), info, name))
    assert (FOLDER / f"{name}.json").read_text() == text, (
        f"{name}.json is stale: python comfyui_hiresflow/example_workflows/make_ui.py --comfyui <ComfyUI root>")


@pytest.mark.parametrize("name", NAMES)
def test_ui_file_converts_back_to_its_api_graph(info, name):
    ui = load(name, "ui")
    assert ui["version"] == 0.4
    assert {n["id"] for n in ui["nodes"]} == {int(k) for k in load(name, "api")}
    assert ui["last_node_id"] == max(n["id"] for n in ui["nodes"]) and ui["last_link_id"] == len(ui["links"])
    for ln in ui["links"]:  # both ends of every link name it, with the right types
        _, src, src_slot, dst, dst_slot, kind = ln
        nodes = {n["id"]: n for n in ui["nodes"]}
        assert ln[0] in nodes[src]["outputs"][src_slot]["links"]
        assert nodes[dst]["inputs"][dst_slot]["link"] == ln[0]
        assert nodes[src]["outputs"][src_slot]["type"] == kind == nodes[dst]["inputs"][dst_slot]["type"]
    assert make_ui().ui_to_api(ui, info) == load(name, "api")


def test_widget_order_follows_the_definitions(info):
    """KSampler: seed, its control value, steps, cfg, sampler, scheduler, denoise; the hiresflow Sampler's seed too
    gets its control value (`control_after_generate`); the examples keep their seeds (`fixed`)."""
    mu = make_ui()
    assert mu.widgets(info["KSampler"]) == [("seed", False), ("seed", True), ("steps", False), ("cfg", False),
                                            ("sampler_name", False), ("scheduler", False), ("denoise", False)]
    ui = load("tiny-flux-hiflow", "ui")
    sampler = next(n for n in ui["nodes"] if n["type"] == "HiresflowSampler")
    assert sampler["widgets_values"] == ["hiflow", 2.0, 0, 0, 64, 0, "fixed", 0, 4.0, ""]
    assert [i["name"] for i in sampler["inputs"]][:4] == ["model", "positive", "negative", "vae"]


def test_the_round_trip_check_catches_a_wrong_file(info):
    """The check can fail: a dropped control value, two swapped widget values, a link to the wrong slot."""
    mu = make_ui()
    api, ui = load("tiny-flux-dype-ksampler", "api"), load("tiny-flux-dype-ksampler", "ui")
    ks = next(i for i, n in enumerate(ui["nodes"]) if n["type"] == "KSampler")

    bad = copy.deepcopy(ui)
    bad["nodes"][ks]["widgets_values"].remove("fixed")
    with pytest.raises(ValueError, match="widget values"):
        mu.ui_to_api(bad, info)

    bad = copy.deepcopy(ui)
    wv = bad["nodes"][ks]["widgets_values"]
    wv[2], wv[3] = wv[3], wv[2]  # steps <-> cfg
    assert mu.ui_to_api(bad, info) != api

    bad = copy.deepcopy(ui)
    pos_neg = [ln for ln in bad["links"] if ln[3] == bad["nodes"][ks]["id"] and ln[5] == "CONDITIONING"]
    pos_neg[0][1], pos_neg[1][1] = pos_neg[1][1], pos_neg[0][1]  # positive and negative prompts swapped
    assert mu.ui_to_api(bad, info) != api
