"""NIfTI images and label maps."""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

from seganypet.atomic import atomic_path
from seganypet.errors import InputError, plain
from seganypet.image import PetImage
from seganypet.io.limits import FLOAT32_BYTES, check_fits_in_memory, format_shape

NIFTI_SUFFIXES = (".nii", ".nii.gz")
LABEL_MAX = int(np.iinfo(np.uint16).max)  # label maps are read as uint16


def is_nifti_path(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def _read_header(path: Path) -> nib.Nifti1Header:
    """The header exactly as stored (nibabel's loader would quietly turn a zero voxel size
    into 1 mm), without reading any voxel."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            start = handle.read(4)
            if len(start) < 4:
                raise InputError(f"{path}: the file is empty or truncated; it is not a NIfTI image")
            sizes = {int.from_bytes(start, "little"), int.from_bytes(start, "big")}
            klass = nib.Nifti2Header if 540 in sizes else nib.Nifti1Header
            if not sizes & {348, 540}:
                raise InputError(
                    f"{path}: not a NIfTI image (no NIfTI-1 or NIfTI-2 header); give a .nii or "
                    ".nii.gz file"
                )
            handle.seek(0)
            return klass.from_fileobj(handle, check=False)
    except (
        OSError,
        EOFError,
        zlib.error,
        ValueError,
        nib.spatialimages.HeaderDataError,
        nib.wrapstruct.WrapStructError,
    ) as exc:
        raise InputError(
            f"{path}: cannot read this NIfTI header ({_one_line(exc)}); the file may be "
            "truncated or not NIfTI. Re-export or re-download it"
        ) from None


def _checked_shape(path: Path, header: nib.Nifti1Header) -> tuple[int, ...]:
    """The volume's shape, refused when it is not one 3D volume or cannot fit in memory."""
    dim = [int(n) for n in header["dim"]]
    if not 1 <= dim[0] <= 7:
        raise InputError(f"{path}: the header's dimension count dim[0] = {dim[0]} is not 1 to 7")
    shape = tuple(dim[1 : dim[0] + 1])
    if any(n < 1 for n in shape):
        raise InputError(f"{path}: the header claims a volume of {format_shape(shape)} voxels")
    if len(shape) < 3 or any(n != 1 for n in shape[3:]):
        raise InputError(
            f"{path}: expected a 3D volume, got {format_shape(shape)} voxels; give a single 3D "
            "PET image (one time frame)"
        )
    try:
        dtype = header.get_data_dtype()
    except (KeyError, nib.spatialimages.HeaderDataError):
        raise InputError(f"{path}: unknown NIfTI datatype code {int(header['datatype'])}") from None
    if dtype.kind not in "biuf":
        raise InputError(f"{path}: voxels of type {dtype} are not scalar PET values")
    check_fits_in_memory(str(path), shape, dtype.itemsize + FLOAT32_BYTES)
    offset = float(header["vox_offset"])
    if not math.isfinite(offset) or offset < 0:
        raise InputError(
            f"{path}: the header's voxel data offset (vox_offset) is {plain(offset)}, not a "
            "position in the file; the header is damaged. Re-export or re-download it"
        )
    if not path.name.lower().endswith(".gz"):
        needed = int(offset) + int(np.prod(shape, dtype=object)) * dtype.itemsize
        size = path.stat().st_size
        if size < needed:
            raise InputError(
                f"{path}: truncated: its {format_shape(shape)} voxels of {dtype} need "
                f"{needed} bytes and the file has {size}. Re-export or re-download it"
            )
    return shape


def _check_voxel_size(path: Path, header: nib.Nifti1Header) -> None:
    spacing = np.asarray(header["pixdim"][1:4], dtype=np.float64)
    if not np.isfinite(spacing).all() or (spacing == 0).any():
        raise InputError(
            f"{path}: the voxel size (pixdim) is {plain(spacing)} mm; it must be finite and "
            "non-zero, or every volume would be wrong. Fix the header or re-export the image"
        )


def _check_scaling(path: Path, header: nib.Nifti1Header) -> None:
    """The intensity scaling: a zero or NaN slope means none (the NIfTI rule); otherwise both
    the slope and the intercept must be finite, or every voxel would be."""
    slope, intercept = float(header["scl_slope"]), float(header["scl_inter"])
    if math.isnan(slope) or slope == 0:
        return
    if not (math.isfinite(slope) and math.isfinite(intercept)):
        raise InputError(
            f"{path}: the header's intensity scaling (scl_slope {plain(slope)}, scl_inter "
            f"{plain(intercept)}) is not finite, so no voxel value can be read. Fix the header "
            "or re-export the image"
        )


def _one_line(exc: BaseException) -> str:
    """An exception's text on one line (nibabel's messages may hold line breaks)."""
    return " ".join(str(exc).split())


def _checked_affine(path: Path, affine: np.ndarray | None) -> np.ndarray:
    if affine is None:
        raise InputError(f"{path}: the header places no voxel in space (no affine)")
    affine = np.asarray(affine, dtype=np.float64)
    axes = affine[:3, :3]
    scale = float(np.prod(np.linalg.norm(axes, axis=0))) if np.isfinite(axes).all() else 0.0
    if not np.isfinite(affine).all() or scale == 0.0 or abs(np.linalg.det(axes)) < 1e-6 * scale:
        raise InputError(
            f"{path}: the image's affine (sform/qform) is singular or not finite, so voxels "
            "cannot be placed in millimetres. Fix the header or re-export the image"
        )
    return affine


def _load(path: Path) -> tuple[np.ndarray, np.ndarray, nib.Nifti1Image]:
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    header = _read_header(path)
    shape = _checked_shape(path, header)
    _check_voxel_size(path, header)
    _check_scaling(path, header)
    try:
        img = nib.load(str(path))
        affine = _checked_affine(path, img.affine)
        with np.errstate(over="ignore", invalid="ignore"):  # non-finite voxels are refused
            data = np.asanyarray(img.dataobj)
    except (
        OSError,
        EOFError,
        zlib.error,
        ValueError,
        nib.filebasedimages.ImageFileError,
        nib.spatialimages.HeaderDataError,
    ) as exc:
        raise InputError(
            f"{path}: cannot read this NIfTI file ({_one_line(exc)}); it may be truncated or "
            "not NIfTI. Re-export or re-download it"
        ) from None
    data = data.reshape(shape[:3])
    return data, affine, img


def read_nifti_image(path: str | os.PathLike, units: str = "SUVbw") -> PetImage:
    """Read a PET volume from NIfTI. NIfTI carries no SUV header, so ``units`` is taken on trust."""
    path = Path(path)
    data, affine, _ = _load(path)
    with np.errstate(over="ignore", invalid="ignore"):  # beyond float32: refused below
        array = data.astype(np.float32)
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        beyond = int(np.isfinite(data).sum() - np.isfinite(array).sum())
        what = f" ({beyond} of them beyond 32-bit floats, ±3.4e38)" if beyond else ""
        raise InputError(
            f"{path}: {bad} voxels are NaN or infinite{what}; a PET volume must be finite "
            "everywhere. Fill them (for example with 0) before loading"
        )
    try:
        return PetImage(
            array, affine, units=units, metadata={"source": str(path), "format": "nifti"}
        )
    except InputError as exc:  # a geometry too small to place voxels
        raise InputError(f"{path}: {exc}") from None


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
    if float(labels.max()) > LABEL_MAX:
        raise InputError(
            f"{path}: the label map holds label {plain(labels.max())}, and labels go up to "
            f"{LABEL_MAX}; give a label map (0 = background, 1, 2, ... = objects)"
        )
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


#: A NIfTI whose voxels are whole numbers >= 0, mostly 0, with at most this many labels other
#: than 0 is a label map (a mask), not an image.
MASK_MAX_LABELS = 255
_LABEL_MAP_CHUNK_VOXELS = 1 << 20


def nifti_grid(path: str | os.PathLike) -> tuple[tuple[int, ...], np.ndarray]:
    """A NIfTI file's 3D shape and affine, from its header alone."""
    path = Path(path)
    header = _read_header(path)
    shape = _checked_shape(path, header)
    return tuple(shape[:3]), _checked_affine(path, header.get_best_affine())


def looks_like_label_map(path: str | os.PathLike) -> bool:
    """Whether a NIfTI file holds a label map rather than an image: every voxel a whole number
    >= 0, more than half of them 0, and 1 to :data:`MASK_MAX_LABELS` labels besides 0 (an
    all-zero volume is an image without uptake, refused as such when opened).

    The voxels are read in chunks, and reading stops at the first that rules a label map out
    (a PET image is told apart within its first chunk)."""
    path = Path(path)
    header = _read_header(path)
    shape = _checked_shape(path, header)
    dtype = header.get_data_dtype()
    slope, intercept = (float(v) for v in (header["scl_slope"], header["scl_inter"]))
    if math.isnan(slope) or slope == 0:
        slope, intercept = 1.0, 0.0
    total = int(np.prod(shape, dtype=np.int64))
    zeros = 0
    labels: set[float] = set()
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            handle.seek(int(header["vox_offset"]))
            remaining = total
            while remaining > 0:
                count = min(remaining, _LABEL_MAP_CHUNK_VOXELS)
                raw = handle.read(count * dtype.itemsize)
                if len(raw) < count * dtype.itemsize:
                    return False  # truncated: opening it as an image reports that
                values = np.frombuffer(raw, dtype=dtype).astype(np.float64) * slope + intercept
                if not np.isfinite(values).all() or values.min() < 0:
                    return False
                if not np.array_equal(values, np.rint(values)):
                    return False
                zeros += int(np.count_nonzero(values == 0))
                labels.update(np.unique(values[values != 0]).tolist())
                if len(labels) > MASK_MAX_LABELS:
                    return False
                remaining -= count
    except (OSError, EOFError, zlib.error):
        return False
    return bool(labels) and 2 * zeros > total
