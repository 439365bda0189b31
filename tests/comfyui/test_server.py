"""Once, the real ComfyUI server on 127.0.0.1 with the pack: its nodes in /object_info, a workflow submitted over
HTTP (POST /prompt), its image read back (/history, /view)."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from comfy_fixture import fixture_missing
from comfy_harness import PACK
from comfy_server import get as _get
from comfy_server import running

NODE_IDS = ("HiresflowSampler", "HiresflowRopePatch", "HiresflowUNetPatch", "HiresflowHiFlowGuider",
            "HiresflowEmbeddedLoader")


@pytest.mark.slow
def test_server_runs_a_workflow_over_http(tmp_path):
    reason = fixture_missing()
    if reason:
        pytest.skip(reason)
    with running(tmp_path) as (url, info):
        deadline = time.time() + 240
        missing = [n for n in NODE_IDS if n not in info]
        assert not missing, f"pack nodes not registered: {missing}"

        graph = json.loads((PACK / "example_workflows" / "api" / "tiny-sd-direct.json").read_text())
        graph["4"]["inputs"]["options"] = "steps=4"
        req = urllib.request.Request(f"{url}/prompt", data=json.dumps({"prompt": graph, "client_id": "tests"}).encode(),
                                     headers={"Content-Type": "application/json"})
        prompt_id = json.loads(urllib.request.urlopen(req, timeout=30).read())["prompt_id"]
        history = {}
        while time.time() < deadline:
            history = json.loads(_get(f"{url}/history/{prompt_id}", timeout=30))
            if prompt_id in history and history[prompt_id].get("status", {}).get("completed") is not None:
                break
            time.sleep(1)
        entry = history.get(prompt_id)
        assert entry and entry["status"]["status_str"] == "success", entry
        images = [im for node in entry["outputs"].values() for im in node.get("images", [])]
        assert images
        im = images[0]
        png = _get(f"{url}/view?filename={im['filename']}&subfolder={im['subfolder']}&type={im['type']}")
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        from io import BytesIO

        from PIL import Image

        img = Image.open(BytesIO(png))
        assert img.size == (128, 128)
        lo, hi = img.convert("L").getextrema()
        assert hi - lo > 10  # an image, not a blank
