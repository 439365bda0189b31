"""Guide overhead per step against the model call (not a test: a measurement to rerun).

    python benchmarks/guide_overhead.py [--threads 2] [--repeats 5] [--out benchmarks/results/guide_overhead.json]

For latent sizes of FLUX at 1K/2K/4K (16×128², 16×256², 16×512²) it times one step of
- HiFlow's guide (reference bicubic upsampling from the previous stage + Butterworth direction + acceleration),
- the same maths with the mask rebuilt per step in a Python double loop and two FFTs (how the official code does it),
- I-Max's projected flow (Haar level-1 projection as avg-pool + nearest upsample),
- the same projection via per-channel PyWavelets round trips on the CPU (official), when pywt is installed,
and, at the latent sizes the embedded models use, one model call of `--model` (default random-tiny-flux; the
real FLUX.1-dev transformer cannot run on a CPU at these sizes — see the GPU numbers of the evaluation issue).
Median of `--repeats` after one warm-up.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from hiresflow.flow.filters import haar_lowpass
from hiresflow.flow.sampler import StepContext, Trajectory
from hiresflow.stage import StageEnv, StageResult
from hiresflow.guides.hiflow import HiFlowConfig
from hiresflow.guides.imax import ProjectedFlowConfig


def median_time(fn, repeats: int) -> float:
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def loop_mask(h: int, w: int, order: int = 4, cutoff: float = 0.2) -> torch.Tensor:
    """Butterworth mask element by element in Python, rebuilt every step (the official code's pattern)."""
    m = torch.zeros(h, w)
    for u in range(h):
        for v in range(w):
            d2 = (2 * u / h - 1) ** 2 + (2 * v / w - 1) ** 2
            m[u, v] = 1 / (1 + (d2 / cutoff**2) ** order)
    return m


def official_style_direction(x0, ref, alpha):
    def lp(t):
        f = torch.fft.fftshift(torch.fft.fft2(t), dim=(-2, -1))
        return torch.fft.ifft2(torch.fft.ifftshift(f * loop_mask(*t.shape[-2:]), dim=(-2, -1))).real

    return x0 + alpha * (lp(ref) - lp(x0))


def make_env(shape, gen) -> StageEnv:
    b, c, h, w = shape
    sig = torch.linspace(1, 0, 31, dtype=torch.float64)
    low = torch.randn(b, c, h // 2, w // 2, generator=gen)
    traj = Trajectory(sigmas=sig, x0={i: low for i in range(31)})
    prev = StageResult(index=0, size=(h * 4, w * 4), latent=low, image=None, trajectory=traj, sigmas=sig, start=0)
    return StageEnv(model=None, index=1, stage=None, sigmas=sig, start=14, stop=30, shape=shape, generator=gen,
                    noise=torch.randn(shape, generator=gen), cond=None, previous=prev,
                    upsampled=torch.randn(shape, generator=gen))


def bench_guides(latent: int, repeats: int, loop_repeats: int) -> dict:
    gen = torch.Generator().manual_seed(0)
    shape = (1, 16, latent, latent)
    env = make_env(shape, gen)
    x = torch.randn(shape, generator=gen)
    v = torch.randn(shape, generator=gen)
    hiflow = HiFlowConfig().build(env)
    imax = ProjectedFlowConfig().build(env)
    step = {"i": 0}

    def ctx(index):
        return StepContext(stage=1, step=index - 14, n_steps=16, index=index, sigma=0.7, sigma_next=0.68, x=x, v=v,
                           x0_raw=x - 0.7 * v)

    def run_hiflow():
        # alternate two indices so the reference is really upsampled each step (no cache hit)
        step["i"] = 1 - step["i"]
        hiflow.correct(ctx(15 + step["i"]))

    out = {"latent": list(shape), "hiflow_ms": 1e3 * median_time(run_hiflow, repeats),
           "imax_ms": 1e3 * median_time(lambda: imax.correct(ctx(15)), repeats)}
    ref = F.interpolate(env.previous.trajectory.x0[15], size=shape[-2:], mode="bicubic", align_corners=False)
    out["hiflow_direction_official_style_ms"] = 1e3 * median_time(
        lambda: official_style_direction(x - 0.7 * v, ref, 1.0), loop_repeats)
    try:
        import numpy as np
        import pywt

        def pywt_projection():
            arr = ((x - env.upsampled) / 0.7 - v).numpy()
            res = np.empty_like(arr)
            for bi in range(arr.shape[0]):
                for ci in range(arr.shape[1]):
                    ca, (ch, cv, cd) = pywt.dwt2(arr[bi, ci], "haar")
                    res[bi, ci] = pywt.idwt2((ca, (None, None, None)), "haar")
            return torch.from_numpy(res)

        out["imax_projection_pywt_ms"] = 1e3 * median_time(pywt_projection, repeats)
        out["imax_projection_torch_ms"] = 1e3 * median_time(lambda: haar_lowpass((x - env.upsampled) / 0.7 - v),
                                                            repeats)
    except ImportError:
        out["imax_projection_pywt_ms"] = None
    return out


def bench_model(name: str, latents: list[int], repeats: int) -> list[dict]:
    from hiresflow.models.loading import load_model

    model = load_model(name, device="cpu")
    cond = model.encode_prompt("a red sun setting over snowy mountains by a lake")
    rows = []
    gen = torch.Generator().manual_seed(0)
    for lat in latents:
        x = torch.randn(1, model.geometry.channels, lat, lat, generator=gen)
        ms = 1e3 * median_time(lambda: model.velocity(x, 0.7, cond), repeats)
        rows.append({"model": name, "latent": [1, model.geometry.channels, lat, lat],
                     "pixels": lat * model.geometry.vae_scale, "model_call_ms": ms})
    return rows


def _ms(v: float) -> str:
    return f"{v:.1f}" if v < 100 else f"{v:,.0f}".replace(",", " ")


def tables(data: dict) -> dict[str, str]:
    """The guide table (``guides``) of ``guide_overhead.json``: milliseconds per step at each latent size."""
    lines = ["| latent (FLUX px) | HiFlow guide (upsample ref + Butterworth A_d + A_a) | same A_d, mask rebuilt per "
             "step in Python (official pattern) | I-Max guide, torch avg-pool (projection alone) | I-Max projection, "
             "PyWavelets per channel (official) |", "|---|---|---|---|---|"]
    for g in data["guides"]:
        _, c, h, w = g["latent"]
        side = f"{h}²" if h == w else f"{h}×{w}"
        pywt = g.get("imax_projection_pywt_ms")
        lines.append(f"| {c}×{side} ({8 * h // 1024}K) | {_ms(g['hiflow_ms'])} | "
                     f"{_ms(g['hiflow_direction_official_style_ms'])} | {_ms(g['imax_ms'])} "
                     f"({_ms(g['imax_projection_torch_ms'])}) | "
                     f"{'—' if pywt is None else _ms(pywt)} |")
    return {"guides": "\n".join(lines)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--model", default="random-tiny-flux")
    ap.add_argument("--model-latents", default="16,32,64", help="latent sides for the model call")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    guides = []
    for lat in (128, 256, 512):
        row = bench_guides(lat, args.repeats, loop_repeats=1 if lat >= 256 else 3)
        guides.append(row)
        print(json.dumps({k: (round(v, 2) if isinstance(v, float) else v) for k, v in row.items()}))
    models = bench_model(args.model, [int(s) for s in args.model_latents.split(",")], args.repeats)
    for row in models:
        print(json.dumps({k: (round(v, 2) if isinstance(v, float) else v) for k, v in row.items()}))
    result = {"machine": f"{platform.processor() or platform.machine()}, {args.threads} threads, torch {torch.__version__}",
              "guides": guides, "model_calls": models}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
