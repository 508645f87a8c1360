"""``seganypet demo``: the bundled model on a phantom (and the real STS_001 when present)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from conftest import shared_path
from seganypet.cli import main
from seganypet.demo import run_demo
from seganypet.io.nifti import read_nifti_image, read_nifti_labels


def _check_case_files(case, out_dir):
    image = read_nifti_image(out_dir / f"{case.name}_pet.nii.gz")
    np.testing.assert_allclose(image.array, case.image.array, rtol=1e-6)
    labels, affine = read_nifti_labels(out_dir / f"{case.name}_masks.nii.gz")
    np.testing.assert_allclose(affine, case.image.affine, atol=1e-5)
    stats = json.loads((out_dir / f"{case.name}_stats.json").read_text())
    rows = {row["label"]: row for row in stats["statistics"]["labels"]}
    for value, obj in enumerate(case.objects, start=1):
        mask = labels == value
        assert mask.any(), f"{obj.name} came out empty"
        np.testing.assert_array_equal(mask, obj.mask & ~np.isin(labels, range(1, value)))
        row = rows[value]
        assert row["name"] == obj.name
        assert row["suv_max"] == pytest.approx(float(case.image.array[mask].max()), rel=1e-6)
        assert row["mtv_ml"] == pytest.approx(mask.sum() * case.image.voxel_volume_ml, rel=1e-6)
        assert row["tlg"] == pytest.approx(row["mtv_ml"] * row["suv_mean"], rel=1e-6)
        assert row["suv_peak"] <= row["suv_max"]
        recorded = stats["objects"][value - 1]
        assert len(recorded["clicks"]) == len(recorded["dice_per_click"]) >= 1
        assert recorded["clicks"][0]["positive"] is True
    with Image.open(out_dir / f"{case.name}_mip.png") as figure:
        assert figure.width > 400 and figure.height > 400
        colours = np.asarray(figure.convert("RGB")).reshape(-1, 3)
        # the object colours and the click markers are drawn, not only the grey MIP
        assert (np.ptp(colours.astype(int), axis=1) > 60).mean() > 0.001


def test_demo_segments_a_lesion_and_an_organ_of_a_phantom(tmp_path):
    lines: list[str] = []
    (case,) = run_demo(tmp_path, real=False, log=lines.append)
    lesion, organ = case.objects
    assert lesion.name.startswith("lesion") and organ.name == "liver"
    # the simulated user's first click lies inside its object, and clicking helps
    first = tuple(int(round(v)) for v in lesion.prompts[0].voxel)
    assert lesion.truth[first]
    assert lesion.dice_per_click[-1] >= 0.5
    assert max(organ.dice_per_click) > 0.0
    _check_case_files(case, tmp_path)
    summary = "\n".join(lines)
    assert "Dice per click" in summary and "SUVmax" in summary and str(tmp_path) in summary


def test_demo_runs_the_real_sts001_scan_when_the_shared_data_is_there(tmp_path):
    shared_path("data", "sts001_wholebody_ge")
    phantom, sts001 = run_demo(tmp_path, clicks=2, log=lambda line: None)
    (tumour,) = sts001.objects
    assert tumour.truth.sum() * sts001.image.voxel_volume_ml == pytest.approx(366.1, abs=0.5)
    assert tumour.dice_per_click[-1] > 0.3
    _check_case_files(sts001, tmp_path)


def test_demo_cli_writes_its_files_and_refuses_bad_arguments(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path / "out"), "--no-real", "--clicks", "1"]) == 0
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == [
        "phantom_masks.nii.gz",
        "phantom_mip.png",
        "phantom_pet.nii.gz",
        "phantom_stats.json",
    ]
    assert nib.load(tmp_path / "out" / "phantom_masks.nii.gz").get_fdata().max() == 2
    capsys.readouterr()
    assert main(["demo", "-o", str(tmp_path / "bad"), "--clicks", "0"]) == 2
    err = capsys.readouterr().err
    assert "--clicks must be at least 1" in err and "Traceback" not in err
