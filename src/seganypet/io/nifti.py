"""NIfTI images and label maps."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

from seganypet.errors import InputError
from seganypet.image import PetImage
from seganypet.io.atomic import atomic_path

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti_path(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def _load(path: Path) -> tuple[np.ndarray, np.ndarray, nib.Nifti1Image]:
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except (OSError, EOFError, zlib.error, ValueError, nib.filebasedimages.ImageFileError) as exc:
        raise InputError(
            f"{path}: cannot read this NIfTI file ({exc}); it may be truncated or not NIfTI. "
            "Re-export or re-download it"
        ) from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(f"{path}: expected a 3D volume, got shape {data.shape}")
    affine = img.affine if img.affine is not None else np.eye(4)
    return data, np.asarray(affine, dtype=np.float64), img


def read_nifti_image(path: str | os.PathLike, units: str = "SUVbw") -> PetImage:
    """Read a PET volume from NIfTI. NIfTI carries no SUV header, so ``units`` is taken on trust."""
    path = Path(path)
    data, affine, _ = _load(path)
    array = data.astype(np.float32)
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise InputError(
            f"{path}: {bad} voxels are NaN or infinite; a PET volume must be finite everywhere. "
            "Fill them (for example with 0) before loading"
        )
    return PetImage(array, affine, units=units, metadata={"source": str(path), "format": "nifti"})


def read_nifti_labels(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read an integer label map (0 = background). Returns the labels and their affine."""
    path = Path(path)
    data, affine, _ = _load(path)
    values = np.asarray(data)
    if not np.isfinite(values).all():
        raise InputError(f"{path}: the label map holds NaN or infinite values")
    labels = np.rint(values)
    if not np.allclose(labels, values):
        raise InputError(
            f"{path}: the mask holds non-integer values; give a label map (0 = background, "
            "1, 2, ... = objects) or a binary mask"
        )
    if labels.min() < 0:
        raise InputError(f"{path}: the label map holds negative labels")
    return labels.astype(np.uint16), affine


def write_nifti(
    array: np.ndarray,
    affine: np.ndarray,
    path: str | os.PathLike,
    header_like: PetImage | None = None,
) -> Path:
    """Write ``array`` placed by ``affine`` to ``path`` atomically."""
    path = Path(path)
    if not is_nifti_path(path):
        raise InputError(f"{path}: a NIfTI output must end in .nii or .nii.gz")
    img = nib.Nifti1Image(np.asarray(array), np.asarray(affine, dtype=np.float64))
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    if (
        header_like is not None
        and header_like.is_suv
        and np.issubdtype(np.asarray(array).dtype, np.floating)
    ):
        img.header["descrip"] = header_like.units.encode()[:80]
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return path


def write_label_map(labels: np.ndarray, image: PetImage, path: str | os.PathLike) -> Path:
    """Write a label map on the exact grid of ``image`` (same shape and affine)."""
    labels = np.asarray(labels)
    if labels.shape != image.shape:
        raise ValueError(f"label map shape {labels.shape} differs from image shape {image.shape}")
    dtype = np.uint8 if labels.max(initial=0) < 256 else np.uint16
    return write_nifti(labels.astype(dtype), image.affine, path)
