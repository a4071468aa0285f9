#!/usr/bin/env bash
# The main job on a small default: dump the real EfficientAT mn04 teacher over the 52 shared clips (4 views each),
# then train the dass-mini-p16 student (1.6 M parameters, kd's CPU student) label-free from that store. Rerunning
# resumes both stages.
# Without ../shared/data (a fresh clone) it fetches a smaller real set (14 clips and the mn04 weights, sha256-pinned
# upstream files) into the kd cache with `kd fetch-demo`, and says what it needs when that cannot be done offline.
# Point it at your own data with MANIFEST=..., TEACHER=..., CHECKPOINT=..., OUT=..., STEPS=...
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh
kd=.venv/bin/kd
DATA=${KD_SHARED_DATA:-$(cd .. && pwd)/shared/data}
if [ -z "${MANIFEST:-}" ] && [ ! -f "$DATA/clips.csv" ]; then
  echo "no shared data at $DATA: using the demo set (kd fetch-demo)" >&2
  MANIFEST=$($kd fetch-demo)
  CHECKPOINT=${CHECKPOINT:-}  # fetch-demo put the weights in the kd cache, where the teacher looks first
fi
MANIFEST=${MANIFEST:-$DATA/clips.csv}
TEACHER=${TEACHER:-efficientat/mn04_as}
CHECKPOINT=${CHECKPOINT-$DATA/weights/efficientat_mn04_as.pt}
OUT=${OUT:-runs/main}
STEPS=${STEPS:-300}
if [ -z "${KD_AUDIOSET_LABELS:-}" ] && [ -f "$DATA/labels/class_labels_indices.csv" ]; then
  export KD_AUDIOSET_LABELS=$DATA/labels/class_labels_indices.csv
fi
weights=()
if [ -n "$CHECKPOINT" ]; then weights=(--checkpoint "$CHECKPOINT"); fi

$kd dump-teachers "$MANIFEST" "$OUT/store.zarr" --teacher "$TEACHER" "${weights[@]}" --views 4 --block-size 16
$kd store info "$OUT/store.zarr"
$kd train-student "$OUT/store.zarr" --out "$OUT/student" --student dass-mini-p16 --steps "$STEPS" --batch-size 8 \
  --lr 1e-3 --warmup-steps 20 --ema-decay 0.99 --drop-path 0.0 --val-fraction 0.2 --val-every 50 \
  --checkpoint-every 50 --resume
echo "validation agreement with the teacher (step 0 = the untrained student):"
grep '"val_' "$OUT/student/metrics.jsonl"
