"""The real ComfyUI server for tests: `main.py` on 127.0.0.1, CPU, only this pack whitelisted, in-memory database,
output and temp folders under the test's tmp dir. `running(tmp_path)` yields the base URL and `/object_info` once
the server answers, and stops the server (its log's tail goes into the failure message when it does not start)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from comfy_harness import PACK, STUBS

# transformers and diffusers decide torchvision's absence before the test-only stand-in goes on the path
LAUNCH = ("import runpy, sys; import transformers.utils.import_utils as t; t.is_torchvision_available(); "
          "import diffusers.utils.import_utils; sys.path.insert(0, {stubs!r}); sys.argv = ['main.py'] + sys.argv[1:]; "
          "runpy.run_path('main.py', run_name='__main__')")


def get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running(tmp_path: Path, start_timeout: float = 240.0):
    """(base URL, /object_info) of a ComfyUI server started for the duration of the `with` block."""
    from comfy_fixture import unpacked

    root = unpacked()
    base = tmp_path / "base"
    (base / "custom_nodes").mkdir(parents=True)
    (base / "custom_nodes" / "comfyui_hiresflow").symlink_to(PACK, target_is_directory=True)
    port = free_port()
    cmd = [sys.executable, "-c", LAUNCH.format(stubs=str(STUBS)), "--cpu", "--listen", "127.0.0.1", "--port",
           str(port), "--base-directory", str(base), "--disable-all-custom-nodes", "--whitelist-custom-nodes",
           "comfyui_hiresflow", "--disable-api-nodes", "--database-url", "sqlite:///:memory:",
           "--output-directory", str(tmp_path / "output"), "--temp-directory", str(tmp_path / "temp")]
    log_path = tmp_path / "server.log"
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, cwd=root, stdout=log, stderr=subprocess.STDOUT, env=env)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + start_timeout
            info = None
            while time.time() < deadline and proc.poll() is None:
                try:
                    info = json.loads(get(f"{url}/object_info", timeout=30))
                    break
                except OSError:
                    time.sleep(1)
            assert info is not None, log_path.read_text()[-3000:]
            yield url, info
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
