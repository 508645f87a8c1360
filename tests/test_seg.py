"""DICOM SEG writing (validated with dciodvfy) and reading, on the real sarcoma PET series."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.sr.codedict import codes

from conftest import shared_path
from seganypet.errors import InputError
from seganypet.image import PetImage
from seganypet.io.dicom import read_dicom_image
from seganypet.io.rtstruct import rasterise_rtstruct
from seganypet.io.seg import read_dicom_seg, segment_codes, write_dicom_seg


@pytest.fixture(scope="module")
def crop() -> PetImage:
    return read_dicom_image(shared_path("data", "sts_crops_dicom_gml", "STS_001", "image"))


@pytest.fixture(scope="module")
def crop_labels(crop) -> np.ndarray:
    """GTV as label 1 and a box as label 3 (label 2 unused) on the STS_001 crop grid."""
    path = shared_path("data", "sts_crops_dicom_gml", "STS_001", "mask", "RS.dcm")
    labels = rasterise_rtstruct(path, crop)["GTV_Mass_PET"].astype(np.uint16)
    labels[2:6, 30:35, 40:44] = 3
    return labels


def dciodvfy_path() -> str:
    found = shutil.which("dciodvfy")
    if found is None:
        reason = "dciodvfy (Debian package dicom3tools) is not on PATH"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI must have it: {reason}")
        pytest.skip(reason)
    return found


def test_written_seg_passes_dciodvfy(crop, crop_labels, tmp_path):
    path = write_dicom_seg(crop_labels, {1: "GTV", 3: "hot spot"}, crop, tmp_path / "seg.dcm")
    result = subprocess.run(
        [dciodvfy_path(), str(path)], capture_output=True, text=True, check=False
    )
    report = result.stdout + result.stderr
    errors = [line for line in report.splitlines() if line.startswith("Error")]
    assert not errors, report


def test_round_trip_keeps_labels_and_names(crop, crop_labels, tmp_path):
    path = write_dicom_seg(crop_labels, {1: "GTV", 3: "hot spot"}, crop, tmp_path / "seg.dcm")
    labels, names = read_dicom_seg(path, crop)
    assert labels.dtype == np.uint16
    np.testing.assert_array_equal(labels, crop_labels)
    assert names == {1: "GTV", 2: "label_2", 3: "hot spot"}


def test_seg_references_the_source_series_and_describes_its_segments(crop, crop_labels, tmp_path):
    path = write_dicom_seg(crop_labels, {1: "GTV", 3: "hot spot"}, crop, tmp_path / "seg.dcm")
    seg = pydicom.dcmread(path)
    source = crop.dicom_headers[0]
    assert seg.Modality == "SEG" and seg.SegmentationType == "BINARY"
    assert seg.FrameOfReferenceUID == source.FrameOfReferenceUID
    assert seg.StudyInstanceUID == source.StudyInstanceUID
    referenced = seg.ReferencedSeriesSequence[0]
    assert referenced.SeriesInstanceUID == source.SeriesInstanceUID
    assert {i.ReferencedSOPInstanceUID for i in referenced.ReferencedInstanceSequence} == {
        h.SOPInstanceUID for h in crop.dicom_headers
    }
    first = seg.SegmentSequence[0]
    assert first.SegmentLabel == "GTV" and first.SegmentAlgorithmType == "SEMIAUTOMATIC"
    assert first.SegmentAlgorithmName == "seganypet"
    assert first.SegmentedPropertyTypeCodeSequence[0].CodeValue == codes.SCT.Neoplasm.value
    assert (
        seg.SegmentSequence[2].SegmentedPropertyTypeCodeSequence[0].CodeValue
        == codes.SCT.Tissue.value
    )
    assert len(seg.StudyID) <= 16  # the source's 18-character Study ID is cut to its VR's limit


def test_frames_follow_the_source_slices_pixel_grid(crop, crop_labels, tmp_path):
    """Checked with highdicom's own reader: frame (row, column) of slice k is array [column, row, k]."""
    path = write_dicom_seg(crop_labels, {1: "GTV"}, crop, tmp_path / "seg.dcm")
    seg = hd.seg.segread(path)
    uids = [h.SOPInstanceUID for h in crop.dicom_headers]
    frames = seg.get_pixels_by_source_instance(
        uids, combine_segments=True, skip_overlap_checks=True
    )
    np.testing.assert_array_equal(frames, np.transpose(crop_labels, (2, 1, 0)))


