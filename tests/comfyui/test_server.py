"""Once, the real ComfyUI server on 127.0.0.1 with the pack: its nodes in /object_info, a workflow submitted over
HTTP (POST /prompt), its image read back (/history, /view)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest

from comfy_fixture import fixture_missing
from comfy_harness import PACK, STUBS

NODE_IDS = ("HiresflowSampler", "HiresflowRopePatch", "HiresflowUNetPatch", "HiresflowHiFlowGuider",
            "HiresflowEmbeddedLoader")
# transformers and diffusers decide torchvision's absence before the test-only stand-in goes on the path
LAUNCH = ("import runpy, sys; import transformers.utils.import_utils as t; t.is_torchvision_available(); "
          "import diffusers.utils.import_utils; sys.path.insert(0, {stubs!r}); sys.argv = ['main.py'] + sys.argv[1:]; "
          "runpy.run_path('main.py', run_name='__main__')")


def _get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_server_runs_a_workflow_over_http(tmp_path):
    reason = fixture_missing()
    if reason:
        pytest.skip(reason)
    from comfy_fixture import unpacked

    root = unpacked()
    base = tmp_path / "base"
    (base / "custom_nodes").mkdir(parents=True)
    (base / "custom_nodes" / "comfyui_hiresflow").symlink_to(PACK, target_is_directory=True)
    out = tmp_path / "output"
    port = _free_port()
    cmd = [sys.executable, "-c", LAUNCH.format(stubs=str(STUBS)), "--cpu", "--listen", "127.0.0.1", "--port",
           str(port), "--base-directory", str(base), "--disable-all-custom-nodes", "--whitelist-custom-nodes",
           "comfyui_hiresflow", "--disable-api-nodes", "--database-url", "sqlite:///:memory:",
           "--output-directory", str(out), "--temp-directory", str(tmp_path / "temp")]
    log = (tmp_path / "server.log").open("w")
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.Popen(cmd, cwd=root, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 240
        info = None
        while time.time() < deadline and proc.poll() is None:
            try:
                info = json.loads(_get(f"{url}/object_info", timeout=30))
                break
            except OSError:
                time.sleep(1)
        assert info is not None, (tmp_path / "server.log").read_text()[-3000:]
        missing = [n for n in NODE_IDS if n not in info]
        assert not missing, f"pack nodes not registered: {missing}"

        graph = json.loads((PACK / "example_workflows" / "tiny-sd-direct.api.json").read_text())
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
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
