"""Shared helpers (as fixtures) for the reference-world tests."""

from __future__ import annotations

from typing import Callable

import numpy as np
import pytest


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def _box_down(img: np.ndarray, f: int) -> np.ndarray:
    h, w, c = img.shape
    return img.astype(np.float64).reshape(h // f, f, w // f, f, c).mean(axis=(1, 3))


@pytest.fixture
def psnr() -> Callable[[np.ndarray, np.ndarray], float]:
    """PSNR in dB between two images on the 0..255 scale."""
    return _psnr


@pytest.fixture
def box_down() -> Callable[[np.ndarray, int], np.ndarray]:
    """Area (box) downsample by an integer factor."""
    return _box_down
