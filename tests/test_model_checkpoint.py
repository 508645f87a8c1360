"""Checkpoints: released-style .pth read safely, our safetensors format, strict key checks."""

from __future__ import annotations

import argparse
import json
import os
import pickle

import numpy as np
import pytest
import torch

from seganypet.errors import InputError
from seganypet.model import (
    SamMed3D,
    convert_checkpoint,
    default_config,
    describe,
    load_model,
    read_config,
    save_model,
)
from seganypet.model.checkpoint import WEIGHTS_DIR


@pytest.fixture(scope="module")
def trained_small() -> SamMed3D:
    """A small network after one optimiser step, as a training script would have it."""
    torch.manual_seed(5)
    return SamMed3D("small")


def _training_checkpoint(net: SamMed3D) -> dict:
    """What SAM-Med3D / SegAnyPET training saves: weights plus optimiser, scheduler, args, logs."""
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    for p in net.parameters():  # one step's worth of optimiser state
        p.grad = torch.full_like(p, 1e-3)
    opt.step()
    opt.zero_grad()
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [120, 180], 0.1)
    return {
        "epoch": 12,
        "model_state_dict": net.state_dict(),
        "optimizer_state_dict": opt.state_dict(),
        "lr_scheduler_state_dict": sched.state_dict(),
        "losses": [0.8, 0.6],
        "dices": [0.5, np.float64(0.61)],
        "best_loss": float("inf"),
        "best_dice": np.float64(0.61),
        "args": argparse.Namespace(
            task_name="seganypet", model_type="vit_b_ori", step_size=[120, 180], gpu_ids=[0, 1]
        ),
        "used_datas": ["data/train/pet"],
    }


def _same_weights(a: SamMed3D, b: SamMed3D) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_loads_a_released_style_training_checkpoint(tmp_path, trained_small):
    path = tmp_path / "seganypet_small.pth"
    torch.save(_training_checkpoint(trained_small), path)
    model = load_model(path)
    assert model.config == default_config("small")
    assert _same_weights(model, trained_small)
    assert not model.training
    assert "small" in describe(model)


def test_loads_a_bare_state_dict_and_a_ddp_one(tmp_path, trained_small):
    bare = tmp_path / "bare.pth"
    torch.save(trained_small.state_dict(), bare)
    assert _same_weights(load_model(bare), trained_small)
    ddp = tmp_path / "ddp.pth"
    torch.save({f"module.{k}": v for k, v in trained_small.state_dict().items()}, ddp)
    assert _same_weights(load_model(ddp), trained_small)