def test_writing_from_the_canonical_view_gives_the_same_seg(crop, crop_labels, tmp_path):
    view = crop.canonical()
    path = write_dicom_seg(
        view.from_input(crop_labels), {1: "GTV"}, view.image, tmp_path / "seg.dcm"
    )
    labels, _ = read_dicom_seg(path, crop)
    np.testing.assert_array_equal(labels, crop_labels)


def test_crop_seg_reads_onto_the_wholebody_grid_at_its_offset(crop, crop_labels, tmp_path):
    """Same patient, same Frame of Reference: the crop is a window of the whole-body grid."""
    wholebody = read_dicom_image(shared_path("data", "sts001_wholebody_ge", "image"))
    path = write_dicom_seg(crop_labels, {1: "GTV", 3: "box"}, crop, tmp_path / "seg.dcm")
    labels, names = read_dicom_seg(path, wholebody, segment_names=["GTV"])
    assert names == {1: "GTV"}
    expected = rasterise_rtstruct(
        shared_path("data", "sts001_wholebody_ge", "mask", "1-1.dcm"), wholebody, ["GTV_Mass"]
    )["GTV_Mass"]
    np.testing.assert_array_equal(labels == 1, expected)
    assert set(np.unique(labels)) == {0, 1}


def test_empty_label_map_is_written_as_one_empty_segment(crop, tmp_path):
    path = write_dicom_seg(np.zeros(crop.shape, np.uint8), {}, crop, tmp_path / "seg.dcm")
    labels, names = read_dicom_seg(path, crop)
    assert not labels.any() and names == {1: "label_1"}


def test_nifti_image_cannot_give_a_dicom_seg(crop, crop_labels, tmp_path):
    nifti_like = PetImage(crop.array, crop.affine)
    with pytest.raises(InputError, match="DICOM SEG needs a DICOM input series; .*--format nifti"):
        write_dicom_seg(crop_labels, {1: "GTV"}, nifti_like, tmp_path / "seg.dcm")
    assert not list(tmp_path.iterdir())


def test_failed_write_leaves_no_file(crop, tmp_path):
    with pytest.raises(ValueError, match="shape"):
        write_dicom_seg(np.zeros((3, 3, 3), np.uint8), {}, crop, tmp_path / "seg.dcm")
    assert not list(tmp_path.iterdir())


def test_seg_of_another_frame_of_reference_is_an_input_error(crop, crop_labels, tmp_path):
    other = read_dicom_image(shared_path("data", "sts_crops_dicom_gml", "STS_002", "image"))
    path = write_dicom_seg(crop_labels, {1: "GTV"}, crop, tmp_path / "seg.dcm")
    with pytest.raises(InputError, match="Frame of Reference"):
        read_dicom_seg(path, other)


def test_seg_off_the_image_grid_is_an_input_error(crop, crop_labels, tmp_path):
    path = write_dicom_seg(crop_labels, {1: "GTV"}, crop, tmp_path / "seg.dcm")
    shifted = crop.affine.copy()
    shifted[:3, 3] += 0.5 * crop.affine[:3, 0]  # half a voxel along the first axis
    with pytest.raises(InputError, match="does not lie on the image's grid"):
        read_dicom_seg(path, replace(crop, affine=shifted))


