#!/usr/bin/env bash
# Reproduce every figure of the bundled model's card (src/seganypet/model/weights/MODEL_CARD.md):
# the held-out real sarcomas, the held-out synthetic phantoms and the speed on this machine.
# Needs ../shared/data beside the checkout. Reports go to reports/default/ (resumable).
#
#   bash scripts/evaluate_default.sh [MODEL [OUT]]  # MODEL: default (the bundled one) or a path
#                                                   # (X_small.safetensors beside X is its
#                                                   # companion); OUT: default reports/default
set -euo pipefail
cd "$(dirname "$0")/.."
model="${1:-default}"
out="${2:-reports/default}"
organs="brain,myocardium,liver,spleen,kidney_right,kidney_left,bladder,stomach"

seganypet synth -o data/synth_val --cases 10 --seed 20261125 --quiet
for first in interior hottest; do
  seganypet evaluate --data configs/real_heldout.json --model "$model" --protocol clicks \
    --clicks 5 --first-click "$first" --baselines -o "$out/real_$first" --no-progress
  seganypet evaluate --data data/synth_val --model "$model" --protocol clicks --clicks 5 \
    --first-click "$first" --baselines --labels lesion -o "$out/synth_lesions_$first" --no-progress
done
seganypet evaluate --data data/synth_val --model "$model" --protocol clicks --clicks 5 \
  --labels "$organs" -o "$out/synth_organs" --no-progress
seganypet evaluate --data configs/real_heldout.json --model "$model" --protocol scribbles \
  --clicks 5 -o "$out/real_scribbles" --no-progress
seganypet bench --model "$model" --threads 2 --repeats 11 | tee "$out/bench.json"
seganypet bench --model "$model" --server --threads 2 --repeats 3 | tee "$out/bench_server.json"

python - "$out" <<'PY'
import csv
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

out = Path(sys.argv[1])
parts = [f"{p}_{f}" for p in ("real", "synth_lesions") for f in ("interior", "hottest")]
for part in parts + ["synth_organs", "real_scribbles"]:
    summary = json.loads((out / part / "summary.json").read_text())
    print(f"\n{part}: {summary['counts']['objects']} objects, mean Dice after each step")
    for method, result in summary["methods"].items():
        steps = "  ".join(f"{s['dice_mean']:.3f}" for s in result["steps"])
        lowering = result.get("clicks_lowering_dice") or {}
        worse = "" if lowering.get("fraction") is None else (
            f"   clicks lowering Dice {lowering['lowering']}/{lowering['steps']}"
        )
        print(f"  {method:24s} {steps}{worse}")
        if part == "synth_organs":
            for label, per_class in result["by_class"].items():
                steps = "  ".join(f"{s['dice_mean']:.3f}" for s in per_class["steps"])
                print(f"    {label:22s} {steps}")

print("\nwhole-body STS_001, Dice after each step")
for first in ("interior", "hottest"):
    with open(out / f"real_{first}" / "per_step.csv", newline="") as table:
        rows = [r for r in csv.DictReader(table) if r["case"] == "STS_001_wholebody"]
    for method in dict.fromkeys(r["method"] for r in rows):
        dice = "  ".join(f"{float(r['dice']):.3f}" for r in rows if r["method"] == method)
        print(f"  {first:8s} {method:24s} {dice}")

# Synthetic lesions by true volume (components numbered by decreasing volume, as evaluate does).
volumes = {}
for labels_file in sorted(Path("data/synth_val/labelsTr").glob("*.nii.gz")):
    label_map = nib.load(labels_file)
    lesion = np.asarray(label_map.dataobj) == 19
    voxel_ml = float(np.prod(label_map.header.get_zooms()[:3])) / 1000
    components, _ = ndimage.label(lesion, np.ones((3, 3, 3)))
    sizes = sorted(np.bincount(components.ravel())[1:] * voxel_ml, reverse=True)
    case = labels_file.name.removesuffix(".nii.gz")
    volumes.update({(case, f"lesion_{k}"): ml for k, ml in enumerate(sizes, start=1)})
bins = ((0, 2), (2, 10), (10, 50), (50, float("inf")))
for first in ("interior", "hottest"):
    dice = {(b, step): [] for b in bins for step in (1, 5)}
    with open(out / f"synth_lesions_{first}" / "per_step.csv", newline="") as table:
        for row in csv.DictReader(table):
            step = int(row["step"])
            if row["method"].startswith("seganypet") and step in (1, 5):
                ml = volumes[(row["case"], row["object"])]
                dice[(next(b for b in bins if b[0] <= ml < b[1]), step)].append(float(row["dice"]))
    print(f"\nsynth_lesions_{first} by volume: objects, mean Dice at 1 and at 5 clicks")
    for low, high in bins:
        ones, fives = dice[((low, high), 1)], dice[((low, high), 5)]
        print(f"  {low:g}-{high:g} ml: {len(ones):3d}  {np.mean(ones):.3f}  {np.mean(fives):.3f}")
PY
