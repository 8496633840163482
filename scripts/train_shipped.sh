#!/usr/bin/env bash
# Retrain every shipped checkpoint in checkpoints/ from the embedded data, one after the other: each script fits with
# `medgen fit` (configs/shipped/), exports fp16 with `medgen export --dtype float16 --card-extra`, evaluates with
# `medgen evaluate` against its baselines and rewrites the model card and samples.png.
# About 2.5 hours on 2 CPU cores (each script prints its own wall time and the machine); on a GPU, minutes.
#   bash scripts/train_shipped.sh               # all five
#   bash scripts/train_shipped.sh ct_2d xray_2d # some of them
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
ALL=(mri_brain_2d mri_brain_3d_latent ct_2d xray_2d mri_t1_to_t2_2d)
for name in "${@:-${ALL[@]}}"; do
  echo "== scripts/shipped/$name.py"
  "$PY" "scripts/shipped/$name.py"
done
for n in mri-brain-2d mri-brain-3d-latent ct-2d xray-2d mri-t1-to-t2-2d; do
  "$PY" -m medgen checkpoints verify "$n"
done
