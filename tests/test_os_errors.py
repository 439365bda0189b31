"""OS errors after the work (a full disk, a read-only folder, permission denied, a folder where an image goes, a bad
or busy port) are one-line errors with a non-zero exit and nothing half-written; an early error leaves no empty
output folder behind."""

import builtins
import errno
import io
import json
import os
import socket

import pytest
from PIL import Image
from typer.testing import CliRunner

from hiresflow.atomic import TMP_SUFFIX, describe_os_error, temporary_name
from hiresflow.cli import app

runner = CliRunner()
TINY = ["--model", "random-tiny-flux", "--scale", "2", "--set", "base_steps=2", "--set", "stage_steps=[1]", "--quiet"]
STEM = "a-lake-hiflow-random-tiny-flux-128x128-s0"


def _error(res, *words) -> str:
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert res.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:"), res.output
    for word in words:
        assert word in lines[0], res.output
    return lines[0]


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else None


@pytest.fixture
def disk_full(monkeypatch):
    """Every write of a temporary output file fails with ENOSPC, as on a disk that fills during the run (the empty
    write probe of --out still succeeds)."""
    real = builtins.open

    def full(file, mode="r", *args, **kwargs):
        name = os.path.basename(str(file))
        if any(c in mode for c in "wax+") and name.endswith(TMP_SUFFIX) and not name.startswith(".write-test"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(file))
        return real(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", full)
    monkeypatch.setattr(io, "open", full)


def test_generate_on_a_full_disk(disk_full, tmp_path):
    out = tmp_path / "out"
    line = _error(runner.invoke(app, ["generate", "a lake", *TINY, "--out", str(out)]),
                  "No space left on device", "free some space")
    assert f"{STEM}-native.png" in line and TMP_SUFFIX not in line
    assert not out.exists()  # the folder this run made is taken back out
    out.mkdir()
    _error(runner.invoke(app, ["generate", "a lake", *TINY, "--out", str(out)]), "No space left")
    assert _files(out) == []  # an existing folder is kept, and nothing half-written is in it


def test_upscale_and_batch_on_a_full_disk(disk_full, tmp_path):
    photo = tmp_path / "photo.png"
    Image.new("RGB", (64, 64), (30, 90, 200)).save(photo)
    _error(runner.invoke(app, ["upscale", str(photo), "--prompt", "a lake", *TINY, "--out", str(tmp_path / "u")]),
           "No space left on device")
    assert not (tmp_path / "u").exists()
    prompts = tmp_path / "p.txt"
    prompts.write_text("a lake\n")
    _error(runner.invoke(app, ["batch", str(prompts), "--out", str(tmp_path / "b"), *TINY]), "No space left")
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("code,words", [(errno.EROFS, "Read-only file system"), (errno.EACCES, "Permission denied")])
def test_a_failing_rename_leaves_no_partial_set(monkeypatch, tmp_path, code, words):
    """The final image's rename fails after the native image and sidecar are in place: both are taken back."""
    import hiresflow.atomic as atomic

    real = os.replace

    def replace(src, dst):
        if str(dst).endswith(f"{STEM}.png"):
            raise OSError(code, os.strerror(code), str(src), None, str(dst))
        return real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", replace)
    out = tmp_path / "out"
    out.mkdir()
    line = _error(runner.invoke(app, ["generate", "a lake", *TINY, "--out", str(out)]), words)
    assert f"{STEM}.png" in line
    assert _files(out) == []


def test_overwrite_onto_a_folder_is_refused_before_the_run(tmp_path):
    (tmp_path / f"{STEM}.png").mkdir()
    _error(runner.invoke(app, ["generate", "a lake", *TINY, "--out", str(tmp_path), "--overwrite"]),
           f"{STEM}.png is a folder", "--overwrite replaces image files only")
    assert _files(tmp_path) == [f"{STEM}.png"]
    res = runner.invoke(app, ["generate", "a lake", *TINY, "--out", str(tmp_path)])  # without: the next free name
    assert res.exit_code == 0 and (tmp_path / f"{STEM}-2.png").is_file(), res.output


def test_app_port_out_of_range_and_in_use():
    _error(runner.invoke(app, ["app", "--port", "99999"]), "--port must lie in 1…65535, got 99999")
    _error(runner.invoke(app, ["app", "--port", "0"]), "--port must lie in")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        _error(runner.invoke(app, ["app", "--port", str(port)]), f"cannot listen on 127.0.0.1:{port}",
               "Address already in use", "pick another --port")
    _error(runner.invoke(app, ["app", "--host", "no-such-host.invalid"]), "--host no-such-host.invalid")


def test_early_errors_leave_no_output_folder(monkeypatch, tmp_path):
    """Refusals after the model loaded (the time limit, an aspect ratio) remove the folder the run created."""
    monkeypatch.setenv("HIRESFLOW_MAX_SECONDS", "0.000001")
    _error(runner.invoke(app, ["generate", "a lake", *TINY, "--out", str(tmp_path / "g" / "deep")]),
           "model time", "--allow-large")
    assert not (tmp_path / "g").exists()
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"prompt": "a lake"}) + "\n")
    _error(runner.invoke(app, ["batch", str(prompts), "--out", str(tmp_path / "b"), *TINY]), "prompt 0:",
           "model time")
    assert not (tmp_path / "b").exists()
    monkeypatch.delenv("HIRESFLOW_MAX_SECONDS")
    strip = tmp_path / "strip.png"
    Image.new("RGB", (4000, 1)).save(strip)
    _error(runner.invoke(app, ["upscale", str(strip), "--prompt", "x", *TINY, "--out", str(tmp_path / "u")]),
           "aspect ratio of 4000:1", "crop it")
    assert not (tmp_path / "u").exists()


def test_describe_os_error_names_the_file_asked_for(tmp_path):
    target = tmp_path / "x.png"
    err = OSError(errno.ENOSPC, "No space left on device", str(temporary_name(target)))
    assert describe_os_error(err) == f"cannot write {target}: No space left on device; free some space or pick " \
                                     f"another --out"
    assert describe_os_error(OSError(errno.EADDRINUSE, "Address already in use"), "cannot listen on h:1") == \
        "cannot listen on h:1: Address already in use; pick another --port"
    assert describe_os_error(OSError("odd failure")) == "odd failure"
