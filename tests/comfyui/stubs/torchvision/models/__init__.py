"""Test-only stand-in for torchvision.models (see the package's docstring)."""

from .. import Unavailable


def __getattr__(name):
    raise Unavailable(f"torchvision.models.{name} is not available in the hiresflow test environment")