class _Exploit:
    """Unpickling this runs a shell command."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("where", ["top_level", "inside_args", "legacy_format", "plain_pickle"])
def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path, trained_small, where):
    marker = tmp_path / "pwned"
    payload = {"model_state_dict": trained_small.state_dict()}
    if where == "inside_args":
        payload["args"] = argparse.Namespace(lr=1e-4, hook=_Exploit(marker))
    else:
        payload["extra"] = _Exploit(marker)
    path = tmp_path / "evil.pth"
    if where == "plain_pickle":
        path.write_bytes(pickle.dumps({"extra": _Exploit(marker)}))
    else:
        torch.save(payload, path, _use_new_zipfile_serialization=where != "legacy_format")
    assert not marker.exists()
    # A torch checkpoint names the blocked call; a bare pickle already fails on its framing.
    reason = "Unsupported operand" if where == "plain_pickle" else r"GLOBAL \w+\.system"
    with pytest.raises(InputError, match=f"refusing to load .*{reason}"):
        load_model(path)
    assert not marker.exists()


def test_key_mismatch_lists_missing_unexpected_and_misshaped_keys(tmp_path, trained_small):
    state = dict(trained_small.state_dict())
    del state["mask_decoder.iou_token.weight"]
    state["mask_decoder.extra_head.weight"] = torch.zeros(3)
    state["prompt_encoder.no_mask_embed.weight"] = torch.zeros(1, 7)
    path = tmp_path / "broken.pth"
    torch.save({"model_state_dict": state}, path)
    with pytest.raises(InputError) as err:
        load_model(path)
    message = str(err.value)
    assert "'small'" in message
    assert "missing keys (1): mask_decoder.iou_token.weight" in message
    assert "unexpected keys (1): mask_decoder.extra_head.weight" in message
    assert "prompt_encoder.no_mask_embed.weight (1, 7) != (1, 192)" in message


def test_released_layout_without_box_keys_does_not_load_as_a_boxed_model(tmp_path, trained_small):
    path = tmp_path / "released.pth"
    torch.save({"model_state_dict": trained_small.state_dict()}, path)
    assert load_model(path).config.has_box_embeddings is False
    with pytest.raises(InputError, match="missing keys .*point_embeddings.2.weight"):
        load_model(path, config=default_config("small", has_box_embeddings=True))


def test_box_embeddings_are_recognised_and_recorded(tmp_path):
    boxed = SamMed3D(default_config("small", has_box_embeddings=True))
    path = tmp_path / "boxed.pth"
    torch.save({"model_state_dict": boxed.state_dict()}, path)
    model = load_model(path)
    assert model.config.has_box_embeddings is True
    assert _same_weights(model, boxed)


def test_safetensors_round_trip_keeps_the_config(tmp_path, trained_small):
    trained_small.config = trained_small.config.replace(
        spacing_mm=(2.0, 2.0, 2.0),
        description="test run",
        training_cases=(("crops/STS_002", "ab" * 32), ("synth/case_000", "cd" * 32)),
    )
    try:
        path = save_model(trained_small, tmp_path / "model.safetensors")
    finally:
        trained_small.config = default_config("small")
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        assert list(f.keys()) == sorted(trained_small.state_dict())  # safetensors sorts keys
    assert meta["format"] == "seganypet.model"
    assert json.loads(meta["config"])["spacing_mm"] == [2.0, 2.0, 2.0]
    model = load_model(path)
    assert model.config.description == "test run"
    assert model.config.spacing_mm == (2.0, 2.0, 2.0)
    assert json.loads(meta["config"])["training_cases"][0] == {
        "case": "crops/STS_002",
        "image_sha256": "ab" * 32,
    }
    assert model.config.training_cases[1] == ("synth/case_000", "cd" * 32)
    assert read_config(path) == model.config
    assert _same_weights(model, trained_small)  # and in the reference key order
    with pytest.raises(InputError, match=".safetensors"):
        save_model(model, tmp_path / "model.pth")


def test_convert_checkpoint(tmp_path, trained_small):
    src = tmp_path / "released.pth"
    torch.save(_training_checkpoint(SamMed3D("small")), src)
    config = convert_checkpoint(src, tmp_path / "out.safetensors", description="converted")
    assert config.preset == "small" and config.description == "converted"
    converted = load_model(tmp_path / "out.safetensors")
    assert _same_weights(converted, load_model(src))


def test_bundled_default_loads_and_missing_files_are_input_errors(tmp_path):
    from seganypet.model import load_small_object_model

    bundled = load_model()
    assert bundled.config.preset == load_model("default").config.preset == "unet_small_rel"
    companion = load_small_object_model("default")
    assert companion is not None and companion.config.preset == "unet_fine"
    bundled_bytes = sum(p.stat().st_size for p in WEIGHTS_DIR.glob("*.safetensors"))
    assert bundled_bytes <= 40 * 2**20
    assert (WEIGHTS_DIR / "MODEL_CARD.md").is_file()
    with pytest.raises(InputError, match="no bundled model named 'nosuch' is installed"):
        load_model("nosuch")
    with pytest.raises(InputError, match="not found"):
        load_model(tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(InputError, match="neither"):
        load_model(junk)
    wrong = tmp_path / "list.pth"
    torch.save([1, 2, 3], wrong)
    with pytest.raises(InputError, match="expected a dict"):
        load_model(wrong)
    empty = tmp_path / "noweights.pth"
    torch.save({"epoch": 3}, empty)
    with pytest.raises(InputError, match="no weights found"):
        load_model(empty)


def test_convert_checkpoint_command(tmp_path, trained_small, capsys):
    from seganypet.cli import main

    source = tmp_path / "released.pth"
    torch.save(_training_checkpoint(trained_small), source)
    target = tmp_path / "converted.safetensors"
    assert main(["convert-checkpoint", str(source), str(target)]) == 0
    assert "preset small" in capsys.readouterr().out
    assert _same_weights(load_model(target), trained_small)


def test_a_config_without_training_cases_still_reads_and_a_malformed_list_is_refused():
    from seganypet.model.config import ModelConfig

    old = json.loads(ModelConfig().to_json())
    del old["training_cases"]
    old["version"] = 1
    assert ModelConfig.from_dict(old).training_cases == ()
    with pytest.raises(InputError, match="training_cases"):
        ModelConfig.from_dict({**old, "training_cases": [{"case": "a"}]})
