"""Training data: sources, a resampled cache, prompt targets and crops around them.

Sources
-------
``--data`` takes one or more entries (comma-separated or repeated): nnU-Net raw folders, IBSI-style
crops folders and manifests (``.json``/``.csv``, or a folder holding ``manifest.json`` /
``manifest.csv``), read by :func:`seganypet.datasets.discover_cases` (the layouts are described
there); ``low_quality_data`` entries, and data sets or cases with ``label_quality: low``, have
noisy labels (CPCL). Training reads NIfTI only: images as PET volumes (SUV is assumed: NIfTI
carries no units; the z-score normalisation makes the scale irrelevant anyway), labels as integer
maps on the image's exact grid.

Cache
-----
Each case is converted once: read, reoriented to RAS+ with ``PetImage.canonical()`` (axes permuted
and flipped, no resampling: the orientation in which the interactive ``Session`` crops), its
targets found on that native grid, then resampled to the network's spacing on the grid
``canonical voxel = j * (spacing / source spacing)`` (the ``Session``'s tile sampling), the image
trilinearly, the labels and the lesion components by nearest neighbour. It is stored as
``image.npy`` (float32), ``labels.npy`` and, for lesion labels, ``components.npy`` (the lesion
targets, numbered 1.. across all lesion labels), with the targets in ``meta.json``; crops read
the arrays memory-mapped. The cache folder is keyed by a hash of both source paths, their
modification times and sizes, the spacing, the label names and the lesion rule, so an edited file
or another spacing makes a new entry and an unchanged case is reused (a finished entry is never
rewritten; a stale one can be deleted by hand). Entries are written to a temporary folder and
renamed into place, so concurrent builders (the ranks of a distributed run) never see a half-built
entry.

Prompt targets
--------------
The targets are the objects of :func:`seganypet.datasets.find_objects`, the ones evaluation
scores: every label value (except nnU-Net's ``ignore`` label) is one target, the whole structure
(the crop shows the part of it that falls inside), except lesion labels (a name containing one of
``lesion_keywords``, by default :data:`seganypet.datasets.LESION_KEYWORDS`, or as the manifest's
``lesion_labels`` name them): there every 26-connected component is its own target, because one
click names one lesion, not all of them.

Tiny targets are skipped when the crops are drawn (:func:`keep_target`): the shared object rule
keeps a target of at least ``min_target_ml`` (0.1 ml) on the case's native grid, and training
additionally needs ``min_target_voxels`` (10) voxels at the network's spacing, enough of the
target for a crop to teach from. At 3 mm (``small``, 0.027 ml a voxel) the 10 voxels (0.27 ml)
decide; at 1.5 mm (``vit_b_ori``, 3.4 µl a voxel) the 0.1 ml does.

Crops
-----
A crop of the network's input size is placed around an anchor voxel drawn from the target (up to
:data:`ANCHORS_PER_TARGET` random voxels of it are stored), shifted by a uniform random offset of
up to ``crop_offset_fraction`` of the crop size per axis, so that the target (and its first click)
is not always at the centre. Voxels outside the image are zero. The crop is augmented
(:mod:`seganypet.train.augment`), then normalised with ``normalise_crop(config.normalisation)``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from seganypet.atomic import write_text_atomic
from seganypet.datasets import (
    LESION_KEYWORDS,
    CaseSource,
    discover_cases,
    find_objects,
    keep_object,
    lesion_values,
    read_json,
    split_entries,
)
from seganypet.errors import InputError
from seganypet.io.nifti import is_nifti_path, read_nifti_image, read_nifti_labels
from seganypet.model.config import ModelConfig, normalise_crop
from seganypet.train.augment import Augmentation

CACHE_FORMAT_VERSION = 3  # 2: targets on the native grid, with their native volume; 3: digest
ANCHORS_PER_TARGET = 32
GRID_TOLERANCE_MM = 0.01
OPEN_ARRAYS_MAX = 192


# ====================================================================================== sources


def find_cases(entries: str | Sequence[str], low_quality: Sequence[str] = ()) -> list[CaseSource]:
    """Every case of the ``--data`` entries; ``low_quality`` entries mark their cases' labels noisy.

    Entries may be comma-separated (``--data A,B``); see :func:`seganypet.datasets.discover_cases`.
    """
    paths = split_entries(entries)
    if not paths:
        raise InputError("no training data given; pass --data DIR[,DIR] (or a manifest)")
    cases = discover_cases(paths, low_quality=split_entries(low_quality))
    for case in cases:
        for file in (case.image, case.label):
            if not is_nifti_path(file) or not file.is_file():
                raise InputError(
                    f"{case.key}: {file} is not a NIfTI file; training reads NIfTI images and "
                    "label maps only"
                )
    return cases


# ====================================================================================== targets


@dataclass(frozen=True)
class Target:
    """Something to segment from a prompt: a label value, or one lesion component."""

    kind: str  # "label" or "lesion"
    label: int
    name: str
    component: int  # lesion component id in components.npy; 0 for label targets
    voxels: int  # at the network's spacing
    volume_ml: float  # on the case's native grid (the shared object rule)
    anchors: tuple[tuple[int, int, int], ...]  # random voxels inside it (crop anchors)

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "label": self.label,
            "name": self.name,
            "component": self.component,
            "voxels": self.voxels,
            "volume_ml": self.volume_ml,
            "anchors": [list(a) for a in self.anchors],
        }

    @classmethod
    def from_dict(cls, data: dict) -> Target:
        return cls(
            str(data["kind"]),
            int(data["label"]),
            str(data["name"]),
            int(data["component"]),
            int(data["voxels"]),
            float(data["volume_ml"]),
            tuple(tuple(int(v) for v in a) for a in data["anchors"]),  # type: ignore[misc]
        )


def keep_target(
    target: Target, min_voxels: int, min_ml: float, max_ml: float | None = None
) -> bool:
    """The tiny-target rule of the module docstring: the shared object rule on the native grid
    (:func:`seganypet.datasets.keep_object`), plus training's voxel minimum at its spacing; and,
    for a small-object model, at most ``max_ml``."""
    small_enough = max_ml is None or target.volume_ml <= max_ml
    return keep_object(target.volume_ml, min_ml) and target.voxels >= min_voxels and small_enough


def enumerate_targets(
    labels: np.ndarray,
    label_names: dict[int, str],
    voxel_ml: float,
    step: Sequence[float],
    rng: np.random.Generator,
    lesion_keywords: Sequence[str] = LESION_KEYWORDS,
    lesion_labels: Sequence[str] | None = None,
) -> tuple[list[Target], np.ndarray, np.ndarray | None]:
    """Every target of a native label map, unfiltered, located on the resampled grid.

    The targets are :func:`seganypet.datasets.find_objects`'s objects of ``labels`` (voxels of
    ``voxel_ml``), all kept. The labels and the lesion components (numbered 1.. across all lesion
    labels, in object order) are resampled by nearest neighbour at voxel coordinates
    ``j * step``; a target's ``voxels`` and anchors are counted there (a target too small to
    survive the resampling has none). Returns the targets, the resampled labels and components
    (None if there are no lesions).
    """
    objects, _ = find_objects(
        labels,
        label_names,
        voxel_ml,
        lesion_labels=lesion_labels,
        keywords=lesion_keywords,
        min_ml=0.0,
    )
    resampled = resample_nearest(labels, step)
    lesions = [o for o in objects if o.is_lesion]
    components = None
    if lesions:
        dtype = np.uint16 if len(lesions) < np.iinfo(np.uint16).max else np.int32
        native = np.zeros(labels.shape, dtype)
        for number, obj in enumerate(lesions, start=1):
            native[obj.box][obj.crop] = number
        components = resample_nearest(native, step)
    label_boxes = ndimage.find_objects(resampled)
    lesion_boxes = ndimage.find_objects(components) if components is not None else []
    targets: list[Target] = []
    number = 0
    for obj in objects:
        if obj.is_lesion:
            number += 1
            where = _voxels_of(components, lesion_boxes, number)
            kind, component = "lesion", number
        else:
            where = _voxels_of(resampled, label_boxes, obj.label)
            kind, component = "label", 0
        targets.append(
            Target(
                kind,
                obj.label,
                obj.label_name,
                component,
                len(where),
                obj.volume_ml,
                _anchors(where, rng),
            )
        )
    return targets, resampled, components


def _voxels_of(volume: np.ndarray | None, boxes: list, value: int) -> np.ndarray:
    """The voxel indices where ``volume == value`` (``boxes``: its ``ndimage.find_objects``)."""
    box = boxes[value - 1] if volume is not None and value <= len(boxes) else None
    if box is None:
        return np.zeros((0, 3), dtype=np.int64)
    return np.argwhere(volume[box] == value) + [s.start for s in box]


def _anchors(voxels: np.ndarray, rng: np.random.Generator) -> tuple[tuple[int, int, int], ...]:
    count = min(ANCHORS_PER_TARGET, len(voxels))
    if count == 0:
        return ()
    chosen = voxels[np.sort(rng.choice(len(voxels), size=count, replace=False))]
    return tuple(tuple(int(v) for v in row) for row in chosen)  # type: ignore[misc]


# ====================================================================================== cache


def default_cache_dir() -> Path:
    env = os.environ.get("SEGANYPET_CACHE")
    if env:
        return Path(env).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "seganypet" / "train"


def cache_key(
    source: CaseSource, spacing_mm: Sequence[float], lesion_keywords: Sequence[str]
) -> str:
    """What a cache entry depends on: the sources' paths, mtimes and sizes, spacing, labels."""

    def stat(path: Path) -> list:
        info = path.stat()
        return [str(path.expanduser().resolve()), info.st_mtime_ns, info.st_size]

    lesion_labels = sorted(
        lesion_values(source.label_names, source.label_names, source.lesion_labels, lesion_keywords)
    )
    payload = {
        "version": CACHE_FORMAT_VERSION,
        "image": stat(source.image),
        "label": stat(source.label),
        "spacing_mm": [round(float(s), 6) for s in spacing_mm],
        "label_names": {str(k): v for k, v in sorted(source.label_names.items())},
        "lesion_labels": lesion_labels,
        "lesion_keywords": sorted(k.lower() for k in lesion_keywords),
        "lesion_label_names": sorted(n.lower() for n in source.lesion_labels or ()),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


@dataclass
class CachedCase:
    """A case in the cache: memory-mapped arrays at the network's spacing, and its targets."""

    source: CaseSource
    folder: Path
    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    targets: list[Target]
    image_sha256: str = ""

    @property
    def voxel_ml(self) -> float:
        return float(np.prod(self.spacing_mm)) / 1000.0

    @property
    def image(self) -> np.ndarray:
        return _open_array(str(self.folder / "image.npy"))

    @property
    def labels(self) -> np.ndarray:
        return _open_array(str(self.folder / "labels.npy"))

    @property
    def components(self) -> np.ndarray:
        return _open_array(str(self.folder / "components.npy"))

    def target_mask(self, target: Target, start: np.ndarray, size: Sequence[int]) -> np.ndarray:
        """The target's voxels in the crop starting at ``start`` (bool, zero outside the image)."""
        if target.kind == "lesion":
            return extract_crop(self.components, start, size) == target.component
        return extract_crop(self.labels, start, size) == target.label


@functools.lru_cache(maxsize=OPEN_ARRAYS_MAX)
def _open_array(path: str) -> np.ndarray:
    return np.load(path, mmap_mode="r")


def entry_folder(cache_dir: Path, source: CaseSource, key: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in source.case_id)[:48]
    return cache_dir / f"{safe}-{key[:20]}"


def build_cache_entry(
    source: CaseSource,
    spacing_mm: Sequence[float],
    lesion_keywords: Sequence[str],
    cache_dir: Path,
) -> Path:
    """Convert one case into the cache (if it is not there yet); returns its folder."""
    key = cache_key(source, spacing_mm, lesion_keywords)
    folder = entry_folder(cache_dir, source, key)
    if (folder / "meta.json").is_file():
        return folder
    cache_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(int(key[:16], 16))
    image, labels, components, targets, affine, digest = _resampled_case(
        source, spacing_mm, lesion_keywords, rng
    )
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=cache_dir))
    try:
        np.save(tmp / "image.npy", image)
        np.save(tmp / "labels.npy", labels)
        if components is not None:
            np.save(tmp / "components.npy", components)
        meta = {
            "format": "seganypet.train.cache",
            "version": CACHE_FORMAT_VERSION,
            "key": key,
            "dataset": source.dataset,
            "case_id": source.case_id,
            "image_source": str(source.image),
            "label_source": str(source.label),
            "tracer": source.tracer,
            "image_sha256": digest,
            "shape": list(image.shape),
            "spacing_mm": [float(s) for s in spacing_mm],
            "affine": affine.tolist(),
            "orientation": "RAS+",
            "label_names": {str(k): v for k, v in source.label_names.items()},
            "targets": [t.to_dict() for t in targets],
        }
        write_text_atomic(tmp / "meta.json", json.dumps(meta) + "\n")
        try:
            os.replace(tmp, folder)
        except OSError:
            if not (folder / "meta.json").is_file():  # not a concurrent builder's finished entry
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def open_cache_entry(
    source: CaseSource, spacing_mm: Sequence[float], lesion_keywords: Sequence[str], cache_dir: Path
) -> CachedCase:
    """A built entry (see :func:`build_cache_entry`)."""
    key = cache_key(source, spacing_mm, lesion_keywords)
    folder = entry_folder(cache_dir, source, key)
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        raise InputError(f"{source.key}: not in the cache {cache_dir} (build it first)")
    meta = read_json(meta_path)
    assert isinstance(meta, dict)
    targets = [Target.from_dict(t) for t in meta["targets"]]
    shape = tuple(int(s) for s in meta["shape"])
    spacing = tuple(float(s) for s in meta["spacing_mm"])
    return CachedCase(
        source,
        folder,
        shape,
        spacing,
        targets,
        str(meta["image_sha256"]),  # type: ignore[arg-type]
    )


