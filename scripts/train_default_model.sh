#!/usr/bin/env bash
# Reproduces the earlier, CPU-trained default model from nothing but this repository (the shipped
# one came from scripts/train_default_model_gpu.sh on a lent GPU; see backend/default_model/README.md).
#
#   bash scripts/train_default_model.sh [WORK_DIR] [MINUTES_PER_STAGE] [DEVICE]
#
# The stages the shipped model went through on 2 CPU cores, each starting from the previous
# stage's weights (--init) with a fresh schedule:
#   VAE 1 -> flow 1 on its latents;
#   VAE 2: 10x weaker KL, also learns to decode its posterior mean -> flow 2 on the new latents;
#   VAE 3: decoder only (latents unchanged), plus an edge-length loss -> flow 3 continues flow 2;
#   flows 4 and 5 continue flow 3 at the stage-2 and then a lower learning rate (the stages that
#   first saw the extra training paraphrases: the shipped stages 1-3 predate them and saw
#   templates 0-5 only).
# On a GPU pass e.g. `out/gpu 15 cuda` and raise the step counts (env VAE1_STEPS ... FLOW2_STEPS).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-out/default_model_run}
MINUTES=${2:-60}
DEVICE=${3:-auto}
VAE1_STEPS=${VAE1_STEPS:-4000}
VAE2_STEPS=${VAE2_STEPS:-5500}
FLOW1_STEPS=${FLOW1_STEPS:-3000}
FLOW1_STOP=${FLOW1_STOP:-2030}  # the shipped run's stage 1 hit its 30-minute limit here
FLOW2_STEPS=${FLOW2_STEPS:-2800}
VAE3_STEPS=${VAE3_STEPS:-1400}
FLOW3_STEPS=${FLOW3_STEPS:-900}
FLOW4_STEPS=${FLOW4_STEPS:-4000}
FLOW5_STEPS=${FLOW5_STEPS:-2300}
PY=.venv/bin/python
COMMON=(--max-minutes "$MINUTES" --device "$DEVICE")
mkdir -p "$WORK"

# 1. data: 6000 training clips (train meshes, train paraphrases), 1350 held-out clips
[ -f "$WORK/train/dataset.json" ] || $PY -m backend make-dataset --out "$WORK/train" --count 6000 --seed 1 --max-vertices 800
[ -f "$WORK/eval/dataset.json" ] || $PY -m backend make-dataset --out "$WORK/eval" --count 1350 --seed 2 --split eval --max-vertices 800

# 2. VAE stage 1, flow stage 1 on its latents
$PY -m backend train vae --data "$WORK/train" --out "$WORK/vae1" --config configs/default_vae.json --steps "$VAE1_STEPS" "${COMMON[@]}"
$PY -m backend train stats --vae "$WORK/vae1" --data "$WORK/train"
$PY -m backend train flow --vae "$WORK/vae1" --data "$WORK/train" --out "$WORK/flow1" --config configs/default_flow.json \
    --steps "$FLOW1_STEPS" --stop-at "$FLOW1_STOP" "${COMMON[@]}"

# 3. stage 2 of both, each starting from its stage-1 weights
$PY -m backend train vae --data "$WORK/train" --out "$WORK/vae2" --config configs/default_vae_stage2.json \
    --init "$WORK/vae1" --steps "$VAE2_STEPS" "${COMMON[@]}"
$PY -m backend train stats --vae "$WORK/vae2" --data "$WORK/train"
$PY -m backend train flow --vae "$WORK/vae2" --data "$WORK/train" --out "$WORK/flow2" --config configs/default_flow_stage2.json \
    --init "$WORK/flow1" --steps "$FLOW2_STEPS" "${COMMON[@]}"

# 4. stage 3: the decoder alone (so the latents, and the statistics, stay those of stage 2)
$PY -m backend train vae --data "$WORK/train" --out "$WORK/vae3" --config configs/default_vae_stage3.json \
    --init "$WORK/vae2" --steps "$VAE3_STEPS" "${COMMON[@]}"
$PY -m backend train stats --vae "$WORK/vae3" --data "$WORK/train"
$PY -m backend train flow --vae "$WORK/vae3" --data "$WORK/train" --out "$WORK/flow3" --config configs/default_flow_stage2.json \
    --init "$WORK/flow2" --lr 1e-4 --steps "$FLOW3_STEPS" "${COMMON[@]}"
# stages 4 and 5: the flow alone goes on, on the same latents
$PY -m backend train flow --vae "$WORK/vae3" --data "$WORK/train" --out "$WORK/flow4" --config configs/default_flow_stage2.json \
    --init "$WORK/flow3" --steps "$FLOW4_STEPS" "${COMMON[@]}"
$PY -m backend train flow --vae "$WORK/vae3" --data "$WORK/train" --out "$WORK/flow5" --config configs/default_flow_stage2.json \
    --init "$WORK/flow4" --lr 1e-4 --steps "$FLOW5_STEPS" "${COMMON[@]}"

# 5. evaluation on held-out meshes and paraphrases: 4 clips per family; the judge learns from the other 1242
$PY -m backend eval --model "$WORK/flow5/model" --data "$WORK/eval" --limit 108 | tee "$WORK/eval.md"
