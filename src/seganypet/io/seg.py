"""DICOM Segmentation objects (SEG): read one onto a PET grid, write a label map as one.

Written SEGs are BINARY, one segment per label, and reference the source PT series, so viewers
and PACS show them over the PET they were made from. Frames follow the source slices' own pixel
grid (rows, columns); voxel indices are mapped through the image geometry, never assumed.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from seganypet.atomic import atomic_path
from seganypet.errors import InputError
from seganypet.image import PetImage
from seganypet.version import __version__

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
SEG_SERIES_NUMBER = 900
SEG_SERIES_DESCRIPTION = "SegAnyPET segmentation"
ALGORITHM_NAME = "seganypet"
GRID_TOLERANCE_VOXELS = 0.1

# Names that denote a lesion get SCT "Morphologically abnormal structure" / "Neoplasm"; anything
# else gets the generic "Tissue" / "Tissue" (3D Slicer's default segment terminology).
LESION_NAME_PATTERN = re.compile(
    r"lesion|tumou?r|gtv|mtv|neoplas|mass|metasta|cancer|carcinom|sarcom|lymphom|nodul|malignan",
    re.IGNORECASE,
)

# Maximum value lengths of string VRs; source headers sometimes exceed them (a Study ID of 18
# characters, say) and the SEG copies them, which DICOM validators reject.
MAX_STRING_LENGTH = {"AE": 16, "CS": 16, "SH": 16, "LO": 64, "ST": 1024, "LT": 10240}


def segment_codes(name: str) -> tuple[Code, Code]:
    """Segmented property category and type for a segment called ``name``."""
    if LESION_NAME_PATTERN.search(name):
        return codes.cid7150.MorphologicallyAbnormalStructure, codes.SCT.Neoplasm
    return codes.cid7150.Tissue, codes.SCT.Tissue


def write_dicom_seg(
    labels: np.ndarray,
    names: Mapping[int, str],
    image: PetImage,
    path: str | os.PathLike,
    algorithm_type: str = "SEMIAUTOMATIC",
) -> Path:
    """Write the label map ``labels`` (on ``image``'s grid) as a BINARY DICOM SEG, atomically.

    Segment ``n`` holds the voxels labelled ``n`` and is named ``names[n]`` (``label_n`` when
    unnamed); segments run from 1 to the largest label present or named, so label values survive
    a round trip. ``algorithm_type`` is SEMIAUTOMATIC (promptable model), AUTOMATIC or MANUAL.
    """
    path = Path(path)
    if not image.dicom_headers:
        raise InputError(
            f"{path}: DICOM SEG needs a DICOM input series; use --format nifti (this image did "
            "not come from DICOM, and a SEG must reference the PET slices it segments)"
        )
    labels = np.asarray(labels)
    if labels.shape != image.shape:
        raise ValueError(f"label map shape {labels.shape} differs from image shape {image.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > np.iinfo(np.uint16).max):
        raise ValueError("labels must lie in 0..65535")
    algorithm = hd.seg.SegmentAlgorithmTypeValues(algorithm_type.upper())

    headers = list(image.dicom_headers)
    frames = _frames_from_image_grid(labels.astype(np.uint16), image, headers)
    segment_count = max([int(labels.max(initial=0)), *(int(n) for n in names)], default=0)
    segment_count = max(segment_count, 1)  # an empty result is still written, as one empty segment
    frames = frames.astype(np.uint8 if segment_count < 256 else np.uint16)

    identification = (
        None
        if algorithm == hd.seg.SegmentAlgorithmTypeValues.MANUAL
        else hd.AlgorithmIdentificationSequence(
            name=ALGORITHM_NAME,
            version=__version__,
            family=codes.cid7162.ArtificialIntelligence,
        )
    )
    descriptions = []
    for number in range(1, segment_count + 1):
        label = _segment_label(names.get(number), number)
        category, property_type = segment_codes(label)
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=label,
                segmented_property_category=category,
                segmented_property_type=property_type,
                algorithm_type=algorithm,
                algorithm_identification=identification,
            )
        )

    source = headers[0]
    with warnings.catch_warnings():
        # Source headers with over-long values or single-component names are copied as they are;
        # the values are repaired below, the names are valid DICOM.
        warnings.filterwarnings("ignore", message=r".*exceeds the maximum length.*")
        warnings.filterwarnings(
            "ignore", message=r".*unlikely to represent the intended person name.*"
        )
        segmentation = hd.seg.Segmentation(
            source_images=headers,
            pixel_array=frames,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=hd.UID(),
            series_number=SEG_SERIES_NUMBER,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer="seganypet",
            manufacturer_model_name="SegAnyPET",
            software_versions=__version__,
            device_serial_number="0",
            series_description=SEG_SERIES_DESCRIPTION,
            content_label="SEGANYPET",
            content_description=f"Segmentation of PET series {source.get('SeriesInstanceUID', '')}"[
                :64
            ],
        )
        _truncate_overlong_strings(segmentation)
    with atomic_path(path) as tmp:
        segmentation.save_as(tmp)
    return path


def read_dicom_seg(
    path: str | os.PathLike, image: PetImage, segment_names: Sequence[str] | None = None
) -> tuple[np.ndarray, dict[int, str]]:
    """Read a DICOM SEG onto ``image``'s grid as a uint16 label map (label = segment number).

    ``segment_names`` picks segments by label (default: all). Where segments overlap, the voxel
    keeps the lowest segment number, with a warning. The SEG must lie on the image's grid (same
    in-plane pixels and slice positions, any subset of slices); otherwise :class:`InputError`.
    """
    path = Path(path)
    segmentation = _read_segmentation(path)
    descriptions = {
        int(item.SegmentNumber): str(item.get("SegmentLabel", f"segment {int(item.SegmentNumber)}"))
        for item in segmentation.SegmentSequence
    }
    if segment_names is None:
        chosen = sorted(descriptions)
    else:
        unknown = [n for n in segment_names if n not in descriptions.values()]
        if unknown:
            raise InputError(
                f"{path}: no segment named {', '.join(repr(n) for n in unknown)}; the SEG holds "
                f"{', '.join(repr(n) for n in descriptions.values())}"
            )
        chosen = sorted(number for number, name in descriptions.items() if name in segment_names)
    _check_frame_of_reference(path, segmentation, image)

    labels = np.zeros(image.shape, dtype=np.uint16)
    overlapping: dict[int, int] = {}
    lost_voxels = 0
    for number, frame_number, pixels in _segment_frames(path, segmentation, chosen):
        indices = _frame_indices_on_image(_frame_geometry(path, segmentation, frame_number), image)
        if indices is None:
            raise InputError(
                f"{path}: frame {frame_number} of the SEG does not lie on the image's grid "
                f"(image voxels {np.round(image.spacing, 3).tolist()} mm); give the SEG made on "
                "this image series"
            )
        inside = np.all((indices >= 0) & (indices < np.array(image.shape)), axis=-1)
        lost_voxels += int((pixels & ~inside).sum())
        i, j, k = indices[pixels & inside].T
        taken = labels[i, j, k] != 0
        if taken.any():
            overlapping[number] = overlapping.get(number, 0) + int(taken.sum())
        labels[i[~taken], j[~taken], k[~taken]] = number
    if overlapping:
        warnings.warn(
            f"{path}: segments overlap ("
            + ", ".join(f"{descriptions[n]!r}: {count} voxels" for n, count in overlapping.items())
            + "); a label map holds one label per voxel, so those voxels keep the lower segment number",
            stacklevel=2,
        )
    if lost_voxels:
        warnings.warn(
            f"{path}: {lost_voxels} segmented voxels lie outside the image grid and are dropped",
            stacklevel=2,
        )
    return labels, {number: descriptions[number] for number in chosen}


def _segment_frames(
    path: Path, segmentation: hd.seg.Segmentation, chosen: Sequence[int]
) -> Iterator[tuple[int, int, np.ndarray]]:
    """(segment number, frame number, boolean pixels) for the chosen segments, lowest number first."""
    segmentation_type = str(segmentation.SegmentationType)
    frame_count = int(segmentation.get("NumberOfFrames", 1))
    if segmentation_type == "LABELMAP":
        for frame_number in range(1, frame_count + 1):
            stored = segmentation.get_stored_frame(frame_number)
            for number in chosen:
                yield number, frame_number, stored == number
        return
    threshold = 1
    if segmentation_type == "FRACTIONAL":
        threshold = max(int(segmentation.get("MaximumFractionalValue", 255)) / 2, 1)
    by_segment: list[tuple[int, int]] = []
    for frame_number in range(1, frame_count + 1):
        identification = _functional_group(
            path, segmentation, frame_number, "SegmentIdentificationSequence"
        )
        number = int(identification.ReferencedSegmentNumber)
        if number in chosen:
            by_segment.append((number, frame_number))
    for number, frame_number in sorted(by_segment):
        yield number, frame_number, segmentation.get_stored_frame(frame_number) >= threshold


def _functional_group(path: Path, dataset: Dataset, frame_number: int, keyword: str) -> Dataset:
    """The first item of a functional group macro for one frame (per-frame, else shared)."""
    per_frame = dataset.get("PerFrameFunctionalGroupsSequence")
    if (
        per_frame is not None
        and len(per_frame) >= frame_number
        and keyword in per_frame[frame_number - 1]
    ):
        return per_frame[frame_number - 1][keyword][0]
    shared = dataset.get("SharedFunctionalGroupsSequence")
    if shared and keyword in shared[0]:
        return shared[0][keyword][0]
    raise InputError(
        f"{path}: frame {frame_number} of the SEG lacks its {keyword}; the file is incomplete"
    )


def _frame_geometry(path: Path, segmentation: Dataset, frame_number: int) -> _PlaneGeometry:
    position = _functional_group(path, segmentation, frame_number, "PlanePositionSequence")
    orientation = _functional_group(path, segmentation, frame_number, "PlaneOrientationSequence")
    measures = _functional_group(path, segmentation, frame_number, "PixelMeasuresSequence")
    return _PlaneGeometry(
        position=np.asarray(position.ImagePositionPatient, dtype=np.float64),
        orientation=np.asarray(orientation.ImageOrientationPatient, dtype=np.float64),
        pixel_spacing=np.asarray(measures.PixelSpacing, dtype=np.float64),
        rows=int(segmentation.Rows),
        columns=int(segmentation.Columns),
    )


def _read_segmentation(path: Path) -> hd.seg.Segmentation:
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        header = pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, EOFError, ValueError) as exc:
        raise InputError(f"{path}: cannot read this as DICOM ({exc})") from None
    modality = str(header.get("Modality", ""))
    if modality != "SEG":
        raise InputError(
            f"{path}: this DICOM file is a {modality or 'file without a Modality'}, not a "
            "segmentation (SEG); give the DICOM SEG file"
        )
    try:
        return hd.seg.segread(path)
    except (AttributeError, KeyError, ValueError, TypeError, OSError) as exc:
        raise InputError(f"{path}: cannot read this DICOM SEG ({exc}); it may be damaged") from None


def _check_frame_of_reference(path: Path, segmentation: Dataset, image: PetImage) -> None:
    seg_uid = str(segmentation.get("FrameOfReferenceUID", ""))
    if not image.dicom_headers:
        warnings.warn(
            f"{path}: the image did not come from DICOM, so the SEG's Frame of Reference cannot be "
            "checked; it is taken to share the image's patient coordinates",
            stacklevel=3,
        )
        return
    image_uid = str(image.dicom_headers[0].get("FrameOfReferenceUID", ""))
    if seg_uid and image_uid and seg_uid != image_uid:
        raise InputError(
            f"{path}: the SEG is in Frame of Reference {seg_uid} but the image is in {image_uid}; "
            "their coordinates do not correspond. Give the SEG made on this image"
        )


@dataclass(frozen=True)
class _PlaneGeometry:
    """Where a 2D frame of pixels lies in DICOM patient coordinates (LPS, mm)."""

    position: np.ndarray  # ImagePositionPatient: centre of the first pixel
    orientation: np.ndarray  # ImageOrientationPatient: row direction, then column direction
    pixel_spacing: np.ndarray  # PixelSpacing: between rows, then between columns
    rows: int
    columns: int

    @classmethod
    def of_header(cls, header: Dataset) -> _PlaneGeometry:
        return cls(
            position=np.asarray(header.ImagePositionPatient, dtype=np.float64),
            orientation=np.asarray(header.ImageOrientationPatient, dtype=np.float64),
            pixel_spacing=np.asarray(header.PixelSpacing, dtype=np.float64),
            rows=int(header.Rows),
            columns=int(header.Columns),
        )


def _frame_indices_on_image(plane: _PlaneGeometry, image: PetImage) -> np.ndarray | None:
    """Image voxel indices, shape (rows, columns, 3), of a frame's pixels; None when off the grid.

    Pixel (r, c) lies at position + c * column spacing * row direction + r * row spacing *
    column direction. On the grid means every pixel centre falls within
    ``GRID_TOLERANCE_VOXELS`` of a voxel centre (indices may still lie outside the image).
    """
    pixel_to_lps = np.eye(4)
    pixel_to_lps[:3, 0] = plane.orientation[3:] * plane.pixel_spacing[0]
    pixel_to_lps[:3, 1] = plane.orientation[:3] * plane.pixel_spacing[1]
    pixel_to_lps[:3, 3] = plane.position
    to_image = np.linalg.inv(LPS_TO_RAS @ image.affine) @ pixel_to_lps
    rounded = np.rint(to_image)
    steps = np.abs(rounded[:3, :2])
    if not (
        np.all(steps.sum(axis=0) == 1)
        and np.all(steps.sum(axis=1) <= 1)
        and np.allclose(
            to_image[:3, :2],
            rounded[:3, :2],
            atol=GRID_TOLERANCE_VOXELS / max(plane.rows, plane.columns),
        )
        and np.allclose(to_image[:3, 3], rounded[:3, 3], atol=GRID_TOLERANCE_VOXELS)
    ):
        return None
    r, c = np.meshgrid(np.arange(plane.rows), np.arange(plane.columns), indexing="ij")
    homogeneous = np.stack([r, c, np.zeros_like(r), np.ones_like(r)], axis=-1)
    return (homogeneous @ rounded[:3].T).astype(np.int64)


def _frames_from_image_grid(
    labels: np.ndarray, image: PetImage, headers: Sequence[Dataset]
) -> np.ndarray:
    """The label map cut into one (rows, columns) frame per source header, in header order."""
    frames = []
    for header in headers:
        indices = _frame_indices_on_image(_PlaneGeometry.of_header(header), image)
        if indices is None or not np.all((indices >= 0) & (indices < np.array(image.shape))):
            raise InputError(
                f"source slice {header.get('SOPInstanceUID', '?')} does not lie on the image's "
                "grid (was the series resampled to even slice spacing, or the image reoriented?); "
                "a DICOM SEG must reference the original slices. Use --format nifti"
            )
        frames.append(labels[indices[..., 0], indices[..., 1], indices[..., 2]])
    return np.stack(frames)


def _segment_label(name: str | None, number: int) -> str:
    label = (name or "").strip() or f"label_{number}"
    return label[: MAX_STRING_LENGTH["LO"]]


def _truncate_overlong_strings(dataset: Dataset) -> None:
    for element in dataset:
        limit = MAX_STRING_LENGTH.get(str(element.VR))
        if limit is None or element.value is None:
            continue
        if isinstance(element.value, str) and len(element.value) > limit:
            element.value = element.value[:limit]
