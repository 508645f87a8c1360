"""Synthetic lesions inserted into a real PET scan: real anatomy, real noise, known ground truth.

Each case takes the real image (in SUV) and adds a few lesions drawn by the phantoms' own lesion
model (:class:`~seganypet.synth.lesions.LesionPlacer`, its shapes, necrosis and texture, in the
standard or wide :class:`~seganypet.synth.lesions.LesionStyle`):

1. A centre is drawn among the voxels of soft tissue (SUV between :data:`HOST_SUV_RANGE`), at
   least :data:`AVOID_MARGIN_MM` from the region to avoid (a real tumour), from the image's
   edges and from the lesions placed before.
2. The lesion is painted on a fine isotropic grid around it, its mean uptake drawn as a contrast
   over the host's median SUV within 10 mm.
3. What it adds over the host, blurred by the voxel's own width and a PSF of ``psf_fwhm_mm``, is
   sampled at the image's voxel centres and added to the real values. A voxel is lesion when at
   least half of it is lesion (every lesion keeps its best-covered voxel).
4. Count noise for the added activity: correlated Gaussian noise with variance
   ``(noise_cov ** 2) * host * added`` (the real image already holds the host's own noise).

The region to avoid becomes the ``ignore`` label: it is neither a target nor background to the
training loop's objects (nnU-Net's convention), so a held-out tumour never becomes a target.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from seganypet.atomic import write_text_atomic
from seganypet.errors import InputError
from seganypet.image import PetImage
from seganypet.synth.geometry import Canvas
from seganypet.synth.labels import LABELS, LESION_LABEL
from seganypet.synth.lesions import (
    LesionInfo,
    LesionPlacer,
    LesionStyle,
    equivalent_radius_mm,
    log_uniform,
)

FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))
HOST_SUV_RANGE = (0.3, 4.0)
AVOID_MARGIN_MM = 15.0
HOST_RADIUS_MM = 10.0
INSERTED_LABELS = {"background": 0, "lesion": 1, "ignore": 2}
HOST = "muscle"


@dataclass(frozen=True)
class InsertionSettings:
    """What an inserted case may draw."""

    lesion_count_range: tuple[int, int] = (2, 8)
    lesion_volume_range_ml: tuple[float, float] = (0.3, 60.0)
    lesion_suv_range: tuple[float, float] = (1.0, 40.0)
    psf_fwhm_mm: tuple[float, float] = (5.0, 7.0)
    noise_cov: tuple[float, float] = (0.08, 0.2)
    style: LesionStyle = LesionStyle("wide", (1.15, 15.0))


@dataclass
class InsertedCase:
    """The real image with lesions added, its labels (:data:`INSERTED_LABELS`), the lesion
    instances (0 none, k the k-th of ``lesions``) and the lesions."""

    image: PetImage
    labels: np.ndarray
    instances: np.ndarray
    lesions: list[LesionInfo]


def insert_lesions(
    image: PetImage,
    avoid: np.ndarray,
    rng: np.random.Generator,
    settings: InsertionSettings | None = None,
) -> InsertedCase:
    """Add synthetic lesions to ``image`` away from ``avoid`` (see the module)."""
    settings = settings or InsertionSettings()
    spacing = np.asarray(image.spacing, dtype=float)
    values = np.asarray(image.array, dtype=np.float32).copy()
    labels = np.where(avoid, INSERTED_LABELS["ignore"], 0).astype(np.uint8)
    blocked = _blocked(avoid, spacing)
    candidates = np.flatnonzero(
        (values >= HOST_SUV_RANGE[0]) & (values <= HOST_SUV_RANGE[1]) & ~blocked
    )
    low, high = settings.lesion_count_range
    count = int(rng.integers(low, high + 1))
    psf_fwhm = float(rng.uniform(*settings.psf_fwhm_mm))
    noise_cov = float(rng.uniform(*settings.noise_cov))
    lesions: list[LesionInfo] = []
    labels_of: dict[int, tuple[np.ndarray, ...]] = {}
    for _ in range(count * 4):
        if len(lesions) == count or candidates.size == 0:
            break
        volume = log_uniform(rng, *settings.lesion_volume_range_ml)
        centre = np.unravel_index(int(rng.choice(candidates)), values.shape)
        painted = _paint_one(
            image, values, labels, blocked, centre, volume, psf_fwhm, noise_cov, settings, rng,
            instance=len(lesions) + 1,
        )  # fmt: skip
        if painted is not None:
            info, voxels = painted
            lesions.append(info)
            labels_of[info.instance] = voxels
    inserted = image.with_array(values)
    inserted.metadata = {**image.metadata, "inserted_lesions": len(lesions)}
    instances = np.zeros(labels.shape, dtype=np.uint8)
    for lesion in lesions:
        instances[labels_of[lesion.instance]] = lesion.instance
    return InsertedCase(inserted, labels, instances, lesions)


def _blocked(avoid: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Voxels within the margin of the avoided region or of the image's edges."""
    blocked = np.zeros(avoid.shape, dtype=bool)
    if avoid.any():
        blocked = ndimage.distance_transform_edt(~avoid, sampling=spacing) < AVOID_MARGIN_MM
    edge = np.ceil(AVOID_MARGIN_MM / spacing).astype(int)
    inner = tuple(
        slice(int(e), max(int(e), n - int(e))) for e, n in zip(edge, avoid.shape, strict=True)
    )
    frame = np.ones(avoid.shape, dtype=bool)
    frame[inner] = False
    return blocked | frame


