"""Where studies come from: files under the data folder (never outside it) and uploads.

A study is named by a key: ``data:<relative/posix/path>`` for a NIfTI file or DICOM folder under
``--data``, or ``upload:<sha256>`` for an uploaded NIfTI or zipped DICOM series, which is kept in
the work folder so that its journal can be replayed after a restart. Only NIfTI and DICOM are ever
read (nibabel and pydicom parse them; nothing is unpickled).
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import stat
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from seganypet.errors import InputError
from seganypet.io.nifti import is_nifti_path, looks_like_label_map, nifti_grid

UPLOAD_SUFFIXES = (".nii", ".nii.gz", ".zip")
REFERENCE_SUFFIXES = (".nii", ".nii.gz", ".dcm", ".zip")
MAX_ZIP_MEMBERS = 20000
MAX_LISTED = 2000
MAX_DICOM_PROBED = 50  # files of a folder whose headers are read to tell what it holds
DICOM_PROBED = ["Modality", "FrameOfReferenceUID", "ReferencedFrameOfReferenceSequence"]
MASK_MODALITIES = {"RTSTRUCT": "rtstruct", "SEG": "seg"}
MASK_KINDS = {
    "labels": "a label map (a mask)",
    "rtstruct": "an RTSTRUCT (contours)",
    "seg": "a DICOM SEG (a segmentation)",
}


class UploadTooLarge(InputError):
    """The upload is larger than the server's cap."""


def resolve_under(root: Path, relative: str) -> Path:
    """``relative`` resolved inside ``root``; refuses absolute paths, ``..`` and symlinks out."""
    if not relative or "\x00" in relative:
        raise InputError("give the study as a path relative to the data folder")
    if (
        PurePosixPath(relative).is_absolute()
        or PureWindowsPath(relative).is_absolute()
        or PureWindowsPath(relative).drive
        or relative.startswith(("/", "\\"))
    ):
        raise InputError(
            f"{relative!r}: give a path relative to the data folder, not an absolute one"
        )
    parts = PurePosixPath(relative.replace("\\", "/")).parts
    if ".." in parts:
        raise InputError(
            f"{relative!r}: '..' is not allowed; the server serves the data folder only"
        )
    root = root.resolve()
    candidate = root.joinpath(*parts)
    try:
        resolved = candidate.resolve(strict=True)
    except (FileNotFoundError, RuntimeError):
        raise InputError(f"{relative!r}: no such study in the data folder") from None
    if not resolved.is_relative_to(root):
        raise InputError(f"{relative!r}: leads outside the data folder (a symbolic link?); refused")
    if resolved.is_dir():
        for dirpath, dirnames, filenames in os.walk(resolved):  # os.walk does not follow links
            for name in dirnames + filenames:
                entry = Path(dirpath, name)
                if entry.is_symlink() and not entry.resolve().is_relative_to(root):
                    raise InputError(
                        f"{relative!r}: holds {entry.relative_to(resolved)}, a link leading outside "
                        "the data folder; refused"
                    )
    return resolved


def _looks_like_dicom(path: Path) -> bool:
    if path.suffix.lower() == ".dcm":
        return True
    try:
        with open(path, "rb") as handle:
            return handle.read(132)[128:132] == b"DICM"
    except OSError:
        return False


@dataclass(frozen=True)
class _Found:
    """A study or a mask found under the data folder."""

    path: Path
    kind: str  # studies: nifti, dicom; masks: labels, rtstruct, seg
    shape: tuple[int, ...] | None = None
    affine: np.ndarray | None = field(default=None, compare=False)
    frame_of_reference: str | None = None

    @property
    def folder(self) -> Path:
        return self.path if self.kind == "dicom" else self.path.parent

    def matches(self, image: _Found) -> bool:
        """Whether this mask can lie on ``image``: the same grid (NIfTI), or the same frame of
        reference (DICOM)."""
        if self.kind == "labels":
            return (
                image.kind == "nifti"
                and image.shape == self.shape
                and image.affine is not None
                and self.affine is not None
                and bool(np.allclose(image.affine, self.affine, atol=1e-3))
            )
        if image.kind != "dicom":
            return False
        known = self.frame_of_reference and image.frame_of_reference
        return not known or self.frame_of_reference == image.frame_of_reference

    def is_near(self, image: _Found) -> bool:
        """In the image's folder, its parent, or a folder beside it (image/ and mask/)."""
        return image.folder in (self.folder, self.folder.parent) or (
            image.folder.parent == self.folder.parent
        )


def _nifti_found(path: Path) -> _Found:
    """A NIfTI file as a study, or as a mask when it holds a label map. One that cannot be read
    is listed as a study, so that opening it says what is wrong."""
    stat_now = path.stat()
    return _classify_nifti(path, stat_now.st_mtime_ns, stat_now.st_size)


