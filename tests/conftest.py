"""Shared pytest fixtures.

Tiny random pipelines (see ``hiresflow.models.tiny``), built and saved once per session:

* ``tiny_flux_dir``, ``tiny_sd_dir``, ``tiny_sdxl_dir``, ``tiny_sd3_dir``: ``pathlib.Path`` of a saved diffusers
  folder (seed 0, default vocab and configs);
* ``tiny_flux``, ``tiny_sd``, ``tiny_sdxl``, ``tiny_sd3``: those folders loaded offline with
  ``DiffusionPipeline.from_pretrained`` (progress bars disabled).

Tests that take more than a few seconds on 2 cores are marked ``slow`` (``@pytest.mark.slow``, or a
``pytest.param(..., marks=pytest.mark.slow)`` for the heavy cases of a parametrised test): ``pytest -m "not slow"``
is the quick subset, with fast tests left in every area; the full suite runs everything.

The loaded pipelines are shared by every test of the session: do not mutate them (scheduler swaps, attention
processors, ``.to(dtype)``, hooks ...). A test that needs to should load its own copy from the ``*_dir`` fixture
(``hiresflow.models.tiny.load_tiny_pipeline(dir)``, ~0.1 s) or build one with ``tiny_pipeline(kind)``.
"""

from __future__ import annotations

import os

# Nothing in the test-suite may reach the network / model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

# The models under test are tiny: one intra-op thread avoids oversubscribing the 2 cores (set
# HIRESFLOW_TEST_THREADS to change it).
torch.set_num_threads(int(os.environ.get("HIRESFLOW_TEST_THREADS", "1")))


def _saved(kind: str, tmp_path_factory: pytest.TempPathFactory):
    from hiresflow.models.tiny import save_tiny_pipeline

    return save_tiny_pipeline(kind, tmp_path_factory.mktemp(f"tiny_{kind}"))


def _loaded(path):
    from hiresflow.models.tiny import load_tiny_pipeline

    pipe = load_tiny_pipeline(path)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="session")
def tiny_flux_dir(tmp_path_factory):
    return _saved("flux", tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory):
    return _saved("sd", tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_sdxl_dir(tmp_path_factory):
    return _saved("sdxl", tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_sd3_dir(tmp_path_factory):
    return _saved("sd3", tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_flux(tiny_flux_dir):
    return _loaded(tiny_flux_dir)


@pytest.fixture(scope="session")
def tiny_sd(tiny_sd_dir):
    return _loaded(tiny_sd_dir)


@pytest.fixture(scope="session")
def tiny_sdxl(tiny_sdxl_dir):
    return _loaded(tiny_sdxl_dir)


@pytest.fixture(scope="session")
def tiny_sd3(tiny_sd3_dir):
    return _loaded(tiny_sd3_dir)
