"""Reading PET images and masks, writing masks and statistics."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from seganypet.errors import InputError

if TYPE_CHECKING:
    from seganypet.image import PetImage


def load_image(path: str | os.PathLike, **dicom_options) -> PetImage:
    """Load a PET image in SUV from a NIfTI file, a DICOM file or a folder of DICOM files.

    ``dicom_options`` go to :func:`seganypet.io.dicom.read_dicom_image` (series UID, SUV type and
    the values that override or supply missing header fields).
    """
    from seganypet.io.nifti import is_nifti_path, read_nifti_image

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_file() and is_nifti_path(path):
        return read_nifti_image(path)
    from seganypet.io.dicom import read_dicom_image

    return read_dicom_image(path, **dicom_options)


__all__ = ["load_image"]
