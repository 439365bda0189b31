"""A prompt longer than the text encoders read: one line saying how many tokens were dropped (none under
--quiet), not the libraries' warnings echoing the dropped text."""

import logging
import os
import subprocess
import sys

import pytest

import hiresflow
from hiresflow.models.loading import wrap_pipeline
from hiresflow.quiet import dropped_tokens, encode_prompt, notes_to

LONG = " ".join(["lake"] * 10_000)


@pytest.fixture(scope="module")
def flux(tiny_flux):
    return wrap_pipeline(tiny_flux, "flux", native=64)


def test_encoding_a_long_prompt_writes_nothing_and_notes_once(flux, capfd):
    capfd.readouterr()
    notes = []
    with notes_to(notes.append):
        encode_prompt(flux, LONG, LONG)
    err = capfd.readouterr().err
    assert len(err) < 200, err[:300]
    assert len(notes) == 2 and notes[0].startswith("the prompt is longer") and "negative prompt" in notes[1]
    cut = dropped_tokens(flux, LONG)
    assert {kind for kind, _, _ in cut} == {"CLIP", "T5"}
    for kind, n, limit in cut:
        assert n >= 10_000 and f"{kind} dropped {n - limit} of its {n} tokens (reads {limit})" in notes[0]
    with notes_to(notes.append):
        encode_prompt(flux, "a lake")
    assert len(notes) == 2  # a prompt that fits: no note


def test_the_api_notes_through_the_hiresflow_logger(flux, caplog):
    with caplog.at_level(logging.WARNING, logger="hiresflow"):
        hiresflow.generate(flux, LONG, scale=2, base_steps=2, stage_steps=[1], progress=False)
    notes = [r for r in caplog.records if r.name == "hiresflow"]
    assert len(notes) == 1 and "tokens" in notes[0].getMessage() and "lake lake" not in notes[0].getMessage()


@pytest.mark.slow
def test_the_command_line_prints_one_note_or_nothing_with_quiet(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    base = [sys.executable, "-m", "hiresflow.cli", "generate", LONG, "--model", "random-tiny-flux", "--scale", "2",
            "--set", "base_steps=2", "--set", "stage_steps=[1]"]
    loud = subprocess.run([*base, "--out", str(tmp_path / "a")], capture_output=True, text=True, env=env,
                          timeout=300)
    assert loud.returncode == 0, loud.stderr[-500:]
    lines = loud.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("note: the prompt is longer") and "dropped" in lines[0], lines
    quiet = subprocess.run([*base, "--out", str(tmp_path / "b"), "--quiet"], capture_output=True, text=True, env=env,
                           timeout=300)
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr[-500:]
