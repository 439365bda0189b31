"""Resolution-independent rasteriser of :class:`~hiresflow.world.scene.Scene`.

Coordinate rule
---------------
World ``y`` grows downwards and the canonical scene fills the unit square.  By
default a ``height x width`` render shows that square *fitted to the shorter
side* and centred: one world unit spans ``min(height, width)`` pixels, so a
wide image shows extra mountains/ground left and right, a tall image extra sky
above and ground below, and the objects (sun, trees, house) are always fully
visible and never stretched.  ``window=(y0, x0, y1, x1)`` renders exactly that
world rectangle instead (pixels are stretched if its aspect differs from the
image's).

Resolution rule
---------------
Edges are analytic box-filtered coverages (soft over ~1 pixel) and textures
are area-averaged fractal noise whose octaves stop at ~2 pixels, so a render
at 64 px approximates a box-downsampled 512 px render, while the 512 px render
holds detail (stars, ripples, strata, bark, needles, jagged ridges) that the
64 px one cannot.
"""

from __future__ import annotations

from functools import cached_property
from typing import Sequence

import numpy as np

from . import palette as P
from ._noise import Axis, fbm2d, lattice_values, mix_seed
from .geometry import OAK_BLOBS, PINE_TIERS, Box, canopy_box, ridge_pair
from .scene import Body, House, Scene, Tree

__all__ = ["render", "render_float", "render_batch", "default_window", "check_size"]

_F = np.float32


def check_size(name: str, value: object) -> int:
    """Validate one image dimension (int >= 8) or raise a one-line ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an int number of pixels >= 8, got {value!r}; pass e.g. {name}=64")
    if value < 8:
        raise ValueError(f"{name} must be >= 8 pixels, got {value}; render at >= 8 px and downsample if needed")
    return int(value)


def default_window(height: int, width: int) -> Box:
    """World window of a full render: the unit square fitted to the shorter side, centred."""
    s = float(min(height, width))
    hh, hw = height / s / 2.0, width / s / 2.0
    return (0.5 - hh, 0.5 - hw, 0.5 + hh, 0.5 + hw)


def _check_window(window: object) -> Box:
    try:
        y0, x0, y1, x1 = (float(v) for v in window)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(f"window must be 4 numbers (y0, x0, y1, x1), got {window!r}") from None
    if not (y1 > y0 and x1 > x0) or not np.isfinite([y0, x0, y1, x1]).all():
        raise ValueError(f"window must satisfy y1 > y0 and x1 > x0, got {window!r}")
    return (y0, x0, y1, x1)


def _clip(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``np.clip`` without its Python-level overhead (hot in 64 px renders)."""
    return np.minimum(np.maximum(x, lo), hi)


def _lerp_into(dst: np.ndarray, col: np.ndarray, a: np.ndarray) -> None:
    """In place ``dst += a * (col - dst)`` with ``a`` (h, w) and ``col`` (h, w, 3) or (3,)."""
    dst += a[..., None] * (col - dst)


def _rect_cov(ax: Axis, lo: float, hi: float) -> np.ndarray:
    """Exact fraction of each pixel of ``ax`` covered by the interval [lo, hi]."""
    a = ax.start + np.arange(ax.n, dtype=_F) * ax.pitch
    return np.maximum(np.minimum(a + ax.pitch, hi) - np.maximum(a, lo), 0.0) / _F(ax.pitch)


def _cap_warm(col: np.ndarray, limit: float = 200.0) -> np.ndarray:
    """Scale down warm (R > B) colours brighter than ``limit`` in place.

    Only sun/moon discs may be both warm and very bright (the detectors'
    sun rule), so every other surface goes through this guard.
    """
    r, b = col[..., 0], col[..., 2]
    m = np.maximum(np.maximum(r, col[..., 1]), b)
    bad = (m > limit) & (r > b + 4.0)
    if bad.any():
        col[bad] *= (limit / m[bad])[:, None]
    return col


