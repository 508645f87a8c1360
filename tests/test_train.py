"""Training: data cache, targets, crops, the simulated user, the loop, resume, DDP, CPCL, CLI.

Everything runs a tiny network (32³ crops at 4 mm, ~0.2 M parameters, registered as the preset
``test_tiny`` for the test) on hand-made blob phantoms, one torch thread per process (two threads
on two shared cores stall each other), so the whole file takes well under a minute.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from seganypet.errors import InputError
from seganypet.model.checkpoint import load_model, save_model
from seganypet.model.network import SamMed3D
from seganypet.model.presets import PRESETS, ArchSpec
from seganypet.prompts import most_interior_voxel, next_click_at_error_centre
from seganypet.train.augment import Augmentation
from seganypet.train.clicks import (
    Prompts,
    click_at_error_centre,
    click_rounds,
    corrective_click,
    interior_voxel,
    jittered_box,
)
from seganypet.train.command import add_train_parser
from seganypet.train.config import TrainConfig, from_dict, resolve_config
from seganypet.train.data import (
    TargetCrops,
    TargetSampler,
    enumerate_targets,
    extract_crop,
    find_cases,
    keep_target,
    prepare_cache,
)
from seganypet.train.loop import Trainer, lr_factor, read_checkpoint, train, weights_digest
from seganypet.train.objective import rectify_targets
from training_checks import fixed_batch_loss

TINY_PRESET = "test_tiny"
TINY_ARCH = dict(
    img_size=32,
    patch_size=8,
    encoder_dim=48,
    encoder_depth=2,
    encoder_heads=2,
    window_size=2,
    global_attn_indexes=(1,),
    prompt_dim=48,
    mask_in_chans=8,
    decoder_depth=1,
    decoder_heads=4,
    decoder_mlp_dim=96,
    iou_head_depth=2,
    iou_head_hidden_dim=32,
    spacing_mm=4.0,
)
SHAPE = (40, 40, 40)
SPACING = 4.0


@pytest.fixture(autouse=True)
def tiny_preset(monkeypatch):
    monkeypatch.setitem(PRESETS, TINY_PRESET, ArchSpec(**TINY_ARCH))
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _sphere(centre, radius, shape=SHAPE) -> np.ndarray:
    grid = np.indices(shape).transpose(1, 2, 3, 0)
    return ((grid - np.asarray(centre)) ** 2).sum(-1) <= radius**2


def _write_blobs(folder: Path, cases: int = 3, seed: int = 0, quality: str | None = None) -> Path:
    """An nnU-Net v2 raw data set: a bright 'liver' sphere, two hot lesions and a 1-voxel speck.

    Case 1 is stored on an LPS-like grid (x and y flipped) to exercise the RAS+ reorientation.
    """
    rng = np.random.default_rng(seed)
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir(parents=True)
    for index in range(cases):
        labels = np.zeros(SHAPE, np.uint8)
        labels[_sphere(rng.integers(14, 26, size=3), 6)] = 1
        labels[_sphere((8, 8, 30), 2)] = 2
        labels[_sphere((31, 9, 9), 2)] = 2
        labels[1, 1, 1] = 2
        image = rng.normal(1.0, 0.1, SHAPE).astype(np.float32)
        image[labels == 1] += 3.0
        image[labels == 2] += 8.0
        affine = np.diag([SPACING, SPACING, SPACING, 1.0])
        if index == 1:
            affine = np.diag([-SPACING, -SPACING, SPACING, 1.0])
            affine[:3, 3] = [SPACING * (SHAPE[0] - 1), SPACING * (SHAPE[1] - 1), 0.0]
        name = f"case_{index:03d}"
        nib.save(nib.Nifti1Image(image, affine), folder / "imagesTr" / f"{name}_0000.nii.gz")
        nib.save(nib.Nifti1Image(labels, affine), folder / "labelsTr" / f"{name}.nii.gz")
    description = {
        "channel_names": {"0": "PET"},
        "labels": {"background": 0, "liver": 1, "lesion": 2},
        "numTraining": cases,
        "file_ending": ".nii.gz",
        "tracer": "FDG",
    }
    if quality:
        description["label_quality"] = quality
    (folder / "dataset.json").write_text(json.dumps(description))
    return folder


@pytest.fixture(scope="module")
def blob_data(tmp_path_factory) -> Path:
    return _write_blobs(tmp_path_factory.mktemp("blobs") / "blobs")


def _config(tmp_path: Path, data: Path, **changes) -> TrainConfig:
    settings = dict(
        data=(str(data),),
        out=str(tmp_path / "run"),
        preset=TINY_PRESET,
        cache_dir=str(tmp_path / "cache"),
        steps=4,
        batch_size=2,
        click_rounds=3,
        warmup_steps=1,
        val_every=2,
        val_samples=2,
        val_clicks=2,
        num_threads=1,
        progress=False,
        precision="fp32",
    )
    settings.update(changes)
    return from_dict(settings)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ====================================================================================== data


def test_cache_is_built_once_reused_and_invalidated(tmp_path, blob_data, monkeypatch):
    sources = find_cases([str(blob_data)])
    assert [s.case_id for s in sources] == ["case_000", "case_001", "case_002"]
    assert sources[0].label_names == {1: "liver", 2: "lesion"} and sources[0].tracer == "FDG"
    cache = tmp_path / "cache"
    cases = prepare_cache(sources, (SPACING,) * 3, ("lesion",), cache)
    folders = sorted(p.name for p in cache.iterdir())
    assert len(folders) == 3
    for case in cases:
        assert {p.name for p in case.folder.iterdir()} == {
            "image.npy",
            "labels.npy",
            "components.npy",
            "meta.json",
        }
        assert isinstance(case.image, np.memmap) and case.image.dtype == np.float32

    # The flipped case is cached in RAS+ order: the same arrays as the unflipped source, flipped.
    flipped = cases[1]
    image = nib.load(sources[1].image).get_fdata(dtype=np.float32)
    np.testing.assert_array_equal(flipped.image, image[::-1, ::-1, :])
    labels = np.asarray(nib.load(sources[1].label).dataobj)
    np.testing.assert_array_equal(flipped.labels, labels[::-1, ::-1, :])

    # Reused: nothing is read again.
    def no_rebuild(*args, **kwargs):
        raise AssertionError("rebuilt a cached case")

    monkeypatch.setattr("seganypet.train.data._resampled_case", no_rebuild)
    prepare_cache(sources, (SPACING,) * 3, ("lesion",), cache)
    monkeypatch.undo()

    # Another spacing, or a touched source, is a new entry.
    coarse = prepare_cache(sources[:1], (8.0,) * 3, ("lesion",), cache)
    assert coarse[0].shape == (20, 20, 20)
    stamp = sources[2].label.stat().st_mtime_ns + 10**9
    os.utime(sources[2].label, ns=(stamp, stamp))
    prepare_cache(sources[2:], (SPACING,) * 3, ("lesion",), cache)
    assert len(list(cache.iterdir())) == 5


def test_manifests_csv_and_json(tmp_path, blob_data):
    rows = "image,label,label_names,label_quality\n" + "".join(
        f"{blob_data}/imagesTr/case_00{i}_0000.nii.gz,{blob_data}/labelsTr/case_00{i}.nii.gz,"
        "1:liver;2:lesion,low\n"
        for i in range(2)
    )
    (tmp_path / "cases.csv").write_text(rows)
    cases = find_cases([str(tmp_path / "cases.csv")])
    assert [c.case_id for c in cases] == ["case_000_0000", "case_001_0000"]
    assert cases[0].label_names == {1: "liver", 2: "lesion"} and cases[0].low_quality
    manifest = {
        "name": "mine",
        "tracer": "PSMA",
        "label_names": {"liver": 1, "lesion": 2},
        "cases": [
            {
                "image": f"{blob_data}/imagesTr/case_002_0000.nii.gz",
                "label": str(blob_data / "labelsTr" / "case_002.nii.gz"),
                "id": "p1",
            }
        ],
    }
    (tmp_path / "m.json").write_text(json.dumps(manifest))
    both = find_cases(f"{tmp_path / 'm.json'},{tmp_path / 'cases.csv'}")
    assert [c.key for c in both] == ["mine/p1", "cases/case_000_0000", "cases/case_001_0000"]
    assert both[0].tracer == "PSMA" and not both[0].low_quality
    with pytest.raises(InputError, match="no such file or folder"):
        find_cases([str(tmp_path / "missing")])


def test_targets_are_labels_and_26_connected_lesion_components():
    labels = np.zeros((20, 20, 20), np.uint8)
    labels[2:12, 2:12, 2:12] = 1  # an organ: one target however it is shaped
    labels[15, 15, 15] = labels[16, 16, 16] = 2  # diagonal neighbours: one lesion (26-conn.)
    labels[15:18, 2:5, 2:5] = 2  # a second lesion
    labels[2:4, 17:19, 17:19] = 3  # a third label value, not a lesion
    labels[19, 19, 0:5] = 4  # nnU-Net's ignore label: unannotated, never a target
    names = {1: "liver", 2: "Lesion", 3: "spleen", 4: "ignore"}
    rng = np.random.default_rng(0)
    same_grid = enumerate_targets(labels, names, 0.008, (1, 1, 1), rng, ("lesion",))
    targets, resampled, components = same_grid
    np.testing.assert_array_equal(resampled, labels)
    kinds = sorted((t.kind, t.label, t.voxels) for t in targets)
    assert kinds == [("label", 1, 1000), ("label", 3, 8), ("lesion", 2, 2), ("lesion", 2, 27)]
    assert [t.volume_ml for t in targets if t.kind == "lesion"] == [27 * 0.008, 2 * 0.008]
    for target in targets:
        mask = (
            (components == target.component)
            if target.kind == "lesion"
            else (labels == target.label)
        )
        assert all(mask[a] for a in target.anchors)
    assert components.max() == 2
    # Found on the native grid, located on the network's: at twice the spacing the 2-voxel
    # lesion keeps its native volume but may vanish from the coarse grid (no voxels, no anchors).
    coarse, resampled, components = enumerate_targets(labels, names, 0.008, (2, 2, 2), rng)
    assert resampled.shape == components.shape == (10, 10, 10)
    assert sorted((t.kind, t.volume_ml) for t in coarse) == sorted(
        (t.kind, t.volume_ml) for t in targets
    )
    assert all(len(t.anchors) == min(t.voxels, 32) for t in coarse)
    # The size rule: >= 0.1 ml on the native grid (shared with evaluation) and, for training
    # only, >= 10 voxels at the network's spacing.
    target = targets[0]
    assert keep_target(replace(target, voxels=10, volume_ml=0.1), 10, 0.1)
    assert not keep_target(replace(target, voxels=9, volume_ml=0.5), 10, 0.1)
    assert not keep_target(replace(target, voxels=500, volume_ml=0.09), 10, 0.1)


def test_crops_place_the_target_off_centre_with_zero_padding(tmp_path, blob_data):
    sources = find_cases([str(blob_data)])
    cases = prepare_cache(sources, (SPACING,) * 3, ("lesion",), tmp_path / "cache")
    crops = TargetCrops(
        cases,
        _model_config(),
        min_target_voxels=10,
        min_target_ml=0.1,
        crop_offset_fraction=0.25,
    )
    assert crops.skipped == 3  # the specks
    assert len(crops) == 9  # a liver and two lesions per case
    lesion = next(i for i, r in enumerate(crops.targets) if r.target.kind == "lesion")
    centres = []
    for seed in range(12):
        sample = crops.sample(lesion, np.random.default_rng(seed), augment=False)
        assert sample.image.shape == sample.target.shape == (1, 32, 32, 32)
        centres.append(np.argwhere(sample.target[0].numpy()).mean(0))
        inside = sample.target.bool()
        assert float(sample.image[inside].mean()) > float(sample.image[~inside].mean()) + 1
    spread = np.ptp(np.asarray(centres), axis=0)
    assert np.all(spread > 4)  # the lesion lands at varying places in the crop
    # Past the image's edge a crop is zero.
    corner = extract_crop(cases[0].image, (-16, -16, -16), (32, 32, 32))
    assert not corner[:16].any() and not corner[:, :16].any()
    np.testing.assert_array_equal(corner[16:, 16:, 16:], cases[0].image[:16, :16, :16])


def test_fingerprint_follows_image_content_not_cache_folders(tmp_path, blob_data):
    import shutil

    settings = dict(min_target_voxels=10, min_target_ml=0.1, crop_offset_fraction=0.25)

    def fingerprint(data: Path, cache: Path) -> tuple[str, set[str]]:
        cases = prepare_cache(find_cases([str(data)]), (SPACING,) * 3, ("lesion",), cache)
        crops = TargetCrops(cases, _model_config(), **settings)
        return crops.fingerprint(), {c.folder.name for c in cases}

    copy = tmp_path / "blobs"
    shutil.copytree(blob_data, copy)
    before, folders = fingerprint(copy, tmp_path / "cache")
    # A remount or a copy gives the same files new modification times: new cache entries, but
    # the same data, so a resumed run must not warn.
    image = copy / "imagesTr" / "case_000_0000.nii.gz"
    os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 10**9))
    again, new_folders = fingerprint(copy, tmp_path / "cache")
    assert new_folders != folders and again == before
    # Another image is other data.
    nifti = nib.load(image)
    data = np.asarray(nifti.dataobj, dtype=np.float32) * 1.5
    nib.save(nib.Nifti1Image(data, nifti.affine), image)
    changed, _ = fingerprint(copy, tmp_path / "cache")
    assert changed != before


def test_oversample_repeats_one_data_sets_targets(tmp_path, blob_data):
    manifest = {
        "name": "real",
        "label_names": {"liver": 1, "lesion": 2},
        "cases": [
            {
                "image": f"{blob_data}/imagesTr/case_000_0000.nii.gz",
                "label": f"{blob_data}/labelsTr/case_000.nii.gz",
                "id": "r0",
            }
        ],
    }
    (tmp_path / "real.json").write_text(json.dumps(manifest))
    sources = find_cases([str(blob_data), str(tmp_path / "real.json")])
    cases = prepare_cache(sources, (SPACING,) * 3, ("lesion",), tmp_path / "cache")
    settings = dict(min_target_voxels=10, min_target_ml=0.1, crop_offset_fraction=0.25)
    plain = TargetCrops(cases, _model_config(), **settings)
    weighted = TargetCrops(cases, _model_config(), oversample={"real": 4}, **settings)
    count = lambda crops, name: sum(  # noqa: E731
        crops.cases[r.case].source.dataset == name for r in crops.targets
    )
    assert count(plain, "real") == 3 and count(weighted, "real") == 12
    assert count(weighted, "blobs") == count(plain, "blobs") == 9
    assert weighted.skipped == plain.skipped == 4  # each speck once, however often it is drawn
    with pytest.raises(InputError, match="DATASET=N"):
        _config(tmp_path, blob_data, oversample=("real=0",))
    trainer_config = _config(tmp_path, blob_data, oversample=("nosuch=3",))
    with pytest.raises(InputError, match="oversample names no data set nosuch; the data sets are"):
        train(trainer_config)


def _model_config():
    from seganypet.model.presets import default_config

    return default_config(TINY_PRESET)


def test_augmentation_keeps_image_and_mask_aligned():
    image = torch.zeros(32, 32, 32)
    mask = torch.from_numpy(_sphere((12, 16, 20), 5, (32, 32, 32)))
    image[mask] = 5.0
    augmentation = Augmentation(
        flip_probability=0.5, geometric_probability=1.0, rotation_degrees=15, zoom_range=(0.8, 1.2)
    )
    for seed in range(4):
        out_image, out_mask = augmentation.spatial(image, mask, np.random.default_rng(seed))
        assert out_mask.dtype == torch.bool and 300 < int(out_mask.sum()) < 1000
        assert float(out_image[out_mask].mean()) > 4.0
        assert float(out_image[~out_mask].mean()) < 0.2


def test_sampler_gives_each_rank_disjoint_targets():
    ranks = [TargetSampler(10, batch_size=2, seed=3, rank=r, world_size=2) for r in range(2)]
    for step in range(2):
        seen = [ranks[r].index(s) for r in range(2) for s in ranks[r].slots(step)]
        assert len(set(seen)) == 4
    epoch = [ranks[r].index(s) for step in range(3) for r in range(2) for s in ranks[r].slots(step)]
    assert sorted(epoch[:10]) == list(range(10))  # every target once per epoch


# ====================================================================================== clicks


def test_a_first_click_can_go_to_the_hottest_voxel_of_the_target():
    from seganypet.train.clicks import first_prompts

    targets = np.zeros((2, 16, 16, 16), bool)
    targets[:, 4:12, 4:12, 4:12] = True
    images = np.ones(targets.shape, np.float32)
    images[0, 5, 6, 7] = 9.0
    images[1, 10, 10, 10] = 7.0
    images[:, 0, 0, 0] = 50.0  # hotter, outside the target
    rngs = [np.random.default_rng(i) for i in range(2)]
    prompts = first_prompts(
        targets, rngs, use_box=False, interior_probability=1.0, box_jitter=0.0,
        images=images, hottest_probability=1.0,
    )  # fmt: skip
    assert [p[0] for p in prompts.points] == [(5.0, 6.0, 7.0), (10.0, 10.0, 10.0)]
    plain = first_prompts(
        targets, rngs, use_box=False, interior_probability=1.0, box_jitter=0.0
    )  # fmt: skip
    assert all(targets[(i, *map(int, p[0]))] for i, p in enumerate(plain.points))
    assert [p[0] for p in plain.points] != [(5.0, 6.0, 7.0), (10.0, 10.0, 10.0)]


def test_corrective_clicks_are_positive_in_misses_and_negative_in_leaks():
    target = _sphere((16, 16, 16), 8, (32, 32, 32))
    prediction = _sphere(
        (16, 16, 22), 8, (32, 32, 32)
    )  # shifted: misses one side, leaks on the other
    rng = np.random.default_rng(0)
    signs = set()
    for probability in (0.0, 1.0):
        for _ in range(20):
            click = corrective_click(prediction, target, rng, probability)
            voxel = tuple(int(round(v)) for v in click.voxel)
            if click.positive:
                assert target[voxel] and not prediction[voxel]
            else:
                assert prediction[voxel] and not target[voxel]
            signs.add(click.positive)
    assert signs == {True, False}
    assert corrective_click(target, target, rng, 0.5) is None


def test_bounding_box_edt_clicks_equal_the_reference_simulator():
    rng = np.random.default_rng(1)
    for _ in range(10):
        target = _sphere(rng.integers(8, 24, 3), rng.integers(3, 8), (32, 32, 32))
        prediction = _sphere(rng.integers(8, 24, 3), rng.integers(3, 8), (32, 32, 32))
        prediction |= rng.random((32, 32, 32)) > 0.995
        assert interior_voxel(target) == most_interior_voxel(target)
        assert click_at_error_centre(prediction, target) == next_click_at_error_centre(
            prediction, target
        )


def test_click_rounds_feed_back_logits_and_click_from_the_current_error():
    size = (16, 16, 16)
    target = _sphere((8, 8, 8), 4, size)[None]
    leak = _sphere((8, 8, 12), 4, size)
    calls = []

    def decode(embedding, points, labels, boxes=None, mask_logits=None):
        calls.append((points, labels, mask_logits))
        # Round 1 misses part of the target and leaks; later rounds are perfect.
        mask = leak if len(calls) == 1 else target[0]
        logits = torch.from_numpy(np.where(mask, 5.0, -5.0).astype(np.float32))
        low = torch.nn.functional.avg_pool3d(logits[None, None], 2)
        return low, torch.zeros(1, 1)

    prompts = Prompts.empty(1)
    prompts.add(0, (8, 8, 8), True)
    rounds = list(
        click_rounds(
            decode,
            None,
            prompts,
            target,
            3,
            lambda p, t, i: corrective_click(p, t, np.random.default_rng(i), 1.0),
            input_size=size,
            device=torch.device("cpu"),
        )
    )
    assert len(rounds) == 3 and rounds[0].logits.shape == (1, 1, 16, 16, 16)
    assert calls[0][2] is None and torch.equal(calls[1][2], rounds[0].low_res_logits)
    assert calls[1][0].shape == (1, 2, 3)  # a corrective click was added after round 1
    voxel = tuple(int(v) for v in calls[1][0][0, 1].tolist())
    positive = bool(calls[1][1][0, 1] == 1)
    round_one = rounds[0].logits[0, 0].numpy() > 0
    assert (target[0][voxel] and not round_one[voxel]) if positive else round_one[voxel]
    box = jittered_box(target[0], np.random.default_rng(0), 0.1)
    assert np.all(box[0] <= box[1]) and np.all(box >= 0) and np.all(box <= 15)


def test_cpcl_trusts_agreeing_prompts_and_keeps_the_label_where_they_disagree():
    label = torch.zeros(1, 1, 8, 8, 8)
    label[..., 2:6, 2:6, 2:6] = 1.0
    passes = iter(range(10))

    def decode(embedding, points, labels, boxes=None, mask_logits=None):
        k = next(passes)
        logits = torch.full((1, 1, 4, 4, 4), -6.0)
        logits[..., 1:3, 1:3, 1:3] = 6.0  # all passes agree on the label's core...
        logits[..., 0, 0, 0] = 6.0 if k % 2 else -6.0  # ...and disagree on one corner block
        logits[..., 3, 3, 3] = 6.0  # all agree on a block the label lacks
        return logits, torch.zeros(1, 1)

    result = rectify_targets(
        decode,
        None,
        label,
        [np.random.default_rng(0)],
        passes=2,
        max_clicks=2,
        variance_threshold=0.01,
        input_size=(8, 8, 8),
    )
    rectified = result.targets[0, 0]
    assert float(rectified[7, 7, 7]) > 0.9  # confident prediction overrules the missing label
    assert float(rectified[0, 0, 0]) == 0.0  # the prompts disagree: the label (0) stays
    assert float(rectified[3, 3, 3]) > 0.9
    assert 0 < result.changed_fraction < 0.1


# ====================================================================================== loop


def test_training_lowers_the_loss_on_a_learnable_blob(tmp_path, blob_data):
    config = _config(
        tmp_path,
        blob_data,
        steps=40,
        learning_rate=2e-3,
        warmup_steps=2,
        val_every=0,
        box_probability=0.0,
        geometric_probability=0.0,
        flip_probability=0.0,
    )
    trainer = Trainer(config)
    before, after = fixed_batch_loss(trainer, steps=30)
    assert after < 0.8 * before, (before, after)


def test_resume_continues_exactly(tmp_path, blob_data):
    common = dict(steps=6, val_every=2, precision="bf16", box_probability=0.5)
    straight = train(_config(tmp_path / "a", blob_data, **common))
    digest_straight = weights_digest(load_model(straight.run_dir / "model.safetensors"))

    first = train(_config(tmp_path / "b", blob_data, stop_at_step=3, **common))
    assert first.step == 3
    checkpoint = read_checkpoint(first.run_dir / "last.pt")
    assert checkpoint["step"] == 3 and checkpoint["data"]["samples_seen"] == 6
    assert set(checkpoint["rng"]) == {"python", "numpy", "torch", "cuda"}
    with pytest.raises(InputError, match="--resume"):
        train(_config(tmp_path / "b", blob_data, **common))
    resumed = train(_config(tmp_path / "b", blob_data, **common), resume=True)
    assert resumed.step == 6
    digest_resumed = weights_digest(load_model(resumed.run_dir / "model.safetensors"))
    assert digest_resumed == digest_straight

    log = _read_csv(resumed.run_dir / "log.csv")
    assert [int(r["step"]) for r in log] == [1, 2, 3, 4, 5, 6]
    assert all(float(r["loss"]) > 0 and float(r["lr"]) > 0 for r in log)
    # every 2 steps, and at the end of each run (the first stopped at 3)
    assert [int(r["step"]) for r in _read_csv(resumed.run_dir / "val.csv")] == [2, 3, 4, 6]
    stored = json.loads((resumed.run_dir / "config.json").read_text())
    assert stored["steps"] == 6 and stored["preset"] == TINY_PRESET


def test_init_fine_tunes_a_released_style_checkpoint(tmp_path, blob_data):
    torch.manual_seed(3)
    released = SamMed3D(_model_config())  # no box embeddings, like the released weights
    checkpoint = tmp_path / "released.pth"
    torch.save({"model_state_dict": released.state_dict(), "epoch": 7}, checkpoint)
    with pytest.raises(InputError, match="--preset"):
        Trainer(_config(tmp_path / "a", blob_data, init=str(checkpoint), preset="small"))
    config = _config(tmp_path / "b", blob_data, init=str(checkpoint), preset=None, steps=1)
    summary = train(config.replace(learning_rate=1e-6, val_every=0))
    tuned = load_model(summary.run_dir / "model.safetensors")
    assert tuned.config.preset == TINY_PRESET and tuned.config.has_box_embeddings
    start = released.state_dict()
    for key, value in tuned.state_dict().items():
        if key in start:  # one AdamW step of 1e-6 from the released weights
            assert float((value - start[key]).abs().max()) < 1e-4, key


def test_a_trained_model_records_the_images_it_trained_on(tmp_path, blob_data):
    from seganypet.io import load_image

    summary = train(_config(tmp_path, blob_data, steps=1, val_every=0, val_fraction=0.34))
    split = json.loads((summary.run_dir / "split.json").read_text())
    recorded = dict(load_model(summary.run_dir / "model.safetensors").config.training_cases)
    assert sorted(recorded) == sorted(split["train"]["cases"])
    assert split["validation"]["cases"], "the test needs a case left out of training"
    for key in split["train"]["cases"] + split["validation"]["cases"]:
        image = load_image(blob_data / "imagesTr" / f"{key.split('/')[-1]}_0000.nii.gz")
        assert (recorded.get(key) == image.content_digest()) == (key in recorded)
    assert len(set(recorded.values())) == len(recorded)

    # Fine-tuning keeps the cases the initial weights learned from, and adds its own.
    earlier = load_model(summary.run_dir / "model.safetensors")
    earlier.config = earlier.config.replace(training_cases=(("elsewhere/x", "e" * 64),))
    init = save_model(earlier, tmp_path / "init.safetensors")
    tuned = train(
        _config(
            tmp_path / "tuned",
            blob_data,
            preset=None,
            init=str(init),
            steps=1,
            val_every=0,
            val_fraction=0,
        )
    )
    inherited = load_model(tuned.run_dir / "model.safetensors").config.training_cases
    assert inherited[0] == ("elsewhere/x", "e" * 64)
    assert {digest for _, digest in inherited[1:]} == {
        load_image(blob_data / "imagesTr" / f"case_{i:03d}_0000.nii.gz").content_digest()
        for i in range(3)
    }


def test_lr_schedule_warms_up_then_decays():
    factors = [lr_factor(s, 10, 100, 0.05) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:], strict=False))
    assert factors[-1] == pytest.approx(0.05, abs=0.01)


def test_cpcl_run_logs_its_rectification(tmp_path):
    noisy = _write_blobs(tmp_path / "noisy", cases=2, seed=5, quality="low")
    config = _config(tmp_path, noisy, steps=2, cpcl=True, val_every=0, cpcl_passes=2)
    summary = train(config)
    assert summary.step == 2
    log = _read_csv(summary.run_dir / "log.csv")
    assert all(0 <= float(r["cpcl_confident_fraction"]) <= 1 for r in log)
    assert all(r["cpcl_changed_fraction"] != "" for r in log)


def test_ddp_two_processes_keep_identical_weights(tmp_path, blob_data):
    launcher = tmp_path / "launch.py"
    launcher.write_text(
        textwrap.dedent(
            f"""
            import sys
            from seganypet.model.presets import PRESETS, ArchSpec
            PRESETS[{TINY_PRESET!r}] = ArchSpec(**{TINY_ARCH!r})
            from seganypet.train.command import main
            sys.exit(main())
            """
        )
    )
    run = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        str(launcher),
        "--data",
        str(blob_data),
        "--out",
        str(run),
        "--preset",
        TINY_PRESET,
        "--steps",
        "3",
        "--cache",
        str(tmp_path / "cache"),
        "--threads",
        "1",
        "--no-progress",
        "--set",
        "click_rounds=2",
        "--set",
        "val_every=0",
        "--set",
        "precision=fp32",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # The timeout only stops a deadlocked pair of ranks from hanging the suite; it is far above
    # what the run needs on any machine and is no speed requirement.
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = json.loads((run / "ranks.json").read_text())
    assert ranks["world_size"] == 2 and ranks["step"] == 3
    assert len(set(ranks["weight_sha256"])) == 1
    assert ranks["weight_sha256"][0] == weights_digest(load_model(run / "model.safetensors"))
    assert [int(r["step"]) for r in _read_csv(run / "log.csv")] == [1, 2, 3]  # one writer
    assert done.stdout.count("model:") == 1


# ====================================================================================== CLI


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seganypet")
    add_train_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_train_with_config_file_and_overrides(tmp_path, blob_data, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"preset: {TINY_PRESET}\nsteps: 50\nbatch_size: 1\nclick_rounds: 2\nval_every: 0\n"
        f"num_threads: 1\nprecision: fp32\ncache_dir: {tmp_path / 'cache'}\n"
    )
    out = tmp_path / "run"
    args = _parser().parse_args(
        ["train", "--data", str(blob_data), "--out", str(out), "--config", str(recipe)]
        + ["--steps", "3", "--stop-at", "2", "--no-progress", "--set", "learning_rate=0.001"]
    )
    args.func(args)
    assert "step 2" in capsys.readouterr().out
    stored = json.loads((out / "config.json").read_text())
    assert stored["steps"] == 3 and stored["batch_size"] == 1 and stored["learning_rate"] == 0.001
    assert load_model(out / "model.safetensors").config.preset == TINY_PRESET

    # --resume takes the stored config (not its --stop-at) and goes on to the end.
    args = _parser().parse_args(["train", "--out", str(out), "--resume"])
    args.func(args)
    assert read_checkpoint(out / "last.pt")["step"] == 3
    args = _parser().parse_args(["train", "--out", str(out), "--resume", "--steps", "4"])
    args.func(args)
    assert read_checkpoint(out / "last.pt")["step"] == 4

    # The trained model drives the interactive session.
    from seganypet.io.nifti import read_nifti_image
    from seganypet.session import Session

    session = Session(load_model(out / "model.safetensors"))
    session.set_image(read_nifti_image(blob_data / "imagesTr" / "case_000_0000.nii.gz"))
    assert session.add_point((8, 8, 30)).shape == SHAPE

    bad = _parser().parse_args(["train", "--out", str(tmp_path / "x"), "--data", str(tmp_path)])
    with pytest.raises(InputError, match="nnU-Net"):
        bad.func(bad)
    bad = _parser().parse_args(["train", "--out", str(tmp_path / "x"), "--set", "click_round=3"])
    with pytest.raises(InputError, match="click_rounds"):
        bad.func(bad)


def test_config_resolution_order(tmp_path):
    recipe = tmp_path / "c.json"
    recipe.write_text(json.dumps({"steps": 10, "batch_size": 3, "zoom_range": [0.8, 1.2]}))
    config = resolve_config(
        {"steps": 20, "data": "a,b"}, recipe, stored={"steps": 5, "seed": 7, "batch_size": 1}
    )
    assert (config.steps, config.batch_size, config.seed) == (20, 3, 7)
    assert config.data == ("a", "b") and config.zoom_range == (0.8, 1.2)
    with pytest.raises(InputError, match="box_probability"):
        from_dict({"box_probability": 2})


def test_hot_spot_corrections_click_the_hottest_error_voxel_with_its_sign():
    from seganypet.train.clicks import corrective_click

    target = np.zeros((12, 12, 12), bool)
    target[3:8, 3:8, 3:8] = True
    image = np.ones(target.shape, np.float32)
    image[4, 4, 4] = 9.0  # inside the target: found, no error there
    prediction = target.copy()
    prediction[9:11, 9:11, 9:11] = True  # a leak with a hot spot
    image[10, 9, 10] = 7.0
    prediction[6:8, 6:8, 6:8] = False  # a miss, less hot
    image[7, 7, 7] = 3.0
    rng = np.random.default_rng(0)
    click = corrective_click(prediction, target, rng, 1.0, image, hottest_probability=1.0)
    assert click.voxel == (10.0, 9.0, 10.0) and not click.positive
    prediction[9:11, 9:11, 9:11] = False
    click = corrective_click(prediction, target, rng, 1.0, image, hottest_probability=1.0)
    assert click.voxel == (7.0, 7.0, 7.0) and click.positive
    assert corrective_click(target, target, rng, 1.0, image, hottest_probability=1.0) is None


def test_the_monotone_penalty_adds_to_the_loss_only_when_a_round_gets_worse(tmp_path, blob_data):
    from seganypet.train.objective import soft_dice_per_item

    logits = torch.full((2, 1, 4, 4, 4), -4.0)
    target = torch.zeros((2, 1, 4, 4, 4), dtype=torch.bool)
    target[:, :, 1:3, 1:3, 1:3] = True
    better = logits.clone()
    better[target] = 4.0
    assert (soft_dice_per_item(better, target) > soft_dice_per_item(logits, target)).all()

    def first_step_loss(trainer: Trainer) -> tuple[float, dict]:
        samples, plan = trainer.step_plan(0)
        loss, stats = trainer.objective(*trainer._tensors(samples), plan)
        return float(loss.detach()), stats

    plain = Trainer(_config(tmp_path / "a", blob_data, val_every=0))
    penalised = Trainer(_config(tmp_path / "b", blob_data, val_every=0, monotone_loss_weight=5.0))
    penalised.network.load_state_dict(plain.network.state_dict())
    loss_plain, stats = first_step_loss(plain)
    loss_penalised, stats_penalised = first_step_loss(penalised)
    assert 0.0 <= stats["rounds_lowering_dice"] <= 1.0
    assert stats_penalised["rounds_lowering_dice"] == stats["rounds_lowering_dice"]
    assert loss_penalised >= loss_plain - 1e-6
    if stats["rounds_lowering_dice"] == 0:  # no crop fell by more than 1e-3 in any round
        assert loss_penalised - loss_plain <= 5.0 * 1e-3 * 2


def test_the_click_loss_is_the_cross_entropy_at_each_clicked_voxel_as_its_click_says(
    tmp_path, blob_data
):
    from seganypet.train.clicks import Prompts
    from seganypet.train.objective import clicked_voxel_loss

    prompts = Prompts.empty(3, reads_strokes=True)
    prompts.add(0, (1.2, 0.8, 1.0), positive=True)
    prompts.add(0, (3.0, 3.0, 2.6), positive=False)
    prompts.add(1, (2.0, 2.0, 2.0), positive=False, along_line=True)  # a scribble's click
    logits = torch.full((3, 1, 4, 4, 4), -2.0)
    logits[0, 0, 1, 1, 1] = 3.0  # the positive click obeyed
    logits[1, 0, 2, 2, 2] = 5.0  # the negative scribble's voxel still in the mask
    loss = clicked_voxel_loss(logits.requires_grad_(), prompts)
    softplus = torch.nn.functional.softplus
    expected = [
        (softplus(torch.tensor(-3.0)) + softplus(torch.tensor(-2.0))) / 2,
        softplus(torch.tensor(5.0)),
        0.0,
    ]
    assert torch.allclose(loss, torch.tensor(expected), atol=1e-6)
    loss.sum().backward()
    assert logits.grad[1, 0, 2, 2, 2] > 0 and logits.grad[0, 0, 1, 1, 1] < 0
    assert int((logits.grad != 0).sum()) == 3  # only the clicked voxels

    plain = Trainer(_config(tmp_path / "a", blob_data, val_every=0))
    weighted = Trainer(_config(tmp_path / "b", blob_data, val_every=0, click_loss_weight=2.0))
    weighted.network.load_state_dict(plain.network.state_dict())
    losses = []
    for trainer in (plain, weighted):
        samples, plan = trainer.step_plan(0)
        losses.append(float(trainer.objective(*trainer._tensors(samples), plan)[0].detach()))
    assert losses[1] > losses[0]  # an untrained network gets some clicked voxels wrong


def test_max_target_ml_keeps_only_small_targets(tmp_path, blob_data):
    every = Trainer(_config(tmp_path / "a", blob_data, val_every=0, val_fraction=0))
    volumes = sorted(ref.target.volume_ml for ref in every.train_set.targets)
    limit = volumes[len(volumes) // 2]
    small = Trainer(
        _config(tmp_path / "b", blob_data, val_every=0, val_fraction=0, max_target_ml=limit)
    )
    assert len(small.train_set) == sum(v <= limit for v in volumes) < len(every.train_set)
    assert all(ref.target.volume_ml <= limit for ref in small.train_set.targets)
    with pytest.raises(InputError, match="max_target_ml"):
        _config(tmp_path / "c", blob_data, max_target_ml=0.05)


def test_bf16_on_a_cpu_without_native_bfloat16_is_flagged(tmp_path, blob_data, monkeypatch):
    from seganypet.model.runtime import cpu_has_native_bf16

    assert cpu_has_native_bf16("flags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n") is True
    assert cpu_has_native_bf16("flags\t\t: fpu sse2 avx2 fma\n") is False
    assert cpu_has_native_bf16("processor : 0\n") is None
    monkeypatch.setattr("seganypet.train.loop.cpu_has_native_bf16", lambda: False)
    with pytest.warns(UserWarning, match="no native bfloat16"):
        Trainer(_config(tmp_path, blob_data, precision="bf16", val_every=0))


def test_scribble_rounds_give_the_clicks_along_a_stroke_inside_the_target_or_error(
    tmp_path, blob_data
):
    from seganypet.train.clicks import first_prompts

    target = np.zeros((20, 20, 20), bool)
    target[4:16, 7:12, 6:14] = True
    rng = np.random.default_rng(3)
    prompts = first_prompts(
        target[None],
        [rng],
        use_box=False,
        interior_probability=1.0,
        box_jitter=0.0,
        scribble_probability=1.0,
    )
    (points,), (labels,) = prompts.points, prompts.labels
    assert len(points) >= 3 and all(label == 1 for label in labels)
    apart = first_prompts(
        target[None],
        [np.random.default_rng(3)],
        use_box=False,
        interior_probability=1.0,
        box_jitter=0.0,
        scribble_probability=1.0,
        reads_strokes=True,
    )
    assert apart.points == prompts.points and apart.labels == [[3] * len(points)]
    apart.add(0, (1, 1, 1), positive=False)  # a click is still a click
    assert apart.labels[0][-1] == 0
    assert all(target[tuple(int(round(v)) for v in point)] for point in points)
    flat = [axis for axis in range(3) if len({p[axis] for p in points}) == 1]
    assert flat, "a scribble lies on one slice"

    prediction = target.copy()
    prediction[4:16, 7:12, 6:9] = False  # a slab missed
    stroke = corrective_click(prediction, target, rng, 1.0, scribble_probability=1.0)
    assert stroke is not None and stroke.positive and len(stroke.clicks()) >= 2
    for click in stroke.clicks():
        voxel = tuple(int(round(v)) for v in click.voxel)
        assert target[voxel] and not prediction[voxel]
    assert corrective_click(target, target, rng, 1.0, scribble_probability=1.0) is None

    trainer = Trainer(_config(tmp_path / "s", blob_data, val_every=0, scribble_probability=0.5))
    samples, plan = trainer.step_plan(0)
    loss, stats = trainer.objective(*trainer._tensors(samples), plan)
    assert torch.isfinite(loss) and stats["points"] > 0
