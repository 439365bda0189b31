"""Bad inputs and faults, tried as a hostile user would, with the outcome of each.

    python benchmarks/bad_inputs.py                 # every case; writes benchmarks/results/bad_inputs.{md,json}
    python benchmarks/bad_inputs.py --fast          # without the cases that start and kill whole runs

A case passes when its outcome is the promised one: a one-line `error: …` on stderr with exit code 2 (CLI) or a
one-line ValueError/TypeError (Python API) containing the expected words, with nothing left in the output folder;
or, for inputs that are fine (a non-Latin prompt, the largest seed), a clean run. tests/test_bad_inputs.py runs
the same list.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--model", "random-tiny-flux", "--scale", "2", "--set", "base_steps=2", "--set", "stage_steps=[1]", "--quiet"]
FAST_SET = ["--set", "base_steps=2", "--set", "stage_steps=[1]"]


@dataclass
class Case:
    area: str
    what: str
    run: Callable[[Path], tuple[int, str]]  # returns (exit code or 0/2 for API, message)
    match: str | None  # expected words of the one-line error; None = must succeed
    slow: bool = False
    outcome: str = field(default="", init=False)
    ok: bool = field(default=False, init=False)


def cli(*args: str, env: dict | None = None) -> Callable[[Path], tuple[int, str]]:
    def run(tmp: Path) -> tuple[int, str]:
        from typer.testing import CliRunner

        from hiresflow.cli import app

        argv = [a.replace("{tmp}", str(tmp)) for a in args]
        if "--out" not in argv and argv and argv[0] == "generate":
            argv += ["--out", str(tmp / "out")]
        res = CliRunner().invoke(app, argv, env={"HF_HUB_OFFLINE": "1", **(env or {})})
        out = res.output.strip()
        if res.exception is not None and not isinstance(res.exception, SystemExit):
            return 1, f"traceback: {type(res.exception).__name__}: {res.exception}"
        return res.exit_code, out

    return run


def api(fn: Callable[[Path], object]) -> Callable[[Path], tuple[int, str]]:
    def run(tmp: Path) -> tuple[int, str]:
        try:
            fn(tmp)
        except (ValueError, TypeError, FloatingPointError) as err:
            return 2, f"{type(err).__name__}: {err}"
        except Exception as err:  # noqa: BLE001 - anything else is a failure of the case
            return 1, f"traceback: {type(err).__name__}: {err}"
        return 0, "ok"

    return run


def _tiny_flux():
    from hiresflow.models.loading import load_model

    return load_model("random-tiny-flux", device="cpu")


def _folder(tmp: Path, card: dict | str | None = None, corrupt: bool = False) -> str:
    """A saved random tiny Flux folder, optionally with a model card or a truncated transformer file."""
    from hiresflow.models.tiny import save_tiny_pipeline

    folder = tmp / "model"
    save_tiny_pipeline("flux", folder)
    if card is not None:
        (folder / "hiresflow.json").write_text(card if isinstance(card, str) else json.dumps(card))
    if corrupt:
        w = folder / "transformer" / "diffusion_pytorch_model.safetensors"
        w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    return str(folder)


def _model_cli(card=None, corrupt=False, extra=()):
    def run(tmp: Path):
        folder = _folder(tmp, card, corrupt)
        return cli("generate", "a lake", "--model", folder, "--scale", "2", *FAST_SET, "--quiet", *extra)(tmp)

    return run


def _from(kind: str):
    def run(tmp: Path):
        path = tmp / "in.png"
        if kind == "text":
            path.write_text("not an image")
        elif kind == "plain":
            from PIL import Image

            Image.new("RGB", (8, 8)).save(path)
        elif kind == "truncated":
            code, _ = cli("generate", "a lake", *TINY, "--out", str(tmp / "a"))(tmp)
            png = next((tmp / "a").glob("*[0-9].png"))
            path.write_bytes(png.read_bytes()[:200])
        return cli("generate", "--from", str(path), "--out", str(tmp / "b"))(tmp)

    return run


def _bench(spec_text: str | None, truncate: bool = False):
    def run(tmp: Path):
        spec = tmp / "spec.yaml"
        if spec_text is not None:
            spec.write_text(spec_text)
        out = tmp / "bench"
        if truncate:
            code, msg = cli("bench", str(spec), "--out", str(out), "--no-eval", "--quiet")(tmp)
            if code:
                return code, msg
            img = next(p for p in (out / "images").rglob("*.png") if not p.name.endswith("native.png"))
            img.write_bytes(img.read_bytes()[:100])
            return cli("bench", str(spec), "--out", str(out), "--eval-only", "--quiet")(tmp)
        return cli("bench", str(spec), "--out", str(out), "--quiet")(tmp)

    return run


SMOKE = """name: t
models: [random-tiny-flux]
scales: [2]
prompts: {world: {n: 1, seed: 0}}
seeds: [0]
common: {steps: 2, base_steps: 2, stage_steps: [1]}
recipes: {hiflow: {}}
metrics: {patches: 1}
"""


def _signal(sig: int, during: str):
    """Start a real run, send `sig` while it samples or while it saves, then check the folder."""

    def run(tmp: Path):
        out = tmp / "out"
        env = dict(os.environ, HF_HUB_OFFLINE="1", HIRESFLOW_SAVE_PAUSE="60" if during == "save" else "0")
        args = [sys.executable, "-m", "hiresflow.cli", "generate", "a lake", "--model", "random-tiny-flux",
                "--scale", "2", "--quiet", "--out", str(out)]
        if during == "sampling":
            args += ["--set", "base_steps=400", "--set", "stage_steps=[1]"]
        else:
            args += FAST_SET
        proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        t0 = time.time()
        while time.time() - t0 < 240:
            ready = any(out.glob("*.json")) if during == "save" else any(out.glob(".*.lock"))
            if ready or proc.poll() is not None:
                break
            time.sleep(0.05)
        if during == "sampling":
            time.sleep(1.0)
        proc.send_signal(sig)
        code = proc.wait(timeout=120)
        left = sorted(p.name for p in out.iterdir()) if out.exists() else []
        if sig == signal.SIGKILL:
            again = [sys.executable, "-m", "hiresflow.cli", "generate", "a lake", *TINY, "--out", str(out)]
            res = subprocess.run(again, env=dict(env, HIRESFLOW_SAVE_PAUSE="0"), capture_output=True, text=True)
            after = sorted(p.name for p in out.iterdir())
            complete = len([n for n in after if not n.startswith(".")]) == 3 and not any(n.startswith(".") for n in after)
            return (2 if complete and res.returncode == 0 else 1), f"killed; next run exit {res.returncode}, folder {after}"
        clean = [n for n in left if not n.startswith(".write-test")]
        return (2 if code == 130 and not clean else 1), f"exit {code}; left {clean}"

    return run


def _concurrent(tmp: Path):
    out = tmp / "out"
    env = dict(os.environ, HF_HUB_OFFLINE="1", HIRESFLOW_SAVE_PAUSE="1")
    args = [sys.executable, "-m", "hiresflow.cli", "generate", "a lake", *TINY, "--out", str(out)]
    procs = [subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    codes = [p.wait(timeout=300) for p in procs]
    names = sorted(p.name for p in out.iterdir())
    return (0 if codes == [0, 0] and len(names) == 6 else 1), f"exit {codes}; {len(names)} files"


def _train(*args: str):
    return cli("train", *args, "--runs", "{tmp}/runs")


def _image(tmp: Path, size=(64, 64)) -> str:
    from PIL import Image

    path = tmp / f"img-{size[0]}x{size[1]}.png"
    Image.new("RGB", size, (40, 90, 160)).save(path)
    return str(path)


def _upscale_cli(size, *args: str):
    def run(tmp: Path):
        return cli("upscale", _image(tmp, size), "--prompt", "a lake", "--out", str(tmp / "out"), *args)(tmp)

    return run


def _batch_refused(tmp: Path):
    """One oversized line among good ones: it is reported with its index, the others run, the summary counts it."""
    prompts = tmp / "p.jsonl"
    prompts.write_text('{"prompt": "a lake", "scale": 1000}\n'
                       '{"prompt": "a sun", "scale": 2, "params": {"base_steps": 2, "stage_steps": [1]}}\n')
    code, msg = cli("batch", str(prompts), "--out", str(tmp / "b"), "--model", "random-tiny-flux", "--quiet")(tmp)
    refused = [line for line in msg.splitlines() if line.startswith("prompt 0: refused:")]
    ok = code == 2 and len(refused) == 1 and "1 written, 0 already done, 1 refused" in msg
    return (2, refused[0]) if ok else (1, msg)


def _app_job(size_text: str):
    def run(tmp: Path):
        from hiresflow.app import AppConfig, ModelCache, run_job

        return run_job(ModelCache(), AppConfig(out=tmp / "out"), "generate", "a lake", "", "tiny-flux", "hiflow",
                       size_text, 4, 0, None, "inversion", "")

    return run


def _size_and_scale(tmp: Path):
    """--size wins over --scale: the native pass stays at the model's native 64x64."""
    code, msg = cli("generate", "a lake", *TINY, "--size", "128x128", "--out", str(tmp / "s"))(tmp)
    if code:
        return code, msg
    meta = json.loads(next((tmp / "s").glob("*.json")).read_text())
    native = meta["stages"][0]["size"]
    return (0, "runs") if native == [64, 64] and meta["size"] == [128, 128] else (1, f"native pass at {native}")