class _Canvas:
    """Pixel grid, lazily computed noise fields and shared per-render values."""

    def __init__(self, scene: Scene, height: int, width: int, seed: int, window: Box) -> None:
        self.scene = scene
        self.h, self.w = height, width
        y0, x0, y1, x1 = window
        self.ay = Axis(height, y0, (y1 - y0) / height)
        self.ax = Axis(width, x0, (x1 - x0) / width)
        self.p = float(np.sqrt(self.ay.pitch * self.ax.pitch))
        self.e = self._extra_rows()
        self.aye = Axis(height + self.e, y0 - self.e * self.ay.pitch, self.ay.pitch)
        self.ye = self.aye.centres()
        self.xs = self.ax.centres()
        self.tex = mix_seed(scene.seed, seed, 7)
        self.amb = P.AMBIENT[scene.time]
        self.horizon_rgb = P.SKY[scene.time][2]
        self.sun_dir = 1.0 if scene.body.x >= 0.5 else -1.0

    def _extra_rows(self) -> int:
        """Rows needed above the window so the lake can mirror what lies above it."""
        s = self.scene
        if s.lake is None:
            return 0
        y0, y1 = self.ay.start, self.ay.start + self.ay.n * self.ay.pitch
        lo, hi = max(y0, s.horizon), min(y1, s.horizon + s.lake.depth)
        if hi <= lo:
            return 0
        need = 2 * s.horizon - hi - 0.03  # mirrored top + ripple margin
        if need >= y0:
            return 0
        return int(min(np.ceil((y0 - need) / self.ay.pitch) + 2, 4 * self.h))

    # ---- noise fields on the extended grid (rows: extra + image)
    @cached_property
    def n_iso(self) -> np.ndarray:
        return fbm2d(self.aye, self.ax, mix_seed(self.tex, 1), (0.2, 0.2), 0.68)

    @cached_property
    def n_h(self) -> np.ndarray:
        return fbm2d(self.aye, self.ax, mix_seed(self.tex, 2), (0.03, 0.25), 0.72)

    @cached_property
    def n_v(self) -> np.ndarray:
        """Vertical streaks (grass, bark, snow gullies): only below the highest snow line."""
        s = self.scene
        top = min([s.horizon] + [m.snowline - 0.06 for m in s.mountains if m.snowline > 0])
        top = min([top] + [t.base - t.height for t in s.trees])
        rows = (self.rows(top, 10.0)[0], self.aye.n)
        return fbm2d(self.aye, self.ax, mix_seed(self.tex, 3), (0.04, 0.008), 0.8, rows=rows)

    @cached_property
    def rock(self) -> np.ndarray:
        """Ridged, vertically stretched noise: gullies and crests on mountain faces."""
        s = self.scene
        rows = self.rows(min(m.top for m in s.mountains) - 0.05, s.horizon + 0.02)
        return fbm2d(self.aye, self.ax, mix_seed(self.tex, 4), (0.1, 0.06), 0.7, ridged=True, rows=rows)

    # ---- index helpers
    def rows(self, y0: float, y1: float, ext: bool = True) -> tuple[int, int]:
        """Row range (on the extended grid if ``ext``, else the image grid) covering [y0, y1]."""
        ay = self.aye if ext else self.ay
        i0 = int(np.floor((y0 - ay.start) / ay.pitch)) - 1
        i1 = int(np.ceil((y1 - ay.start) / ay.pitch)) + 1
        return max(i0, 0), min(max(i1, 0), ay.n)

    def cols(self, x0: float, x1: float) -> tuple[int, int]:
        i0 = int(np.floor((x0 - self.ax.start) / self.ax.pitch)) - 1
        i1 = int(np.ceil((x1 - self.ax.start) / self.ax.pitch)) + 1
        return max(i0, 0), min(max(i1, 0), self.w)


# --------------------------------------------------------------------------- background


def _sky(cv: _Canvas) -> np.ndarray:
    top, mid, hor = P.SKY[cv.scene.time]
    stops = [0.0, 0.45 * cv.scene.horizon, cv.scene.horizon]
    rows = np.stack([np.interp(cv.ye, stops, [top[c], mid[c], hor[c]]) for c in range(3)], axis=1)
    img = np.empty((cv.aye.n, cv.w, 3), _F)
    img[:] = rows.astype(_F)[:, None, :]
    return img


