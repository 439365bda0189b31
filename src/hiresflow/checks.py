"""Validation of user-facing values at the edge: one-line errors that say what to do."""

from __future__ import annotations

import math
from typing import Iterable

__all__ = ["check_fraction", "check_weight", "check_choice", "check_number", "check_seed", "check_type"]

SEED_MAX = 2**64 - 1


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


def check_number(name: str, value, *, minimum: float | None = None, inclusive: bool = True) -> float:
    """A finite real number, optionally bounded below."""
    if not _is_number(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if minimum is not None and (value < minimum or (not inclusive and value == minimum)):
        bound = ">=" if inclusive else ">"
        raise ValueError(f"{name} must be {bound} {minimum:g}, got {value!r}")
    return float(value)


def check_seed(seed) -> int:
    """Seeds are integers in 0…2⁶⁴−1 (the range of a torch.Generator seed); others are rejected, not aliased."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an integer in 0…2**64-1, got {type(seed).__name__} {seed!r}")
    if not 0 <= seed <= SEED_MAX:
        raise ValueError(f"seed must lie in 0…2**64-1 (18446744073709551615), got {seed}")
    return seed


def check_type(name: str, value, types, what: str):
    """TypeError in the user's terms when `value` is not of `types`."""
    if not isinstance(value, types):
        raise TypeError(f"{name} must be {what}, got {type(value).__name__} {value!r:.60}")
    return value
