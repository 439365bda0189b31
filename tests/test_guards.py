"""One resource guard on every entry point (generate, upscale, batch, the Python API, the app), the HIRESFLOW_*
variables parsed in one place, and --size winning over --scale everywhere."""

import json
import subprocess
import sys
import time

import pytest
from PIL import Image
from typer.testing import CliRunner

import hiresflow
from hiresflow import resources, settings
from hiresflow.cli import app
from hiresflow.models.loading import wrap_pipeline
from hiresflow.recipes import build_plan
from hiresflow.resources import ResourceLimitError

runner = CliRunner()
GIB = 2**30
FAST = ["--set", "base_steps=2", "--set", "stage_steps=[1]", "--quiet"]


@pytest.fixture
def small_machine(monkeypatch):
    """8 GiB free, and no model may load: a refusal must come before it."""
    monkeypatch.setattr(resources, "free_memory", lambda device: 8 * GIB)

    def no_load(*args, **kwargs):
        raise AssertionError("the model loaded before the guard refused")

    monkeypatch.setattr("hiresflow.models.loading.load_model", no_load)


@pytest.fixture(scope="module")
def flux(tiny_flux):
    return wrap_pipeline(tiny_flux, "flux", native=64)


def _one_error_line(res, *words):
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert res.exit_code == 2, res.output
    assert len(lines) == 1 and lines[0].startswith("error:"), res.output
    for word in words:
        assert word in lines[0], res.output
    return lines[0]


# ------------------------------------------------------------------ refused before the model loads


def test_upscale_scale_1000_is_refused_before_the_model_loads(small_machine, tmp_path):
    photo = tmp_path / "photo.png"
    Image.new("RGB", (64, 64), (200, 40, 40)).save(photo)
    res = runner.invoke(app, ["upscale", str(photo), "--prompt", "a lake", "--scale", "1000",
                              "--out", str(tmp_path / "out")])
    _one_error_line(res, "64000x64000", "GiB", "--allow-large")
    assert not (tmp_path / "out").exists()


def test_api_generate_oversized_raises_a_typed_error(small_machine):
    with pytest.raises(ResourceLimitError, match="100000x100000.*allow_large=True") as err:
        hiresflow.generate("tiny-flux", "x", size=(100000, 100000))
    assert isinstance(err.value, ValueError) and "\n" not in str(err.value)
    with pytest.raises(ResourceLimitError, match="allow_large=True"):
        hiresflow.upscale_image("tiny-flux", Image.new("RGB", (64, 64)), "x", scale=1000)


def test_allow_large_is_the_override(small_machine):
    with pytest.raises(AssertionError, match="loaded before the guard"):  # got past the guard to the loader
        hiresflow.generate("tiny-flux", "x", size=(100000, 100000), allow_large=True)


def test_batch_reports_a_refused_job_and_runs_the_others(monkeypatch, tmp_path):
    monkeypatch.setattr(resources, "free_memory", lambda device: 8 * GIB)
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "a lake", "scale": 1000}\n{"prompt": "a sun", "scale": 2}\n')
    res = runner.invoke(app, ["batch", str(prompts), "--out", str(tmp_path / "b"), "--model", "random-tiny-flux",
                              *FAST])
    assert res.exit_code == 2, res.output
    assert "prompt 0: refused: the output (64000x64000)" in res.output
    assert "1 written, 0 already done, 1 refused" in res.output
    manifest = [json.loads(line) for line in (tmp_path / "b" / "manifest.jsonl").read_text().splitlines()]
    assert [m["index"] for m in manifest] == [1]


def test_batch_with_only_refused_jobs_creates_nothing(small_machine, tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "a lake", "scale": 1000}\n')
    res = runner.invoke(app, ["batch", str(prompts), "--out", str(tmp_path / "b")])
    _one_error_line(res, "prompt 0:", "64000x64000", "--allow-large")
    assert not (tmp_path / "b").exists()