def _paint_one(
    image: PetImage,
    values: np.ndarray,
    labels: np.ndarray,
    blocked: np.ndarray,
    centre: tuple[int, ...],
    volume_ml: float,
    psf_fwhm: float,
    noise_cov: float,
    settings: InsertionSettings,
    rng: np.random.Generator,
    instance: int,
) -> tuple[LesionInfo, tuple[np.ndarray, ...]] | None:
    """Paint one lesion; its information and its voxels (as ``np.nonzero`` gives them)."""
    spacing = np.asarray(image.spacing, dtype=float)
    radius = equivalent_radius_mm(volume_ml)
    reach = 2.5 * radius + 3.0 * psf_fwhm
    half = np.ceil(reach / spacing).astype(int)
    lo = np.maximum(np.asarray(centre) - half, 0)
    hi = np.minimum(np.asarray(centre) + half + 1, values.shape)
    region = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    local = values[region]
    host_suv = _host_suv(local, np.asarray(centre) - lo, spacing)

    fine = float(spacing.min()) / 2.0
    extent = (hi - lo) * spacing
    canvas = Canvas(origin=-0.5 * spacing, spacing=fine, shape=tuple(
        int(np.ceil(e / fine)) + 1 for e in extent))  # fmt: skip
    free = ~(blocked[region] | (labels[region] > 0))
    canvas.labels[...] = _on_fine(free, spacing, canvas).astype(np.uint8) * LABELS[HOST]
    placer = LesionPlacer(canvas, {}, rng, {HOST: host_suv}, settings.style)
    kind = placer.choose_kind()
    centre_mm = (np.asarray(centre) - lo) * spacing
    painted = placer.paint_at(
        instance, "inserted", kind, centre_mm, volume_ml, radius, settings.lesion_suv_range
    )
    if painted is None:
        return None
    mask_fine = canvas.labels == LESION_LABEL
    added_fine = np.where(mask_fine, canvas.activity - host_suv, 0.0).astype(np.float32)
    native_in_fine = spacing / fine
    voxel_sigma = native_in_fine / np.sqrt(12.0)
    psf_sigma = psf_fwhm * FWHM_TO_SIGMA / fine
    points = _native_centres_in_fine(local.shape, spacing, canvas)
    coverage = ndimage.map_coordinates(
        ndimage.gaussian_filter(mask_fine.astype(np.float32), voxel_sigma), points, order=1
    ).reshape(local.shape)
    added = ndimage.map_coordinates(
        ndimage.gaussian_filter(added_fine, np.sqrt(voxel_sigma**2 + psf_sigma**2)),
        points,
        order=1,
    ).reshape(local.shape)
    added[np.abs(added) < 1e-3 * host_suv] = 0.0  # the blur's far tails: nothing to add there
    lesion = (coverage >= 0.5) & free
    if not lesion.any():
        lesion = (coverage == coverage[free].max()) & free if free.any() else lesion
    if not lesion.any():
        return None
    noise = ndimage.gaussian_filter(rng.standard_normal(local.shape).astype(np.float32), 0.7)
    noise /= noise.std() + 1e-6
    extra = noise_cov * np.sqrt(np.clip(host_suv * added, 0.0, None)) * noise
    values[region] = np.where(added != 0.0, np.maximum(local + added + extra, 0.0), local)
    labels[region][lesion] = INSERTED_LABELS["lesion"]
    world = image.voxel_to_world(np.argwhere(lesion).mean(0) + lo)
    info = painted.info
    voxels = tuple(axis + start for axis, start in zip(np.nonzero(lesion), lo, strict=True))
    return LesionInfo(
        instance=instance,
        site="inserted",
        host=f"real SUV {host_suv:.2f}",
        shape=info.shape,
        center_mm=tuple(float(v) for v in world),
        volume_ml=info.volume_ml,
        suv_mean=info.suv_mean,
        suv_max=float(values[region][lesion].max()),
        necrotic=info.necrotic,
        voxels=int(lesion.sum()),
        hot_rim=info.hot_rim,
    ), voxels


