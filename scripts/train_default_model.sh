#!/usr/bin/env bash
# Reproduces the embedded default model (backend/default_model/) from nothing but this repository.
#
#   bash scripts/train_default_model.sh [WORK_DIR] [VAE_MINUTES] [FLOW_MINUTES] [DEVICE]
#
# Defaults are what the shipped model used on 2 CPU cores; on a GPU pass e.g. `out/gpu 20 20 cuda`
# (and raise the step counts below): the same commands, the same data, only more steps.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-out/default_model_run}
VAE_MIN=${2:-45}
FLOW_MIN=${3:-32}
DEVICE=${4:-auto}
VAE_STEPS=${VAE_STEPS:-4000}
FLOW_STEPS=${FLOW_STEPS:-3000}
PY=.venv/bin/python
mkdir -p "$WORK"

# 1. data: 6000 training clips (train meshes, train paraphrases), 270 held-out clips
[ -f "$WORK/train/dataset.json" ] || $PY -m backend make-dataset --out "$WORK/train" --count 6000 --seed 1 --max-vertices 800
[ -f "$WORK/eval/dataset.json" ] || $PY -m backend make-dataset --out "$WORK/eval" --count 270 --seed 2 --split eval --max-vertices 800

# 2. the VAE, then its latent statistics, then the text-conditioned flow model
$PY -m backend train vae --data "$WORK/train" --out "$WORK/vae" --config configs/default_vae.json \
    --steps "$VAE_STEPS" --max-minutes "$VAE_MIN" --device "$DEVICE"
$PY -m backend train stats --vae "$WORK/vae" --data "$WORK/train"
$PY -m backend train flow --vae "$WORK/vae" --data "$WORK/train" --out "$WORK/flow" --config configs/default_flow.json \
    --steps "$FLOW_STEPS" --max-minutes "$FLOW_MIN" --device "$DEVICE"

# 3. evaluation on held-out meshes and paraphrases
$PY -m backend eval --model "$WORK/flow/model" --data "$WORK/eval" --limit 54 | tee "$WORK/eval.md"
