"""Masks in and out: one loader for NIfTI label maps, DICOM SEG and RTSTRUCT; one saver.

Every mask comes back as a uint16 label map on the image's own grid (0 = background) with a name
for each label, whatever format it came in. RTSTRUCT contours are rasterised by the rule named in
``contour_rule``: ``"centre"`` (voxel centre inside, the IBSI/MIRP convention, the default) or
``"any-overlap"`` (every voxel the contour's area touches; an upper bound including boundary
voxels); :mod:`seganypet.io.rtstruct` defines both.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from seganypet.errors import InputError
from seganypet.image import PetImage
from seganypet.io.nifti import is_nifti_path, read_nifti_labels, write_label_map
from seganypet.io.rtstruct import CONTOUR_RULES, rasterise_rtstruct
from seganypet.io.seg import read_dicom_seg, write_dicom_seg

MASK_FORMATS = ("nifti", "dicom-seg")
MASK_MODALITIES = ("SEG", "RTSTRUCT")


def load_mask(
    path: str | os.PathLike,
    image: PetImage,
    roi_names: Sequence[str] | None = None,
    contour_rule: str = "centre",
) -> tuple[np.ndarray, dict[int, str]]:
    """Load a mask onto ``image``'s grid: a uint16 label map and the name of each label.

    ``path`` is a NIfTI label map (on the image's exact grid), a DICOM SEG, an RTSTRUCT, or a
    folder holding exactly one SEG or RTSTRUCT file. ``roi_names`` picks RTSTRUCT ROIs or SEG
    segments by name (default: all). RTSTRUCT ROIs are numbered 1, 2, ... in the order asked for
    (or file order); SEG labels are the segment numbers. Where ROIs or segments overlap, the voxel
    keeps the first one, with a warning. ``contour_rule`` says how RTSTRUCT contours become voxels:
    ``"centre"`` (default; IBSI/MIRP) or ``"any-overlap"`` (see :mod:`seganypet.io.rtstruct`); it
    is checked for every format but only changes RTSTRUCT masks.
    """
    if contour_rule not in CONTOUR_RULES:
        raise InputError(
            f"unknown contour rasterisation rule {contour_rule!r}; "
            f"choose one of {', '.join(CONTOUR_RULES)}"
        )
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_file() and is_nifti_path(path):
        if roi_names:
            raise InputError(
                f"{path}: ROI names pick ROIs of an RTSTRUCT or segments of a DICOM SEG; "
                "a NIfTI label map has no names. Leave them out"
            )
        return _load_nifti_mask(path, image)
    if path.is_dir():
        path = _single_mask_file_in(path)
    modality = _dicom_modality(path)
    if modality == "SEG":
        return read_dicom_seg(path, image, segment_names=roi_names)
    if modality == "RTSTRUCT":
        return _label_map_from_rois(
            path, rasterise_rtstruct(path, image, roi_names, rule=contour_rule)
        )
    raise InputError(
        f"{path}: this DICOM file is a {modality or 'file without a Modality'}, not a mask; give a "
        "DICOM SEG, an RTSTRUCT or a NIfTI label map"
    )


def save_mask(
    labels: np.ndarray,
    names: Mapping[int, str],
    image: PetImage,
    path: str | os.PathLike,
    format: str = "nifti",
) -> Path:
    """Write a label map on ``image``'s grid as NIfTI (``.nii``/``.nii.gz``) or DICOM SEG, atomically.

    NIfTI keeps the label values only; DICOM SEG also keeps the names (one segment per label) and
    needs an image read from DICOM.
    """
    if format not in MASK_FORMATS:
        raise InputError(f"unknown mask format {format!r}; choose one of {', '.join(MASK_FORMATS)}")
    labels = np.asarray(labels)
    if labels.shape != image.shape:
        raise ValueError(f"label map shape {labels.shape} differs from image shape {image.shape}")
    if format == "dicom-seg":
        return write_dicom_seg(labels, names, image, path)
    return write_label_map(labels, image, path)


def _load_nifti_mask(path: Path, image: PetImage) -> tuple[np.ndarray, dict[int, str]]:
    labels, affine = read_nifti_labels(path)
    if not image.same_grid(labels.shape, affine):
        raise InputError(
            f"{path}: the mask must be on the image's grid (same shape and affine within 1e-3 mm), "
            f"but the mask has shape {labels.shape} and affine {_format_affine(affine)}, the image "
            f"shape {image.shape} and affine {_format_affine(image.affine)}. Resample the mask onto "
            "the image (nearest neighbour) or give the image it was drawn on"
        )
    present = [int(v) for v in np.unique(labels) if v != 0]
    return labels, {value: f"label_{value}" for value in present}


def _format_affine(affine: np.ndarray) -> str:
    rows = np.asarray(affine, dtype=np.float64)[:3]
    return "[" + "; ".join(" ".join(f"{v:.4g}" for v in row) for row in rows) + "]"


def _dicom_modality(path: Path) -> str:
    try:
        header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Modality"])
    except (InvalidDicomError, OSError, EOFError, ValueError) as exc:
        raise InputError(
            f"{path}: not a NIfTI label map (.nii, .nii.gz) and not readable as DICOM ({exc}); "
            "give a NIfTI label map, a DICOM SEG or an RTSTRUCT"
        ) from None
    return str(header.get("Modality", ""))


def _single_mask_file_in(folder: Path) -> Path:
    candidates = []
    for file in sorted(p for p in folder.iterdir() if p.is_file()):
        try:
            header = pydicom.dcmread(file, stop_before_pixels=True, specific_tags=["Modality"])
        except (InvalidDicomError, OSError, EOFError, ValueError):
            continue
        if str(header.get("Modality", "")) in MASK_MODALITIES:
            candidates.append(file)
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise InputError(
            f"{folder}: holds no DICOM SEG or RTSTRUCT file; give the mask file itself"
        )
    raise InputError(
        f"{folder}: holds {len(candidates)} mask files ({', '.join(p.name for p in candidates)}); "
        "give the one to use"
    )


def _label_map_from_rois(
    path: Path, masks: Mapping[str, np.ndarray]
) -> tuple[np.ndarray, dict[int, str]]:
    """ROI masks as labels 1, 2, ... in order; a voxel in several ROIs keeps the first."""
    if len(masks) > np.iinfo(np.uint16).max:
        raise InputError(f"{path}: too many ROIs ({len(masks)}) for a label map")
    labels = np.zeros(next(iter(masks.values())).shape, dtype=np.uint16)
    names: dict[int, str] = {}
    overlaps: list[str] = []
    for value, (name, mask) in enumerate(masks.items(), start=1):
        taken = mask & (labels != 0)
        if taken.any():
            earlier = ", ".join(repr(names[int(v)]) for v in np.unique(labels[taken]))
            overlaps.append(f"{name!r} with {earlier} in {int(taken.sum())} voxels")
        labels[mask & ~taken] = value
        names[value] = name
    if overlaps:
        warnings.warn(
            f"{path}: ROIs overlap ({'; '.join(overlaps)}); a label map holds one label per voxel, "
            "so those voxels keep the ROI listed first. Name the ROIs to load to choose",
            stacklevel=3,
        )
    return labels, names