def _resampled_case(
    source: CaseSource,
    spacing_mm: Sequence[float],
    lesion_keywords: Sequence[str],
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, list[Target], np.ndarray, str]:
    """Image, labels and lesion components in RAS+ at ``spacing_mm``, the targets (found on the
    native grid, see :func:`enumerate_targets`), the affine of that grid and the source image's
    :meth:`~seganypet.image.PetImage.content_digest`."""
    image = read_nifti_image(source.image)
    labels, label_affine = read_nifti_labels(source.label)
    if labels.shape != image.shape or not np.allclose(
        label_affine, image.affine, atol=GRID_TOLERANCE_MM
    ):
        raise InputError(
            f"{source.label}: the label map's grid (shape {labels.shape}) differs from its image's "
            f"{source.image} (shape {image.shape}); labels must lie on the image's exact grid"
        )
    view = image.canonical()
    canonical_labels = view.from_input(labels)
    step = np.asarray(spacing_mm, float) / np.asarray(view.image.spacing, float)
    resampled_image = resample_linear(view.image.array, step)
    targets, resampled_labels, components = enumerate_targets(
        canonical_labels,
        source.label_names,
        view.image.voxel_volume_ml,
        step,
        rng,
        lesion_keywords,
        source.lesion_labels,
    )
    if int(resampled_labels.max(initial=0)) < 256:
        resampled_labels = resampled_labels.astype(np.uint8)
    affine = view.image.affine @ np.diag([*step, 1.0])
    return (
        resampled_image.astype(np.float32),
        resampled_labels,
        components,
        targets,
        affine,
        image.content_digest(),
    )


