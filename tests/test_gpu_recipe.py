"""The GPU recipe (scripts/gpu_train.sh with configs/gpu_large.yaml), run tiny on the CPU: the
same commands, data layouts and network a GPU run uses, end to end."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from conftest import shared_path
from seganypet.model.checkpoint import load_model

REPO = Path(__file__).resolve().parents[1]


def test_the_gpu_recipe_runs_end_to_end_small_on_the_cpu(tmp_path):
    shared_path("data", "sts001_wholebody_ge")  # the recipe inserts lesions into this scan
    out = tmp_path / "out"
    env = {**os.environ, "SEGANYPET_SMALL": "1", "SEGANYPET_WORK": str(tmp_path / "work")}
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu_train.sh"), str(out), "2"],
        env=env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    model = load_model(out / "model.safetensors")
    assert model.config.preset == "unet_medium_rel"
    recorded = {name.split("/")[0] for name, _ in model.config.training_cases}
    assert recorded == {"synth_gpu", "inserted_sts001_gpu", "ibsi_sts_train"}
    assert json.loads((out / "config.json").read_text())["monotone_loss_weight"] == 1.0
    for first in ("interior", "hottest"):
        summary = json.loads((out / f"real_{first}" / "summary.json").read_text())
        assert summary["first_click"] == first and summary["counts"]["objects"] == 1
    phantoms = json.loads((tmp_path / "work" / "data" / "synth_gpu" / "dataset.json").read_text())
    assert phantoms["tracer"] == "mixed" and phantoms["config"]["lesion_variety"] == "wide"
