#!/usr/bin/env bash
# Rebuild the two CFM ablation baselines of benchmarks/specs/tiny-flux-cfm.yaml and benchmarks/cfm_paired.py
# (the one-shot L2-regression upsampler and naive flow matching from noise; same network and data as cfm-x2,
# 500 steps each) into benchmarks/models/. They are not tracked, to keep the repository small; the committed
# tiny-flux-cfm table was measured on the files whose SHA-256 are checked below (fp16 safetensors, 3.8 MB each).
# About 10 + 5 minutes on one core; resumable (rerun to continue). Run from the repository root.
set -euo pipefail
HF=${HIRESFLOW:-.venv/bin/hiresflow}
common=(--runs runs --seed 0 --steps 500 --batch 32 --threads 1 --lr 0.0005 --warmup 100 --scale 2 --vae ''
        --coupling psu --t-aug 400 --sigma-min 0.0 --cache-n 2400 --val-n 32 --val-nfe 10 --ema 0.999
        --ckpt-every 180.0 --sample-every 250 --source hiresflow.world)
"$HF" train cfm --name regression-x2 --objective regression "${common[@]}"
"$HF" train cfm --name fm-x2 --objective fm "${common[@]}"
for run in regression-x2 fm-x2; do
  "$HF" train export-cfm --run "$run" --out "benchmarks/models/$run" --dtype fp16
done
# the committed table's files; a rebuild on another machine or torch may differ in the last bits
sha256sum benchmarks/models/*/diffusion_pytorch_model.safetensors | sed 's|^|built: |'
echo "measured: edb04f15a3b933c397b582284e5d3938f00282e4ef18eb5b8b0ecacef9679c7d  regression-x2"
echo "measured: b6f4327fa33b9b6bd72b88d08e892d0302d97c43d4e57f0f419d31f5347f6ca1  fm-x2"
