"""Damaged and degenerate NIfTI files, as bytes, for the tests of every way a PET image comes in
(the reader, the command line, an upload to the server)."""

from __future__ import annotations

import gzip
import io

import nibabel as nib
import numpy as np

AFFINE = np.diag([4.0, 4.0, 3.0, 1.0])


def lesion_array(shape=(20, 18, 16)) -> np.ndarray:
    array = np.full(shape, 1.5, np.float32)
    array[8:12, 7:11, 6:10] = 9.0
    return array


def nifti_bytes(
    array: np.ndarray | None = None,
    affine: np.ndarray = AFFINE,
    *,
    version: int = 1,
    claimed_shape: tuple[int, ...] | None = None,
    pixdim: tuple[float, float, float] | None = None,
    forms: bool = True,
    sform: np.ndarray | None = None,
    gz: bool = False,
) -> bytes:
    """A NIfTI file: ``array`` placed by ``affine``. Then, as a damaged file would have them:
    ``claimed_shape`` replaces the header's dimensions (the voxel data stays as it is),
    ``pixdim`` the voxel size, ``sform`` the sform (the qform cleared); ``forms=False`` clears
    both, so that the voxel size alone places the voxels."""
    array = lesion_array() if array is None else array
    klass = nib.Nifti2Image if version == 2 else nib.Nifti1Image
    img = klass(array, affine, dtype=array.dtype)  # int64 too, which nibabel asks to confirm
    data = img.to_bytes()
    header = klass.header_class.from_fileobj(io.BytesIO(data))
    if not forms or sform is not None:
        header.set_sform(sform, code=0 if sform is None else 1)
        header.set_qform(None, code=0)
    if pixdim is not None:
        header["pixdim"][1:4] = pixdim
    if claimed_shape is not None:
        header["dim"][0] = len(claimed_shape)
        header["dim"][1 : len(claimed_shape) + 1] = claimed_shape
    block = header.binaryblock
    data = block + data[len(block) :]
    return gzip.compress(data) if gz else data


def huge(version: int = 1, gz: bool = False) -> bytes:
    """A header that claims 30000³ float32 voxels (108 TB)."""
    return nifti_bytes(version=version, claimed_shape=(30000, 30000, 30000), gz=gz)


DEGENERATE_GEOMETRY = {
    "zero-pixdim": dict(pixdim=(0.0, 4.0, 3.0), forms=False),
    "nan-pixdim": dict(pixdim=(4.0, float("nan"), 3.0), forms=False),
    "inf-pixdim": dict(pixdim=(4.0, 4.0, float("inf")), forms=False),
    "singular-sform": dict(sform=np.diag([4.0, 0.0, 3.0, 1.0])),
    "rank-1-sform": dict(
        sform=np.array([[2.0, 2, 2, 0], [2, 2, 2, 0], [2, 2, 2, 0], [0, 0, 0, 1]])
    ),
    "nan-sform": dict(sform=np.diag([4.0, np.nan, 3.0, 1.0])),
}


def nifti_header_of(data: bytes) -> nib.Nifti1Header:
    """The header of NIfTI bytes (uncompressed) exactly as stored: nibabel's checks fix nothing."""
    size = {int.from_bytes(data[:4], "little"), int.from_bytes(data[:4], "big")}
    klass = nib.Nifti2Header if 540 in size else nib.Nifti1Header
    return klass.from_fileobj(io.BytesIO(data), check=False)


def edit_header_fields(data: bytes, edits: list[tuple[str, int | None, object]]) -> bytes:
    """NIfTI bytes (uncompressed) with raw header fields overwritten, as a damaged file would have
    them: each edit is ``(field, index or None, value)``, the value cast to the field's stored type
    (integers clipped to its range, floats overflowing to infinity). The voxel data stays as it is,
    so that header and data may disagree."""
    header = nifti_header_of(data)
    fields = header.structarr
    for name, index, value in edits:
        kind = fields[name].dtype
        if kind.kind in "iu":
            limits = np.iinfo(kind.base)
            number = float(value) if isinstance(value, float) else value
            if isinstance(number, float) and not np.isfinite(number):
                number = 0 if np.isnan(number) else (limits.max if number > 0 else limits.min)
            value = min(max(int(number), int(limits.min)), int(limits.max))
        with np.errstate(over="ignore", invalid="ignore"):
            if index is None:
                fields[name] = np.asarray(value).astype(kind)
            else:
                fields[name][index] = np.asarray(value).astype(kind.base)
    block = header.binaryblock
    return block + data[len(block) :]
