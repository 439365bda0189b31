"""Load a FlowModel from a short name, a local diffusers folder or a model-hub id.

Short names: `tiny-flux` and `tiny-sd` are the embedded models shipped inside the package (trained on the
reference world; `tiny-flux` is v2, warm-started from `tiny-flux-v1`, which stays loadable by name for comparison;
`tiny-sd` is v3 (`tiny-sd-v3`): v1's three-level U-Net warm-started into v-prediction on a zero-terminal-SNR
schedule, better than v1 at native size; `tiny-sd-v1` stays loadable by name; the SD 1.5-layout v2 measured worse
than v1 and was retired, see docs/embedded-models.md); `random-tiny-flux`, `random-tiny-sd`, `random-tiny-sdxl`, `random-tiny-sd3` are untrained random-weight
pipelines built in memory (plumbing demos and tests). Anything else goes to `DiffusionPipeline.from_pretrained`.
A folder may hold `hiresflow.json` with {"native_size": N} to state the resolution the model was trained at.

The embedded folders store each weight file once: a folder whose card names `"components_from": OTHER` (another
folder under `embedded/`) lacks the component subfolders (VAE, text encoders) that are byte-identical in OTHER, and
`load_pipeline` loads those from OTHER (`component_dir` resolves a component's folder, following the chain). The
default models (`tiny-flux`, `tiny-sd`) are complete diffusers folders; the older versions kept for comparison
share with them. `load_pipeline(name)[0].save_pretrained(OUT)` writes any of them as a complete folder.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from .base import FlowModel

__all__ = ["load_model", "load_pipeline", "wrap_pipeline", "check_device", "check_card", "EMBEDDED_DIR", "MODEL_NAMES"]

EMBEDDED_DIR = Path(__file__).resolve().parent.parent / "embedded"
EMBEDDED = {"tiny-flux": "tiny-flux", "tiny-sd": "tiny-sd-v3", "tiny-flux-v1": "tiny-flux-v1", "tiny-sd-v1": "tiny-sd-v1",
            "tiny-sd-v3": "tiny-sd-v3"}
RANDOM = {"random-tiny-flux": "flux", "random-tiny-sd": "sd", "random-tiny-sdxl": "sdxl", "random-tiny-sd3": "sd3", "random-tiny-chroma": "chroma", "random-tiny-sd35": "sd35", "random-tiny-zimage": "zimage", "random-tiny-flux2": "flux2", "random-tiny-flux2-klein": "flux2_klein", "random-tiny-qwenimage": "qwenimage"}
RANDOM_NATIVE = {"flux": 64, "sd": 64, "sdxl": 128, "sd3": 128, "chroma": 64, "sd35": 128, "zimage": 64, "flux2": 64, "flux2_klein": 64, "qwenimage": 80}
MODEL_NAMES = tuple(EMBEDDED) + tuple(RANDOM)


def read_model_card(folder: Path) -> dict:
    """`hiresflow.json` of a pipeline folder: native_size, and optionally guidance and steps defaults."""
    meta = folder / "hiresflow.json"
    if not meta.is_file():
        return {}
    try:
        card = json.loads(meta.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{meta} is not valid JSON ({err}); fix or delete it") from None
    if not isinstance(card, dict):
        raise ValueError(f"{meta} must hold a JSON object such as {{\"native_size\": 1024}}; fix or delete it")
    return check_card(card, meta)


def check_card(card: dict, where: str | Path = "hiresflow.json") -> dict:
    """Validate a model card's values; a bad one names the file and the field."""

    def bad(field: str, what: str):
        raise ValueError(f"{where}: field {field!r} must be {what}, got {card[field]!r}; fix or delete it")

    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)

    if card.get("native_size") is not None:
        v = card["native_size"]
        if not (is_int(v) and v > 0) and not (isinstance(v, list) and len(v) == 2 and all(is_int(x) and x > 0 for x in v)):
            bad("native_size", "a positive integer (pixels per side) or [height, width]")
    if card.get("guidance") is not None:
        v = card["guidance"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            bad("guidance", "a finite number >= 0")
    if card.get("steps") is not None:
        v = card["steps"]
        if not (is_int(v) and 0 < v <= 10_000):
            bad("steps", "a positive integer (at most 10000)")
    return card


WEIGHT_SUFFIXES = (".safetensors", ".bin")


def component_dir(folder: str | Path, name: str) -> Path:
    """The subfolder holding component `name` of the pipeline folder `folder`: its own, or, when it has none and its
    card names `"components_from"`, that embedded folder's (followed to the end of the chain)."""
    folder, seen = Path(folder), set()
    while not (folder / name).is_dir():
        source = read_model_card(folder).get("components_from")
        if not source or folder in seen:
            return Path(folder) / name  # missing: the caller's own error names it
        seen.add(folder)
        folder = EMBEDDED_DIR / source
    return folder / name


def shared_components(folder: Path, dtype: torch.dtype | None = None) -> dict:
    """The components that `folder` takes from another embedded folder (card field `"components_from"`), loaded with
    the library and class that `folder`'s model_index.json names, ready to pass to `from_pretrained`."""
    import importlib

    if not read_model_card(folder).get("components_from"):
        return {}
    out = {}
    for name, spec in json.loads((folder / "model_index.json").read_text()).items():
        if name.startswith("_") or not isinstance(spec, list) or spec[0] is None or (folder / name).is_dir():
            continue
        source = component_dir(folder, name)
        if not source.is_dir():
            raise ValueError(f"{folder.name}: component {name!r} is neither in the folder nor in the one its "
                             f"hiresflow.json names as components_from; re-install the package")
        cls = getattr(importlib.import_module(spec[0]), spec[1])
        kwargs = {} if dtype is None else ({"torch_dtype": dtype} if spec[0] == "diffusers" else {"dtype": dtype})
        out[name] = cls.from_pretrained(str(source), **kwargs)
    return out


def check_weights(folder: Path) -> None:
    """Fail with a one-line error naming the file when a component's weights are missing or unreadable."""
    from safetensors import safe_open

    index = json.loads((folder / "model_index.json").read_text())
    for name, spec in index.items():
        sub = component_dir(folder, name)
        if name.startswith("_") or not isinstance(spec, list) or not (sub / "config.json").is_file():
            continue  # schedulers, tokenizers and unused slots have no weights
        if "Scheduler" in str(spec[-1]) or (sub / "scheduler_config.json").is_file():
            continue
        files = [f for f in sub.iterdir() if f.name.endswith(WEIGHT_SUFFIXES)]
        if not files:
            raise ValueError(f"missing weights: {sub} has no .safetensors file; re-export or re-install the model")
        for f in files:
            if f.suffix != ".safetensors" or f.name.endswith(".index.json"):
                continue
            try:
                with safe_open(str(f), framework="pt") as handle:
                    keys = list(handle.keys())
                    if keys:
                        handle.get_tensor(keys[-1])  # reads the end of the file: catches truncation
            except Exception as err:  # noqa: BLE001 - any failure means the file is unusable
                raise ValueError(f"corrupt weight file {f} ({type(err).__name__}); re-export or re-install the "
                                 f"model") from None


def wrap_pipeline(pipe, name: str = "model", native: int | None = None, card: dict | None = None) -> FlowModel:
    """Choose the adapter for a diffusers pipeline object (the first adapter whose `handles(pipe)` is true)."""
    from .base import adapter_classes

    adapters = [a for a in adapter_classes() if a.handles(pipe)]
    if not adapters:
        from .base import supported_pipelines

        raise ValueError(f"unsupported pipeline {type(pipe).__name__} for {name!r}; hiresflow supports "
                         f"{', '.join(supported_pipelines())}")
    model = adapters[0](pipe, name=name)
    card = check_card(card or {}, "model card")
    native = native or card.get("native_size")
    if native:
        from dataclasses import replace

        hw = (int(native[0]), int(native[1])) if isinstance(native, (list, tuple)) else (int(native), int(native))
        model.geometry.validate(*hw)
        model.geometry = replace(model.geometry, native=hw)
    if card.get("guidance") is not None:
        model.default_guidance = float(card["guidance"])
    if card.get("steps") is not None:
        model.default_steps = int(card["steps"])
    return model


def random_pipeline(kind: str):
    """A tiny random pipeline of `kind`: the families of `hiresflow.models.tiny` ("flux", "sd", "sdxl", "sd3"), or
    a newer family whose builder is the `tiny_pipeline()` function of the module `hiresflow.models.tiny_<kind>`."""
    import importlib

    from . import tiny

    if kind in tiny.PIPELINE_CLASSES:
        return tiny.tiny_pipeline(kind)
    return importlib.import_module(f"{__package__}.tiny_{kind}").tiny_pipeline()


def load_pipeline(name_or_path: str, dtype: torch.dtype | None = None):
    """The diffusers pipeline behind `name_or_path` and its model card (`hiresflow.json`, {} if none)."""
    if name_or_path in RANDOM:
        return random_pipeline(RANDOM[name_or_path]), {"native_size": RANDOM_NATIVE[RANDOM[name_or_path]]}
    if name_or_path in EMBEDDED:
        folder = EMBEDDED_DIR / EMBEDDED[name_or_path]
        if not (folder / "model_index.json").is_file():
            raise ValueError(
                f"the embedded model {name_or_path!r} is not in this build ({folder} is missing); "
                f"use --model random-tiny-flux for an untrained demo, or a diffusers folder / hub id"
            )
        name_or_path = str(folder)
    from diffusers import DiffusionPipeline

    path = Path(name_or_path)
    kwargs = {"dtype": dtype} if dtype is not None else {}
    if path.exists() and not (path / "model_index.json").is_file():
        raise ValueError(f"{path} is not a diffusers pipeline folder (no model_index.json)")
    if path.is_dir():
        check_weights(path)
        kwargs.update(shared_components(path, dtype))
    try:
        pipe = DiffusionPipeline.from_pretrained(name_or_path, **kwargs)
    except (OSError, EnvironmentError, ValueError) as err:
        raise ValueError(
            f"cannot load model {name_or_path!r}: not a local diffusers folder and the model hub could not provide "
            f"it ({type(err).__name__}); pass a folder, an embedded model ({', '.join(EMBEDDED)}) or "
            f"random-tiny-KIND ({'/'.join(n.removeprefix('random-tiny-') for n in RANDOM)})"
        ) from None
    return pipe, read_model_card(path) if path.is_dir() else {}


def check_device(device) -> str:
    """The device to run on (default: CUDA when available, else CPU), checked before anything is loaded."""
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: no CUDA GPU is available to this torch ({torch.__version__}); "
                         f"use --device cpu, or install a CUDA build of torch")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) present")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"--device {device}: MPS is not available here; use --device cpu")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unsupported device {device!r}; use cpu, cuda, cuda:N or mps")
    return str(dev)


def load_model(name_or_path: str, device: str | torch.device | None = None,
               dtype: torch.dtype | None = None) -> FlowModel:
    """Load and wrap; device defaults to CUDA when available. On the CPU weights are loaded in float32 unless
    `dtype` says otherwise (half-precision matmuls on a CPU are many times slower); the embedded models (stored as
    fp16 safetensors to halve their bytes) load in float32 on every device unless `dtype` is given."""
    if not isinstance(name_or_path, (str, Path)):
        raise TypeError(f"model must be a name, folder or hub id (str), got {type(name_or_path).__name__}")
    name_or_path = str(name_or_path)
    device = check_device(device)
    if dtype is not None and not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype such as torch.float16, got {dtype!r}")
    if dtype is None and (torch.device(device).type == "cpu" or name_or_path in EMBEDDED):
        dtype = torch.float32  # the embedded weights are stored as fp16 and always run in float32
    from ..quiet import quiet_libraries

    with quiet_libraries():
        pipe, card = load_pipeline(name_or_path, dtype)
        pipe.to(device)
    if hasattr(pipe, "set_progress_bar_config"):
        pipe.set_progress_bar_config(disable=True)
    return wrap_pipeline(pipe, name=name_or_path, card=card)
