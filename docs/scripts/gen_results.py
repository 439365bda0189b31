"""mkdocs-gen-files script: show the committed bench folders on the site without copying them into docs/.

At build time every ``benchmarks/results/**`` page (``results.md``, ``versions*.md``, ``paired.md``, …) and picture
(grids, latency and scaling plots) becomes a virtual file under ``results/`` of the site, and
``src/hiresflow/embedded/TRAINING.md`` becomes ``embedded/TRAINING.md``. Per-image outputs, caches and references
(git-ignored) are left out. Nothing is written into the repository.
"""

from __future__ import annotations

from pathlib import Path

import mkdocs_gen_files

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
KEEP = {".md", ".png", ".webp", ".svg", ".jpg"}
SKIP = {"images", "cache", "reference"}

for path in sorted(RESULTS.rglob("*")):
    rel = path.relative_to(RESULTS)
    if path.is_file() and path.suffix in KEEP and not SKIP.intersection(rel.parts[:-1]):
        with mkdocs_gen_files.open(f"results/{rel.as_posix()}", "wb") as f:
            f.write(path.read_bytes())

with mkdocs_gen_files.open("embedded/TRAINING.md", "w") as f:
    f.write((ROOT / "src" / "hiresflow" / "embedded" / "TRAINING.md").read_text())
