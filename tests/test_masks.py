"""load_mask / save_mask: every mask format onto the image grid, bad inputs, round trips."""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pytest

from conftest import shared_path
from seganypet.errors import InputError
from seganypet.image import PetImage
from seganypet.io.dicom import read_dicom_image
from seganypet.io.masks import load_mask, save_mask
from seganypet.io.nifti import write_nifti


@pytest.fixture(scope="module")
def crop() -> PetImage:
    return read_dicom_image(shared_path("data", "sts_crops_dicom_gml", "STS_001", "image"))


@pytest.fixture(scope="module")
def gtv(crop) -> np.ndarray:
    labels, names = load_mask(
        shared_path("data", "sts_crops_dicom_gml", "STS_001", "mask", "RS.dcm"), crop
    )
    assert names == {1: "GTV_Mass_PET"}
    return labels


def test_nifti_mask_on_the_image_grid_matches_the_rtstruct(crop, gtv):
    labels, names = load_mask(
        shared_path("data", "ibsi_sts_crops", "STS_001", "PET_mask.nii.gz"), crop
    )
    assert labels.dtype == np.uint16 and labels.shape == crop.shape
    assert names == {1: "label_1"}
    np.testing.assert_array_equal(labels, gtv)
    assert gtv.sum() == 5095


def test_rtstruct_folder_is_accepted(crop, gtv):
    labels, _ = load_mask(shared_path("data", "sts_crops_dicom_gml", "STS_001", "mask"), crop)
    np.testing.assert_array_equal(labels, gtv)


def test_overlapping_rois_keep_the_first_listed_with_a_warning():
    wholebody = read_dicom_image(shared_path("data", "sts001_wholebody_ge", "image"))
    path = shared_path("data", "sts001_wholebody_ge", "mask", "1-1.dcm")
    with pytest.warns(UserWarning, match="'GTV_Edema' with 'GTV_Mass' in 5095 voxels"):
        labels, names = load_mask(path, wholebody)
    assert names == {1: "GTV_Mass", 2: "GTV_Edema"}
    assert np.bincount(labels.ravel()).tolist()[1:] == [5095, 8058 - 5095]
    edema_only, names = load_mask(path, wholebody, roi_names=["GTV_Edema"])
    assert names == {1: "GTV_Edema"} and (edema_only == 1).sum() == 8058


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_nifti_round_trip(crop, gtv, tmp_path, suffix):
    labels = gtv.copy()
    labels[1:4, 1:4, 1:4] = 7
    written = save_mask(labels, {1: "GTV", 7: "box"}, crop, tmp_path / f"mask{suffix}")
    back, names = load_mask(written, crop)
    np.testing.assert_array_equal(back, labels)
    assert names == {1: "label_1", 7: "label_7"}  # NIfTI keeps values, not names


def test_dicom_seg_round_trip_keeps_names(crop, gtv, tmp_path):
    labels = gtv.copy()
    labels[1:4, 1:4, 1:4] = 2
    written = save_mask(
        labels, {1: "GTV", 2: "box"}, crop, tmp_path / "mask.dcm", format="dicom-seg"
    )
    back, names = load_mask(written, crop)
    np.testing.assert_array_equal(back, labels)
    assert names == {1: "GTV", 2: "box"}
    folder = tmp_path / "segfolder"
    folder.mkdir()
    shutil.copy(written, folder / "seg.dcm")
    back, _ = load_mask(folder, crop)
    np.testing.assert_array_equal(back, labels)
    with pytest.raises(InputError, match="no segment named"):
        load_mask(written, crop, roi_names=["GTV_Mass"])


def test_nifti_mask_of_another_shape_is_an_input_error(crop):
    other_case = shared_path("data", "ibsi_sts_crops", "STS_002", "PET_mask.nii.gz")
    with pytest.raises(InputError, match=r"must be on the image's grid.*shape \(.*\(41, 43, 59\)"):
        load_mask(other_case, crop)


def test_nifti_mask_on_a_shifted_grid_is_an_input_error(crop, gtv, tmp_path):
    shifted = crop.affine.copy()
    shifted[:3, 3] += [0.0, 0.0, 1.5]
    write_nifti(gtv.astype(np.uint8), shifted, tmp_path / "shifted.nii.gz")
    with pytest.raises(InputError, match="must be on the image's grid") as caught:
        load_mask(tmp_path / "shifted.nii.gz", crop)
    message = str(caught.value)
    assert "-879.8" in message and "-881.3" in message  # both affines are shown


def test_nifti_mask_on_the_same_grid_within_tolerance_is_accepted(crop, gtv, tmp_path):
    nearly = crop.affine.copy()
    nearly[:3, 3] += 5e-4
    write_nifti(gtv.astype(np.uint8), nearly, tmp_path / "nearly.nii.gz")
    labels, _ = load_mask(tmp_path / "nearly.nii.gz", crop)
    np.testing.assert_array_equal(labels, gtv)


def test_roi_names_with_a_nifti_mask_are_an_input_error(crop):
    with pytest.raises(InputError, match="no names"):
        load_mask(
            shared_path("data", "ibsi_sts_crops", "STS_001", "PET_mask.nii.gz"),
            crop,
            roi_names=["GTV"],
        )


def test_not_a_mask_is_an_input_error(crop, tmp_path):
    pet_slice = sorted(
        shared_path("data", "sts_crops_dicom_gml", "STS_001", "image").glob("*.dcm")
    )[0]
    with pytest.raises(InputError, match="is a PT, not a mask"):
        load_mask(pet_slice, crop)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="not a NIfTI label map"):
        load_mask(tmp_path / "notes.txt", crop)
    with pytest.raises(InputError, match="no such file"):
        load_mask(tmp_path / "missing.nii.gz", crop)
    with pytest.raises(InputError, match="holds no DICOM SEG or RTSTRUCT"):
        load_mask(tmp_path, crop)


def test_folder_with_two_masks_is_an_input_error(crop, tmp_path):
    source = shared_path("data", "sts_crops_dicom_gml", "STS_001", "mask", "RS.dcm")
    shutil.copy(source, tmp_path / "a.dcm")
    shutil.copy(source, tmp_path / "b.dcm")
    with pytest.raises(InputError, match="2 mask files"):
        load_mask(tmp_path, crop)


def test_save_mask_refuses_unknown_formats_and_dicom_seg_without_dicom(crop, gtv, tmp_path):
    with pytest.raises(InputError, match="unknown mask format 'png'"):
        save_mask(gtv, {}, crop, tmp_path / "mask.png", format="png")
    nifti_image = PetImage(crop.array, crop.affine)
    with pytest.raises(InputError, match="use --format nifti"):
        save_mask(gtv, {1: "GTV"}, nifti_image, tmp_path / "mask.dcm", format="dicom-seg")
    with pytest.raises(InputError, match=r"\.nii"):
        save_mask(gtv, {1: "GTV"}, crop, tmp_path / "mask.dcm")
    assert not list(tmp_path.iterdir())


def test_nifti_written_mask_keeps_the_image_affine(crop, gtv, tmp_path):
    save_mask(gtv, {1: "GTV"}, crop, tmp_path / "mask.nii.gz")
    np.testing.assert_allclose(nib.load(tmp_path / "mask.nii.gz").affine, crop.affine, atol=1e-6)
