"""Output folders survive real kills: SIGTERM/SIGKILL during a save, and two runs writing into one folder."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ARGS = ["-m", "hiresflow.cli", "generate", "a red sun over a lake", "--model", "random-tiny-flux", "--scale", "2",
        "--set", "base_steps=2", "--set", "stage_steps=[1]", "--quiet", "--seed", "4"]
STEM = "a-red-sun-over-a-lake-hiflow-random-tiny-flux-128x128-s4"


def _start(out: Path, pause: float = 0.0) -> subprocess.Popen:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HIRESFLOW_SAVE_PAUSE=str(pause))
    return subprocess.Popen([sys.executable, *ARGS, "--out", str(out)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(pred, proc, timeout=240.0):
    t0 = time.time()
    while not pred():
        if proc.poll() is not None:
            raise AssertionError(f"run ended early: {proc.returncode} {proc.stderr.read()}")
        if time.time() - t0 > timeout:
            raise AssertionError("timed out waiting for the save")
        time.sleep(0.05)


def _files(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir())


def _mid_save(out: Path):
    # the pause sits before the final image's rename: native and sidecar are in place, the final image not
    return lambda: (out / f"{STEM}.json").exists()


@pytest.mark.slow
def test_sigterm_during_save_leaves_nothing(tmp_path):
    proc = _start(tmp_path, pause=60)
    _wait_for(_mid_save(tmp_path), proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 130
    assert "interrupted" in proc.stderr.read()
    left = _files(tmp_path)
    assert left == []  # the renamed part of the set is taken back out
    proc2 = _start(tmp_path)  # the next run removes an incomplete set and writes its own
    assert proc2.wait(timeout=240) == 0, proc2.stderr.read()
    assert _files(tmp_path) == [f"{STEM}-native.png", f"{STEM}.json", f"{STEM}.png"]


@pytest.mark.slow
def test_sigkill_during_save_is_cleaned_by_the_next_run(tmp_path):
    proc = _start(tmp_path, pause=60)
    _wait_for(_mid_save(tmp_path), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    stale = _files(tmp_path)
    assert f"{STEM}.png" not in stale and any(n.endswith(".hiresflow-tmp") for n in stale)
    assert f".{STEM}.lock" in stale
    proc2 = _start(tmp_path)
    assert proc2.wait(timeout=240) == 0, proc2.stderr.read()
    assert _files(tmp_path) == [f"{STEM}-native.png", f"{STEM}.json", f"{STEM}.png"]


@pytest.mark.slow
def test_two_concurrent_runs_into_one_folder(tmp_path):
    procs = [_start(tmp_path, pause=1.0) for _ in range(2)]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()
    names = _files(tmp_path)
    assert names == sorted([f"{STEM}-native.png", f"{STEM}.json", f"{STEM}.png",
                            f"{STEM}-2-native.png", f"{STEM}-2.json", f"{STEM}-2.png"])
    # same seed, same bytes: both runs wrote identical images under different names
    assert (tmp_path / f"{STEM}.png").read_bytes() == (tmp_path / f"{STEM}-2.png").read_bytes()


@pytest.mark.parametrize("overwrite", [False, True])
def test_existing_set_is_never_silently_overwritten(tmp_path, overwrite):
    from typer.testing import CliRunner

    from hiresflow.cli import app

    runner = CliRunner()
    for _ in range(2):
        res = runner.invoke(app, [*ARGS[2:], "--out", str(tmp_path), *(["--overwrite"] if overwrite else [])])
        assert res.exit_code == 0, res.output
    suffix = [] if overwrite else [f"{STEM}-2-native.png", f"{STEM}-2.json", f"{STEM}-2.png"]
    assert _files(tmp_path) == sorted([f"{STEM}-native.png", f"{STEM}.json", f"{STEM}.png", *suffix])