def _record_text(edit=None) -> str:
    from hiresflow.plan import Plan, ScheduleSpec, Stage

    plan = Plan("direct", [Stage(size=(128, 128), schedule=ScheduleSpec(steps=2))]).to_dict()
    rec = {"prompt": "a lake", "seed": 0, "negative_prompt": "", "model": {"name": "random-tiny-flux"},
           "plan": plan}
    if edit is not None:
        rec = edit(rec) or rec
    return rec if isinstance(rec, str) else json.dumps(rec)


def _from_record(edit, *args: str):
    def run(tmp: Path):
        path = tmp / "record.json"
        path.write_text(_record_text(edit))
        return cli("generate", "--from", str(path), "--quiet", *args)(tmp)

    return run


def _cfm_upsampler(rec):
    rec["plan"]["stages"].insert(0, {"type": "Stage", "size": [64, 64],
                                     "schedule": {"type": "ScheduleSpec", "steps": 2}})
    rec["plan"]["stages"][1]["init"] = {"type": "InitSpec", "start_from": "upsampled", "upsampler": {
        "type": "CfmUpsampleSpec", "model": "/tmp/someone-elses-upsampler"}}


def _os_fault(kind: str):
    """A run whose output writes fail as the disk, the file system or the permissions would make them fail."""

    def run(tmp: Path):
        import builtins
        import errno
        import io

        import hiresflow.atomic as atomic

        real_open, real_replace = builtins.open, atomic.os.replace
        code = {"full": errno.ENOSPC, "read-only": errno.EROFS, "denied": errno.EACCES}[kind]

        def full(file, mode="r", *a, **kw):
            name = os.path.basename(str(file))
            if any(c in mode for c in "wax+") and name.endswith(atomic.TMP_SUFFIX) and not name.startswith(".write"):
                raise OSError(code, os.strerror(code), str(file))
            return real_open(file, mode, *a, **kw)

        def refuse(src, dst):
            raise OSError(code, os.strerror(code), str(src), None, str(dst))

        if kind == "full":
            builtins.open = io.open = full
        else:
            atomic.os.replace = refuse
        try:
            return cli("generate", "a lake", *TINY)(tmp)
        finally:
            builtins.open = io.open = real_open
            atomic.os.replace = real_replace

    return run


