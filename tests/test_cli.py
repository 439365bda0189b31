import json
import os
import subprocess
import sys

import pytest
from PIL import Image
from typer.testing import CliRunner

from hiresflow.cli import app

runner = CliRunner()


def test_recipes_lists_one_line_per_recipe_name_first():
    res = runner.invoke(app, ["recipes"])
    assert res.exit_code == 0
    names = [line.split()[0] for line in res.output.strip().splitlines()]
    assert {"direct", "upscale", "sdedit", "hiflow", "imax", "demofusion", "freescale", "diffusehigh"} <= set(names)
    res = runner.invoke(app, ["recipes", "--params", "hiflow"])
    assert "alpha = (1.0, 0.25)" in res.output


def test_generate_writes_final_native_and_sidecar(tmp_path):
    res = runner.invoke(app, ["generate", "a red sun over snowy mountains", "--model", "random-tiny-flux",
                              "--method", "hiflow", "--scale", "2", "--seed", "3", "--out", str(tmp_path),
                              "--set", "base_steps=4", "--set", "stage_steps=[2]", "--quiet"])
    assert res.exit_code == 0, res.output
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["a-red-sun-over-snowy-mountains-hiflow-random-tiny-flux-128x128-s3-native.png", "a-red-sun-over-snowy-mountains-hiflow-random-tiny-flux-128x128-s3.json",
                     "a-red-sun-over-snowy-mountains-hiflow-random-tiny-flux-128x128-s3.png"]
    meta = json.loads((tmp_path / files[1]).read_text())
    assert meta["seed"] == 3 and meta["recipe"] == "hiflow" and meta["size"] == [128, 128]
    assert meta["plan"]["stages"][1]["guides"][0]["type"] == "HiFlowConfig"
    assert len(meta["stages"]) == 2 and all(s["seconds"] > 0 for s in meta["stages"])
    assert {"torch", "diffusers", "hiresflow"} <= set(meta["versions"])
    img = Image.open(tmp_path / files[2])
    assert img.size == (128, 128) and "parameters" in img.text
    assert Image.open(tmp_path / files[0]).size == (64, 64)


def test_generate_bad_input_one_line_and_nothing_written(tmp_path):
    out = tmp_path / "o"
    for args, msg in ((["--scale", "0.5"], "scale must be >= 1"), (["--size", "100x128"], "multiple of 16"),
                      (["--method", "nope"], "unknown recipe"), (["--set", "alpha=-1"], "alpha must be"),
                      (["--model", "tiny-nothing"], "cannot load model")):
        res = runner.invoke(app, ["generate", "a lake", "--model", "random-tiny-flux", "--out", str(out), "--quiet",
                                  *args], env={"HF_HUB_OFFLINE": "1"})
        assert res.exit_code == 2, (args, res.output)
        err = res.output.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and msg in err[0], (args, res.output)
        assert not out.exists() or not any(out.iterdir())


