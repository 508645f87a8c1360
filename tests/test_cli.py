"""The commands, end to end on real PET."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from conftest import shared_path
from seganypet.cli import main


def test_convert_whole_body_dicom_to_suv_nifti(tmp_path, capsys):
    series = shared_path("data", "sts001_wholebody_ge", "image")
    out = tmp_path / "suv.nii.gz"
    assert main(["convert", str(series), "-o", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["suv_factor"] == pytest.approx(2.42903e-4, rel=1e-4)
    assert report["units"] == "SUVbw" and report["suv_type"] == "bw"
    assert report["tags_used"]["PatientWeight"] == 71.0
    written = nib.load(str(out))
    assert written.shape == (128, 128, 267)
    crop = nib.load(str(shared_path("data", "ibsi_sts_crops", "STS_001", "PET_image.nii.gz")))
    # The published IBSI crop of the same patient, located through world coordinates.
    corner = np.linalg.inv(written.affine) @ crop.affine @ np.array([0, 0, 0, 1.0])
    offset = np.rint(corner[:3]).astype(int)
    window = tuple(slice(o, o + n) for o, n in zip(offset, crop.shape, strict=True))
    np.testing.assert_allclose(written.get_fdata()[window], crop.get_fdata(), rtol=1e-3, atol=1e-3)


def test_quantify_rtstruct_on_dicom_writes_stats_json(tmp_path, capsys):
    root = shared_path("data", "sts001_wholebody_ge")
    out = tmp_path / "stats.json"
    code = main(
        [
            "quantify",
            str(root / "image"),
            str(root / "mask" / "1-1.dcm"),
            "--roi",
            "GTV_Mass",
            "-o",
            str(out),
        ]
    )
    assert code == 0
    stats = json.loads(out.read_text())
    (mass,) = stats["labels"]
    assert mass["name"] == "GTV_Mass"
    assert mass["mtv_ml"] == pytest.approx(366.1, rel=0.01)
    assert mass["suv_max"] >= mass["suv_peak"] >= mass["suv_mean"] > 0
    assert mass["tlg"] == pytest.approx(mass["suv_mean"] * mass["mtv_ml"], rel=1e-6)
    assert "GTV_Mass" in capsys.readouterr().out


def test_quantify_any_overlap_rule_counts_boundary_voxels(capsys):
    root = shared_path("data", "sts001_wholebody_ge")
    argv = [
        "quantify",
        str(root / "image"),
        str(root / "mask" / "1-1.dcm"),
        "--roi",
        "GTV_Mass",
        "--json",
    ]
    assert main([*argv, "--contour-rule", "any-overlap"]) == 0
    (mass,) = json.loads(capsys.readouterr().out)["labels"]
    assert mass["mtv_ml"] == pytest.approx(431, rel=0.05)
