"""Reading PET DICOM series: real data from ../shared, synthetic edits of it in tmp_path."""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from conftest import shared_path
from seganypet.errors import InputError
from seganypet.io import load_image
from seganypet.io.dicom import read_dicom_image

RWVM_FACTORS = {"bw": 1.77393e-4, "lbm": 1.40087e-4, "bsa": 4.64238e-6, "ibw": 1.66051e-4}
RWVM_LABELS = {
    "bw": "{SUVbw}g/ml",
    "lbm": "{SUVlbm}g/ml",
    "bsa": "{SUVbsa}cm2/ml",
    "ibw": "{SUVibw}g/ml",
}


def _delia(kind: str = "PET_BODY_CTAC") -> Path:
    return shared_path("data", "suv", "delia_nsclc_r01_005", kind)


def _pet_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("1-*.dcm"))


def _copy_series(
    source: Path, target: Path, edit: Callable[[int, pydicom.Dataset], None] | None = None
) -> Path:
    """Copy the PT slices of ``source`` into ``target``, editing each (index, dataset) first."""
    target.mkdir(parents=True, exist_ok=True)
    for index, file in enumerate(_pet_files(source)):
        dataset = pydicom.dcmread(file)
        if edit is not None:
            edit(index, dataset)
        dataset.save_as(target / file.name)
    return target


