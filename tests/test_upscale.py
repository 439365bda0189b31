"""Upscaling a user's image: reading (EXIF, alpha, bad files), fitting, both reference trajectories, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import hiresflow
from hiresflow.cli import app
from hiresflow.models.loading import load_model
from hiresflow.upscale import (SmallerThanInputError, fit_native_size, load_user_image, reference_trajectory,
                               upscale_plan)

runner = CliRunner()
FAST = dict(base_steps=4, stage_steps=[2])


@pytest.fixture(scope="module")
def model():
    return load_model("random-tiny-flux", device="cpu")


def test_exif_orientation_and_alpha(tmp_path):
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    Image.fromarray(arr).save(tmp_path / "rot.jpg", exif=exif.tobytes(), quality=95)
    img = load_user_image(tmp_path / "rot.jpg")
    assert img.size == (20, 40) and img.mode == "RGB"
    top = np.asarray(img)[:10].mean()
    assert top > 200  # the white half is on top once upright
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:4, ..., 3] = 255  # top half opaque red, bottom transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    flat = np.asarray(load_user_image(tmp_path / "alpha.png"))
    assert (flat[0, 0] == [255, 0, 0]).all() and (flat[-1, -1] == [255, 255, 255]).all()


def test_unreadable_files_give_one_line(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match="cannot read .* as an image"):
        load_user_image(bad)
    with pytest.raises(ValueError, match="does not exist"):
        load_user_image(tmp_path / "missing.png")
    out = tmp_path / "o"
    res = runner.invoke(app, ["upscale", str(bad), "--prompt", "a lake", "--model", "random-tiny-flux",
                              "--out", str(out), "--quiet"])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1 and "cannot read" in res.output
    assert not out.exists() or not any(out.iterdir())


def test_fit_native_keeps_aspect(model):
    g = model.geometry
    assert fit_native_size(g, 64, 64) == (64, 64)
    h, w = fit_native_size(g, 300, 100)
    assert h % g.multiple == 0 and w % g.multiple == 0 and abs(w / h - 3) < 0.5
    plan = upscale_plan(model, "hiflow", (h, w), 2, **FAST)
    assert plan.stages[0].size == (h, w) and plan.target_size == (2 * h, 2 * w)


@pytest.mark.parametrize("reference", ["renoise", "inversion"])
def test_upscale_both_references_non_square(model, reference, tmp_path):
    arr = (np.random.default_rng(0).random((45, 120, 3)) * 255).astype(np.uint8)
    Image.fromarray(arr).save(tmp_path / "in.png")
    out = hiresflow.upscale_image(model, tmp_path / "in.png", "a lake", method="hiflow", scale=2,
                                  reference=reference, progress=False, **FAST)
    nw, nh = out.native_images[0].size
    assert out.images[0].size == (2 * nw, 2 * nh) and nw > nh
    assert out.extra["upscale"]["reference"] == reference
    native = out.result.stages[0]
    assert native.extra["reference"] == reference and len(native.timings.model) >= 4


def test_reference_trajectories_start_at_the_image(model):
    img = torch.rand(1, 3, 64, 64)
    z0 = model.encode(img)
    sigmas = model.schedule(6, (64, 64))
    cond = model.encode_prompt("a lake")
    for mode in ("renoise", "inversion"):
        traj, timings = reference_trajectory(model, z0, sigmas, cond, mode=mode, start=2,
                                             generator=torch.Generator().manual_seed(0))
        assert traj.indices == [2, 3, 4, 5] and all(traj.x0[i].shape == z0.shape for i in traj.indices)
    assert len(timings.model) == 5  # inversion: one call at σ=0, then one per grid point


def test_upscale_cli_writes_a_set_with_its_source(tmp_path):
    Image.fromarray((np.random.default_rng(1).random((48, 64, 3)) * 255).astype(np.uint8)).save(tmp_path / "p.png")
    out = tmp_path / "o"
    res = runner.invoke(app, ["upscale", str(tmp_path / "p.png"), "--prompt", "a lake", "--model", "random-tiny-flux",
                              "--method", "sdedit", "--scale", "2", "--set", "steps=3", "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    pngs = sorted(p for p in out.iterdir() if p.suffix == ".png" and not p.name.endswith("-native.png"))
    assert len(pngs) == 1
    record = json.loads(Image.open(pngs[0]).text["hiresflow"])
    assert record["upscale"]["source"].endswith("p.png") and record["recipe"] == "sdedit"
    assert Image.open(pngs[0]).size == tuple(2 * v for v in record["upscale"]["native_size"])
    res = runner.invoke(app, ["upscale", str(tmp_path / "p.png"), "--prompt", "x", "--method", "direct"])
    assert res.exit_code == 2 and "--method must be one of" in res.output


def _photo(path, size=(800, 600)):
    Image.fromarray((np.random.default_rng(2).random((size[1], size[0], 3)) * 255).astype(np.uint8)).save(path)
    return path


def test_upscale_refuses_fewer_pixels_than_the_image_before_any_model_call(model, tmp_path, monkeypatch):
    photo = _photo(tmp_path / "photo.jpg")

    def no_model_call(*args, **kwargs):
        raise AssertionError("the model ran before the size check")

    with monkeypatch.context() as m:
        m.setattr(model, "encode", no_model_call)
        m.setattr(model, "velocity", no_model_call)
        with pytest.raises(SmallerThanInputError, match=r"800x600 image at scale=2 would give 128x96 .*use "
                                                        r"scale=12.5 or more.*allow_smaller=True") as err:
            hiresflow.upscale_image(model, photo, "a lake", method="sdedit", scale=2, progress=False, steps=2)
    assert err.value.min_scale == 12.5
    assert upscale_plan(model, "sdedit", (48, 64), 12.5, steps=2).target_size == (608, 800)  # ≥ 800x600
    out = hiresflow.upscale_image(model, photo, "a lake", method="sdedit", scale=2, allow_smaller=True,
                                  progress=False, steps=2)
    assert out.images[0].size == (128, 96) and out.extra["upscale"]["original_size"] == [800, 600]


def test_upscale_cli_refuses_a_smaller_output_in_one_line_and_allow_smaller_writes_it(tmp_path):
    photo = _photo(tmp_path / "photo.jpg")
    out = tmp_path / "o"
    args = ["upscale", str(photo), "--prompt", "a lake", "--model", "random-tiny-flux", "--method", "sdedit",
            "--scale", "2", "--set", "steps=2", "--out", str(out), "--quiet"]
    res = runner.invoke(app, args)
    lines = res.output.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1, res.output
    assert lines[0].startswith(f"error: {photo}: upscaling the 800x600 image at --scale 2 would give 128x96")
    assert "use --scale 12.5 or more" in lines[0] and "--allow-smaller" in lines[0]
    assert not out.exists() or not any(out.iterdir())
    res = runner.invoke(app, [*args, "--allow-smaller"])
    assert res.exit_code == 0, res.output
    assert res.output.strip().splitlines()[-1].startswith(f"sdedit 128x96 from {photo}")
    help_text = " ".join(runner.invoke(app, ["upscale", "--help"]).output.split())
    assert "--allow-smaller" in help_text and "fewer pixels than the image is refused before the run" in help_text