def _stars(cv: _Canvas, img: np.ndarray) -> None:
    """Hash-placed square stars, splatted with exact pixel overlaps (flux preserving)."""
    s = cv.scene
    cell = 0.05
    y_hi = min(cv.aye.start + cv.aye.n * cv.aye.pitch, s.horizon)
    if y_hi <= cv.aye.start:
        return
    ky0, ky1 = int(np.floor(cv.aye.start / cell)), int(np.ceil(y_hi / cell))
    kx0, kx1 = int(np.floor(cv.ax.start / cell)), int(np.ceil((cv.ax.start + cv.w * cv.ax.pitch) / cell))
    ny, nx = ky1 - ky0, kx1 - kx0
    u = [(lattice_values(ky0, ny, kx0, nx, mix_seed(s.seed, 30 + i)) + 1.0) * 0.5 for i in range(4)]
    sy = ((np.arange(ky0, ky1)[:, None] + u[0]) * cell).ravel()
    sx = ((np.arange(kx0, kx1)[None, :] + u[1]) * cell).ravel()
    rad = (0.0012 + 0.0016 * u[2] ** 2).ravel()
    bri = (0.45 + 0.55 * u[3]).ravel()
    keep = sy < s.horizon - 0.02
    sy, sx, rad, bri = sy[keep], sx[keep], rad[keep], bri[keep]
    # star centres and half-sizes in pixel units of the extended grid
    cy = (sy - cv.aye.start) / cv.aye.pitch
    cx = (sx - cv.ax.start) / cv.ax.pitch
    hy, hx = rad / cv.aye.pitch, rad / cv.ax.pitch
    k = int(np.ceil(2 * max(hy.max(initial=0), hx.max(initial=0)))) + 2
    off = np.arange(k)
    jy = np.floor(cy - hy)[:, None] + off[None, :]
    jx = np.floor(cx - hx)[:, None] + off[None, :]
    cy, cx, hy, hx = cy[:, None], cx[:, None], hy[:, None], hx[:, None]
    oy = np.maximum(np.minimum(cy + hy, jy + 1) - np.maximum(cy - hy, jy), 0)
    ox = np.maximum(np.minimum(cx + hx, jx + 1) - np.maximum(cx - hx, jx), 0)
    wgt = (oy[:, :, None] * ox[:, None, :]) * bri[:, None, None]
    ry = np.broadcast_to(jy[:, :, None], wgt.shape)
    rx = np.broadcast_to(jx[:, None, :], wgt.shape)
    ok = (ry >= 0) & (ry < cv.aye.n) & (rx >= 0) & (rx < cv.w) & (wgt > 0)
    if not ok.any():
        return
    flat = (ry[ok] * cv.w + rx[ok]).astype(np.int64)
    alpha = np.bincount(flat, weights=wgt[ok], minlength=cv.aye.n * cv.w).reshape(cv.aye.n, cv.w)
    r0, r1 = 0, cv.rows(-10.0, s.horizon)[1]
    _lerp_into(img[r0:r1], P.STAR_RGB, np.minimum(alpha[r0:r1], 1.0).astype(_F))


def _glow(cv: _Canvas, img: np.ndarray) -> None:
    b = cv.scene.body
    strength, fall = {"day": (0.22, 1.1), "sunset": (0.25, 1.6), "night": (0.14, 0.9)}[cv.scene.time]
    reach = b.radius * (1.0 + 5.0 * fall)
    r0, r1 = cv.rows(b.y - reach, b.y + reach)
    c0, c1 = cv.cols(b.x - reach, b.x + reach)
    if r1 <= r0 or c1 <= c0:
        return
    d = np.sqrt((cv.ye[r0:r1, None] - b.y) ** 2 + (cv.xs[None, c0:c1] - b.x) ** 2)
    a = _F(strength) * np.exp(-np.maximum(d - b.radius, 0.0) / _F(fall * b.radius))
    _lerp_into(img[r0:r1, c0:c1], P.BODY_RGB[(b.kind, b.color)], a)