def _sample_positions(length: int, step: float) -> np.ndarray:
    count = int(np.floor((length - 1) / step + 1e-6)) + 1
    return np.arange(count, dtype=np.float64) * step


def resample_linear(volume: np.ndarray, step: Sequence[float]) -> np.ndarray:
    """Trilinear samples at voxel coordinates ``j * step`` (separable, float32)."""
    out = np.asarray(volume, dtype=np.float32)
    for axis, s in enumerate(step):
        positions = _sample_positions(out.shape[axis], float(s))
        low = np.floor(positions).astype(np.int64)
        high = np.minimum(low + 1, out.shape[axis] - 1)
        weight_shape = [1, 1, 1]
        weight_shape[axis] = -1
        weight = (positions - low).astype(np.float32).reshape(weight_shape)
        out = out.take(low, axis=axis) * (1 - weight) + out.take(high, axis=axis) * weight
    return np.ascontiguousarray(out, dtype=np.float32)


def resample_nearest(volume: np.ndarray, step: Sequence[float]) -> np.ndarray:
    """Nearest-neighbour samples at voxel coordinates ``j * step`` (labels keep their values)."""
    out = np.asarray(volume)
    for axis, s in enumerate(step):
        positions = _sample_positions(out.shape[axis], float(s))
        index = np.minimum(np.floor(positions + 0.5).astype(np.int64), out.shape[axis] - 1)
        out = out.take(index, axis=axis)
    return np.ascontiguousarray(out)


