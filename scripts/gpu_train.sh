#!/usr/bin/env bash
# The GPU recipe (configs/gpu_large.yaml), end to end on one machine: generate the phantoms and
# the inserted cases on every core, train on the GPU, evaluate on the held-out real set, and
# leave the model, its log and its reports in OUT_DIR. Resumable: run it again after an
# interruption. Needs seganypet installed (bash scripts/setup.sh) and ../shared/data beside the
# checkout. Data and the run go under SEGANYPET_WORK (default: the checkout).
#
#   bash scripts/gpu_train.sh OUT_DIR [STEPS]
#   SEGANYPET_SMALL=1 bash scripts/gpu_train.sh OUT_DIR 2     # the same pipeline, tiny, on a CPU
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
out="$(mkdir -p "${1:?usage: bash scripts/gpu_train.sh OUT_DIR [STEPS]}" && cd "$1" && pwd)"
steps="${2:-30000}"
work="${SEGANYPET_WORK:-$repo}"
shared="$repo/../shared/data"
phantoms=2000
inserted=100
extra=()
cases=()
if [ "${SEGANYPET_SMALL:-0}" = 1 ]; then
  phantoms=2
  inserted=1
  extra=(--set device=cpu --set precision=fp32 --set batch_size=2 --set click_rounds=2)
  cases=(--cases STS_016)
fi
seganypet synth -o "$work/data/synth_gpu" --cases "$phantoms" --seed 100 --tracer mixed \
  --variety wide --workers "$(nproc)" --quiet
seganypet synth -o "$work/data/inserted_sts001_gpu" --cases "$inserted" --seed 101 \
  --background "$shared/sts001_wholebody_ge/image" \
  --background-mask "$shared/sts001_wholebody_ge/mask/1-1.dcm" --background-roi GTV_Mass --quiet
run="$work/runs/gpu_large"
if [ -f "$run/last.pt" ]; then
  seganypet train --out "$run" --resume --no-progress
else
  seganypet train --config "$repo/configs/gpu_large.yaml" --out "$run" --steps "$steps" \
    --data "$work/data/synth_gpu,$work/data/inserted_sts001_gpu,$repo/configs/ibsi_sts_train.json" \
    "${extra[@]}" --no-progress
fi
cp "$run/model.safetensors" "$run/log.csv" "$run/config.json" "$out/"
for first in interior hottest; do
  seganypet evaluate --data "$repo/configs/real_heldout.json" --model "$out/model.safetensors" \
    --protocol clicks --clicks 5 --first-click "$first" --baselines "${cases[@]}" \
    -o "$out/real_$first" --no-progress
done
echo "gpu recipe: model and reports in $out"