def test_app_job_shows_the_one_line_refusal(small_machine, tmp_path):
    from hiresflow.app import AppConfig, ModelCache, run_job

    config = AppConfig(out=tmp_path / "app")
    t0 = time.perf_counter()
    with pytest.raises(ValueError) as err:
        run_job(ModelCache(), config, "generate", "a lake", "", "tiny-flux", "hiflow", "99984x99984", 4, 0, None,
                "inversion", "")
    assert time.perf_counter() - t0 < 10
    msg = str(err.value)
    assert "\n" not in msg and "99984x99984" in msg and "lower the target size" in msg and "allow" not in msg
    assert not (tmp_path / "app").exists()


@pytest.mark.slow
def test_the_issue_examples_are_refused_in_under_ten_seconds(tmp_path):
    """Fresh processes on this machine's real free memory: imports, guard and exit."""
    photo = tmp_path / "photo.png"
    Image.new("RGB", (64, 64)).save(photo)
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "a lake", "scale": 1000}\n')
    cli = [sys.executable, "-m", "hiresflow.cli"]
    cases = [cli + ["upscale", str(photo), "--prompt", "x", "--scale", "1000", "--out", str(tmp_path / "u")],
             cli + ["batch", str(prompts), "--out", str(tmp_path / "b")],
             [sys.executable, "-c", "import hiresflow; hiresflow.generate('tiny-flux', 'x', size=(100000, 100000))"]]
    for cmd in cases:
        t0 = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env={"HF_HUB_OFFLINE": "1",
                                                                                   "PATH": "/usr/bin:/bin"})
        took = time.perf_counter() - t0
        assert res.returncode != 0 and "GiB" in res.stderr, res.stderr
        assert took < 10, (cmd, took)
    assert not any(tmp_path.glob("[ub]"))


# ------------------------------------------------------------------ refused on the plan, before any model call


def test_plan_refusal_on_a_loaded_model_names_the_api_override(flux, monkeypatch):
    monkeypatch.setenv("HIRESFLOW_MAX_SECONDS", "0.000001")
    with pytest.raises(ResourceLimitError, match="model time.*limit.*allow_large=True"):
        hiresflow.generate(flux, "a lake", scale=2, base_steps=2, stage_steps=[1], progress=False)
    out = hiresflow.generate(flux, "a lake", scale=2, base_steps=2, stage_steps=[1], progress=False,
                             allow_large=True)
    assert out.images[0].size == (128, 128)


def test_upscale_refuses_an_extreme_aspect_ratio(flux):
    with pytest.raises(ValueError, match="4000x1, an aspect ratio of 4000:1.*at most 16:1.*crop"):
        hiresflow.upscale_image(flux, Image.new("RGB", (4000, 1)), "a lake", scale=2)
    with pytest.raises(ValueError, match="aspect ratio"):
        hiresflow.upscale_image(flux, Image.new("RGB", (1, 4000)), "a lake", scale=2)


def test_resource_error_words_itself_for_each_surface():
    err = ResourceLimitError("this plan needs ~9 GiB", None, resources.API)
    assert str(err).endswith("pass allow_large=True to try anyway")
    assert err.describe(resources.CLI).endswith("pass --allow-large to try anyway")
    assert "allow" not in err.describe(resources.APP)


def test_estimate_never_falls_below_the_output_floor(flux):
    plan = build_plan("upscale", flux, size=(4096, 4096))
    est = resources.estimate_resources(plan, flux)
    assert est.peak_bytes >= resources.output_bytes(4096, 4096)


# ------------------------------------------------------------------ HIRESFLOW_* variables


BAD_VALUES = [("HIRESFLOW_MAX_SECONDS", "nan"), ("HIRESFLOW_MAX_SECONDS", "abc"), ("HIRESFLOW_MAX_SECONDS", "inf"),
              ("HIRESFLOW_MAX_SECONDS", "-5"), ("HIRESFLOW_MAX_SECONDS", "0"), ("HIRESFLOW_MAX_SECONDS", "1e99"),
              ("HIRESFLOW_SAVE_PAUSE", "-1"), ("HIRESFLOW_SAVE_PAUSE", "nan"), ("HIRESFLOW_SAVE_PAUSE", "soon"),
              ("HIRESFLOW_PROGRESS", "yes"), ("HIRESFLOW_PROGRESS", "2"), ("HIRESFLOW_BENCH_DEBUG", "on"),
              ("HIRESFLOW_INCEPTION", "   ")]


