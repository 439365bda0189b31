"""ComfyUI in-process, as its own server runs a queued prompt: validation, then `execution.PromptExecutor`.

The fixture README's facts: `comfy.cli_args.args.cpu` is set before anything imports `comfy.model_management`;
transformers and diffusers decide whether torchvision exists *before* the test-only stand-in goes on the path
(so the library never tries to use it); the built-in extra nodes load, then the pack from its folder
(`nodes.load_custom_node`); a prompt is validated (`execution.validate_prompt`) and executed with a minimal
server object (client_id, last_node_id, sockets_metadata, send_sync, queue_updated).
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from comfy_fixture import ROOT, unpacked

PACK = ROOT / "comfyui_hiresflow"
STUBS = Path(__file__).resolve().parent / "stubs"


@dataclass
class FakeServer:
    """What PromptExecutor needs of ComfyUI's PromptServer; records the messages it is sent."""

    client_id: str | None = None
    last_node_id: str | None = None
    sockets_metadata: dict = field(default_factory=dict)
    messages: list = field(default_factory=list)

    def send_sync(self, event, data, sid=None):
        self.messages.append((event, data))

    def queue_updated(self):
        pass


@dataclass
class Outcome:
    valid: bool
    validation: object
    success: bool = False
    messages: list = field(default_factory=list)

    @property
    def error(self) -> dict | None:
        for event, data in self.messages:
            if event == "execution_error":
                return data
        return None


class Comfy:
    """One ComfyUI per test session: its modules, the loaded pack, an executor and an output folder."""

    def __init__(self, output: Path):
        import transformers.utils.import_utils as tiu

        tiu.is_torchvision_available()  # decided (False) before the stand-in is on the path
        import diffusers.utils.import_utils  # noqa: F401 - same, for diffusers

        self.root = unpacked()
        for p in (str(STUBS), str(self.root)):
            if p not in sys.path:
                sys.path.insert(0, p)
        from comfy.cli_args import args

        args.cpu = True
        args.disable_api_nodes = True
        import folder_paths

        output.mkdir(parents=True, exist_ok=True)
        folder_paths.set_output_directory(str(output))
        folder_paths.set_temp_directory(str(output / "temp"))
        folder_paths.set_input_directory(str(output / "input"))
        import execution
        import nodes

        asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
        self.pack_loaded = asyncio.run(nodes.load_custom_node(str(PACK)))
        self.nodes, self.execution, self.output = nodes, execution, output
        self.server = FakeServer()
        self.executor = execution.PromptExecutor(self.server)

    def run(self, prompt: dict) -> Outcome:
        """Validate and execute an API-format prompt, as the server's queue does."""
        pid = str(uuid.uuid4())
        valid = asyncio.run(self.execution.validate_prompt(pid, prompt, None))
        if not valid[0]:
            return Outcome(False, valid)
        self.server.messages.clear()
        self.executor.execute(prompt, pid, {"client_id": "tests"}, valid[2])
        return Outcome(True, valid, self.executor.success, list(self.server.messages))
