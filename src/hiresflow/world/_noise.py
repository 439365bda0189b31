"""Resolution-aware fractal value noise defined in world coordinates.

Every noise octave is a quadratic B-spline through hashed lattice values, so it is
a pure function of world position and seed: a crop, a 64 px render and a 512 px
render all see the same field.  Pixel values are the *area average* of that
field over the pixel footprint (the B-spline is integrated analytically over the
pixel), which makes the linear part of the renderer exactly consistent under box
downsampling.  Octaves are added down to a lattice spacing of about two pixels,
so the number of octaves grows with log2(size): big renders hold finer detail.

A 2-D octave is separable, ``Wy @ G @ Wx.T``, where ``Wy``/``Wx`` are small
banded weight matrices (cached per axis) and ``G`` is the hashed lattice.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np

__all__ = ["Axis", "mix_seed", "lattice_values", "axis_weights", "fbm1d", "fbm2d"]

MIN_SPACING_PX = 2.0  # finest octave lattice spacing, in pixels
_NORM_1D = 2.4  # ~1 / std of one B-spline-smoothed uniform octave in 1-D
_NORM_2D = 3.2  # same in 2-D
_MEAN_ABS_2D = np.float32(0.258)  # mean |octave| before normalisation


class Axis(NamedTuple):
    """Pixel sampling of one world axis: ``n`` pixels of size ``pitch`` from ``start``."""

    n: int
    start: float
    pitch: float

    def centres(self) -> np.ndarray:
        """World coordinates of the pixel centres (float32)."""
        return (self.start + (np.arange(self.n) + 0.5) * self.pitch).astype(np.float32)

    def sub(self, i0: int, i1: int) -> "Axis":
        """The pixels ``i0:i1`` of this axis as a new axis."""
        return Axis(i1 - i0, self.start + i0 * self.pitch, self.pitch)


def mix_seed(*parts: int) -> int:
    """Deterministically combine integers into one 32-bit seed (splitmix-style)."""
    h = 0x243F6A88
    for p in parts:
        h = (h ^ (int(p) & 0xFFFFFFFF)) * 0x9E3779B1 & 0xFFFFFFFF
        h ^= h >> 16
        h = h * 0x85EBCA6B & 0xFFFFFFFF
        h ^= h >> 13
    return h


def lattice_values(k0y: int, ny: int, k0x: int, nx: int, seed: int) -> np.ndarray:
    """Hashed uniform values in [-1, 1) on integer lattice rows/cols (float32, ny x nx)."""
    iy = np.arange(k0y, k0y + ny, dtype=np.int64).astype(np.uint32)
    ix = np.arange(k0x, k0x + nx, dtype=np.int64).astype(np.uint32)
    a = (iy ^ np.uint32(seed)) * np.uint32(0x8DA6B343)
    a ^= a >> np.uint32(15)
    a *= np.uint32(0x2C1B3C6D)
    b = (ix + np.uint32(0x9E3779B9)) * np.uint32(0xD8163841)
    b ^= b >> np.uint32(13)
    h = a[:, None] + b[None, :]
    h *= np.uint32(0x7FEB352D)
    h ^= h >> np.uint32(15)
    h *= np.uint32(0x846CA68B)
    return (h >> np.uint32(8)).astype(np.float32) * np.float32(2.0 / 2**24) - np.float32(1.0)


def lattice_values_1d(k0: int, n: int, seed: int) -> np.ndarray:
    """Hashed uniform values in [-1, 1) on integer lattice points ``k0 .. k0 + n - 1``."""
    h = (np.arange(k0, k0 + n, dtype=np.int64).astype(np.uint32) ^ np.uint32(seed)) * np.uint32(0x8DA6B343)
    h ^= h >> np.uint32(15)
    h *= np.uint32(0x2C1B3C6D)
    h ^= h >> np.uint32(13)
    return (h >> np.uint32(8)).astype(np.float32) * np.float32(2.0 / 2**24) - np.float32(1.0)


def _cum_b2(t: np.ndarray) -> np.ndarray:
    """Integral of the centred quadratic B-spline from -inf to ``t``."""
    s = np.clip(t, -1.5, 1.5) + 1.5
    s1 = np.maximum(s - 1.0, 0.0)
    s2 = np.maximum(s - 2.0, 0.0)
    return (s**3 - 3.0 * s1**3 + 3.0 * s2**3) / 6.0


@lru_cache(maxsize=256)
def axis_weights(axis: Axis, spacing: float) -> tuple[np.ndarray, int]:
    """Area-averaged B-spline weights ``(n, K)`` of one axis and the first lattice index.

    Row ``i`` holds the mean, over pixel ``i``, of each lattice point's basis
    function.  The array is read-only (it is cached).
    """
    a = axis.start + np.arange(axis.n, dtype=np.float64) * axis.pitch
    k0 = int(np.floor(axis.start / spacing)) - 2
    k1 = int(np.ceil((axis.start + axis.n * axis.pitch) / spacing)) + 2
    k = np.arange(k0, k1 + 1, dtype=np.float64) * spacing
    ua = (a[:, None] - k[None, :]) / spacing
    ub = ua + axis.pitch / spacing
    w = ((_cum_b2(ub) - _cum_b2(ua)) * (spacing / axis.pitch)).astype(np.float32)
    w.setflags(write=False)
    return w, k0


@lru_cache(maxsize=256)
def axis_band(axis: Axis, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """Banded form of :func:`axis_weights`: column indices ``(n, b)`` and weights ``(n, b)``."""
    w, _ = axis_weights(axis, spacing)
    nz = w != 0
    first = np.argmax(nz, axis=1)
    last = w.shape[1] - 1 - np.argmax(nz[:, ::-1], axis=1)
    b = int((last - first).max()) + 1
    idx = np.minimum(first[:, None] + np.arange(b)[None, :], w.shape[1] - 1)
    wb = np.take_along_axis(w, idx, axis=1) * (first[:, None] + np.arange(b)[None, :] < w.shape[1])
    idx.setflags(write=False)
    wb = wb.astype(np.float32)
    wb.setflags(write=False)
    return idx, wb


def _separable(ay: Axis, ax: Axis, sy: float, sx: float, g: np.ndarray, r0: int, r1: int) -> np.ndarray:
    """Rows ``r0:r1`` of ``Wy @ g @ Wx.T``: dense BLAS on small grids, banded gathers on big ones."""
    wy, _ = axis_weights(ay, sy)
    wx, _ = axis_weights(ax, sx)
    wy = wy[r0:r1]
    ny, kyn = wy.shape
    nx, kxn = wx.shape
    dense = min(ny * kyn * kxn + ny * kxn * nx, kyn * kxn * nx + ny * kyn * nx)
    if dense < 4_000_000:
        if ny * kyn * kxn + ny * kxn * nx <= kyn * kxn * nx + ny * kyn * nx:
            return (wy @ g) @ wx.T
        return wy @ (g @ wx.T)
    iy, by = axis_band(ay, sy)
    iy, by = iy[r0:r1], by[r0:r1]
    ix, bx = axis_band(ax, sx)
    a = by[:, 0, None] * g[iy[:, 0]]
    for j in range(1, by.shape[1]):
        a += by[:, j, None] * g[iy[:, j]]
    v = a[:, ix[:, 0]] * bx[None, :, 0]
    for j in range(1, bx.shape[1]):
        v += a[:, ix[:, j]] * bx[None, :, j]
    return v


def _octave_spacings(base: float, pitch: float, max_octaves: int) -> list[float]:
    out = []
    s = base
    while len(out) < max_octaves and s >= MIN_SPACING_PX * pitch:
        out.append(s)
        s *= 0.5
    return out


def fbm1d(
    axis: Axis,
    seed: int,
    base: float,
    persistence: float = 0.5,
    max_octaves: int = 16,
    first_octave: int = 0,
) -> np.ndarray:
    """1-D fractal noise (std ~1 for an infinite octave sum) along ``axis``.

    ``base`` is the coarsest lattice spacing in world units; octaves halve it
    until it reaches ~2 pixels.  ``first_octave`` skips coarse octaves (their
    amplitudes still count, so fields split across calls add up consistently).
    """
    out = np.zeros(axis.n, np.float32)
    norm = np.float32(_NORM_1D * np.sqrt(1.0 - persistence**2))
    for o, s in enumerate(_octave_spacings(base, axis.pitch, max_octaves)):
        if o < first_octave:
            continue
        w, k0 = axis_weights(axis, s)
        g = lattice_values_1d(k0, w.shape[1], mix_seed(seed, o))
        out += (w @ g) * np.float32(persistence**o * norm)
    return out


def fbm2d(
    ay: Axis,
    ax: Axis,
    seed: int,
    base: tuple[float, float],
    persistence: float = 0.5,
    max_octaves: int = 16,
    ridged: bool = False,
    rows: tuple[int, int] | None = None,
) -> np.ndarray:
    """2-D fractal noise ``(ay.n, ax.n)`` with std ~1; ``base=(spacing_y, spacing_x)``.

    Unequal spacings give anisotropic textures (strata, ripples, grass).  The
    octave loop stops when the finer axis reaches ~2 pixels.  ``ridged=True``
    sums ``mean|v| - |v|`` per octave instead of ``v``: sharp creases (rock
    gullies) whose mean is still ~0, so box downsampling stays consistent.
    ``rows=(r0, r1)`` computes only those rows (the others stay 0): the
    result equals the full field on them.
    """
    out = np.zeros((ay.n, ax.n), np.float32)
    r0, r1 = (0, ay.n) if rows is None else (max(rows[0], 0), min(rows[1], ay.n))
    if r1 <= r0:
        return out
    dst = out[r0:r1]
    norm = _NORM_2D * np.sqrt(1.0 - persistence**2)
    sy, sx = base
    for o in range(max_octaves):
        if sy < MIN_SPACING_PX * ay.pitch or sx < MIN_SPACING_PX * ax.pitch:
            break
        wy, ky = axis_weights(ay, sy)
        wx, kx = axis_weights(ax, sx)
        g = lattice_values(ky, wy.shape[1], kx, wx.shape[1], mix_seed(seed, o))
        amp = np.float32(persistence**o * norm)
        v = _separable(ay, ax, sy, sx, g, r0, r1)
        if ridged:
            v = np.abs(v, out=v)
            v -= _MEAN_ABS_2D
            v *= -2.0 * amp
        else:
            v *= amp
        dst += v
        sy *= 0.5
        sx *= 0.5
    return out