def _clouds(cv: _Canvas, img: np.ndarray) -> None:
    lit, shade = P.CLOUD_RGB[cv.scene.time]
    for c in cv.scene.cloud_shapes:
        r0, r1 = cv.rows(c.y - 1.3 * c.height, c.y + 0.8 * c.height)
        c0, c1 = cv.cols(c.x - 0.75 * c.width, c.x + 0.75 * c.width)
        if r1 <= r0 or c1 <= c0:
            continue
        g = np.random.default_rng(c.seed)
        k = int(g.integers(4, 7))
        px = c.x + c.width * g.uniform(-0.36, 0.36, k)
        py = c.y + c.height * g.uniform(-0.45, 0.05, k)
        rx = c.width * g.uniform(0.14, 0.26, k)
        ry = c.height * g.uniform(0.45, 0.75, k)
        Y = cv.ye[r0:r1, None]
        X = cv.xs[None, c0:c1]
        dens = np.zeros((r1 - r0, c1 - c0), _F)
        for i in range(k):
            dens += np.exp(-(((X - px[i]) / rx[i]) ** 2 + ((Y - py[i]) / ry[i]) ** 2)).astype(_F)
        dens *= _clip((c.y + 0.5 * c.height - Y) / (0.3 * c.height), 0.0, 1.0)
        dens += 0.2 * cv.n_iso[r0:r1, c0:c1]
        a = _clip((dens - 0.5) / 0.25, 0.0, 1.0) * _F(0.96)
        t = _clip((Y - (c.y - 0.9 * c.height)) / (1.4 * c.height), 0.0, 1.0)[..., None]
        col = (lit + t * (shade - lit)) * (1.0 + 0.05 * cv.n_iso[r0:r1, c0:c1, None])
        _lerp_into(img[r0:r1, c0:c1], col, a)


def _mountains(cv: _Canvas, img: np.ndarray) -> np.ndarray:
    """Composite ranges far to near; returns total mountain coverage (extended grid)."""
    s = cv.scene
    cover = np.zeros((cv.aye.n, cv.w), _F)
    haze_by_layer = (0.42, 0.24, 0.08)
    for m in s.mountains:
        # one extra pixel each side so slopes are central differences everywhere
        smooth, r = ridge_pair(m, Axis(cv.w + 2, cv.ax.start - cv.ax.pitch, cv.ax.pitch))
        inv = _F(0.5 / cv.ax.pitch)
        slope = np.abs(r[2:] - r[:-2]) * inv
        face = (smooth[2:] - smooth[:-2]) * inv
        r = r[1:-1]
        r0, r1 = cv.rows(float(r.min()), s.horizon + 2 * cv.p)
        if r1 <= r0:
            continue
        Y = cv.ye[r0:r1, None]
        a = _clip(0.5 + (Y - r[None, :]) / (_F(cv.ay.pitch) * (1.0 + slope[None, :])), 0.0, 1.0)
        niso, nh = cv.n_iso[r0:r1], cv.n_h[r0:r1]
        fall = np.exp(-np.maximum(Y - r[None, :], 0.0) / _F(0.12))
        light = _clip(0.5 * face[None, :] * _F(cv.sun_dir) * fall + 0.38 * cv.rock[r0:r1], -1.0, 1.0)
        depth = _clip((Y - r[None, :]) / _F(max(s.horizon - m.top, 1e-3)), 0.0, 1.0)
        rock_shade = 1.0 + 0.08 * niso + 0.11 * nh + 0.3 * light - 0.15 * depth
        col = P.ROCK_RGB[min(m.layer, 2)] * rock_shade[..., None]
        if m.snowline > 0:
            line = m.snowline + 0.015 * niso + 0.008 * cv.n_v[r0:r1] + 0.02 * light
            sc = _clip(0.5 + (line - Y) / _F(cv.p * 1.5), 0.0, 1.0)
            glow = 1.5 if s.time == "night" else 1.0  # moonlit snow stays readable
            snow = P.SNOW_RGB * (glow * (0.97 + 0.04 * niso + 0.10 * light))[..., None]
            _lerp_into(col, snow, sc)
        col *= cv.amb
        haze = haze_by_layer[min(m.layer, 2)] + 0.30 * depth**2
        _lerp_into(col, cv.horizon_rgb, haze)
        _lerp_into(img[r0:r1], col, a)
        cover[r0:r1] = 1.0 - (1.0 - cover[r0:r1]) * (1.0 - a)
    return cover


