import nibabel as nib
import numpy as np
import pytest

from seganypet.errors import InputError
from seganypet.image import PetImage
from seganypet.io import load_image
from seganypet.io.nifti import read_nifti_labels, write_label_map, write_nifti


def _affine():
    return np.array([[-4.0, 0, 0, 100], [0, 4.0, 0, -50], [0, 0, 3.0, 20], [0, 0, 0, 1]])


def test_nifti_round_trip_keeps_grid_and_values(tmp_path):
    values = np.random.default_rng(1).random((6, 7, 8)).astype(np.float32) * 10
    write_nifti(values, _affine(), tmp_path / "pet.nii.gz")
    image = load_image(tmp_path / "pet.nii.gz")
    np.testing.assert_array_equal(image.array, values)
    np.testing.assert_allclose(image.affine, _affine())
    assert image.units == "SUVbw"


def test_label_map_written_on_input_grid(tmp_path):
    image = PetImage(np.zeros((6, 7, 8)), _affine())
    labels = np.zeros(image.shape, np.uint16)
    labels[1:3, 2:4, 3:5] = 2
    write_label_map(labels, image, tmp_path / "mask.nii.gz")
    back, affine = read_nifti_labels(tmp_path / "mask.nii.gz")
    np.testing.assert_array_equal(back, labels)
    assert image.same_grid(back.shape, affine)
    assert not list(tmp_path.glob(".*tmp*")), "no temporary file left behind"


def test_truncated_nifti_is_a_clear_error(tmp_path):
    write_nifti(np.ones((20, 20, 20), np.float32), np.eye(4), tmp_path / "pet.nii.gz")
    data = (tmp_path / "pet.nii.gz").read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated"):
        load_image(tmp_path / "cut.nii.gz")


def test_nan_voxels_are_refused(tmp_path):
    values = np.ones((4, 4, 4), np.float32)
    values[1, 2, 3] = np.nan
    nib.save(nib.Nifti1Image(values, np.eye(4)), str(tmp_path / "nan.nii.gz"))
    with pytest.raises(InputError, match="1 voxels are NaN"):
        load_image(tmp_path / "nan.nii.gz")


def test_non_integer_mask_is_refused(tmp_path):
    nib.save(
        nib.Nifti1Image(np.full((3, 3, 3), 0.5, np.float32), np.eye(4)), str(tmp_path / "m.nii.gz")
    )
    with pytest.raises(InputError, match="non-integer"):
        read_nifti_labels(tmp_path / "m.nii.gz")


def test_outputs_are_readable_by_others(tmp_path):
    from seganypet.model import SamMed3D, save_model

    write_nifti(np.ones((2, 2, 2), np.float32), np.eye(4), tmp_path / "a.nii.gz")
    save_model(SamMed3D("small"), tmp_path / "m.safetensors")
    for name in ("a.nii.gz", "m.safetensors"):
        assert (tmp_path / name).stat().st_mode & 0o044, name
