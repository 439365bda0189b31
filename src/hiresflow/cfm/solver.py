"""Fixed-step ODE solvers for the CFM flow, t = 0 (source) → t = 1 (target).

NFE counts network evaluations: Euler uses 1 per step, midpoint 2, RK4 4, so ``nfe`` must be a multiple of the
solver's stage count (a one-line error otherwise). Paper: Euler, 40 NFE; official validation: RK4 on a 40-point
grid (156 NFE). The grid is uniform: t_k = k / steps, steps = nfe / stages (NFE = grid points − 1 for Euler).
"""

from __future__ import annotations

from typing import Callable

import torch

__all__ = ["SOLVERS", "solver_steps", "integrate"]

#: network evaluations per step
SOLVERS = {"euler": 1, "midpoint": 2, "rk4": 4}

Velocity = Callable[[torch.Tensor, float], torch.Tensor]


def solver_steps(solver: str, nfe: int) -> int:
    """Steps of ``solver`` that spend exactly ``nfe`` evaluations (one-line error otherwise)."""
    if solver not in SOLVERS:
        raise ValueError(f"CFM solver must be one of {', '.join(SOLVERS)}, got {solver!r}")
    k = SOLVERS[solver]
    if isinstance(nfe, bool) or not isinstance(nfe, int) or nfe < k or nfe % k:
        raise ValueError(f"CFM nfe must be a positive multiple of {k} for {solver}, got {nfe!r}")
    return nfe // k


@torch.no_grad()
def integrate(v: Velocity, x0: torch.Tensor, solver: str = "euler", nfe: int = 10) -> torch.Tensor:
    """x(1) from x(0) = x0 under dx/dt = v(x, t) with ``nfe`` evaluations of ``v``."""
    n = solver_steps(solver, nfe)
    x = x0
    h = 1.0 / n
    for k in range(n):
        t = k * h
        if solver == "euler":
            x = x + h * v(x, t)
        elif solver == "midpoint":
            k1 = v(x, t)
            x = x + h * v(x + 0.5 * h * k1, t + 0.5 * h)
        else:  # rk4
            k1 = v(x, t)
            k2 = v(x + 0.5 * h * k1, t + 0.5 * h)
            k3 = v(x + 0.5 * h * k2, t + 0.5 * h)
            k4 = v(x + h * k3, t + h)
            x = x + (h / 6.0) * (k1 + 2 * k2 + 2 * k3 + k4)
    return x