# --------------------------------------------------------------------------- land


def _ground(cv: _Canvas, img: np.ndarray) -> None:
    s = cv.scene
    r0, r1 = cv.rows(s.horizon, 10.0, ext=False)
    if r1 <= r0:
        return
    e = cv.e
    Y = cv.ye[e + r0 : e + r1, None]
    a = _clip(0.5 + (Y - s.horizon) / _F(cv.ay.pitch), 0.0, 1.0)
    a = np.broadcast_to(a, (r1 - r0, cv.w))
    t = _clip((Y - s.horizon) / (1.0 - s.horizon), 0.0, 1.5)
    k_iso, k_v = (0.035, 0.04) if s.ground == "snow" else (0.1, 0.14)
    tex = 1.0 + k_iso * cv.n_iso[e + r0 : e + r1] + k_v * cv.n_v[e + r0 : e + r1] + 0.1 * (t - 0.5)
    col = P.GROUND_RGB[s.ground] * cv.amb * tex[..., None]
    _lerp_into(col, cv.horizon_rgb, (0.35 * np.exp(-(Y - s.horizon) / 0.05)).astype(_F))
    _lerp_into(img[r0:r1], col, a)


def _lake(cv: _Canvas, bg: np.ndarray) -> tuple[tuple[int, int, int, int], np.ndarray, np.ndarray] | None:
    """Lake colour and coverage over its pixel box (computed from the clean background)."""
    s = cv.scene
    lk = s.lake
    if lk is None:
        return None
    r0, r1 = cv.rows(s.horizon, s.horizon + lk.depth, ext=False)
    c0, c1 = cv.cols(lk.cx - lk.half_width, lk.cx + lk.half_width)
    if r1 <= r0 or c1 <= c0:
        return None
    e = cv.e
    Y = cv.ye[e + r0 : e + r1, None]
    X = cv.xs[None, c0:c1]
    v = np.maximum(Y - s.horizon, 0.0) / _F(lk.depth)
    u = (X - lk.cx) / _F(lk.half_width)
    f = v * v + u * u - 1.0
    grad = 2.0 * np.sqrt((v / lk.depth) ** 2 + (u / lk.half_width) ** 2) + 1e-6
    a = _clip(0.5 - f / (grad * _F(cv.p)), 0.0, 1.0) * _clip(0.5 + (Y - s.horizon) / _F(cv.ay.pitch), 0.0, 1.0)
    nh = cv.n_h[e + r0 : e + r1, c0:c1]
    src = 2.0 * s.horizon - Y + (0.0025 + 0.01 * v) * nh
    rr = (src - cv.aye.start) / _F(cv.aye.pitch) - 0.5
    i0 = _clip(np.floor(rr).astype(np.int64), 0, cv.aye.n - 2)
    fr = _clip(rr - i0, 0.0, 1.0)[..., None].astype(_F)
    cols = np.arange(c0, c1)[None, :]
    refl = bg[i0, cols] * (1.0 - fr) + bg[i0 + 1, cols] * fr
    water = P.WATER_RGB[s.time]
    col = refl * (0.88 + 0.12 * nh)[..., None]
    _lerp_into(col, water, _clip(0.18 + 0.5 * v, 0.0, 0.75).astype(_F))
    return (r0, r1, c0, c1), col, a


