"""The pinned ComfyUI source as a test fixture: checksum, unpacking, and its requirements installed CPU-only.

The archive lives at `../shared/fixtures/comfyui/` from the repository root (its README gives the pin and the
facts this follows). It is unpacked once, after its sha256 is checked, into `.cache/comfyui-<commit>` at the
repository root (outside the test paths: ComfyUI's own tests and pytest.ini must not be collected).

`python tests/comfyui/comfy_fixture.py install` (run by .ci/run when the fixture exists) installs ComfyUI's
requirements into the running interpreter's environment with a constraints file holding torch==2.13.0 and
without torch, torchvision, torchaudio, spandrel (its torchvision would replace the CPU torch with a CUDA build) and
the optional workflow templates, plus `requests`, which ComfyUI imports but does not list.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT.parent / "shared" / "fixtures" / "comfyui"
ARCHIVE = "ComfyUI-a125cd84.tar.gz"
SHA256 = "211ea0b16be5443f8b51b9675cbb91226d69c11b6b0b459cb15c86fb49096330"
COMMIT = "a125cd84b054a57729b5eecab930ca9408719832"
VERSION = "0.3.64"
CACHE = ROOT / ".cache" / f"comfyui-{COMMIT[:8]}"
EXCLUDED = ("torch", "torchvision", "torchaudio", "spandrel", "comfyui-workflow-templates")
TORCH_PIN = "torch==2.13.0"
EXTRA = ("requests",)

__all__ = ["FIXTURE", "CACHE", "COMMIT", "VERSION", "fixture_missing", "unpacked", "filtered_requirements",
           "install_requirements"]


def fixture_missing() -> str | None:
    """A one-line reason when the pinned archive is absent (a user's clone has no ../shared), else None."""
    if not (FIXTURE / ARCHIVE).is_file():
        return f"ComfyUI fixture not found ({FIXTURE / ARCHIVE}); the ComfyUI pack tests run in the project's CI"
    return None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def _locked():
    """One process at a time unpacks and installs (pytest-xdist workers share the folder)."""
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    with open(CACHE.parent / f"{CACHE.name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def unpacked() -> Path:
    with _locked():
        return _unpacked()


def _unpacked() -> Path:
    """ComfyUI's root folder, unpacked from the archive after its checksum is verified (once; reused after)."""
    marker = CACHE / ".unpacked"
    if marker.is_file() and (CACHE / "nodes.py").is_file():
        return CACHE
    archive = FIXTURE / ARCHIVE
    digest = _sha256(archive)
    if digest != SHA256:
        raise RuntimeError(f"{archive} has sha256 {digest}, expected {SHA256}; restore the pinned archive")
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE.parent) as tmp:
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        if CACHE.exists():
            import shutil

            shutil.rmtree(CACHE)
        Path(tmp).rename(CACHE)
        CACHE.mkdir(exist_ok=True)  # TemporaryDirectory's cleanup finds nothing left
    marker.write_text(COMMIT + "\n")
    return CACHE


def _name(line: str) -> str:
    import re

    return re.split(r"[<>=!~;\[ ]", line.strip(), maxsplit=1)[0].lower()


def filtered_requirements(text: str) -> list[str]:
    """ComfyUI's requirements.txt lines minus `EXCLUDED`, plus `EXTRA`."""
    keep = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    keep = [ln for ln in keep if _name(ln) not in EXCLUDED]
    return keep + [e for e in EXTRA if e not in {_name(k) for k in keep}]


def install_requirements(python: str = sys.executable, root: Path | None = None) -> None:
    root = root or unpacked()
    reqs = filtered_requirements((root / "requirements.txt").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        req, con = Path(tmp) / "requirements.txt", Path(tmp) / "constraints.txt"
        req.write_text("\n".join(reqs) + "\n")
        con.write_text(TORCH_PIN + "\n")
        subprocess.run([python, "-m", "pip", "install", "-q", "-r", str(req), "-c", str(con)], check=True)


def ensure_requirements(python: str = sys.executable) -> None:
    """`install_requirements` once per environment: a stamp in the unpacked folder names the interpreter's prefix
    and the requirements, so a clean clone's first test session installs them and later ones do not."""
    import hashlib

    root = unpacked()
    reqs = filtered_requirements((root / "requirements.txt").read_text())
    key = hashlib.sha256("\n".join([sys.prefix, TORCH_PIN, *reqs]).encode()).hexdigest()[:16]
    stamp = root / f".requirements-{key}"
    with _locked():
        if not stamp.is_file():
            install_requirements(python, root)  # `root`: unpacked() would take the lock held here
            stamp.write_text(sys.prefix + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in ("install", "unpack"):
        sys.exit("usage: python tests/comfyui/comfy_fixture.py install|unpack")
    reason = fixture_missing()
    if reason:
        print(f"skipped: {reason}")
        sys.exit(0)
    ensure_requirements() if sys.argv[1] == "install" else print(unpacked())
