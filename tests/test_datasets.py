"""Data sets: the three layouts, several at once, --cases, and the shared object rule."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import shared_path
from seganypet.datasets import (
    LESION_KEYWORDS,
    MIN_OBJECT_ML,
    discover_cases,
    find_objects,
    is_lesion_label,
    keep_object,
    pet_channel,
)
from seganypet.errors import InputError

SHAPE = (12, 12, 12)


def _save(path: Path, array: np.ndarray, spacing: float = 2.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.diag([spacing, spacing, spacing, 1.0])), path)
    return path


def _case() -> tuple[np.ndarray, np.ndarray]:
    pet = np.ones(SHAPE, np.float32)
    labels = np.zeros(SHAPE, np.uint8)
    labels[1:5, 1:5, 1:5] = 1
    labels[7:10, 7:10, 7:10] = 2
    return pet, labels


def _nnunet(folder: Path, cases=("c1", "c2"), **description) -> Path:
    pet, labels = _case()
    folder.mkdir(parents=True, exist_ok=True)
    for case in cases:
        _save(folder / "imagesTr" / f"{case}_0000.nii.gz", pet)
        _save(folder / "labelsTr" / f"{case}.nii.gz", labels)
    (folder / "dataset.json").write_text(
        json.dumps(
            {"channel_names": {"0": "PET"}, "labels": {"liver": 1, "lesion": 2}, **description}
        )
    )
    return folder


# ------------------------------------------------------------------------------ layouts


def test_nnunet_layout_labels_pet_channel_tracer_and_quality(tmp_path):
    folder = _nnunet(
        tmp_path / "Dataset001_x",
        labels={"background": 0, "liver": 1, "tumour": 2, "both": [1, 2]},
        tracer="PSMA",
        label_quality="low",
    )
    cases = discover_cases([folder])
    assert [(c.dataset, c.case_id, c.name) for c in cases] == [
        ("Dataset001_x", "c1", "c1"),
        ("Dataset001_x", "c2", "c2"),
    ]
    assert cases[0].image == folder / "imagesTr" / "c1_0000.nii.gz"
    assert cases[0].label == folder / "labelsTr" / "c1.nii.gz"
    assert cases[0].label_names == {1: "liver", 2: "tumour"}  # the region label has no name
    assert cases[0].tracer == "PSMA" and cases[0].low_quality

    # The PET channel: named exactly, else the one name containing PET/SUV, else the only one.
    assert pet_channel({"0": "CT", "1": "PT"}) == 1
    assert pet_channel({"0": "CT", "1": "FDG-PET"}) == 1
    assert pet_channel({"0": "noNorm"}) == 0
    with pytest.raises(InputError, match="which channel is PET"):
        pet_channel({"0": "CT", "1": "noNorm"})


def test_crops_layout_real_ibsi_data():
    data = shared_path("data", "ibsi_sts_crops")
    cases = discover_cases([data], ["STS_00[1-3]"])
    assert [c.name for c in cases] == ["STS_001", "STS_002", "STS_003"]
    assert all(c.label_names == {1: "GTV"} and c.dataset == data.name for c in cases)
    assert cases[0].image.name == "PET_image.nii.gz" and cases[0].label.name == "PET_mask.nii.gz"
    assert is_lesion_label("GTV")
    labels = np.asarray(nib.load(cases[0].label).dataobj).astype(np.uint16)
    voxel_ml = float(np.prod(nib.load(cases[0].label).header.get_zooms()[:3])) / 1000
    objects, skipped = find_objects(labels, cases[0].label_names, voxel_ml)
    assert objects and all(o.is_lesion and o.label_name == "GTV" for o in objects)
    assert objects[0].name == "GTV_1" and objects[0].volume_ml > 1
    assert all(o.volume_ml >= MIN_OBJECT_ML for o in objects)
    assert sum(o.voxels for o in objects) <= int((labels == 1).sum())


def test_crops_layout_needs_a_mask(tmp_path):
    pet, labels = _case()
    _save(tmp_path / "crops" / "A" / "PET_image.nii.gz", pet)
    _save(tmp_path / "crops" / "A" / "PET_mask.nii.gz", labels)
    _save(tmp_path / "crops" / "B" / "PET_image.nii.gz", pet)
    with pytest.raises(InputError, match="no PET_mask.nii.gz"):
        discover_cases([tmp_path / "crops"])


def test_manifests_json_csv_and_folder(tmp_path):
    pet, labels = _case()
    _save(tmp_path / "data" / "a_pet.nii.gz", pet)
    _save(tmp_path / "data" / "a_seg.nii.gz", labels)
    manifest = {
        "name": "mine",
        "tracer": "FDG",
        "labels": {"1": "liver", "2": "spleen"},
        "cases": [
            {
                "case": "A",
                "image": "a_pet.nii.gz",
                "mask": "a_seg.nii.gz",
                "lesion_labels": "spleen",
            },
            {
                "image": "a_pet.nii.gz",
                "label": "a_seg.nii.gz",
                "label_names": {"liver": 1},
                "label_quality": "low",
                "roi": ["GTV_Mass"],
                "liver_centre": [2, 2, 2],
            },
        ],
    }
    (tmp_path / "data" / "manifest.json").write_text(json.dumps(manifest))
    a, b = discover_cases([tmp_path / "data"])  # a folder holding manifest.json
    assert (a.key, a.tracer, a.label_names, a.lesion_labels) == (
        "mine/A",
        "FDG",
        {1: "liver", 2: "spleen"},
        ("spleen",),
    )
    assert a.label == (tmp_path / "data" / "a_seg.nii.gz").resolve()
    assert (b.case_id, b.label_names, b.low_quality, b.roi_names, b.liver_centre) == (
        "a_pet",
        {1: "liver"},
        True,
        ("GTV_Mass",),
        (2, 2, 2),
    )
    (tmp_path / "cases.csv").write_text(
        "id,image,label,label_names,lesion_labels,liver_centre\n"
        "x,data/a_pet.nii.gz,data/a_seg.nii.gz,1:liver;2:mass,,3 4 5\n"
    )
    (x,) = discover_cases([tmp_path / "cases.csv"])
    assert (x.key, x.label_names, x.lesion_labels, x.liver_centre) == (
        "cases/x",
        {1: "liver", 2: "mass"},
        None,
        (3, 4, 5),
    )
    (tmp_path / "bad.json").write_text(json.dumps([{"image": "data/a_pet.nii.gz"}]))
    with pytest.raises(InputError, match="needs 'image' and 'label'"):
        discover_cases([tmp_path / "bad.json"])
    (tmp_path / "gone.json").write_text(json.dumps([{"image": "nope.nii", "mask": "nope.nii"}]))
    with pytest.raises(InputError, match="not found"):
        discover_cases([tmp_path / "gone.json"])


def test_several_data_sets_case_patterns_and_errors(tmp_path):
    first = _nnunet(tmp_path / "first", cases=("c1", "c2"))
    second = _nnunet(tmp_path / "second", cases=("c1",))
    cases = discover_cases([first, second], low_quality=[str(second)])
    assert [c.name for c in cases] == ["first/c1", "c2", "second/c1"]
    assert [c.low_quality for c in cases] == [False, False, True]
    assert [c.key for c in discover_cases([first, second], ["second/*", "c2"])] == [
        "first/c2",
        "second/c1",
    ]
    with pytest.raises(InputError, match="matches no case"):
        discover_cases([first], ["STS_*"])
    with pytest.raises(InputError, match="two cases are named 'first/c1'"):
        discover_cases([first, first])
    with pytest.raises(InputError, match="no such file or folder"):
        discover_cases([tmp_path / "missing"])
    with pytest.raises(InputError, match="not a data folder"):
        discover_cases([tmp_path])
    with pytest.raises(InputError, match="no data given"):
        discover_cases([])


# ------------------------------------------------------------------------------ objects


def test_lesion_labels_one_keyword_list():
    assert LESION_KEYWORDS == ("lesion", "tumor", "tumour", "gtv", "metasta", "lymphoma", "mass")
    for name in ("Lesion", "tumor_1", "Tumour", "GTV_Mass", "bone metastases", "lymphoma", "mass"):
        assert is_lesion_label(name)
    assert not is_lesion_label("liver") and not is_lesion_label("label_3")
    assert is_lesion_label("liver", ["Liver"]) and not is_lesion_label("lesion", ["liver"])


def test_objects_components_tiny_rule_and_ignore():
    labels = np.zeros((20, 20, 20), np.uint8)
    labels[2:12, 2:12, 2:12] = 1  # an organ: one object
    labels[2:4, 15:17, 2:5] = 1  # ... even where it is in two pieces
    labels[15:18, 2:5, 2:5] = 2  # lesion, 27 voxels
    labels[15, 15, 15] = labels[16, 16, 16] = 2  # diagonal neighbours: one lesion (26-conn.)
    labels[17:19, 17:19, 5:8] = 2  # lesion, 12 voxels
    labels[19, 19, 19] = 2  # a one-voxel speck
    labels[19, 0:5, 19] = 3  # nnU-Net's ignore label: never an object
    names = {1: "liver", 2: "GTV", 3: "ignore"}
    voxel_ml = 0.01  # 10 voxels make 0.1 ml
    objects, skipped = find_objects(labels, names, voxel_ml)
    assert [(o.name, o.voxels, o.component) for o in objects] == [
        ("liver", 1012, 0),
        ("GTV_1", 27, 1),
        ("GTV_2", 12, 2),
    ]
    assert skipped == 2  # the 2-voxel (0.02 ml) lesion and the speck
    lesion = objects[1]
    assert lesion.is_lesion and lesion.label == 2 and lesion.volume_ml == pytest.approx(0.27)
    np.testing.assert_array_equal(lesion.mask(labels.shape), _box(labels.shape, 15, 18, 2, 5))
    # min_ml 0 keeps everything; values restricts the labels; explicit lesion labels.
    everything, none_skipped = find_objects(labels, names, voxel_ml, min_ml=0)
    assert len(everything) == 5 and none_skipped == 0
    assert [o.name for o in find_objects(labels, names, voxel_ml, values=[1])[0]] == ["liver"]
    whole = find_objects(labels, names, voxel_ml, lesion_labels=["liver"])[0]
    assert [(o.name, o.voxels) for o in whole] == [("liver_1", 1000), ("liver_2", 12), ("GTV", 42)]
    # The rule itself.
    assert keep_object(0.1) and not keep_object(0.099) and keep_object(0.05, 0.05)


def _box(shape, lo, hi, lo2, hi2) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[lo:hi, lo2:hi2, lo2:hi2] = True
    return mask


def test_training_targets_are_the_evaluation_objects(tmp_path):
    from seganypet.evaluate.data import load_case
    from seganypet.train.data import enumerate_targets, keep_target

    labels = np.zeros((16, 16, 16), np.uint16)
    labels[1:8, 1:8, 1:8] = 1
    labels[10:14, 10:14, 10:14] = 2
    labels[2:4, 12:14, 12:14] = 2
    labels[14, 1, 1] = 2
    folder = _nnunet(tmp_path / "d", cases=())
    _save(folder / "imagesTr" / "c_0000.nii.gz", np.ones(labels.shape, np.float32), 3.0)
    _save(folder / "labelsTr" / "c.nii.gz", labels, 3.0)
    (source,) = discover_cases([folder])
    case = load_case(source, find_liver=False)
    voxel_ml = case.image.voxel_volume_ml
    targets, _, _ = enumerate_targets(
        labels, source.label_names, voxel_ml, (1, 1, 1), np.random.default_rng(0)
    )
    kept = [t for t in targets if keep_target(t, 1, MIN_OBJECT_ML)]
    assert sorted((t.label, t.volume_ml) for t in kept) == sorted(
        (o.label, o.volume_ml) for o in case.objects
    )
    assert len(targets) - len(kept) == case.skipped_small == 1
