"""ComfyUI pack tests: skipped with one line when the pinned ComfyUI fixture (../shared/fixtures/comfyui) is absent.

The archive is checked (sha256) and unpacked into `.cache/comfyui-<commit>` at the repository root, and ComfyUI's
requirements are installed CPU-only into the test environment the first time a session selects these tests
(`comfy_fixture.py`); one in-process ComfyUI serves the session (`comfy_harness.py`)."""

from __future__ import annotations

import sys

import pytest

from comfy_fixture import fixture_missing

REASON = fixture_missing()


def pytest_collection_modifyitems(config, items):
    if REASON is None:
        if any("tests/comfyui/" in str(item.fspath).replace("\\", "/") for item in items):
            from comfy_fixture import ensure_requirements

            ensure_requirements()  # ComfyUI's requirements, CPU-only, once per environment (comfy_fixture.py)
        return
    skip = pytest.mark.skip(reason=REASON)
    for item in items:
        if "tests/comfyui/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def comfy(tmp_path_factory):
    """ComfyUI with the pack loaded; sys.path and the torchvision stand-in are restored afterwards."""
    if REASON is not None:
        pytest.skip(REASON)
    from comfy_harness import STUBS, Comfy

    saved = list(sys.path)
    app = Comfy(tmp_path_factory.mktemp("comfy-output"))
    yield app
    sys.path[:] = saved
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        if str(STUBS) in str(getattr(sys.modules[name], "__file__", "")):
            del sys.modules[name]
