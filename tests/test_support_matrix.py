"""The support matrix on the docs site is what the adapters do now: every recipe's plan recomputed for every
family (✓ builds, ✗ refused with its one-line reason) and compared with the committed JSON. The ✓ cells are run
by the family tests at 2× and 4× (tests/models/test_family_*.py, tests/test_recipes_tiny.py,
tests/models/test_embedded.py; `python benchmarks/support_matrix.py` runs them all again when it regenerates)."""

import importlib.util
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

_spec = importlib.util.spec_from_file_location(
    "support_matrix", Path(__file__).parent.parent / "benchmarks" / "support_matrix.py")
support = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(support)


def test_support_matrix_is_current():
    committed = json.loads(support.OUT.read_text())
    fresh = support.compute(run=False, log=lambda *_: None)
    assert support.comparable(fresh) == support.comparable(committed), (
        "the support matrix changed: run `python benchmarks/support_matrix.py` and "
        "`python benchmarks/docs_pages.py`")


def test_every_refusal_is_one_line():
    for fam in json.loads(support.OUT.read_text())["families"]:
        for kind in ("recipes", "options"):
            for name, cell in fam[kind].items():
                if not cell["ok"]:
                    assert cell["why"] and "\n" not in cell["why"], (fam["model"], name)
