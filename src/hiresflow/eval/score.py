"""One metric value with its sample size, or the reason it was not computed.

Every number in a benchmark report carries n (images) and, for patch metrics, the number of crops, as
evaluation.md §3 asks; a metric that could not be computed carries a one-line reason instead of a value.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

__all__ = ["Score", "not_computed", "MetricUnavailable"]


class MetricUnavailable(RuntimeError):
    """A metric's network or weights are not available offline; the message says how to provide them."""


@dataclass(frozen=True)
class Score:
    """value ± std over n images (n_crops crops for patch metrics); value None = not computed (see note)."""

    name: str
    value: float | None
    std: float | None = None
    n: int = 0
    n_crops: int | None = None
    note: str = ""

    @property
    def computed(self) -> bool:
        return self.value is not None and math.isfinite(self.value)

    def cell(self, digits: int = 2, with_std: bool = False, scale: float = 1.0) -> str:
        """Table cell: the value (× scale) with `digits` decimals, 'n/c' when not computed."""
        if self.value is None:
            return "n/c"
        if not math.isfinite(self.value):
            return str(self.value)
        text = f"{self.value * scale:.{digits}f}"
        if with_std and self.std is not None and self.std > 0:
            text += f" ± {self.std * scale:.{digits}f}"
        return text

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["value"] is not None and not math.isfinite(d["value"]):
            d["value"] = str(d["value"])  # JSON has no inf/nan
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Score":
        v = d.get("value")
        if isinstance(v, str):
            v = float(v)
        return cls(d["name"], v, d.get("std"), int(d.get("n", 0)), d.get("n_crops"), d.get("note", ""))


def not_computed(name: str, reason: str, n: int = 0, n_crops: int | None = None) -> Score:
    """A Score without value; `reason` is one line saying what is missing and how to provide it."""
    return Score(name, None, None, n, n_crops, reason)
