"""Where a model's weights are and what they are, without importing torch: a bundled name or a
checkpoint path resolved to its file, its small-object companion beside it, and the SHA-256 of
both (what a batch records as the model that produced its results)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from seganypet.errors import InputError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
#: A model's small-object companion lies beside it, named ``<stem>_small.safetensors``.
COMPANION_SUFFIX = "_small"
_HASH_CHUNK = 1 << 20


def resolve_checkpoint(path_or_name: str | os.PathLike) -> Path:
    """The weights file of a bundled model name (``default``) or of a checkpoint path."""
    path = Path(path_or_name)
    if path.exists():
        if path.is_dir():
            raise InputError(f"{path} is a folder; give the checkpoint file")
        return path
    name = str(path_or_name)
    looks_like_name = os.sep not in name and "/" not in name and not path.suffix
    if looks_like_name:
        bundled = WEIGHTS_DIR / f"{name}.safetensors"
        if bundled.exists():
            return bundled
        raise InputError(
            f"no bundled model named {name!r} is installed yet (looked for {bundled}); "
            "pass a checkpoint path instead: a released SegAnyPET / SAM-Med3D .pth or a "
            ".safetensors written by seganypet"
        )
    raise InputError(f"checkpoint not found: {path}")


def companion_checkpoint(path: Path) -> Path | None:
    """The small-object companion beside a resolved checkpoint, or None where there is none."""
    companion = path.with_name(f"{path.stem}{COMPANION_SUFFIX}.safetensors")
    if path.stem.endswith(COMPANION_SUFFIX) or not companion.is_file():
        return None
    return companion


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's contents, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelFingerprint:
    """A model as results record it: the name given, its weights file, and their hashes."""

    name: str
    path: Path
    sha256: str
    companion_sha256: str | None


def model_fingerprint(path_or_name: str | os.PathLike) -> ModelFingerprint:
    """The name, weights file and SHA-256 (and the companion's) of a model."""
    path = resolve_checkpoint(path_or_name)
    companion = companion_checkpoint(path)
    return ModelFingerprint(
        name=str(path_or_name),
        path=path,
        sha256=file_sha256(path),
        companion_sha256=file_sha256(companion) if companion else None,
    )