@pytest.mark.parametrize("name,value", BAD_VALUES, ids=[f"{n}={v}" for n, v in BAD_VALUES])
def test_a_bad_variable_is_one_line_before_any_work(name, value, small_machine, tmp_path):
    res = runner.invoke(app, ["generate", "a lake", "--out", str(tmp_path / "o")], env={name: value})
    line = _one_error_line(res, name, "it takes")
    assert repr(value) in line
    assert not (tmp_path / "o").exists()


def test_every_variable_the_code_reads_is_parsed_in_settings():
    import pathlib
    import re

    src = pathlib.Path(hiresflow.__file__).parent
    used = set()
    for path in src.rglob("*.py"):
        used |= set(re.findall(r"HIRESFLOW_[A-Z_]+", path.read_text()))
    assert used <= set(settings.VARIABLES), used - set(settings.VARIABLES)
    for path in src.rglob("*.py"):
        if path.name != "settings.py":
            assert not re.search(r"environ[^\n]*HIRESFLOW_", path.read_text()), path


def test_settings_parse_values_and_defaults():
    s = settings.parse({"HIRESFLOW_MAX_SECONDS": "60", "HIRESFLOW_PROGRESS": "0", "HIRESFLOW_SAVE_PAUSE": ""})
    assert s.max_seconds == 60 and s.progress is False and s.save_pause == 0
    assert settings.parse({}).max_seconds == settings.DEFAULT_MAX_SECONDS
    with pytest.raises(settings.SettingsError, match="HIRESFLOW_MAX_SECONDS='inf'"):
        settings.parse({"HIRESFLOW_MAX_SECONDS": "inf"})


def test_api_checks_the_variables_before_loading(small_machine, monkeypatch):
    monkeypatch.setenv("HIRESFLOW_MAX_SECONDS", "nan")
    with pytest.raises(settings.SettingsError, match="HIRESFLOW_MAX_SECONDS"):
        hiresflow.generate("tiny-flux", "x", scale=2)


# ------------------------------------------------------------------ --size and --scale together: size wins


def test_size_wins_over_scale_on_the_command_line(tmp_path):
    res = runner.invoke(app, ["generate", "a lake", "--model", "random-tiny-flux", "--size", "128x128", "--scale",
                              "4", "--out", str(tmp_path), "--set", "base_steps=2", "--set", "stage_steps=[1]"])
    assert res.exit_code == 0, res.output
    assert "note: --size 128x128 sets the target; --scale 4 is ignored" in res.output
    meta = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert meta["size"] == [128, 128] and meta["stages"][0]["size"] == [64, 64]
    help_text = runner.invoke(app, ["generate", "--help"], terminal_width=200).output
    assert "wins over --scale" in " ".join(help_text.split())


def test_size_wins_over_scale_in_the_api_batch_and_build_plan(flux):
    plan = build_plan("hiflow", flux, size=(128, 128), scale=4)
    assert plan.stages[0].size == (64, 64) and plan.target_size == (128, 128)
    out = hiresflow.generate(flux, "a lake", size=(128, 128), scale=4, base_steps=2, stage_steps=[1],
                             progress=False)
    assert out.plan.stages[0].size == (64, 64)
    from hiresflow.batch import BatchConfig, BatchJob

    job = BatchJob(0, "a lake", 0, size="128x128", scale=4.0)
    assert job.target(BatchConfig(scale=2.0)) == ("128x128", None)
    assert BatchJob(0, "a", 0, scale=3.0).target(BatchConfig(size="256x256")) == (None, 3.0)
    assert BatchJob(0, "a", 0).target(BatchConfig(size="256x256", scale=2.0)) == ("256x256", None)