@functools.lru_cache(maxsize=4096)
def _classify_nifti(path: Path, mtime_ns: int, size: int) -> _Found:
    try:
        shape, affine = nifti_grid(path)
        kind = "labels" if looks_like_label_map(path) else "nifti"
    except InputError:
        return _Found(path, "nifti")
    return _Found(path, kind, shape, affine)


def _frame_of_reference(header: Dataset) -> str | None:
    uid = header.get("FrameOfReferenceUID")
    if not uid:
        for item in header.get("ReferencedFrameOfReferenceSequence") or []:
            uid = item.get("FrameOfReferenceUID")
            if uid:
                break
    return str(uid) if uid else None


def _dicom_found(folder: Path, files: list[str]) -> list[_Found]:
    """A folder of DICOM files: the folder as a study when it holds PET slices, and each
    RTSTRUCT or SEG in it as a mask. Other modalities (CT, MR) are not studies here."""
    found: list[_Found] = []
    pet_frame: str | None = None
    has_pet = False
    for name in files[:MAX_DICOM_PROBED]:
        path = folder / name
        if path.is_symlink() or not _looks_like_dicom(path):
            continue
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=DICOM_PROBED)
        except Exception:  # not DICOM after all, or damaged: opening the folder says which
            continue
        modality = str(header.get("Modality", "")).upper()
        if modality in MASK_MODALITIES:
            found.append(
                _Found(path, MASK_MODALITIES[modality], None, None, _frame_of_reference(header))
            )
        elif modality == "PT" and not has_pet:
            has_pet = True
            pet_frame = _frame_of_reference(header)
    if has_pet:
        found.insert(0, _Found(folder, "dicom", frame_of_reference=pet_frame))
    return found


def classify_study(path: Path) -> str:
    """``nifti`` or ``dicom`` for a study, or the kind of mask (``labels``, ``rtstruct``, ``seg``)
    that ``path`` holds: a mask is not a study."""
    if path.is_file() and is_nifti_path(path):
        return _nifti_found(path).kind
    if path.is_file():
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Modality"])
        except Exception:
            return "dicom"
        return MASK_MODALITIES.get(str(header.get("Modality", "")).upper(), "dicom")
    return "dicom"


def reference_kind(path: Path) -> str:
    """``labels``, ``rtstruct`` or ``seg``: the kind of mask a file (or a folder holding one
    RTSTRUCT or SEG) holds; ``unknown`` for anything else."""
    if path.is_dir():
        for file in sorted(p for p in path.iterdir() if p.is_file()):
            kind = classify_study(file)
            if kind in MASK_KINDS:
                return kind
        return "unknown"
    kind = classify_study(path)
    return kind if kind in MASK_KINDS else "unknown"


def refuse_mask(path: Path, name: str) -> None:
    """Refuse to open a mask (a label map, an RTSTRUCT or a SEG) as if it were a PET image."""
    kind = classify_study(path)
    if kind in MASK_KINDS:
        raise InputError(
            f"{name!r} is {MASK_KINDS[kind]}, not a PET image; open the image it belongs to, "
            "where it is listed as a reference"
        )


def _shared_prefix(a: str, b: str) -> int:
    return len(os.path.commonprefix([a, b]))


def list_studies(root: Path) -> list[dict[str, Any]]:
    """The PET studies under ``root`` (NIfTI images, and folders that directly hold PET DICOM
    files; hidden ones skipped), each with the masks found beside it as ``attachments``.

    A NIfTI label map, an RTSTRUCT or a SEG is not a study: it is attached to the image it lies
    on (the same grid for NIfTI, the same frame of reference for DICOM) in the same folder, its
    parent or a folder beside it, choosing the image whose path shares the longest start with
    the mask's where several would do. A mask with no such image is left out."""
    root = root.resolve()
    images: list[_Found] = []
    masks: list[_Found] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        here = Path(dirpath)
        files = sorted(f for f in filenames if not f.startswith("."))
        for name in files:
            path = here / name
            if is_nifti_path(path) and not path.is_symlink():
                found = _nifti_found(path)
                (masks if found.kind in MASK_KINDS else images).append(found)
        if here != root:
            for found in _dicom_found(here, files):
                (masks if found.kind in MASK_KINDS else images).append(found)
        if len(images) >= MAX_LISTED:
            break
    images = images[:MAX_LISTED]

    def relative(path: Path) -> str:
        return path.relative_to(root).as_posix()

    attachments: dict[Path, list[dict[str, str]]] = {image.path: [] for image in images}
    for mask in masks:
        candidates = [image for image in images if mask.is_near(image) and mask.matches(image)]
        if not candidates:
            continue
        name = relative(mask.path)
        best = max(_shared_prefix(name, relative(image.path)) for image in candidates)
        for image in candidates:
            if _shared_prefix(name, relative(image.path)) == best:
                attachments[image.path].append({"path": name, "kind": mask.kind})
    return [
        {"path": relative(image.path), "kind": image.kind, "attachments": attachments[image.path]}
        for image in images
    ]


