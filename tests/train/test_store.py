"""`hiresflow train store`: re-store a model folder's weights in another dtype, in place and atomically."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from hiresflow.train.cli import app
from hiresflow.train.export import store_weights


def _folder(tmp_path, big: float = 1.0):
    gen = torch.Generator().manual_seed(0)
    (tmp_path / "unet").mkdir(parents=True)
    path = tmp_path / "unet" / "diffusion_pytorch_model.safetensors"
    save_file({"w": torch.randn(64, 64, generator=gen) * big, "steps": torch.arange(4)}, str(path),
              metadata={"format": "pt"})
    path.chmod(0o644)
    return path


def test_store_halves_bytes_keeps_values_metadata_and_permissions(tmp_path):
    path = _folder(tmp_path)
    before = load_file(str(path))
    res = store_weights(tmp_path, "fp16")
    after = load_file(str(path))
    assert res["files"] == 1 and res["mb_after"] < 0.6 * res["mb_before"]
    assert after["w"].dtype == torch.float16 and torch.equal(after["w"], before["w"].half())
    assert after["steps"].dtype == torch.int64 and torch.equal(after["steps"], before["steps"])
    assert path.stat().st_mode & 0o777 == 0o644
    assert not list(tmp_path.rglob("*tmp"))  # no temporary file left (".hiresflow-tmp")
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        assert handle.metadata() == {"format": "pt"}


def test_store_refuses_out_of_range_values_and_writes_nothing(tmp_path):
    path = _folder(tmp_path, big=1e6)
    raw = path.read_bytes()
    with pytest.raises(ValueError, match="beyond fp16's range"):
        store_weights(tmp_path, "fp16")
    assert path.read_bytes() == raw
    with pytest.raises(ValueError, match="unknown dtype"):
        store_weights(tmp_path, "int8")


def test_store_cli_one_line_errors(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["store", str(tmp_path / "missing")])
    assert res.exit_code != 0 and "is not a folder" in res.output
    (tmp_path / "empty").mkdir()
    res = runner.invoke(app, ["store", str(tmp_path / "empty")])
    assert res.exit_code != 0 and "no .safetensors files" in res.output
    _folder(tmp_path / "ok")
    res = runner.invoke(app, ["store", str(tmp_path / "ok"), "--dtype", "fp16"])
    assert res.exit_code == 0 and '"files": 1' in res.output
