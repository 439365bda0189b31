"""Write a captioned grid of sampled scenes: ``python -m hiresflow.world.preview OUT.png``."""

from __future__ import annotations

import argparse
import textwrap

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .prompts import prompt_for
from .render import render
from .scene import sample_scene
from .views import sample_view


def grid(images: list[np.ndarray], captions: list[str], cols: int = 4, cell: int = 256) -> Image.Image:
    """Tile images (nearest-upscaled to ``cell`` px) with wrapped captions below each."""
    font = ImageFont.load_default()
    cap_h = 64
    rows = (len(images) + cols - 1) // cols
    canvas = Image.new("RGB", (cols * cell, rows * (cell + cap_h)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for i, (im, cap) in enumerate(zip(images, captions)):
        x, y = (i % cols) * cell, (i // cols) * (cell + cap_h)
        tile = Image.fromarray(im)
        if tile.size != (cell, cell):
            tile = tile.resize((cell, cell), Image.NEAREST if im.shape[0] < cell else Image.BOX)
        canvas.paste(tile, (x, y))
        for j, line in enumerate(textwrap.wrap(cap, width=cell // 6)[:5]):
            draw.text((x + 3, y + cell + 1 + 12 * j), line, fill=(0, 0, 0), font=font)
    return canvas


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("out", help="output PNG path")
    ap.add_argument("--size", type=int, default=256, help="render size in pixels (default 256)")
    ap.add_argument("--n", type=int, default=16, help="number of tiles")
    ap.add_argument("--seed", type=int, default=0, help="first scene seed")
    ap.add_argument("--views", action="store_true", help="show training views (close-ups) instead")
    a = ap.parse_args(argv)
    images, caps = [], []
    g = np.random.default_rng(a.seed)
    for i in range(a.n):
        if a.views:
            im, p, _, v = sample_view(g, a.size)
            p = f"[{v['kind']} x{v['zoom']}] {p}"
        else:
            s = sample_scene(a.seed + i)
            im, p = render(s, a.size, a.size), prompt_for(s)
        images.append(im)
        caps.append(p)
    grid(images, caps, cell=max(a.size, 192)).save(a.out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
