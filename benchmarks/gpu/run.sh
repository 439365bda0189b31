#!/usr/bin/env bash
# The prepared GPU benchmark (one H100, under 8 minutes): FLUX.1-dev architecture with random weights, HiFlow vs
# direct vs I-Max at 2048² and 4096², plain / step caching / offloading; writes benchmarks/results/gpu/flux_dev.{json,md}.
#   bash benchmarks/gpu/run.sh            # on the GPU
#   CONFIG=cpu bash benchmarks/gpu/run.sh # the CPU plumbing config (tiny sizes), as CI runs it
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}"
CONFIG="${CONFIG:-gpu}"
OUT="${OUT:-benchmarks/results/gpu/flux_dev-${CONFIG}}"
timeout "${LIMIT_S:-480}" "$PY" benchmarks/gpu/bench.py --config "$CONFIG" --out "$OUT"
