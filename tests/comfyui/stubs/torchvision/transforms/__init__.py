"""Test-only stand-in for torchvision.transforms (see the package's docstring)."""

from .. import Unavailable


def __getattr__(name):
    raise Unavailable(f"torchvision.transforms.{name} is not available in the hiresflow test environment")