def _overwrite_folder(tmp: Path):
    out = tmp / "o"
    (out / "a-lake-hiflow-random-tiny-flux-128x128-s0.png").mkdir(parents=True)
    return cli("generate", "a lake", *TINY, "--overwrite", "--out", str(out))(tmp)


def _port_in_use(tmp: Path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        return cli("app", "--port", str(busy.getsockname()[1]))(tmp)


def _long_prompt(tmp: Path):
    """A 10,000-word prompt: one note line with the dropped token counts, nothing under --quiet."""
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    args = [sys.executable, "-m", "hiresflow.cli", "generate", " ".join(["lake"] * 10_000), *TINY[:-1]]
    loud = subprocess.run([*args, "--out", str(tmp / "a")], env=env, capture_output=True, text=True)
    quiet = subprocess.run([*args, "--quiet", "--out", str(tmp / "b")], env=env, capture_output=True, text=True)
    lines = loud.stderr.strip().splitlines()
    ok = loud.returncode == quiet.returncode == 0 and len(lines) == 1 and "dropped" in lines[0] and not quiet.stderr
    summary = f"{len(loud.stderr)} bytes of stderr ({len(quiet.stderr)} with --quiet): {lines[0] if lines else ''}"
    return (2 if ok else 1), summary[:160]


def _cases() -> list[Case]:
    import torch

    C = Case
    return [
        # sizes and scales
        C("size", "--scale 0.5", cli("generate", "a lake", "--model", "random-tiny-flux", "--scale", "0.5"), "scale must be >= 1"),
        C("size", "--scale 0", cli("generate", "a lake", "--model", "random-tiny-flux", "--scale", "0"), "scale must be >= 1"),
        C("size", "--scale -2", cli("generate", "a lake", "--model", "random-tiny-flux", "--scale", "-2"), "scale must be >= 1"),
        C("size", "--scale nan", cli("generate", "a lake", "--model", "random-tiny-flux", "--scale", "nan"), "finite number"),
        C("size", "--scale inf", cli("generate", "a lake", "--model", "random-tiny-flux", "--scale", "inf"), "finite number"),
        C("size", "--size 100x128 (not a multiple of 16)", cli("generate", "a lake", "--model", "random-tiny-flux", "--size", "100x128"), "multiple of 16"),
        C("size", "--size 0x0", cli("generate", "a lake", "--model", "random-tiny-flux", "--size", "0x0"), "multiple of 16"),
        C("size", "--size abc", cli("generate", "a lake", "--model", "random-tiny-flux", "--size", "abc"), "cannot read size"),
        C("size", "--size 32x32 (below native)", cli("generate", "a lake", "--model", "random-tiny-flux", "--size", "32x32"), "smaller than the native"),
        C("size", "--size 100000x100000", cli("generate", "a lake", "--model", "random-tiny-flux", "--size", "99984x99984"), "--allow-large"),
        C("size", "--method direct --size 16384x16384 (one huge stage)", cli("generate", "a lake", "--model", "random-tiny-flux", "--method", "direct", "--size", "16384x16384"), "--allow-large"),
        # recipe parameters
        C("recipe", "--method nope", cli("generate", "a lake", "--method", "nope"), "unknown recipe"),
        C("recipe", "--set gamma=1 (no such parameter)", cli("generate", "a lake", "--set", "gamma=1"), "has no parameter gamma"),
        C("recipe", "--set alpha (no =)", cli("generate", "a lake", "--set", "alpha"), "expects key=value"),
        C("recipe", "--set alpha=-1", cli("generate", "a lake", *TINY, "--set", "alpha=-1"), "alpha must be"),
        C("recipe", "--set alpha=[1.0,'x']", cli("generate", "a lake", *TINY, "--set", "alpha=[1.0,'x']"), "alpha must be"),
        C("recipe", "--set stage_steps=[]", cli("generate", "a lake", "--model", "random-tiny-flux", "--set", "stage_steps=[]"), "empty list"),
        C("recipe", "--set stage_steps=[40] (beyond base_steps)", cli("generate", "a lake", "--model", "random-tiny-flux", "--set", "stage_steps=[40]"), "stage_steps must lie"),
        C("recipe", "--set base_steps=1000000", cli("generate", "a lake", "--model", "random-tiny-flux", "--set", "base_steps=1000000"), "sampling would run for days"),
        C("recipe", "--method direct --set steps=0", cli("generate", "a lake", "--model", "random-tiny-flux", "--method", "direct", "--set", "steps=0"), "positive integer"),
        C("recipe", "--method direct --set steps=2.5", cli("generate", "a lake", "--model", "random-tiny-flux", "--method", "direct", "--set", "steps=2.5"), "positive integer"),
        C("recipe", "--method sdedit --set space=foo", cli("generate", "a lake", "--model", "random-tiny-flux", "--method", "sdedit", "--set", "space=foo"), "space must be one of"),
        C("recipe", "--method sdedit --set tau=2", cli("generate", "a lake", "--model", "random-tiny-flux", "--method", "sdedit", "--set", "tau=2"), "tau must lie"),
        C("recipe", "--set init=magic", cli("generate", "a lake", "--model", "random-tiny-flux", "--set", "init=magic"), "init must be"),
        C("recipe", "--set clamp_init=sometimes", cli("generate", "a lake", "--model", "random-tiny-flux", "--set", "clamp_init=sometimes"), "clamp must be one of"),
        C("recipe", "--set shift_frame=diagonal", cli("generate", "a lake", "--model", "random-tiny-flux", "--set", "shift_frame=diagonal"), "shift_frame must be one of"),
        C("recipe", "--set ntk=0.1", cli("generate", "a lake", "--model", "random-tiny-flux", "--set", "ntk=0.1"), "ntk factor"),
        C("recipe", "--set windowed_attention=2", cli("generate", "a lake", "--model", "random-tiny-flux", "--set", "windowed_attention=2"), "start must lie"),
        C("recipe", "--set stage_sizes=[[64,64]] (does not grow)", cli("generate", "a lake", "--model", "random-tiny-flux", "--set", "stage_sizes=[[64,64]]"), "stage_sizes must"),
        C("recipe", "--method imax --set schedule=cosine", cli("generate", "a lake", "--model", "random-tiny-flux", "--method", "imax", "--set", "schedule=cosine"), "guidance schedule must be one of"),
        C("recipe", "--method freescale --set restart=1.5", cli("generate", "a lake", "--model", "random-tiny-flux", "--method", "freescale", "--set", "restart=1.5"), "restart must lie"),
        C("recipe", "--method diffusehigh --set noising=0", cli("generate", "a lake", "--model", "random-tiny-flux", "--method", "diffusehigh", "--set", "noising=0"), "noising must lie"),
        C("recipe", "--method diffusehigh --set wavelet=db9", cli("generate", "a lake", "--model", "random-tiny-flux", "--method", "diffusehigh", "--set", "wavelet=db9"), "wavelet must be one of"),
        C("recipe", "--method demofusion --set jitter_mode=wild", cli("generate", "a lake", "--model", "random-tiny-flux", "--method", "demofusion", "--set", "jitter_mode=wild"), "jitter_mode must be one of"),
        C("recipe", "--method upscale --set interpolation=cubic", cli("generate", "a lake", "--model", "random-tiny-flux", "--method", "upscale", "--set", "interpolation=cubic"), "interpolation must be"),
        C("recipe", "--method hidiffusion on a Flux model", cli("generate", "a lake", "--model", "random-tiny-flux", "--method", "hidiffusion"), "U-Net methods"),
        C("recipe", "--set stage_guidance=1e38 (non-finite output)", cli("generate", "a lake", "--model", "random-tiny-flux", "--scale", "2", *FAST_SET, "--set", "stage_guidance=1e38", "--quiet"), "non-finite"),
        # seeds and prompts
        C("seed", "--seed -1", cli("generate", "a lake", "--model", "random-tiny-flux", "--seed", "-1"), "seed must lie"),
        C("seed", "--seed 2**64", cli("generate", "a lake", "--model", "random-tiny-flux", "--seed", str(2**64)), "seed must lie"),
        C("seed", "--seed 2**64-1 (largest valid)", cli("generate", "a lake", *TINY, "--seed", str(2**64 - 1)), None),
        C("prompt", "non-Latin prompt (kept in the file name)", cli("generate", "富士山の夕日", *TINY), None),
        C("prompt", "empty prompt", cli("generate", "", *TINY), None),
        C("prompt", "no prompt and no --from", cli("generate", "--model", "random-tiny-flux"), "give a prompt"),
        # models and devices
        C("model", "--model tiny-nothing (no such model)", cli("generate", "a lake", "--model", "tiny-nothing"), "cannot load model"),
        C("model", "--model /nonexistent/folder", cli("generate", "a lake", "--model", "/nonexistent/folder"), "cannot load model"),
        C("model", "--model an empty folder", cli("generate", "a lake", "--model", "{tmp}"), "not a diffusers pipeline folder"),
        C("model", "truncated transformer weights", _model_cli(corrupt=True), "corrupt weight file"),
        C("model", "model card: native_size 0", _model_cli(card={"native_size": 0}), "'native_size' must be"),
        C("model", "model card: native_size 'abc'", _model_cli(card={"native_size": "abc"}), "'native_size' must be"),
        C("model", "model card: native_size 70 (not a multiple)", _model_cli(card={"native_size": 70}), "multiple of 16"),
        C("model", "model card: guidance -1", _model_cli(card={"guidance": -1}), "'guidance' must be"),
        C("model", "model card: steps 0", _model_cli(card={"steps": 0}), "'steps' must be"),
        C("model", "model card: invalid JSON", _model_cli(card="{native_size: 64"), "not valid JSON"),
        C("device", "--device cuda without a GPU", cli("generate", "a lake", "--device", "cuda"),
          "no CUDA GPU" if not torch.cuda.is_available() else None),
        C("device", "--device tpu", cli("generate", "a lake", "--device", "tpu"), "device"),
        C("device", "--device cuda:7", cli("generate", "a lake", "--device", "cuda:7"), "CUDA"),
        # output folder and re-runs
        C("output", "--out is a file", cli("generate", "a lake", *TINY, "--out", str(ROOT / "README.md")), "is a file"),
        C("output", "--out not writable", cli("generate", "a lake", *TINY, "--out", "/proc/hiresflow-out"), "cannot write to --out"),
        C("output", "--from a missing file", cli("generate", "--from", "{tmp}/none.png"), "does not exist"),
        C("output", "--from a text file", _from("text"), "cannot read"),
        C("output", "--from a PNG without metadata", _from("plain"), "no hiresflow metadata"),
        C("output", "--from a truncated PNG", _from("truncated"), "cannot read"),
        C("output", "--from together with --scale", cli("generate", "--from", "x.png", "--scale", "2"), "drop --method"),
        # Python API
        C("api", "load_model(123)", api(lambda t: __import__("hiresflow.models.loading", fromlist=["x"]).load_model(123)), "must be a name"),
        C("api", "load_model(dtype='half')", api(lambda t: __import__("hiresflow.models.loading", fromlist=["x"]).load_model("random-tiny-flux", dtype="half")), "dtype must be"),
        C("api", "build_plan('hiflow', 'tiny-flux') (a name, not a model)", api(lambda t: __import__("hiresflow.recipes", fromlist=["x"]).build_plan("hiflow", "tiny-flux", scale=2)), "FlowModel"),
        C("api", "build_plan(1, model)", api(lambda t: __import__("hiresflow.recipes", fromlist=["x"]).build_plan(1, _tiny_flux(), scale=2)), "recipe name must be"),
        C("api", "build_plan(..., size=(128.5, 128))", api(lambda t: __import__("hiresflow.recipes", fromlist=["x"]).build_plan("hiflow", _tiny_flux(), size=(128.5, 128))), "two integers"),
        C("api", "run_plan(model, 'plan', ...)", api(lambda t: __import__("hiresflow.runner", fromlist=["x"]).run_plan(_tiny_flux(), "plan", "a lake")), "must be a hiresflow Plan"),
        C("api", "run_plan(..., prompt=5)", api(lambda t: _run_api(prompt=5)), "prompt must be"),
        C("api", "run_plan(..., seed=-1)", api(lambda t: _run_api(seed=-1)), "seed must lie"),
        C("api", "run_plan(..., seed='7')", api(lambda t: _run_api(seed="7")), "seed must be an integer"),
        C("api", "Plan.from_dict({})", api(lambda t: __import__("hiresflow.plan", fromlist=["x"]).Plan.from_dict({})), "not a hiresflow plan"),
        C("api", "wrap_pipeline(object())", api(lambda t: __import__("hiresflow.models.loading", fromlist=["x"]).wrap_pipeline(object())), "unsupported pipeline"),
        # bench
        C("bench", "spec file missing", _bench(None), "spec"),
        C("bench", "spec with a typo key (recipies)", _bench(SMOKE.replace("recipes:", "recipies:")), "unknown spec key"),
        C("bench", "spec with an unknown recipe", _bench(SMOKE.replace("hiflow: {}", "hyperflow: {}")), "unknown recipe"),
        C("bench", "spec with a bad recipe parameter", _bench(SMOKE.replace("hiflow: {}", "hiflow: {set: {alpha: -1}}")), "alpha must be"),
        C("bench", "truncated PNG in the bench folder", _bench(SMOKE, truncate=True), "unreadable image", slow=True),
        # training
        C("train", "train flux --steps 0", _train("flux", "--steps", "0"), "--steps must be"),
        C("train", "train flux --batch 0", _train("flux", "--batch", "0"), "--batch must be"),
        C("train", "train flux --lr -1", _train("flux", "--lr", "-1"), "--lr must be"),
        C("train", "train sd --p-uncond 2", _train("sd", "--p-uncond", "2"), "--p-uncond must lie"),
        C("train", "train flux --transformer '{bad'", _train("flux", "--transformer", "{bad"), "must be a JSON object"),
        C("train", "train vae --name ../x", _train("vae", "--name", "../x"), "plain folder name"),
        # one resource guard on every entry point
        C("guard", "upscale --scale 1000", _upscale_cli((64, 64), "--scale", "1000"), "--allow-large"),
        C("guard", "upscale a 4000x1 image at --scale 2", _upscale_cli((4000, 1), "--model", "random-tiny-flux", "--scale", "2"), "aspect ratio of 4000:1"),
        C("guard", "batch line {\"scale\": 1000} among good ones", _batch_refused, "refused"),
        C("guard", "hiresflow.generate('tiny-flux', 'x', size=(100000, 100000))", api(lambda t: __import__("hiresflow").generate("tiny-flux", "x", size=(100000, 100000))), "allow_large=True"),
        C("guard", "hiresflow.upscale_image(..., scale=1000)", api(lambda t: __import__("hiresflow").upscale_image("tiny-flux", _image(t), "x", scale=1000)), "allow_large=True"),
        C("guard", "app job at 99984x99984", api(_app_job("99984x99984")), "lower the target size"),
        C("guard", "HIRESFLOW_MAX_SECONDS=1e-6 (time limit)", cli("generate", "a lake", *TINY, env={"HIRESFLOW_MAX_SECONDS": "0.000001"}), "model time"),
        C("env", "HIRESFLOW_MAX_SECONDS=nan", cli("generate", "a lake", env={"HIRESFLOW_MAX_SECONDS": "nan"}), "HIRESFLOW_MAX_SECONDS='nan' is not valid"),
        C("env", "HIRESFLOW_MAX_SECONDS=inf (would switch the guard off)", cli("generate", "a lake", env={"HIRESFLOW_MAX_SECONDS": "inf"}), "HIRESFLOW_MAX_SECONDS='inf' is not valid"),
        C("env", "HIRESFLOW_MAX_SECONDS=-1", cli("generate", "a lake", env={"HIRESFLOW_MAX_SECONDS": "-1"}), "seconds > 0"),
        C("env", "HIRESFLOW_SAVE_PAUSE=abc", cli("generate", "a lake", env={"HIRESFLOW_SAVE_PAUSE": "abc"}), "HIRESFLOW_SAVE_PAUSE='abc'"),
        C("env", "HIRESFLOW_PROGRESS=yes", cli("batch", "p.txt", "--out", "{tmp}/b", env={"HIRESFLOW_PROGRESS": "yes"}), "0 (no progress bars) or 1"),
        C("env", "HIRESFLOW_MAX_SECONDS=abc in the API", api(lambda t: _with_env("HIRESFLOW_MAX_SECONDS", "abc", lambda: __import__("hiresflow").generate("tiny-flux", "x"))), "HIRESFLOW_MAX_SECONDS"),
        C("size", "--size 128x128 --scale 2 (size wins, native pass at 64x64)", _size_and_scale, None),
        # untrusted --from records
        C("from", "--from record asking for ../../etc/model", _from_record(lambda r: r["model"].update(name="../../etc/model")), "not an embedded model"),
        C("from", "--from record asking for a hub id", _from_record(lambda r: r["model"].update(name="black-forest-labs/FLUX.1-dev")), "--trust-paths"),
        C("from", "--from record with an upsampler folder", _from_record(_cfm_upsampler), "upsampler.model asks for"),
        C("from", "--from record: start as a string", _from_record(lambda r: r["plan"]["stages"][0]["schedule"].update(start="5")), "schedule.start: must be an integer"),
        C("from", "--from record: \"stages\": []", _from_record(lambda r: r["plan"].update(stages=[])), "at least one stage"),
        C("from", "--from record: seed \"7\"", _from_record(lambda r: r.update(seed="7")), "field 'seed'"),
        C("from", "--from record: 100,000 nested lists", _from_record(lambda r: '{"prompt": "x", "plan": ' + "[" * 100000 + "]" * 100000 + "}"), "nests too deeply"),
        C("from", "--from record: 40 nested lists in a field", _from_record(lambda r: r.update(extra=json.loads("[" * 40 + "]" * 40))), "nested deeper than"),
        # OS errors after the work
        C("os", "disk full while saving (ENOSPC)", _os_fault("full"), "No space left on device"),
        C("os", "read-only file system at the rename (EROFS)", _os_fault("read-only"), "Read-only file system"),
        C("os", "permission denied at the rename (EACCES)", _os_fault("denied"), "Permission denied"),
        C("os", "--overwrite onto a folder", _overwrite_folder, "is a folder"),
        C("os", "app --port 99999", cli("app", "--port", "99999"), "--port must lie in 1…65535"),
        C("os", "app --port already in use", _port_in_use, "Address already in use"),
        C("prompt", "10,000-word prompt (tokenizer truncation)", _long_prompt, "", slow=True),
        # faults
        C("fault", "SIGTERM while sampling", _signal(signal.SIGTERM, "sampling"), "", slow=True),
        C("fault", "SIGTERM while saving", _signal(signal.SIGTERM, "save"), "", slow=True),
        C("fault", "SIGKILL while saving, then a new run", _signal(signal.SIGKILL, "save"), "", slow=True),
        C("fault", "two runs into one folder at once", _concurrent, None, slow=True),
        # the RoPE family, the model families and hiresflow's own recipe
        C("rope", "--method dype --set lambda_s=-1", cli("generate", "a lake", "--model", "random-tiny-flux", "--method", "dype", "--set", "lambda_s=-1"), "lambda_s must be a finite number > 0"),
        C("rope", "--method dype --set lambda_t=nan", cli("generate", "a lake", "--model", "random-tiny-flux", "--method", "dype", "--set", "lambda_t=nan"), "lambda_t must be a finite number > 0"),
        C("rope", "--method dype --set method=warp (unknown schedule base)", cli("generate", "a lake", "--model", "random-tiny-flux", "--method", "dype", "--set", "method=warp"), "rope method must be one of"),
        C("rope", "--method dype --set version=v9", cli("generate", "a lake", "--model", "random-tiny-flux", "--method", "dype", "--set", "version=v9"), "DyPE version must be one of"),
        C("rope", "--method dype on a U-Net model", cli("generate", "a lake", "--model", "random-tiny-sd", "--method", "dype"), "without a rotary position embedding"),
        C("rope", "--method dype on SD3.5 (learned positions)", cli("generate", "a lake", "--model", "random-tiny-sd35", "--method", "dype"), "without a rotary position embedding"),
        C("family", "--method hidiffusion (U-Net patches) on Qwen-Image", cli("generate", "a lake", "--model", "random-tiny-qwenimage", "--method", "hidiffusion"), "are U-Net methods"),
        C("family", "--method cfm on Z-Image (another latent space)", cli("generate", "a lake", "--model", "random-tiny-zimage", "--method", "cfm"), "trained on the latents of another VAE"),
        C("family", "--method imax --set text_duplication=true on Qwen-Image", cli("generate", "a lake", "--model", "random-tiny-qwenimage", "--method", "imax", "--set", "text_duplication=true"), "text duplication is not defined for Qwen-Image"),
        C("recipe", "--method anchored --set noising=1.5", cli("generate", "a lake", "--model", "random-tiny-flux", "--method", "anchored", "--set", "noising=1.5"), "noising must lie in"),
        C("recipe", "--method anchored --set upscaler=esrgan-x9", cli("generate", "a lake", "--model", "random-tiny-flux", "--method", "anchored", "--set", "upscaler=esrgan-x9"), "upscaler must be one of"),
        C("recipe", "--method anchored --set dwt_steps=-2", cli("generate", "a lake", "--model", "random-tiny-flux", "--method", "anchored", "--set", "dwt_steps=-2"), "dwt_steps must be an integer"),
        # real-size options: memory plan, step caching, context parallelism
        C("memory", "--max-memory 0", cli("generate", "a lake", "--model", "random-tiny-flux", "--max-memory", "0"), "below 1 MiB"),
        C("memory", "--max-memory lots", cli("generate", "a lake", "--model", "random-tiny-flux", "--max-memory", "lots"), "is not a size"),
        C("memory", "--max-memory 2MB (nothing fits)", cli("generate", "a lake", *TINY, "--max-memory", "2MB"), "nothing fits"),
        C("memory", "plan --explain without --model or --arch", cli("plan", "--explain"), "give --model"),
        C("memory", "plan --arch unknown", cli("plan", "--arch", "flux-9", "--explain"), "unknown --arch"),
        C("cache", "--cache warp:1 (unknown name)", cli("generate", "a lake", "--model", "random-tiny-flux", "--cache", "warp:1"), "unknown cache"),
        C("cache", "--cache first-block:-1", cli("generate", "a lake", "--model", "random-tiny-flux", "--cache", "first-block:-1"), "positive number"),
        C("cache", "--cache first-block@top", cli("generate", "a lake", "--model", "random-tiny-flux", "--cache", "first-block@top"), "stages must be"),
        C("cache", "--cache first-block on a U-Net (tiny-sd)", cli("generate", "a lake", "--model", "random-tiny-sd", "--scale", "2", "--cache", "first-block"), "drop --cache"),
        C("cache", "--cache first-block on SD3 (its transformer has no cache hooks in diffusers 0.42)", cli("generate", "a lake", "--model", "random-tiny-sd3", "--scale", "2", "--cache", "first-block"), "drop --cache"),
        C("parallel", "--parallel 3 without torchrun", cli("generate", "a lake", "--model", "random-tiny-flux", "--parallel", "3"), "torchrun --nproc-per-node 3"),
        C("parallel", "--parallel 3 on 2 ranks", cli("generate", "a lake", "--model", "random-tiny-flux", "--parallel", "3", env={"WORLD_SIZE": "2"}), "torchrun started 2"),
        C("parallel", "--parallel 0", cli("generate", "a lake", "--model", "random-tiny-flux", "--parallel", "0"), "whole number"),
        C("size", "--native 0", cli("generate", "a lake", "--model", "random-tiny-flux", "--native", "0"), "--native must be"),
    ]


def _with_env(name: str, value: str, fn):
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        return fn()
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def _run_api(**kw):
    from hiresflow.recipes import build_plan
    from hiresflow.runner import run_plan

    m = _tiny_flux()
    args = dict(prompt="a lake", seed=0) | kw
    return run_plan(m, build_plan("direct", m, scale=1, steps=1), args.pop("prompt"), **args)


def evaluate(case: Case, tmp: Path) -> Case:
    code, msg = case.run(tmp)
    lines = [l for l in msg.splitlines() if l.strip()]
    if case.match is None:
        case.ok = code == 0
        case.outcome = "runs" if case.ok else f"failed ({code}): {msg[-200:]}"
    elif case.match == "":  # fault cases report ok as code 2
        case.ok = code == 2
        case.outcome = ("handled: " if case.ok else "NOT handled: ") + msg[-160:]
    else:
        one_line = len(lines) == 1 and (lines[0].startswith("error:") or ": " in lines[0])
        case.ok = code == 2 and one_line and case.match in msg
        case.outcome = (lines[-1] if lines else msg) if case.ok else f"NOT handled (exit {code}): {msg[-200:]}"
    out = tmp / "out"
    if case.match and out.exists() and any(p for p in out.iterdir() if not p.name.startswith(".write-test")):
        case.ok, case.outcome = False, f"left files in --out: {sorted(p.name for p in out.iterdir())}"
    return case


def run_cases(fast: bool = False) -> list[Case]:
    done = []
    for case in _cases():
        if fast and case.slow:
            continue
        tmp = Path(tempfile.mkdtemp(prefix="hiresflow-bad-"))
        try:
            done.append(evaluate(case, tmp))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        print(f"{'ok ' if done[-1].ok else 'BAD'} {case.area:7s} {case.what}: {done[-1].outcome[:120]}", flush=True)
    return done


def _cell(text: str) -> str:
    """Table-cell text: one line, pipes escaped, brackets escaped so that `stages[0]` is not read as a link."""
    return text.replace("\n", " ").replace("|", "\\|").replace("[", "\\[").replace("]", "\\]")


def markdown_table(records: list[dict]) -> str:
    """The bad-input table of `bad_inputs.json`'s records (area, what, ok, outcome; outcomes cut at 150 chars)."""
    n_ok = sum(r["ok"] for r in records)
    lines = [f"{n_ok} of {len(records)} cases handled (`python benchmarks/bad_inputs.py`).", "",
             "| area | input or fault | outcome |", "|---|---|---|"]
    for r in records:
        mark = "✓ " if r["ok"] else "✗ "
        lines.append(f"| {r['area']} | {_cell(r['what'])} | {mark}{_cell(r['outcome'][:150])} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fast", action="store_true", help="skip the cases that start and kill whole runs")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bad_inputs")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cases = run_cases(args.fast)
    records = [{"area": c.area, "what": c.what, "ok": c.ok, "outcome": c.outcome} for c in cases]
    n_ok = sum(c.ok for c in cases)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(markdown_table(records))
    args.out.with_suffix(".json").write_text(json.dumps(records, indent=1))
    print(f"{n_ok}/{len(cases)} handled; wrote {args.out.with_suffix('.md')}")
    sys.exit(0 if n_ok == len(cases) else 1)


if __name__ == "__main__":
    main()