def _read_quietly(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return read_dicom_image(*args, **kwargs)


# ---- the whole-body GE series ---------------------------------------------------------------


@pytest.fixture(scope="module")
def whole_body():
    return _read_quietly(shared_path("data", "sts001_wholebody_ge", "image"))


def test_whole_body_ge_geometry_and_factor(whole_body) -> None:
    assert whole_body.shape == (128, 128, 267)
    assert whole_body.spacing == pytest.approx((4.6875, 4.6875, 3.27), abs=1e-3)
    assert whole_body.units == "SUVbw"
    meta = whole_body.metadata
    assert meta["suv_factor"] == pytest.approx(2.42903e-4, rel=1e-4)
    assert "resampled_slices" not in meta  # bed-boundary rounding (0.04 mm) is not resampled
    assert meta["modality"] == "PT" and meta["units"] == "BQML" and meta["suv_type"] == "bw"
    assert meta["patient_id"] == "STS_001" and meta["manufacturer"] == "GE MEDICAL SYSTEMS"
    assert meta["suv_tags"]["PatientWeight"] == 71.0
    assert meta["suv_supplied"] == {}
    # RAS+ affine: DICOM LPS x and y negated, slices ascending in z.
    assert np.allclose(whole_body.affine[:3, :3], np.diag([-4.6875, -4.6875, 3.27]), atol=1e-3)


def test_whole_body_headers_are_sorted_and_without_pixels(whole_body) -> None:
    headers = whole_body.dicom_headers
    assert len(headers) == 267
    z = [float(h.ImagePositionPatient[2]) for h in headers]
    assert z == sorted(z)
    assert all("PixelData" not in h for h in headers)
    world = whole_body.voxel_to_world(np.array([[0, 0, k] for k in range(267)]))
    lps = np.array([[float(v) for v in h.ImagePositionPatient] for h in headers])
    assert np.allclose(world, lps * [-1, -1, 1], atol=0.05)


def test_whole_body_equals_the_published_ibsi_crop(whole_body) -> None:
    """The IBSI crop (NIfTI, SUV) of this patient, found by world coordinates, has our values.

    The crop was stored as 16-bit integers with its own per-slice RescaleSlope (the same grid and
    values as the GML DICOM crop), so voxels agree to within about one of its quantisation steps.
    """
    crop = nib.load(shared_path("data", "ibsi_sts_crops", "STS_001", "PET_image.nii.gz"))
    gml_crop = _read_quietly(shared_path("data", "sts_crops_dicom_gml", "STS_001", "image"))
    assert gml_crop.same_grid(crop.shape, crop.affine)
    quantum = np.array([float(h.RescaleSlope) for h in gml_crop.dicom_headers])

    corner = np.rint(whole_body.world_to_voxel(crop.affine[:3, 3])).astype(int)
    assert np.allclose(whole_body.voxel_to_world(corner), crop.affine[:3, 3], atol=0.05)
    expected = crop.get_fdata()
    i, j, k = corner
    region = whole_body.array[
        i : i + expected.shape[0], j : j + expected.shape[1], k : k + expected.shape[2]
    ]
    assert region.shape == expected.shape
    assert np.all(np.abs(region - expected) <= 1.5 * quantum)
    hot = expected > 0.5
    assert np.median(region[hot] / expected[hot]) == pytest.approx(1.0, abs=1e-6)


def test_folder_with_rtstruct_reads_the_pet_series(whole_body) -> None:
    image = _read_quietly(shared_path("data", "sts001_wholebody_ge"))  # image/ and mask/ (RTSTRUCT)
    assert image.metadata["series_uid"] == whole_body.metadata["series_uid"]
    assert np.array_equal(image.array, whole_body.array)


def test_array_axes_are_column_row_slice() -> None:
    image = _read_quietly(_delia())
    for k, header in enumerate(image.dicom_headers):
        dataset = pydicom.dcmread(_delia() / f"1-{int(header.InstanceNumber):03d}.dcm")
        expected = (
            dataset.pixel_array.T * float(dataset.RescaleSlope) * image.metadata["suv_factor"]
        )
        assert np.allclose(image.array[:, :, k], expected, rtol=1e-6)
    assert image.array.shape == (128, 128, 10)


def test_load_image_reads_dicom() -> None:
    image = load_image(_delia(), suv_type="bw")
    assert image.metadata["format"] == "dicom"


# ---- SUV on real series ---------------------------------------------------------------------


def _rwvm_slopes(folder: Path) -> dict[str, float]:
    for file in folder.glob("*.dcm"):
        dataset = pydicom.dcmread(file, stop_before_pixels=True)
        if dataset.Modality == "RWV":
            slopes = {}
            for item in dataset.ReferencedImageRealWorldValueMappingSequence:
                mapping = item.RealWorldValueMappingSequence[0]
                slopes[str(mapping.LUTLabel)] = float(mapping.RealWorldValueSlope)
            return slopes
    raise AssertionError(f"no RWVM object in {folder}")


@pytest.mark.parametrize("suv_type", ["bw", "lbm", "bsa", "ibw"])
def test_delia_factors_match_the_rwvm(suv_type: str) -> None:
    folder = _delia()
    rwvm = _rwvm_slopes(folder)[RWVM_LABELS[suv_type]]
    assert rwvm == pytest.approx(RWVM_FACTORS[suv_type], rel=1e-6)
    # The RWVM was written by 3D Slicer, whose lean body mass is James's formula.
    image = _read_quietly(folder, suv_type=suv_type, lbm_formula="james")
    assert image.metadata["suv_factor"] == pytest.approx(rwvm, rel=1e-3)
    assert image.units == f"SUV{suv_type}"


def test_delia_janmahasatian_lean_body_mass_differs_from_james() -> None:
    image = _read_quietly(_delia(), suv_type="lbm")
    # Janmahasatian gives 51.3 kg for this 66 kg, 165 cm man, James 52.1 kg.
    assert image.metadata["suv_factor"] == pytest.approx(RWVM_FACTORS["lbm"] * 0.985, rel=1e-3)
    assert image.metadata["suv_tags"]["LeanBodyMassFormula"] == "janmahasatian"


def test_non_attenuation_corrected_series_is_refused() -> None:
    with pytest.raises(InputError) as error:
        read_dicom_image(_delia("PET_BODY_NOAC"))
    assert "PROPCNTS" in str(error.value) and "not quantitative" in str(error.value)


def test_gml_crop_is_already_suv() -> None:
    image = _read_quietly(shared_path("data", "sts_crops_dicom_gml", "STS_001", "image"))
    assert image.metadata["suv_factor"] == 1.0
    assert image.metadata["units"] == "GML"
    assert image.units == "SUVbw"
    crop = nib.load(shared_path("data", "ibsi_sts_crops", "STS_001", "PET_image.nii.gz"))
    assert image.same_grid(crop.shape, crop.affine)
    assert np.allclose(image.array, crop.get_fdata(), rtol=1e-5, atol=1e-5)


def test_acrin_single_slices() -> None:
    folder = shared_path("data", "suv", "acrin_flt_slices")
    static = _read_quietly(folder / "1.dcm")
    assert static.shape == (168, 168, 1)
    assert static.spacing == pytest.approx((4.07283, 4.07283, 5.0))
    dynamic = _read_quietly(folder / "2.dcm")  # DYNAMIC; injection time equals the series time
    header = dynamic.dicom_headers[0]
    dose = float(header.RadiopharmaceuticalInformationSequence[0].RadionuclideTotalDose)
    assert dynamic.metadata["decay_seconds"] == pytest.approx(0.109, abs=1e-6)
    assert dynamic.metadata["suv_factor"] == pytest.approx(
        float(header.PatientWeight) * 1000 / dose, rel=1e-4
    )
    assert np.isfinite(dynamic.array).all() and dynamic.array.max() > 0


# ---- bad inputs ---------------------------------------------------------------------------


def test_two_pet_series_in_one_folder(tmp_path: Path) -> None:
    folder = shared_path("data", "suv", "acrin_flt_slices")
    with pytest.raises(InputError) as error:
        read_dicom_image(folder)
    message = str(error.value)
    uids = [
        str(pydicom.dcmread(folder / f, stop_before_pixels=True).SeriesInstanceUID)
        for f in ("1.dcm", "2.dcm")
    ]
    assert "2 PET series" in message and "--series UID" in message
    assert all(uid in message for uid in uids) and "1 slice" in message
    picked = _read_quietly(folder, series_uid=uids[1])
    assert picked.metadata["series_uid"] == uids[1]
    with pytest.raises(InputError, match="no series with SeriesInstanceUID 1.2.3"):
        read_dicom_image(folder, series_uid="1.2.3")


def test_ct_series_is_not_pet(tmp_path: Path) -> None:
    def make_ct(_: int, dataset: pydicom.Dataset) -> None:
        dataset.Modality = "CT"

    folder = _copy_series(_delia(), tmp_path / "ct", make_ct)
    with pytest.raises(InputError) as error:
        read_dicom_image(folder)
    assert "CT series" in str(error.value) and "not PET" in str(error.value)


def test_missing_weight_is_named_and_can_be_supplied(tmp_path: Path) -> None:
    def drop_weight(_: int, dataset: pydicom.Dataset) -> None:
        del dataset.PatientWeight

    folder = _copy_series(_delia(), tmp_path / "noweight", drop_weight)
    with pytest.raises(InputError) as error:
        read_dicom_image(folder)
    assert "PatientWeight (0010,1030)" in str(error.value) and "--weight-kg" in str(error.value)
    image = _read_quietly(folder, weight_kg=66)
    assert image.metadata["suv_factor"] == pytest.approx(
        _read_quietly(_delia()).metadata["suv_factor"], rel=1e-12
    )
    assert image.metadata["suv_supplied"] == {"PatientWeight": 66.0}


def test_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no DICOM files found"):
        read_dicom_image(tmp_path)
    (tmp_path / "notes.txt").write_text("not DICOM")
    with pytest.raises(InputError, match="no DICOM files found"):
        read_dicom_image(tmp_path)
    with pytest.raises(InputError, match="no such file"):
        read_dicom_image(tmp_path / "absent")


def test_non_dicom_files_and_repeated_instances_are_skipped(tmp_path: Path) -> None:
    folder = _copy_series(_delia(), tmp_path / "series")
    (folder / "README.txt").write_text("notes")
    shutil.copy(folder / "1-001.dcm", folder / "copy-of-1-001.dcm")
    image = _read_quietly(folder)
    assert image.shape == (128, 128, 10)


def test_file_order_does_not_matter(tmp_path: Path) -> None:
    folder = tmp_path / "shuffled"
    folder.mkdir()
    for index, file in enumerate(reversed(_pet_files(_delia()))):
        shutil.copy(file, folder / f"x{index:02d}.dcm")
    assert np.array_equal(_read_quietly(folder).array, _read_quietly(_delia()).array)


def test_duplicate_positions_are_refused(tmp_path: Path) -> None:
    first_position = list(pydicom.dcmread(_pet_files(_delia())[0]).ImagePositionPatient)

    def repeat_position(index: int, dataset: pydicom.Dataset) -> None:
        if index == 1:
            dataset.ImagePositionPatient = first_position
            dataset.SOPInstanceUID = generate_uid()

    folder = _copy_series(_delia(), tmp_path / "frames", repeat_position)
    with pytest.raises(InputError, match="time frames"):
        read_dicom_image(folder)


# ---- slice spacing --------------------------------------------------------------------------


def _synthetic_positions(tmp_path: Path, z_offsets: list[float]) -> tuple[Path, float]:
    """Delia headers with slices at ``z_offsets`` (mm); each slice constant 1000 + 10 z."""
    base_z = -860.5

    def place(index: int, dataset: pydicom.Dataset) -> None:
        z = z_offsets[index]
        dataset.ImagePositionPatient = [-275.0, -275.0, base_z + z]
        dataset.RescaleSlope = 1
        dataset.RescaleIntercept = 0
        dataset.PixelData = np.full((128, 128), 1000 + 10 * z, dtype=np.int16).tobytes()

    folder = _copy_series(_delia(), tmp_path / "spacing", place)
    return folder, base_z


def test_non_uniform_spacing_is_resampled_with_a_warning(tmp_path: Path) -> None:
    z = [0, 4, 8, 12, 16, 20, 28, 32, 36, 40]  # the slice at 24 mm is missing
    folder, base_z = _synthetic_positions(tmp_path, z)
    with pytest.warns(UserWarning, match="not uniform"):
        image = read_dicom_image(folder)
    factor = image.metadata["suv_factor"]
    assert image.shape == (128, 128, 11)
    assert image.spacing[2] == pytest.approx(4.0)
    record = image.metadata["resampled_slices"]
    assert record["original_positions_mm"] == pytest.approx([base_z + v for v in z])
    assert record["spacing_mm"] == pytest.approx(4.0)
    expected = np.array([(1000 + 10 * 4 * k) * factor for k in range(11)])
    assert np.allclose(image.array[5, 7, :], expected, rtol=1e-6)
    assert image.voxel_to_world([0, 0, 6])[2] == pytest.approx(base_z + 24)
    assert len(image.dicom_headers) == 10


def test_position_rounding_is_not_resampled(tmp_path: Path) -> None:
    z = [0, 4.25, 8.5, 12.79, 17.0, 21.25, 25.5, 29.71, 34.0, 38.25]  # 0.04 mm jitter
    folder, _ = _synthetic_positions(tmp_path, z)
    image = _read_quietly(folder)
    assert image.shape == (128, 128, 10)
    assert image.spacing[2] == pytest.approx(4.25)
    assert "resampled_slices" not in image.metadata


def test_non_finite_values_are_refused(tmp_path: Path) -> None:
    def overflow(index: int, dataset: pydicom.Dataset) -> None:
        if index == 3:
            dataset.RescaleSlope = "1e308"

    folder = _copy_series(_delia(), tmp_path / "overflow", overflow)
    with pytest.raises(InputError, match="NaN or infinite"):
        read_dicom_image(folder)


def test_damaged_dicom_file_is_named(tmp_path: Path) -> None:
    folder = _copy_series(_delia(), tmp_path / "damaged")
    damaged = folder / "1-005.dcm"
    damaged.write_bytes(damaged.read_bytes()[:-5000])  # pixel data cut short
    with pytest.raises(InputError, match="1-005.dcm"):
        read_dicom_image(folder)