@pytest.mark.slow
def test_module_entry_point():
    res = subprocess.run([sys.executable, "-m", "hiresflow.cli", "recipes"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.startswith("direct")


def test_generate_from_image_reproduces_its_bytes(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    res = runner.invoke(app, ["generate", "two pine trees by a lake", "--model", "random-tiny-flux", "--method",
                              "hiflow", "--scale", "2", "--seed", "5", "--out", str(first), "--quiet",
                              "--set", "base_steps=4", "--set", "stage_steps=[2]", "--set", "text_duplication=True"])
    assert res.exit_code == 0, res.output
    final = first / "two-pine-trees-by-a-lake-hiflow-random-tiny-flux-128x128-s5.png"
    res = runner.invoke(app, ["generate", "--from", str(final), "--out", str(second), "--quiet"])
    assert res.exit_code == 0, res.output
    for name in ("two-pine-trees-by-a-lake-hiflow-random-tiny-flux-128x128-s5.png", "two-pine-trees-by-a-lake-hiflow-random-tiny-flux-128x128-s5-native.png"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    params = Image.open(final).text["parameters"].splitlines()
    assert params[0] == "two pine trees by a lake"
    assert params[1].startswith("Steps: 4, Sampler: Euler, CFG scale: 3.5, Seed: 5, Size: 128x128, "
                                "Model: random-tiny-flux, Hires upscale: 2.0, Hires steps: 2")
    assert "hiresflow method: hiflow" in params[1]
    res = runner.invoke(app, ["generate", "--from", str(final), "--scale", "3"])
    assert res.exit_code == 2 and "drop --method" in res.output
    res = runner.invoke(app, ["generate", "--from", str(first / "two-pine-trees-by-a-lake-hiflow-random-tiny-flux-128x128-s5-native.png")])
    assert res.exit_code == 2 and "no hiresflow metadata" in res.output


@pytest.mark.slow
def test_generate_in_a_log_prints_no_warnings_and_no_progress_bars(tmp_path):
    """stderr is a pipe here (a CI log): no progress bars, no library deprecation or optional-backend notices."""
    env = {k: v for k, v in os.environ.items() if k != "HIRESFLOW_PROGRESS"}
    env.update(HF_HUB_OFFLINE="1", PYTHONWARNINGS="default")
    res = subprocess.run([sys.executable, "-m", "hiresflow.cli", "generate", "a lake", "--model", "tiny-flux",
                          "--scale", "2", "--out", str(tmp_path), "--set", "base_steps=4", "--set", "stage_steps=[2]"],
                         capture_output=True, text=True, timeout=180, env=env)
    assert res.returncode == 0, res.stderr
    assert res.stderr == "", res.stderr
    assert res.stdout.splitlines()[-1].startswith("hiflow 128x128 in")


def test_a1111_parameters_with_negative_prompt(tmp_path):
    res = runner.invoke(app, ["generate", "a lake, at night", "--model", "random-tiny-sd", "--method", "sdedit",
                              "--scale", "2", "--seed", "9", "--negative", "blurry, low quality", "--set", "steps=3",
                              "--out", str(tmp_path), "--quiet"])
    assert res.exit_code == 0, res.output
    final = next(p for p in tmp_path.iterdir() if p.suffix == ".png" and not p.name.endswith("-native.png"))
    text = Image.open(final).text
    lines = text["parameters"].splitlines()
    assert lines[0] == "a lake, at night" and lines[1] == "Negative prompt: blurry, low quality"
    fields = dict(f.split(": ", 1) for f in lines[2].split(", "))
    assert fields["Steps"] == "3" and fields["Sampler"] == "Euler" and fields["Seed"] == "9"
    assert fields["Size"] == "128x128" and fields["Model"] == "random-tiny-sd" and "CFG scale" in fields
    assert fields["hiresflow method"] == "sdedit" and fields["Hires upscale"] == "2.0"
    record = json.loads(text["hiresflow"])
    assert record["negative_prompt"] == "blurry, low quality" and record["plan"]["type"] == "Plan"


def _command_paths(group, path=()):
    for name, cmd in sorted(group.commands.items()):
        yield (*path, name)
        if hasattr(cmd, "commands"):
            yield from _command_paths(cmd, (*path, name))


def test_every_help_shows_flags_as_plain_flags():
    """No `--quiet <bool>`: a boolean flag takes no value, so no subcommand's help may show a type for it."""
    import typer

    paths = [(), *_command_paths(typer.main.get_command(app))]
    assert {("generate",), ("upscale",), ("batch",), ("app",), ("bench",), ("train", "vae")} <= set(paths)
    for path in paths:
        res = runner.invoke(app, [*path, "--help"], terminal_width=200)
        assert res.exit_code == 0, (path, res.output)
        assert "<bool>" not in res.output, (path, res.output)
        assert "--help " in res.output
    generate_help = runner.invoke(app, ["generate", "--help"], terminal_width=200).output
    words = generate_help.split()
    assert words[words.index("--overwrite") + 1] == "replace"  # the help text follows the flag: no value
    assert "--seed" in generate_help and "<int>" in generate_help  # options that take a value keep their type