def _glitter(cv: _Canvas, img: np.ndarray, box: tuple[int, int, int, int], a: np.ndarray) -> None:
    b = cv.scene.body
    r0, r1, c0, c1 = box
    X = cv.xs[None, c0:c1]
    e = cv.e
    spark = _clip(2.2 * cv.n_h[e + r0 : e + r1, c0:c1] - 1.2, 0.0, 1.0)
    k = {"day": 0.35, "sunset": 0.5, "night": 0.35}[cv.scene.time]
    alpha = _F(k) * np.exp(-(((X - b.x) / (1.4 * b.radius)) ** 2)) * spark * a
    col = 0.5 * P.BODY_RGB[(b.kind, b.color)] + 0.5 * np.array([255, 240, 222], _F)
    _lerp_into(img[r0:r1, c0:c1], col, alpha.astype(_F))


def _body(
    cv: _Canvas, img: np.ndarray, sky: np.ndarray, cover: np.ndarray, box: tuple[int, int, int, int]
) -> None:
    """Composite the sun/moon disc over the clean sky, behind the mountains."""
    b: Body = cv.scene.body
    r0, r1, c0, c1 = box
    e = cv.e
    Y = cv.ye[e + r0 : e + r1, None]
    X = cv.xs[None, c0:c1]
    d = np.sqrt((Y - b.y) ** 2 + (X - b.x) ** 2)
    a = _clip(0.5 - (d - b.radius) / _F(cv.p), 0.0, 1.0) * (1.0 - cover[e + r0 : e + r1, c0:c1])
    base = P.BODY_RGB[(b.kind, b.color)]
    if b.kind == "moon":
        tex = 0.97 + 0.03 * _clip(cv.n_iso[e + r0 : e + r1, c0:c1] * 1.5, -1.0, 1.0)
    else:
        tex = 1.0 - 0.05 * np.minimum(d / b.radius, 1.0) ** 2
    col = base * tex[..., None]
    img[r0:r1, c0:c1] += a[..., None] * (col - sky)


def _body_box(cv: _Canvas) -> tuple[int, int, int, int]:
    b = cv.scene.body
    r0, r1 = cv.rows(b.y - b.radius, b.y + b.radius, ext=False)
    c0, c1 = cv.cols(b.x - b.radius, b.x + b.radius)
    return r0, r1, c0, c1


def _tri_cov(X: np.ndarray, Y: np.ndarray, cx: float, apex: float, bottom: float, hw: float, p: float,
             jag: np.ndarray | float = 0.0) -> np.ndarray:
    """Box-filtered coverage of an isosceles triangle (apex up) with optional edge jitter."""
    k = hw / (bottom - apex)
    side = (np.abs(X - cx) + jag - k * (Y - apex)) / _F(p * (1.0 + k))
    return _clip(0.5 - side, 0.0, 1.0) * _clip(0.5 - (Y - bottom) / _F(p), 0.0, 1.0)


def _patch(cv: _Canvas, box: Box) -> tuple[int, int, int, int] | None:
    r0, r1 = cv.rows(box[0], box[2], ext=False)
    c0, c1 = cv.cols(box[1], box[3])
    if r1 <= r0 or c1 <= c0:
        return None
    return r0, r1, c0, c1


def _trunk(cv: _Canvas, img: np.ndarray, x: float, half: float, y0: float, y1: float) -> None:
    pb = _patch(cv, (y0, x - half, y1, x + half))
    if pb is None:
        return
    r0, r1, c0, c1 = pb
    a = _rect_cov(cv.ay.sub(r0, r1), y0, y1)[:, None] * _rect_cov(cv.ax.sub(c0, c1), x - half, x + half)
    e = cv.e
    X = cv.xs[None, c0:c1]
    side = _clip((X - x) / _F(half) * _F(cv.sun_dir), -1.0, 1.0)
    tex = 0.9 + 0.2 * cv.n_v[e + r0 : e + r1, c0:c1] + 0.15 * side
    _lerp_into(img[r0:r1, c0:c1], P.TRUNK_RGB * cv.amb * tex[..., None], a.astype(_F))