def upload_suffix(filename: str, allowed: tuple[str, ...] = UPLOAD_SUFFIXES) -> str:
    """The upload's kind by its name's ending, one of ``allowed``; anything else is refused."""
    name = filename.lower()
    for suffix in sorted(allowed, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    if ".dcm" in allowed:
        raise InputError(
            f"{filename!r}: upload a NIfTI label map (.nii, .nii.gz), an RTSTRUCT or DICOM SEG "
            "file (.dcm) or a zip holding one; nothing else is accepted"
        )
    raise InputError(
        f"{filename!r}: upload a NIfTI image (.nii, .nii.gz) or a zipped DICOM series (.zip); "
        "nothing else is accepted"
    )


async def receive_upload(
    chunks: AsyncIterator[bytes],
    filename: str,
    uploads: Path,
    max_bytes: int,
    allowed: tuple[str, ...] = UPLOAD_SUFFIXES,
) -> tuple[str, Path]:
    """Stream an upload to disk under ``uploads``; returns (sha256, path of the image to load).

    Stops reading as soon as ``max_bytes`` is exceeded. The content is checked: a NIfTI header
    (plain or gzipped) or a zip archive, which is extracted safely (no absolute paths, no ``..``,
    no links, at most ``max_bytes`` unpacked).
    """
    suffix = upload_suffix(filename, allowed)
    uploads.mkdir(parents=True, exist_ok=True)
    partial = uploads / f".incoming-{os.getpid()}-{id(chunks)}{suffix}"
    digest = hashlib.sha256()
    size = 0
    try:
        with open(partial, "wb") as handle:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise UploadTooLarge(
                        f"the upload exceeds the server's limit of {max_bytes / 1e6:.0f} MB "
                        "(seganypet serve --max-upload-mb)"
                    )
                digest.update(chunk)
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        if size == 0:
            raise InputError("the upload is empty")
        _check_magic(partial, suffix)
        sha = digest.hexdigest()
        target_dir = uploads / sha
        if suffix == ".zip":
            image_path = target_dir / "dicom"
            if not image_path.is_dir():
                staging = uploads / f".extract-{sha}-{os.getpid()}"
                shutil.rmtree(staging, ignore_errors=True)
                try:
                    _extract_zip(partial, staging, max_bytes)
                except BaseException:
                    shutil.rmtree(staging, ignore_errors=True)
                    raise
                target_dir.mkdir(parents=True, exist_ok=True)
                os.replace(staging, image_path)
        else:
            image_path = target_dir / f"image{suffix}"
            if not image_path.exists():
                target_dir.mkdir(parents=True, exist_ok=True)
                os.replace(partial, image_path)
        return sha, image_path
    finally:
        partial.unlink(missing_ok=True)


def _check_magic(path: Path, suffix: str) -> None:
    with open(path, "rb") as handle:
        head = handle.read(132)
    if suffix == ".dcm":
        ok = head[128:132] == b"DICM"
    elif suffix == ".nii.gz":
        ok = head[:2] == b"\x1f\x8b"
    elif suffix == ".nii":
        ok = int.from_bytes(head[:4], "little") in (348, 540) or int.from_bytes(
            head[:4], "big"
        ) in (348, 540)
    else:
        ok = head[:4] == b"PK\x03\x04"
    if not ok:
        kind = {
            "nii.gz": "a gzipped NIfTI",
            "nii": "a NIfTI",
            "zip": "a zip archive",
            "dcm": "a DICOM file",
        }[suffix[1:]]
        raise InputError(f"the upload is named {suffix} but is not {kind}; refused")


def _extract_zip(archive: Path, target: Path, max_bytes: int) -> None:
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise InputError(f"the upload is not a readable zip archive ({exc})") from None
    with zf:
        members = zf.infolist()
        if len(members) > MAX_ZIP_MEMBERS:
            raise InputError(f"the zip holds {len(members)} entries; at most {MAX_ZIP_MEMBERS}")
        if sum(m.file_size for m in members) > max_bytes:
            raise UploadTooLarge(
                f"the zip unpacks to more than the server's limit of {max_bytes / 1e6:.0f} MB"
            )
        target.mkdir(parents=True)
        count = 0
        for index, member in enumerate(members):
            if member.is_dir():
                continue
            mode = member.external_attr >> 16
            if stat.S_ISLNK(mode):
                continue  # never create links
            parts = PurePosixPath(member.filename.replace("\\", "/")).parts
            if not parts or member.filename.startswith(("/", "\\")) or ".." in parts:
                raise InputError(f"the zip holds an unsafe path {member.filename!r}; refused")
            # flatten into one folder: the DICOM reader does not need the archive's layout
            destination = target / f"{index:06d}_{Path(parts[-1]).name}"
            written = 0
            with zf.open(member) as source, open(destination, "wb") as sink:
                while block := source.read(1 << 20):
                    written += len(block)
                    if written > member.file_size or written > max_bytes:
                        raise UploadTooLarge("a zip member unpacks to more than it declares")
                    sink.write(block)
            count += 1
        if not count:
            raise InputError("the zip archive is empty")