def prepare_cache(
    sources: Sequence[CaseSource],
    spacing_mm: Sequence[float],
    lesion_keywords: Sequence[str],
    cache_dir: Path,
    *,
    rank: int = 0,
    world_size: int = 1,
    barrier=None,
    progress: bool = False,
) -> list[CachedCase]:
    """Build the missing entries (rank ``r`` builds every ``world_size``-th), then open them all."""
    from tqdm import tqdm

    mine = list(sources)[rank::world_size]
    for source in tqdm(mine, desc="caching cases", unit="case", disable=not progress):
        build_cache_entry(source, spacing_mm, lesion_keywords, cache_dir)
    if barrier is not None:
        barrier()
    return [open_cache_entry(s, spacing_mm, lesion_keywords, cache_dir) for s in sources]


# ====================================================================================== crops


def extract_crop(volume: np.ndarray, start: Sequence[int], size: Sequence[int]) -> np.ndarray:
    """``volume[start : start + size]`` with zeros where it runs past the volume."""
    out = np.zeros(tuple(size), dtype=volume.dtype)
    source, dest = [], []
    for axis in range(3):
        lo = int(start[axis])
        hi = lo + int(size[axis])
        a, b = max(lo, 0), min(hi, volume.shape[axis])
        if a >= b:
            return out
        source.append(slice(a, b))
        dest.append(slice(a - lo, b - lo))
    out[tuple(dest)] = volume[tuple(source)]
    return out