def _tree(cv: _Canvas, img: np.ndarray, t: Tree) -> None:
    h = t.height
    if t.kind == "pine":
        _trunk(cv, img, t.x, 0.035 * h, t.base - 0.2 * h, t.base)
    else:
        _trunk(cv, img, t.x, 0.045 * h, t.base - 0.45 * h, t.base)
    cb = canopy_box(t)
    pb = _patch(cv, (cb[0] - 0.03 * h, cb[1] - 0.03 * h, cb[2] + 0.03 * h, cb[3] + 0.03 * h))
    if pb is None:
        return
    r0, r1, c0, c1 = pb
    e = cv.e
    Y = cv.ye[e + r0 : e + r1, None]
    X = cv.xs[None, c0:c1]
    n = cv.n_iso[e + r0 : e + r1, c0:c1]
    if t.kind == "pine":
        jag = _F(0.02 * h) * n
        a = np.zeros((r1 - r0, c1 - c0), _F)
        shade = np.ones_like(a)
        for ap, bo, hw in PINE_TIERS:
            apex, bottom = t.base - ap * h, t.base - bo * h
            c = _tri_cov(X, Y, t.x, apex, bottom, hw * h, cv.p, jag)
            tier_shade = 0.78 + 0.3 * _clip((bottom - Y) / (bottom - apex), 0.0, 1.0)
            shade = np.where(c > a, tier_shade, shade)
            a = a + c - a * c  # union of overlapping tiers
        side = _clip((X - t.x) / _F(0.25 * h) * _F(cv.sun_dir), -1.0, 1.0)
        tex = _clip(shade * (1.0 + 0.16 * n + 0.12 * side), 0.72, 1.3)
        col = P.PINE_RGB * cv.amb * tex[..., None]
    else:
        d = None
        for dx, cy, rad in OAK_BLOBS:
            di = np.sqrt((X - (t.x + dx * h)) ** 2 + (Y - (t.base - cy * h)) ** 2) - _F(rad * h)
            d = di if d is None else np.minimum(d, di)
        d = d + _F(0.025 * h) * n
        a = _clip(0.5 - d / _F(cv.p), 0.0, 1.0)
        cx, cy = t.x, t.base - 0.65 * h
        lit = _clip(((X - cx) * _F(cv.sun_dir) - (Y - cy)) / _F(0.45 * h), -1.0, 1.0)
        tex = 1.0 + 0.2 * n + 0.16 * lit + 0.18 * _clip(d / _F(0.08 * h), -1.0, 0.0)
        tex = _clip(tex, 0.72, 1.3)
        col = P.OAK_RGB * cv.amb * tex[..., None]
    _lerp_into(img[r0:r1, c0:c1], col, a)


def _house(cv: _Canvas, img: np.ndarray, hs: House) -> None:
    w, hh, x, base = hs.width, hs.height, hs.x, hs.base
    amb = cv.amb
    e = cv.e

    def rect(x0: float, x1: float, y0: float, y1: float, rgb: np.ndarray, tex_k: float) -> None:
        pb = _patch(cv, (y0, x0, y1, x1))
        if pb is None:
            return
        r0, r1, c0, c1 = pb
        a = _rect_cov(cv.ay.sub(r0, r1), y0, y1)[:, None] * _rect_cov(cv.ax.sub(c0, c1), x0, x1)[None, :]
        tex = 1.0 + tex_k * cv.n_h[e + r0 : e + r1, c0:c1]
        _lerp_into(img[r0:r1, c0:c1], _cap_warm(rgb * tex[..., None]), a.astype(_F))

    chimney = np.array([72, 64, 62], _F) * amb
    rect(x + 0.2 * w, x + 0.32 * w, base - hh - 0.42 * w, base - hh - 0.1 * w, chimney, 0.05)
    rect(x - 0.5 * w, x + 0.5 * w, base - hh, base, P.WALL_RGB * amb, 0.07)
    rect(x - 0.32 * w, x - 0.1 * w, base - 0.62 * hh, base, P.DOOR_RGB * amb, 0.1)
    win = P.WINDOW_RGB[cv.scene.time] * (amb if cv.scene.time != "night" else 1.0)
    rect(x + 0.08 * w, x + 0.32 * w, base - 0.78 * hh, base - 0.42 * hh, win, 0.03)
    apex, eave = base - hh - 0.4 * w, base - hh + 0.03 * w
    pb = _patch(cv, (apex, x - 0.6 * w, eave, x + 0.6 * w))
    if pb is None:
        return
    r0, r1, c0, c1 = pb
    Y = cv.ye[e + r0 : e + r1, None]
    X = cv.xs[None, c0:c1]
    a = _tri_cov(X, Y, x, apex, eave, 0.6 * w, cv.p)
    side = np.where((X - x) * _F(cv.sun_dir) > 0, 1.08, 0.9)
    tex = side * (1.0 + 0.1 * cv.n_h[e + r0 : e + r1, c0:c1])
    _lerp_into(img[r0:r1, c0:c1], P.ROOF_RGB * amb * tex[..., None], a)