def test_unknown_segment_name_is_an_input_error(crop, crop_labels, tmp_path):
    path = write_dicom_seg(crop_labels, {1: "GTV"}, crop, tmp_path / "seg.dcm")
    with pytest.raises(InputError, match="no segment named 'liver'"):
        read_dicom_seg(path, crop, segment_names=["liver"])


def test_pet_slice_is_not_a_seg(crop):
    path = sorted(shared_path("data", "sts_crops_dicom_gml", "STS_001", "image").glob("*.dcm"))[0]
    with pytest.raises(InputError, match="not a segmentation"):
        read_dicom_seg(path, crop)


def _highdicom_seg(
    image: PetImage, pixels: np.ndarray, segment_count: int, **options
) -> hd.seg.Segmentation:
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=n,
            segment_label=f"seg {n}",
            segmented_property_category=codes.cid7150.Tissue,
            segmented_property_type=codes.SCT.Tissue,
            algorithm_type="MANUAL",
        )
        for n in range(1, segment_count + 1)
    ]
    return hd.seg.Segmentation(
        source_images=image.dicom_headers,
        pixel_array=pixels,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=1,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="test",
        manufacturer_model_name="test",
        software_versions="0",
        device_serial_number="0",
        **options,
    )


@pytest.mark.filterwarnings("ignore::UserWarning:pydicom")
@pytest.mark.filterwarnings("ignore::UserWarning:highdicom")
def test_overlapping_segments_keep_the_lower_number_with_a_warning(crop, tmp_path):
    stack = np.zeros((crop.shape[2], crop.shape[1], crop.shape[0], 2), dtype=np.uint8)
    stack[10:14, 5:15, 5:15, 0] = 1
    stack[12:16, 10:20, 10:20, 1] = 1
    seg = _highdicom_seg(crop, stack, 2, segmentation_type="BINARY")
    seg.save_as(tmp_path / "seg.dcm")
    with pytest.warns(UserWarning, match="segments overlap"):
        labels, names = read_dicom_seg(tmp_path / "seg.dcm", crop)
    expected = np.zeros(stack.shape[:3], np.uint16)
    expected[stack[..., 1] == 1] = 2
    expected[stack[..., 0] == 1] = 1
    np.testing.assert_array_equal(labels, np.transpose(expected, (2, 1, 0)))
    assert names == {1: "seg 1", 2: "seg 2"}


@pytest.mark.filterwarnings("ignore::UserWarning:pydicom")
@pytest.mark.filterwarnings("ignore::UserWarning:highdicom")
@pytest.mark.parametrize("segmentation_type", ["FRACTIONAL", "LABELMAP"])
def test_fractional_and_labelmap_segs_are_read(crop, tmp_path, segmentation_type):
    frames = np.zeros((crop.shape[2], crop.shape[1], crop.shape[0]), dtype=np.float32)
    frames[20:25, 10:20, 5:9] = 0.9
    frames[20:25, 10:20, 9:12] = 0.3  # below one half: outside for a fractional SEG
    if segmentation_type == "LABELMAP":
        frames = (frames > 0.5).astype(np.uint8)
    seg = _highdicom_seg(crop, frames, 1, segmentation_type=segmentation_type)
    seg.save_as(tmp_path / "seg.dcm")
    labels, _ = read_dicom_seg(tmp_path / "seg.dcm", crop)
    np.testing.assert_array_equal(labels, np.transpose(frames > 0.5, (2, 1, 0)).astype(np.uint16))


def test_segment_codes_tell_lesions_from_other_structures():
    assert segment_codes("GTV_Mass")[1] == codes.SCT.Neoplasm
    assert segment_codes("lesion 3")[0] == codes.cid7150.MorphologicallyAbnormalStructure
    assert segment_codes("liver")[1] == codes.SCT.Tissue


def test_a_missing_seg_is_an_input_error(crop, tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_dicom_seg(Path(tmp_path / "nothing.dcm"), crop)
