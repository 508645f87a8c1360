"""Where studies come from: files under the data folder (never outside it) and uploads.

A study is named by a key: ``data:<relative/posix/path>`` for a NIfTI file or DICOM folder under
``--data``, or ``upload:<sha256>`` for an uploaded NIfTI or zipped DICOM series, which is kept in
the work folder so that its journal can be replayed after a restart. Only NIfTI and DICOM are ever
read (nibabel and pydicom parse them; nothing is unpickled).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath, PureWindowsPath

from seganypet.errors import InputError
from seganypet.io.nifti import is_nifti_path

UPLOAD_SUFFIXES = (".nii", ".nii.gz", ".zip")
MAX_ZIP_MEMBERS = 20000
MAX_LISTED = 2000


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


def list_studies(root: Path) -> list[dict[str, str]]:
    """NIfTI files and folders that directly hold DICOM files, under ``root`` (hidden ones skipped)."""
    root = root.resolve()
    found: list[dict[str, str]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        here = Path(dirpath)
        files = sorted(f for f in filenames if not f.startswith("."))
        for name in files:
            path = here / name
            if is_nifti_path(path) and not path.is_symlink():
                found.append({"path": path.relative_to(root).as_posix(), "kind": "nifti"})
        if here != root and any(
            _looks_like_dicom(here / f) for f in files[:50] if not (here / f).is_symlink()
        ):
            found.append({"path": here.relative_to(root).as_posix(), "kind": "dicom"})
        if len(found) >= MAX_LISTED:
            break
    return found[:MAX_LISTED]


def upload_suffix(filename: str) -> str:
    name = filename.lower()
    for suffix in (".nii.gz", ".nii", ".zip"):
        if name.endswith(suffix):
            return suffix
    raise InputError(
        f"{filename!r}: upload a NIfTI image (.nii, .nii.gz) or a zipped DICOM series (.zip); "
        "nothing else is accepted"
    )


async def receive_upload(
    chunks: AsyncIterator[bytes], filename: str, uploads: Path, max_bytes: int
) -> tuple[str, Path]:
    """Stream an upload to disk under ``uploads``; returns (sha256, path of the image to load).

    Stops reading as soon as ``max_bytes`` is exceeded. The content is checked: a NIfTI header
    (plain or gzipped) or a zip archive, which is extracted safely (no absolute paths, no ``..``,
    no links, at most ``max_bytes`` unpacked).
    """
    suffix = upload_suffix(filename)
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
        head = handle.read(4)
    if suffix == ".nii.gz":
        ok = head[:2] == b"\x1f\x8b"
    elif suffix == ".nii":
        ok = int.from_bytes(head, "little") in (348, 540) or int.from_bytes(head, "big") in (
            348,
            540,
        )
    else:
        ok = head == b"PK\x03\x04"
    if not ok:
        kind = {"nii.gz": "a gzipped NIfTI", "nii": "a NIfTI", "zip": "a zip archive"}[suffix[1:]]
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
