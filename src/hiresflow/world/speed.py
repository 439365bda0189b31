"""Print reference-world render throughput: ``python -m hiresflow.world.speed``."""

from __future__ import annotations

import argparse
import time

from .render import render
from .scene import sample_scene
from .views import dataset_batch


def measure(size: int, n: int) -> tuple[float, float]:
    """Renders per second of ``n`` distinct scenes at ``size x size``: (wall clock, per CPU second).

    The second number divides by process CPU time, so it is less sensitive to
    other jobs sharing the machine (BLAS threads can make it lower than wall).
    """
    scenes = [sample_scene(i) for i in range(n)]
    render(scenes[0], size, size)  # warm caches
    t, c = time.perf_counter(), time.process_time()
    for i, s in enumerate(scenes):
        render(s, size, size, seed=i)
    return n / (time.perf_counter() - t), n / max(time.process_time() - c, 1e-9)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n64", type=int, default=400, help="renders to time at 64 px")
    ap.add_argument("--n512", type=int, default=20, help="renders to time at 512 px")
    ap.add_argument("--batch", type=int, default=256, help="views for the dataset_batch timing")
    a = ap.parse_args(argv)
    for size, n in ((64, a.n64), (512, a.n512)):
        wall, cpu = measure(size, n)
        print(f"{size}x{size:<4} {wall:8.1f} renders/s wall  ({cpu:.1f} per CPU second)")
    t = time.perf_counter()
    dataset_batch(0, a.batch, 64)
    print(f"dataset_batch 64 px {a.batch / (time.perf_counter() - t):8.1f} views/s (incl. scene sampling)")


if __name__ == "__main__":
    main()