def crop_start(
    anchor: Sequence[int], size: Sequence[int], offset_fraction: float, rng: np.random.Generator
) -> np.ndarray:
    """Where a crop around ``anchor`` begins: the anchor lands within ``size * offset_fraction``
    voxels of the crop centre, uniformly per axis."""
    size = np.asarray(size, dtype=np.int64)
    limit = np.floor(size * offset_fraction).astype(np.int64)
    offset = rng.integers(-limit, limit + 1)
    return np.asarray(anchor, dtype=np.int64) - size // 2 + offset


@dataclass
class Sample:
    """One training crop: normalised image, binary target, and where it came from."""

    image: torch.Tensor  # (1, D, H, W) float32, normalised
    target: torch.Tensor  # (1, D, H, W) float32 in {0, 1}
    low_quality: bool
    description: str


@dataclass(frozen=True)
class TargetRef:
    case: int  # index into TargetCrops.cases
    target: Target


class TargetCrops:
    """The kept targets of some cached cases, and crops around them."""

    def __init__(
        self,
        cases: Sequence[CachedCase],
        model_config: ModelConfig,
        *,
        min_target_voxels: int,
        min_target_ml: float,
        crop_offset_fraction: float,
        augmentation: Augmentation | None = None,
        oversample: dict[str, int] | None = None,
        max_target_ml: float | None = None,
    ) -> None:
        self.cases = list(cases)
        oversample = oversample or {}
        self.model_config = model_config
        self.crop_offset_fraction = crop_offset_fraction
        self.augmentation = augmentation
        self.targets = [
            TargetRef(index, target)
            for index, case in enumerate(self.cases)
            for target in case.targets
            if keep_target(target, min_target_voxels, min_target_ml, max_target_ml)
            for _ in range(oversample.get(case.source.dataset, 1))
        ]
        self.skipped = sum(
            not keep_target(target, min_target_voxels, min_target_ml, max_target_ml)
            for case in self.cases
            for target in case.targets
        )

    def __len__(self) -> int:
        return len(self.targets)

    def fingerprint(self) -> str:
        """Identifies the target list (a resumed run checks it is training on the same data).

        Built from the images' contents, not their cache folders: a copy or a remount of the same
        data (new modification times, so new cache entries) keeps the fingerprint.
        """
        digest = hashlib.sha256()
        for ref in self.targets:
            case = self.cases[ref.case]
            digest.update(
                f"{case.source.key}|{case.image_sha256}|{ref.target.kind}|{ref.target.label}|"
                f"{ref.target.component}\n".encode()
            )
        return digest.hexdigest()[:16]

    def sample(self, index: int, rng: np.random.Generator, augment: bool = True) -> Sample:
        """A crop around target ``index``; random placement (and augmentation) from ``rng``."""
        ref = self.targets[index]
        case = self.cases[ref.case]
        size = self.model_config.input_size
        anchor = ref.target.anchors[int(rng.integers(len(ref.target.anchors)))]
        start = crop_start(anchor, size, self.crop_offset_fraction, rng)
        raw = torch.from_numpy(extract_crop(case.image, start, size).astype(np.float32))
        mask = torch.from_numpy(case.target_mask(ref.target, start, size))
        if augment and self.augmentation is not None:
            raw_aug, mask_aug = self.augmentation.spatial(raw, mask, rng)
            if bool(mask_aug.any()):  # a rotation can push a small target out of the crop
                raw, mask = raw_aug, mask_aug
        image = normalise_crop(raw, self.model_config.normalisation)[0]
        if augment and self.augmentation is not None:
            image = self.augmentation.intensity(image, rng)
        description = f"{case.source.key}:{ref.target.name}" + (
            f"#{ref.target.component}" if ref.target.kind == "lesion" else ""
        )
        return Sample(
            image=image.contiguous(),
            target=mask.to(torch.float32)[None].contiguous(),
            low_quality=case.source.low_quality,
            description=description,
        )