def _host_suv(local: np.ndarray, centre: np.ndarray, spacing: np.ndarray) -> float:
    reach = np.ceil(HOST_RADIUS_MM / spacing).astype(int)
    lo = np.maximum(centre - reach, 0)
    hi = np.minimum(centre + reach + 1, local.shape)
    near = local[tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))]
    return float(max(np.median(near), 0.05))


def _on_fine(native: np.ndarray, spacing: np.ndarray, canvas: Canvas) -> np.ndarray:
    """A native-grid mask sampled (nearest) at the fine canvas's voxel centres."""
    axes = [
        np.clip(
            np.round((canvas.origin[k] + canvas.spacing * np.arange(canvas.shape[k])) / spacing[k]),
            0,
            native.shape[k] - 1,
        ).astype(int)
        for k in range(3)
    ]
    return native[np.ix_(*axes)]


def _native_centres_in_fine(
    shape: tuple[int, ...], spacing: np.ndarray, canvas: Canvas
) -> np.ndarray:
    """Fine-grid coordinates of every native voxel centre of ``shape``, as map_coordinates wants."""
    grids = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    return np.stack(
        [((g * spacing[k]) - canvas.origin[k]) / canvas.spacing for k, g in enumerate(grids)]
    ).reshape(3, -1)


def write_inserted_dataset(
    out_dir: str | os.PathLike,
    cases: int,
    seed: int,
    background: str | os.PathLike,
    avoid_mask: str | os.PathLike | None = None,
    avoid_roi: Sequence[str] | None = None,
    tracer: str = "FDG",
    progress: bool = True,
) -> Path:
    """``cases`` copies of the ``background`` scan with lesions inserted, in the nnU-Net v2 raw
    layout of :mod:`seganypet.synth.dataset` (labels: :data:`INSERTED_LABELS`); resumable.

    ``avoid_mask`` (a NIfTI label map, SEG or RTSTRUCT; ``avoid_roi`` picks ROIs) is the region
    kept free of lesions and labelled ``ignore``. Returns the path of ``dataset.json``.
    """
    from tqdm import tqdm

    from seganypet.io import load_image
    from seganypet.io.masks import load_mask
    from seganypet.io.nifti import write_label_map, write_nifti
    from seganypet.synth.dataset import case_name, case_paths, is_complete
    from seganypet.synth.phantom import case_seed

    out_dir = Path(out_dir)
    image = load_image(background)
    avoid = np.zeros(image.shape, dtype=bool)
    if avoid_mask is not None:
        avoid = load_mask(avoid_mask, image, roi_names=avoid_roi)[0] > 0
    description = {
        "name": "seganypet_inserted",
        "description": "Synthetic lesions inserted into a real PET scan (seganypet.synth.insert)",
        "channel_names": {"0": "PET"},
        "labels": dict(INSERTED_LABELS),
        "numTraining": int(cases),
        "file_ending": ".nii.gz",
        "tracer": tracer,
        "units": "SUVbw",
        "generator": "seganypet.synth.insert",
        "seed": int(seed),
        "background": {
            "image": str(background),
            "image_sha256": image.content_digest(),
            "avoid_mask": None if avoid_mask is None else str(avoid_mask),
            "avoid_roi": list(avoid_roi or []),
            "avoided_voxels": int(avoid.sum()),
        },
        "settings": json.loads(json.dumps(asdict(InsertionSettings()))),
    }
    dataset_json = out_dir / "dataset.json"
    if dataset_json.exists():
        existing = json.loads(dataset_json.read_text(encoding="utf-8"))
        if any(existing.get(k) != description[k] for k in ("seed", "background", "settings")):
            raise InputError(
                f"{out_dir} already holds inserted cases of another seed, background or settings;"
                " use the same arguments to resume it, or another output folder"
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(dataset_json, json.dumps(description, indent=1) + "\n")
    for index in tqdm(range(cases), desc="inserted cases", unit="case", disable=not progress):
        if is_complete(out_dir, index):
            continue
        rng = np.random.default_rng(case_seed(seed, index))
        case = insert_lesions(image, avoid, rng)
        paths = case_paths(out_dir, index)
        write_nifti(case.image.array, case.image.affine, paths["image"], header_like=case.image)
        write_label_map(case.labels, case.image, paths["labels"])
        write_label_map(case.instances, case.image, paths["instances"])
        metadata = {
            "case": case_name(index),
            "dataset_seed": int(seed),
            "case_seed": case_seed(seed, index),
            "background": str(background),
            "lesions": [lesion.to_dict() for lesion in case.lesions],
        }
        write_text_atomic(paths["metadata"], json.dumps(metadata, indent=1) + "\n")
    return dataset_json
