"""Validation of user-facing values at the edge: one-line errors that say what to do."""

from __future__ import annotations

import math
from typing import Iterable

__all__ = ["check_fraction", "check_weight", "check_choice"]


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_fraction(name: str, value: float) -> float:
    """τ-like values must lie in (0, 1]."""
    if not (_is_number(value) and 0 < value <= 1):
        raise ValueError(f"{name} must lie in (0, 1], got {value!r}; e.g. {name}=0.6")
    return float(value)


def check_weight(name: str, value: float) -> float:
    """Guidance weights and scales: finite and non-negative (0 switches the term off)."""
    if not (_is_number(value) and value >= 0):
        raise ValueError(f"{name} must be a non-negative number, got {value!r}; use 0 to switch it off")
    return float(value)


def check_choice(name: str, value, choices: Iterable[str]) -> str:
    """An option with a closed set of values."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}, got {value!r}")
    return value
