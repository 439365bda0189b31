"""hiresflow batch: prompt files, a real SIGKILL mid-batch and resume, and two processes under accelerate launch."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hiresflow.batch import read_manifest, read_prompts, sha256_file

ARGS = ["--model", "random-tiny-flux", "--scale", "2", "--set", "base_steps=4", "--set", "stage_steps=[2]", "--quiet"]
PROMPTS = ["a red sun over snowy mountains", "three pine trees by a lake", "a house at night", "two suns at dusk",
           "a lake with a boat", "a white moon over hills"]


def _env(**extra) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "HIRESFLOW_PROGRESS": "0", **extra}
    env.pop("HIRESFLOW_SAVE_PAUSE", None)
    env.update(extra)
    return env


def _check_complete(out: Path, n: int) -> dict:
    entries = {e["index"]: e for e in read_manifest(out).values()}
    lines = (out / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == n and sorted(entries) == list(range(n))  # no duplicates, no losses
    for k, e in entries.items():
        assert Path(e["file"]).stem.endswith("-" + e["key"])
        assert sha256_file(out / e["file"]) == e["sha256"], k
        assert e["prompt"] == PROMPTS[k] and e["seed"] == k and e["plan"]["recipe"] == "hiflow"
        assert e["timings"]["seconds"] > 0
    leftovers = [p.name for p in (out / "images").iterdir() if p.name.startswith(".")]
    assert not leftovers and not list(out.glob("manifest.*.jsonl"))
    return entries


def test_read_prompts_txt_and_jsonl(tmp_path):
    (tmp_path / "p.txt").write_text("# header\n\na lake\n  a sun  \n")
    jobs = read_prompts(tmp_path / "p.txt", base_seed=10)
    assert [(j.index, j.prompt, j.seed) for j in jobs] == [(0, "a lake", 10), (1, "a sun", 11)]
    (tmp_path / "p.jsonl").write_text('{"prompt": "a lake", "seed": 7, "params": {"alpha": 0.5}}\n'
                                      '{"prompt": "a sun", "size": "128x64"}\n')
    jobs = read_prompts(tmp_path / "p.jsonl")
    assert jobs[0].seed == 7 and jobs[0].params == {"alpha": 0.5} and jobs[1].seed == 1 and jobs[1].size == "128x64"
    (tmp_path / "bad.jsonl").write_text('{"prompt": "ok"}\n{"prompt": \n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not valid JSON"):
        read_prompts(tmp_path / "bad.jsonl")
    (tmp_path / "p.csv").write_text("a\n")
    with pytest.raises(ValueError, match="must end in .txt"):
        read_prompts(tmp_path / "p.csv")


@pytest.mark.slow
def test_sigkill_mid_batch_then_resume_redoes_nothing_and_loses_nothing(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "hiresflow.cli", "batch", str(prompts), "--out", str(out), *ARGS]
    # a pause before each set's final rename makes the kill land in the middle of a save
    proc = subprocess.Popen(cmd, env=_env(HIRESFLOW_SAVE_PAUSE="0.5"), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    images = out / "images"
    deadline = time.time() + 240
    mid_save = False
    while time.time() < deadline and proc.poll() is None:
        finals = [p for p in images.glob("0*.png") if not p.name.endswith("-native.png")] if images.exists() else []
        natives = list(images.glob("*-native.png")) if images.exists() else []
        if len(finals) >= 2 and len(natives) > len(finals):  # a set half renamed: kill right now
            mid_save = True
            break
        time.sleep(0.02)
    assert proc.poll() is None, proc.stdout.read().decode()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL and mid_save
    finished = {p.name: (p.stat().st_mtime_ns, sha256_file(p))
                for p in images.glob("0*.png") if not p.name.endswith("-native.png")}
    assert 2 <= len(finished) < len(PROMPTS)

    res = subprocess.run([c for c in cmd if c != "--quiet"], env=_env(), capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr
    assert f"{len(finished)} of {len(PROMPTS)} done, {len(PROMPTS) - len(finished)} to go" in res.stderr
    entries = _check_complete(out, len(PROMPTS))
    for name, (mtime, digest) in finished.items():  # finished images were not redone
        p = images / name
        assert p.stat().st_mtime_ns == mtime and sha256_file(p) == digest
    assert {Path(e["file"]).name for e in entries.values()} >= set(finished)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_accelerate_two_processes_shard_and_merge(tmp_path):
    launcher = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    assert launcher, "accelerate is a dependency of hiresflow; its launcher must be installed"
    n = 4
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS[:n]))
    out = tmp_path / "out"
    cmd = [launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision",
           "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
           "-m", "hiresflow.cli", "batch", str(prompts), "--out", str(out), *ARGS]
    res = subprocess.run(cmd, env=_env(ACCELERATE_USE_CPU="1"), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    entries = _check_complete(out, n)
    assert {e["process"] for e in entries.values()} == {0, 1}
    assert all(e["process"] == k % 2 for k, e in entries.items())


def _batch(prompts: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "hiresflow.cli", "batch", str(prompts), "--out", str(out),
           *[a for a in ARGS if a != "--quiet"], *extra]
    return subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=240)


@pytest.mark.slow
def test_changed_settings_are_new_jobs_and_foreign_files_are_not_done(tmp_path):
    """Another --seed is another job (new names, both kept); a file under a job's name that the manifest does not
    record (foreign, or edited after the run) is generated again."""
    from hiresflow.batch import BatchConfig

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS[:2]) + "\n")
    out = tmp_path / "out"
    assert _batch(prompts, out).returncode == 0
    first = {e["file"]: e["sha256"] for e in read_manifest(out).values()}
    res = _batch(prompts, out, "--seed", "5")
    assert res.returncode == 0, res.stderr
    assert "0 of 2 done, 2 to go" in res.stderr  # not "already done"
    entries = read_manifest(out)
    assert len(entries) == 4 and set(first) < {e["file"] for e in entries.values()}
    assert sorted(e["seed"] for e in entries.values()) == [0, 1, 5, 6]
    assert all(sha256_file(out / f) == h for f, h in first.items())  # the seed-0 images were kept

    # a foreign image under the name of a job that has not run yet (--scale 3 is a new key)
    jobs = read_prompts(prompts)
    config = BatchConfig(model="random-tiny-flux", scale=3.0, params={"base_steps": 4, "stage_steps": [2]})
    foreign = out / "images" / f"{jobs[0].stem(config)}.png"
    foreign.write_bytes((out / next(iter(first))).read_bytes())
    res = _batch(prompts, out, "--scale", "3")
    assert res.returncode == 0, res.stderr
    assert "not recorded by this batch" in res.stderr and "0 of 2 done" in res.stderr
    mine = [e for e in read_manifest(out).values() if e["file"] == f"images/{foreign.name}"]
    assert len(mine) == 1 and mine[0]["sha256"] == sha256_file(foreign) and mine[0]["size"] == [192, 192]


@pytest.mark.slow
def test_an_out_folder_in_use_by_another_batch_is_refused(tmp_path):
    """While a batch holds DIR/.batch.lock, another batch on DIR stops with one line; the lock is a flock, so a
    killed holder (here: the lock closed) never leaves it stuck."""
    import fcntl

    prompts = tmp_path / "prompts.txt"
    prompts.write_text(PROMPTS[0] + "\n")
    out = tmp_path / "out"
    out.mkdir()
    fd = os.open(out / ".batch.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        res = _batch(prompts, out)
    finally:
        os.close(fd)
    assert res.returncode == 2 and "in use by another running batch" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not (out / "images").exists()
    assert _batch(prompts, out).returncode == 0
