"""Every bad input of benchmarks/bad_inputs.py gets its promised one-line error (the fault cases that start and
kill whole runs are in tests/test_output_safety.py)."""

import importlib.util
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("bad_inputs", Path(__file__).parent.parent / "benchmarks" / "bad_inputs.py")
bad_inputs = importlib.util.module_from_spec(_spec)
sys.modules["bad_inputs"] = bad_inputs
_spec.loader.exec_module(bad_inputs)

CASES = [c for c in bad_inputs._cases() if not c.slow]


@pytest.mark.parametrize("case", CASES, ids=[f"{c.area}-{c.what}"[:60] for c in CASES])
def test_bad_input_is_handled(case, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    bad_inputs.evaluate(case, tmp_path)
    assert case.ok, case.outcome


def test_there_are_at_least_sixty_cases():
    assert len(bad_inputs._cases()) >= 60
