"""Test-only stand-in for torchvision (PyPI's build does not load next to the CPU torch 2.13 used here, yet
ComfyUI imports it at module level for Stable Cascade's coder). Importing works; using anything raises."""


class Unavailable(AttributeError):
    """Raised on any use of the stand-in (an AttributeError, so `from torchvision import transforms` still finds
    the submodule)."""


def __getattr__(name):
    raise Unavailable(f"torchvision.{name} is not available in the hiresflow test environment (stand-in package)")
