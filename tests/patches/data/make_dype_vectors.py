"""Writes dype_vectors.json: RoPE frequencies of the official DyPE FLUX formulas, computed in plain Python floats
straight from the method reference (docs/methods/dype.md, "what the official code computes"), independently of
hiresflow's torch code, for tests/patches/test_dype.py.

    python tests/patches/data/make_dype_vectors.py

Per case: axis (d, θ, L), n positions, σ, method (ntk | yarn), DyPE on/off and version; ω_j for j < d/2 and the
cos/sin multiplier. The ramp is evaluated in float32 as the official `linear_ramp_mask` does (numpy float32).
"""

import json
import math
from pathlib import Path

import numpy as np


def base(d, theta):
    return [1.0 / theta ** (2 * j / d) for j in range(d // 2)]


def corr_dim(r, d, theta, L):
    return d * math.log(L / (r * 2 * math.pi)) / (2 * math.log(theta))


def corr_range(fast, slow, d, theta, L):
    lo = max(0, math.floor(corr_dim(fast, d, theta, L)))
    hi = min(math.ceil(corr_dim(slow, d, theta, L)), d - 1)
    return lo, min(hi, d // 2)


def ramp(lo, hi, n):
    if lo == hi:
        hi += 0.001
    j = np.arange(n, dtype=np.float32)
    r = (j - np.float32(lo)) / np.float32(hi - lo)
    return [float(x) for x in np.clip(r, 0, 1).astype(np.float32)]


def yarn(d, theta, L, s, beta, gamma):
    wb = base(d, theta)
    wl = [w / s for w in wb]
    wn = base(d, theta * s ** (d / (d - 2)))
    r1 = ramp(*corr_range(beta[0], beta[1], d, theta, L), d // 2)
    w1 = [wl[j] * r1[j] + wn[j] * (1 - r1[j]) for j in range(d // 2)]
    r2 = ramp(*corr_range(gamma[0], gamma[1], d, theta, L), d // 2)
    return [w1[j] * r2[j] + wb[j] * (1 - r2[j]) for j in range(d // 2)]


def case(d, theta, L, n, sigma, method, dype, version="official"):
    s = n / L
    if n <= L:
        return base(d, theta), 1.0
    if method == "ntk":
        f = s ** (d / (d - 2))
        if dype:
            f = max(1.0, f ** (2 * sigma ** 2))
        return base(d, theta * f), 1.0
    beta, gamma = (1.25, 0.75), (16.0, 2.0)
    if dype and version == "official":
        k = sigma ** 2
        beta, gamma = tuple(b * k for b in beta), tuple(g * k for g in gamma)
    elif dype:
        p = 2 * sigma ** 2
        beta, gamma = tuple(b ** p for b in beta), tuple(g ** p for g in gamma)
    return yarn(d, theta, L, s, beta, gamma), 1 + 0.1 * math.log(s)


def main():
    cases = []
    for d, theta, L in [(56, 10000.0, 64), (12, 10000.0, 8)]:
        for factor in (1, 2, 4, 2.5):
            n = int(L * factor)
            for sigma in (1.0, 0.7071067811865476, 0.5, 0.25, 0.104721):
                for method, dype, version in [("ntk", False, "official"), ("ntk", True, "official"),
                                              ("yarn", False, "official"), ("yarn", True, "official"),
                                              ("yarn", True, "legacy")]:
                    omega, mscale = case(d, theta, L, n, sigma, method, dype, version)
                    cases.append({"d": d, "theta": theta, "L": L, "n": n, "sigma": sigma, "method": method,
                                  "dype": dype, "version": version, "omega": omega, "mscale": mscale})
    out = Path(__file__).with_name("dype_vectors.json")
    out.write_text(json.dumps(cases, indent=0) + "\n")
    print(f"wrote {len(cases)} cases to {out}")


if __name__ == "__main__":
    main()