def split_cases(
    cases: Sequence[CachedCase], val_fraction: float, seed: int
) -> tuple[list[CachedCase], list[CachedCase]]:
    """Hold out ``val_fraction`` of the cases (at least one when there are two or more).

    The split is a stable function of the case names and the seed: adding cases does not move
    the others between the splits more than the new count requires.
    """
    if val_fraction <= 0 or len(cases) < 2:
        return list(cases), []
    count = min(len(cases) - 1, max(1, round(val_fraction * len(cases))))
    order = sorted(
        cases, key=lambda c: hashlib.sha256(f"{seed}:{c.source.key}".encode()).hexdigest()
    )
    held_out = {id(c) for c in order[:count]}
    return [c for c in cases if id(c) not in held_out], [c for c in cases if id(c) in held_out]


class TargetSampler:
    """Disjoint target indices per rank and step, like ``DistributedSampler``, forever.

    The sample at global position ``slot`` is ``permutation(epoch)[slot % count]`` with
    ``epoch = slot // count``; step ``s`` on rank ``r`` takes the slots
    ``(s * world_size + r) * batch_size + [0, batch_size)``. Everything is a pure function of the
    step, so a resumed run draws exactly the samples the uninterrupted run would have.
    """

    def __init__(self, count: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        if count < 1:
            raise InputError("no training targets left (all cases held out or all too small)")
        self.count = count
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self._epoch = -1
        self._permutation = np.arange(count)

    def slots(self, step: int) -> list[int]:
        first = (step * self.world_size + self.rank) * self.batch_size
        return list(range(first, first + self.batch_size))

    def index(self, slot: int) -> int:
        epoch = slot // self.count
        if epoch != self._epoch:
            self._permutation = np.random.default_rng([self.seed, 7, epoch]).permutation(self.count)
            self._epoch = epoch
        return int(self._permutation[slot % self.count])

    def samples_seen(self, step: int) -> int:
        return step * self.world_size * self.batch_size


__all__ = [
    "CachedCase",
    "Sample",
    "Target",
    "TargetCrops",
    "TargetSampler",
    "build_cache_entry",
    "cache_key",
    "default_cache_dir",
    "enumerate_targets",
    "extract_crop",
    "find_cases",
    "keep_target",
    "open_cache_entry",
    "prepare_cache",
    "resample_linear",
    "resample_nearest",
    "split_cases",
]