# --------------------------------------------------------------------------- entry points


def _render255(scene: Scene, height: int, width: int, seed: int, window: Box | None) -> np.ndarray:
    if not isinstance(scene, Scene):
        raise ValueError(f"scene must be a hiresflow.world.Scene, got {type(scene).__name__}; use sample_scene")
    height, width = check_size("height", height), check_size("width", width)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an int, got {seed!r}")
    win = default_window(height, width) if window is None else _check_window(window)
    cv = _Canvas(scene, height, width, int(seed), win)

    bg = _sky(cv)
    if scene.stars:
        _stars(cv, bg)
    _glow(cv, bg)
    bbox = _body_box(cv)
    r0, r1, c0, c1 = bbox
    sky_patch = bg[cv.e + r0 : cv.e + r1, c0:c1].copy()
    _clouds(cv, bg)
    cover = _mountains(cv, bg)
    lake = _lake(cv, bg)
    img = bg[cv.e :]
    _ground(cv, img)
    if lake is not None:
        (lr0, lr1, lc0, lc1), col, a = lake
        _lerp_into(img[lr0:lr1, lc0:lc1], col, a)
    _cap_warm(img)
    if r1 > r0 and c1 > c0:
        _body(cv, img, sky_patch, cover, bbox)
    if lake is not None:
        _glitter(cv, img, lake[0], lake[2])
    items: list[tuple[float, object]] = [(t.base, t) for t in scene.trees]
    if scene.house is not None:
        items.append((scene.house.base, scene.house))
    for _, it in sorted(items, key=lambda z: z[0]):
        if isinstance(it, Tree):
            _tree(cv, img, it)
        else:
            _house(cv, img, it)  # type: ignore[arg-type]
    return _clip(img, 0.0, 255.0)


def render_float(
    scene: Scene, height: int, width: int, seed: int = 0, window: Sequence[float] | None = None
) -> np.ndarray:
    """Render ``scene`` as float32 ``(height, width, 3)`` in [0, 1] (see module doc for coordinates)."""
    return _render255(scene, height, width, seed, window) * _F(1.0 / 255.0)  # type: ignore[arg-type]


def render(
    scene: Scene, height: int, width: int, seed: int = 0, window: Sequence[float] | None = None
) -> np.ndarray:
    """Render ``scene`` as uint8 ``(height, width, 3)``; deterministic in (scene, size, seed, window).

    ``seed`` varies only fine textures, never geometry.  ``window=(y0, x0, y1, x1)``
    renders that world rectangle (e.g. a zoomed crop) instead of the full view.
    """
    out = _render255(scene, height, width, seed, window)  # type: ignore[arg-type]
    return (out + 0.5).astype(np.uint8)


def render_batch(
    scenes: Sequence[Scene], height: int, width: int, seeds: Sequence[int] | int = 0
) -> np.ndarray:
    """Render several scenes into one uint8 ``(N, height, width, 3)`` array."""
    seeds = [seeds] * len(scenes) if isinstance(seeds, (int, np.integer)) else list(seeds)
    if len(seeds) != len(scenes):
        raise ValueError(f"got {len(scenes)} scenes but {len(seeds)} seeds; pass one seed per scene or an int")
    out = np.empty((len(scenes), check_size("height", height), check_size("width", width), 3), np.uint8)
    for i, (s, sd) in enumerate(zip(scenes, seeds)):
        out[i] = render(s, height, width, sd)
    return out
