"""`seganypet segment` end to end, with a small random-weight network (mechanics, not quality)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from conftest import shared_path
from seganypet.cli import EXIT_USER_ERROR, main
from seganypet.model import SamMed3D, save_model


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "small.safetensors"
    save_model(SamMed3D("small"), path)
    return path


def test_segment_nifti_writes_mask_on_input_grid_and_stats(tmp_path, small_model, capsys):
    image = shared_path("data", "ibsi_sts_crops", "STS_002", "PET_image.nii.gz")
    out, stats = tmp_path / "mask.nii.gz", tmp_path / "stats.json"
    argv = ["segment", "-i", image, "-o", out, "--point", "15,15,20", "--point", "3,3,3,neg"]
    code = main([str(a) for a in [*argv, "--model", small_model, "--stats", stats]])
    assert code == 0, capsys.readouterr().err
    source, written = nib.load(str(image)), nib.load(str(out))
    assert written.shape == source.shape
    np.testing.assert_allclose(written.affine, source.affine, atol=1e-4)
    report = json.loads(stats.read_text())
    assert report["image"]["shape"] == list(source.shape)


def test_segment_dicom_input_to_dicom_seg(tmp_path, small_model, capsys):
    series = shared_path("data", "sts_crops_dicom_gml", "STS_001", "image")
    out = tmp_path / "seg.dcm"
    argv = ["segment", "-i", series, "-o", out, "--box", "5,5,5,30,30,40", "--format", "dicom-seg"]
    assert main([str(a) for a in [*argv, "--model", small_model]]) == 0, capsys.readouterr().err
    import pydicom

    seg = pydicom.dcmread(out)
    assert seg.Modality == "SEG"
    assert seg.SegmentSequence[0].SegmentLabel == "object 1"


def test_segment_prompts_file_with_mm_coordinates(tmp_path, small_model, capsys):
    image_path = shared_path("data", "ibsi_sts_crops", "STS_002", "PET_image.nii.gz")
    affine = nib.load(str(image_path)).affine
    world = (affine @ np.array([15, 15, 20, 1.0]))[:3].tolist()
    prompts = tmp_path / "prompts.json"
    prompts.write_text(
        json.dumps(
            {
                "coordinates": "mm",
                "objects": [
                    {"name": "tumour", "prompts": [{"point": world, "positive": True}]},
                    {
                        "name": "second",
                        "prompts": [{"box": [*world, *(np.array(world) + 20).tolist()]}],
                    },
                ],
            }
        )
    )
    out = tmp_path / "mask.nii.gz"
    argv = ["segment", "-i", image_path, "-o", out, "--prompts", prompts, "--model", small_model]
    assert main([str(a) for a in argv]) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "tumour" in printed and "second" in printed


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        (["--point", "999,1,1"], "outside the image"),
        (["--box", "5,5,5,5,20,20"], "empty"),
        (["--point", "5,5,5,neg"], "first prompt"),
        (["--point", "5,5"], "3 comma-separated"),
        ([], "no prompt"),
    ],
)
def test_bad_prompts_are_one_clear_line(tmp_path, small_model, capsys, prompt, message):
    image = shared_path("data", "ibsi_sts_crops", "STS_002", "PET_image.nii.gz")
    argv = [
        "segment",
        "-i",
        str(image),
        "-o",
        str(tmp_path / "m.nii.gz"),
        "--model",
        str(small_model),
        *prompt,
    ]
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse rejects a malformed value itself
        code = exit_.code
    err = capsys.readouterr().err
    assert code == EXIT_USER_ERROR
    assert "Traceback" not in err and message in err
    assert not (tmp_path / "m.nii.gz").exists()


def test_the_bundled_default_model_needs_no_model_flag(tmp_path, capsys):
    image = shared_path("data", "ibsi_sts_crops", "STS_002", "PET_image.nii.gz")
    masks = []
    for extra in ([], ["--model", "default"]):
        out = tmp_path / f"mask{len(extra)}.nii.gz"
        argv = ["segment", "-i", str(image), "-o", str(out), "--point", "15,15,20", *extra]
        assert main(argv) == 0, capsys.readouterr().err
        masks.append(np.asarray(nib.load(str(out)).dataobj))
    np.testing.assert_array_equal(masks[0], masks[1])
    assert masks[0][15, 15, 20] == 1  # the clicked voxel, the hot centre of the sarcoma
    code = main(
        [
            "segment",
            "-i",
            str(image),
            "-o",
            str(tmp_path / "x.nii.gz"),
            "--point",
            "15,15,20",
            "--model",
            "no_such_model",
        ]
    )
    err = capsys.readouterr().err
    assert code == EXIT_USER_ERROR and "no bundled model named 'no_such_model'" in err


def test_reference_order_gives_the_same_mask(tmp_path, small_model, capsys):
    image = shared_path("data", "ibsi_sts_crops", "STS_002", "PET_image.nii.gz")
    masks = []
    for extra in ([], ["--reference-order"]):
        out = tmp_path / f"mask{len(extra)}.nii.gz"
        argv = ["segment", "-i", image, "-o", out, "--point", "15,15,20", "--model", small_model]
        assert main([str(a) for a in [*argv, *extra]]) == 0, capsys.readouterr().err
        masks.append(np.asarray(nib.load(str(out)).dataobj))
    assert (masks[0] != masks[1]).mean() < 1e-3
