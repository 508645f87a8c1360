"""Lesions: where they go, what shape and uptake they have, and their labels on the output grid.

A lesion is the set of fine voxels below a threshold of a shape field: the normalised radius of
a rotated ellipsoid, for irregular lesions divided by (1 + smooth noise). The threshold is chosen
so that the lesion holds exactly the drawn volume, inside the body and clear of other lesions. On
the output grid a voxel belongs to a lesion when at least half of it is lesion (every lesion keeps
at least its best-covered voxel).

A :class:`LesionStyle` sets the variety. The standard style (the default; earlier data sets
repeat exactly) draws spheres, ellipsoids and irregular lesions 1.8-10 times as hot as their host,
some large ones with a cold necrotic core. The wide style adds what readers meet beyond that:
lobulated lesions (a few large lobes) and infiltrative ones (elongated, with finger-like
margins), necrotic cores inside a hot rim, stronger heterogeneity, contrasts from barely visible
to very hot, and head-and-neck primaries at the oropharynx.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy import ndimage

from seganypet.synth.geometry import Box, Canvas, Superquadric, rotation
from seganypet.synth.imaging import NativeGrid
from seganypet.synth.labels import LABEL_NAMES, LABELS, LESION_LABEL

NODAL_STATIONS = (
    "cervical", "supraclavicular", "axilla", "hilar", "paratracheal", "subcarinal", "prevascular",
    "para_aortic", "aortocaval", "retrocrural", "mesenteric", "iliac_right", "iliac_left",
    "external_iliac", "inguinal",
)  # fmt: skip


@dataclass(frozen=True)
class Site:
    """A kind of lesion location: how often it is chosen and the volumes lesions there take."""

    name: str
    weight: float
    volume_ml: tuple[float, float]


SITES = (
    Site("node", 0.42, (0.3, 40.0)),
    Site("lung", 0.12, (0.3, 60.0)),
    Site("liver", 0.12, (0.5, 300.0)),
    Site("bone", 0.10, (0.3, 50.0)),
    Site("soft_tissue", 0.07, (1.0, 300.0)),
    Site("spleen", 0.03, (0.5, 40.0)),
    Site("beside_bladder", 0.05, (0.5, 60.0)),
    Site("beside_kidney", 0.05, (0.5, 40.0)),
    Site("beside_heart", 0.04, (0.5, 30.0)),
)
#: Shape-field noise of the rough kinds: (smoothing as a share of the radius, strength range).
SURFACE_NOISE = {
    "irregular": (0.4, (0.15, 0.35)),
    "lobulated": (0.7, (0.35, 0.6)),
    "infiltrative": (0.15, (0.4, 0.7)),
}
HOST_LABELS = {
    "lung": LABELS["lungs"],
    "liver": LABELS["liver"],
    "bone": LABELS["bone_marrow"],
    "soft_tissue": LABELS["muscle"],
    "spleen": LABELS["spleen"],
}
MAX_TOTAL_VOLUME_ML = 900.0
HEAD_NECK_SITE = Site("head_neck", 0.05, (0.5, 40.0))
LESION_STYLES = ("standard", "wide")


@dataclass(frozen=True)
class LesionStyle:
    """How varied the lesions are: ``variety`` standard or wide (see the module), and the range
    of lesion-to-host contrast the mean uptake is drawn from (log-uniform)."""

    variety: str = "standard"
    contrast_range: tuple[float, float] = (1.8, 10.0)

    def __post_init__(self) -> None:
        if self.variety not in LESION_STYLES:
            raise ValueError(f"unknown lesion variety {self.variety!r}")

    @property
    def wide(self) -> bool:
        return self.variety == "wide"

    @property
    def sites(self) -> tuple[Site, ...]:
        return SITES + (HEAD_NECK_SITE,) if self.wide else SITES


@dataclass(frozen=True)
class LesionInfo:
    """One lesion as generated. ``instance`` is its value in the lesion instance map."""

    instance: int
    site: str
    host: str  # the tissue at its centre before it was placed
    shape: str  # sphere, ellipsoid, irregular (and with the wide style lobulated, infiltrative)
    center_mm: tuple[float, float, float]  # world RAS+ centroid of its output voxels
    volume_ml: float  # true volume (fine grid)
    suv_mean: float  # mean uptake of its viable part
    suv_max: float
    necrotic: bool
    voxels: int  # voxels it holds on the output grid
    hot_rim: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PaintedLesion:
    info: LesionInfo
    box: Box
    mask: np.ndarray


def equivalent_radius_mm(volume_ml: float) -> float:
    """The radius of a sphere of ``volume_ml``."""
    return float((3.0 * volume_ml * 1000.0 / (4.0 * np.pi)) ** (1 / 3))


def log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _unit_vector(rng: np.random.Generator, bias: np.ndarray | None = None) -> np.ndarray:
    v = rng.normal(size=3)
    if bias is not None:
        v = v / np.linalg.norm(v) + 1.5 * np.asarray(bias, dtype=float)
    return v / np.linalg.norm(v)


class LesionPlacer:
    def __init__(
        self,
        canvas: Canvas,
        landmarks: dict[str, np.ndarray],
        rng: np.random.Generator,
        organ_suv: dict[str, float],
        style: LesionStyle | None = None,
    ):
        self.canvas = canvas
        self.landmarks = landmarks
        self.rng = rng
        self.organ_suv = organ_suv
        self.style = style or LesionStyle()
        self.occupied = np.zeros(canvas.shape, dtype=bool)
        self._voxels_of: dict[int, np.ndarray] = {}

    def random_voxel_of(self, label: int) -> np.ndarray | None:
        if label not in self._voxels_of:
            self._voxels_of[label] = np.flatnonzero(self.canvas.labels == label)
        candidates = self._voxels_of[label]
        if candidates.size == 0:
            return None
        index = np.unravel_index(int(self.rng.choice(candidates)), self.canvas.shape)
        return self.canvas.origin + self.canvas.spacing * np.asarray(index, dtype=float)

    def label_at(self, point: np.ndarray) -> int:
        index = np.round((point - self.canvas.origin) / self.canvas.spacing).astype(int)
        if np.any(index < 0) or np.any(index >= self.canvas.shape):
            return 0
        return int(self.canvas.labels[tuple(index)])

    def beside(
        self, center: np.ndarray, organ: tuple[int, ...], direction: np.ndarray, radius: float
    ) -> np.ndarray:
        """A point just outside ``organ``, walking from ``center`` along ``direction``."""
        point = np.asarray(center, dtype=float)
        for _ in range(150):
            if self.label_at(point) not in organ:
                break
            point = point + 2.0 * direction
        return point + direction * (0.7 * radius + 2.0)

    def choose_center(self, site: str, radius: float) -> np.ndarray | None:
        rng, marks = self.rng, self.landmarks
        if site == "node":
            stations = [k for k in marks if k.startswith(NODAL_STATIONS)]
            return marks[stations[int(rng.integers(len(stations)))]] + rng.normal(0.0, 7.0, 3)
        if site in HOST_LABELS:
            return self.random_voxel_of(HOST_LABELS[site])
        if site == "head_neck":
            side = "right" if rng.random() < 0.5 else "left"
            return marks[f"oropharynx_{side}"] + rng.normal(0.0, 5.0, 3)
        if site == "beside_bladder":
            direction = _unit_vector(rng, bias=[rng.choice([-1.0, 1.0]), -0.6, 0.0])
            return self.beside(marks["bladder_center"], (LABELS["bladder"],), direction, radius)
        if site == "beside_kidney":
            side = "right" if rng.random() < 0.5 else "left"
            if rng.random() < 0.5:
                return marks[f"adrenal_{side}"] + rng.normal(0.0, 4.0, 3)
            kidney = (LABELS[f"kidney_{side}"],)
            medial = -1.0 if side == "right" else 1.0
            direction = _unit_vector(rng, bias=[0.7 * medial, 0.0, 0.3])
            return self.beside(marks[f"kidney_{side}_center"], kidney, direction, radius)
        if site == "beside_heart":
            direction = _unit_vector(rng, bias=[-0.8, 0.0, -0.3])
            heart = (LABELS["myocardium"], LABELS["blood_pool"])
            return self.beside(marks["paracardiac"], heart, direction, radius)
        raise ValueError(f"unknown lesion site {site!r}")

    def place(
        self, instance: int, site: Site, volume_ml: float, suv_range: tuple[float, float]
    ) -> PaintedLesion | None:
        radius = equivalent_radius_mm(volume_ml)
        kind = self.choose_kind()
        for _ in range(6):
            center = self.choose_center(site.name, radius)
            if center is None or self.label_at(center) in (0, LESION_LABEL):
                continue
            painted = self.paint_at(instance, site.name, kind, center, volume_ml, radius, suv_range)
            if painted is not None:
                return painted
        return None

    def choose_kind(self) -> str:
        """A lesion shape kind, with the style's odds."""
        if self.style.wide:
            kinds = ["sphere", "ellipsoid", "irregular", "lobulated", "infiltrative"]
            return str(self.rng.choice(kinds, p=[0.15, 0.2, 0.3, 0.2, 0.15]))
        return str(self.rng.choice(["sphere", "ellipsoid", "irregular"], p=[0.3, 0.3, 0.4]))

    def paint_at(
        self,
        instance: int,
        site: str,
        kind: str,
        center: np.ndarray,
        volume_ml: float,
        radius: float,
        suv_range: tuple[float, float],
    ) -> PaintedLesion | None:
        rng, canvas = self.rng, self.canvas
        half = 2.3 * radius + 3.0 * canvas.spacing
        box = canvas.box(center - half, center + half)
        if box is None:
            return None
        grid = canvas.grid(box)
        if kind == "sphere":
            semi = np.full(3, radius)
        else:
            reach = 0.9 if kind == "infiltrative" else 0.35
            stretch = np.exp(rng.uniform(-reach, reach, 3))
            semi = radius * stretch / np.prod(stretch) ** (1 / 3)
        orientation = rotation(*rng.uniform(0.0, 180.0, 3))
        field = Superquadric(center, semi, orientation).radius(grid).astype(np.float32)
        if kind in SURFACE_NOISE:
            scale, strength = SURFACE_NOISE[kind]
            bumps = ndimage.gaussian_filter(
                rng.standard_normal(field.shape).astype(np.float32),
                max(1.0, scale * radius / canvas.spacing),
            )
            field /= 1.0 + rng.uniform(*strength) * bumps / (bumps.std() + 1e-6)
        host_labels = canvas.labels[box]
        free = (host_labels != 0) & ~self.occupied[box]
        field[~free] = np.inf
        wanted = max(1, int(round(volume_ml / canvas.voxel_volume_ml)))
        if np.count_nonzero(free) < wanted:
            return None
        threshold = float(np.partition(field.ravel(), wanted - 1)[wanted - 1])
        if not np.isfinite(threshold) or threshold > 1.6:
            return None
        mask = field <= threshold
        if self.style.wide:  # rough fields can leave islands: a lesion is one piece
            pieces, count = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
            if count > 1:
                mask = pieces == 1 + int(np.argmax(np.bincount(pieces.ravel())[1:]))

        host = LABEL_NAMES.get(self.label_at(center), "other")
        host_suv = self.organ_suv.get(host, 1.0)
        contrast = log_uniform(rng, *self.style.contrast_range)
        suv_mean = float(np.clip(max(host_suv, 1.2) * contrast, *suv_range))
        shell = field / threshold
        necrotic = volume_ml > 4.0 and rng.random() < 0.35
        hot_rim = False
        if necrotic:
            core_size = rng.uniform(0.35, 0.65)
            core = shell < core_size
            pattern = np.ones_like(field)
            if self.style.wide and rng.random() < 0.7:
                hot_rim = True  # viable tumour crowds at the margin of the necrosis
                rim_centre = 0.5 * (core_size + 1.0)
                rim = np.exp(-(((shell - rim_centre) / (0.5 * (1.0 - core_size))) ** 2))
                pattern = 1.0 + rng.uniform(0.4, 1.5) * rim
        else:
            core = np.zeros_like(mask)
            pattern = 1.0 + rng.uniform(0.0, 0.6) * (1.0 - np.clip(shell, 0.0, 1.0) ** 2)
        spread = rng.uniform(0.08, 0.5 if self.style.wide else 0.3)
        texture = ndimage.gaussian_filter(
            rng.standard_normal(field.shape).astype(np.float32),
            max(1.0, 0.25 * radius / canvas.spacing),
        )
        pattern = pattern * np.exp(spread * texture / (texture.std() + 1e-6))
        viable = mask & ~core
        if not viable.any():
            return None
        values = (suv_mean * pattern / pattern[viable].mean()).astype(np.float32)
        values[core] = rng.uniform(0.4, 1.2)
        canvas.fill(box, mask, LESION_LABEL, values)
        self.occupied[box] |= mask
        info = LesionInfo(
            instance=instance,
            site=site,
            host=host,
            shape=kind,
            center_mm=tuple(float(c) for c in center),  # replaced by the output centroid later
            volume_ml=float(mask.sum() * canvas.voxel_volume_ml),
            suv_mean=suv_mean,
            suv_max=float(values[mask].max()),
            necrotic=bool(necrotic),
            voxels=0,
            hot_rim=hot_rim,
        )
        return PaintedLesion(info, box, mask)


def place_lesions(
    canvas: Canvas,
    landmarks: dict[str, np.ndarray],
    rng: np.random.Generator,
    organ_suv: dict[str, float],
    count_range: tuple[int, int] = (0, 20),
    volume_range_ml: tuple[float, float] = (0.3, 300.0),
    suv_range: tuple[float, float] = (2.0, 30.0),
    style: LesionStyle | None = None,
) -> list[PaintedLesion]:
    """Draw and paint this case's lesions onto ``canvas`` (labels and activity)."""
    style = style or LesionStyle()
    sites = style.sites
    low, high = count_range
    # About one case in six without lesions; otherwise fewer lesions more often than many.
    count = (
        0
        if rng.random() < 0.15
        else int(np.clip(np.floor(low + 1 + (high - low) * rng.random() ** 1.6), low, high))
    )
    weights = np.array([s.weight for s in sites])
    placer = LesionPlacer(canvas, landmarks, rng, organ_suv, style)
    lesions: list[PaintedLesion] = []
    total = 0.0
    for _ in range(count):
        site = sites[int(rng.choice(len(sites), p=weights / weights.sum()))]
        lo = max(site.volume_ml[0], volume_range_ml[0])
        hi = min(site.volume_ml[1], volume_range_ml[1], max(lo, MAX_TOTAL_VOLUME_ML - total))
        volume = log_uniform(rng, lo, hi)
        painted = placer.place(len(lesions) + 1, site, volume, suv_range)
        if painted is not None:
            lesions.append(painted)
            total += painted.info.volume_ml
    return lesions


def rasterize_lesions(
    lesions: list[PaintedLesion],
    canvas: Canvas,
    grid: NativeGrid,
    sampling: torch.Tensor,
    labels: np.ndarray,
) -> tuple[np.ndarray, list[LesionInfo]]:
    """Lesion instance map on the output grid; writes the lesion label into ``labels``.

    ``sampling`` holds the normalised fine-canvas coordinates of every (displaced) output voxel.
    """
    instances = np.zeros(grid.shape, dtype=np.uint8 if len(lesions) < 256 else np.uint16)
    best = np.zeros(grid.shape, dtype=np.float32)
    fine_shape = np.asarray(canvas.shape, dtype=np.float32)
    native_in_fine = np.asarray(grid.spacing) / canvas.spacing
    pad = int(np.ceil(native_in_fine.max())) + 1
    max_shift = 20.0  # mm: displacement plus margin
    infos = []
    regions = []
    for lesion in lesions:
        lo = canvas.origin + canvas.spacing * np.array([s.start for s in lesion.box]) - max_shift
        hi = canvas.origin + canvas.spacing * np.array([s.stop for s in lesion.box]) + max_shift
        first = np.clip(np.floor((lo - grid.origin) / grid.spacing).astype(int), 0, grid.shape)
        last = np.clip(np.ceil((hi - grid.origin) / grid.spacing).astype(int) + 1, 0, grid.shape)
        region = tuple(slice(int(a), int(b)) for a, b in zip(first, last, strict=True))
        regions.append(region)
        coords = sampling[0][region[0], region[1], region[2]].numpy()[..., ::-1]
        fine_index = (coords + 1.0) * 0.5 * (fine_shape - 1.0)
        offset = np.array([s.start for s in lesion.box]) - pad
        padded = np.pad(lesion.mask.astype(np.float32), pad)
        coverage = ndimage.gaussian_filter(padded, native_in_fine / np.sqrt(12.0))
        points = np.moveaxis(fine_index - offset, -1, 0)
        fraction = ndimage.map_coordinates(coverage, points, order=1, cval=0.0)
        assigned = (fraction >= 0.5) & (fraction > best[region])
        if not assigned.any():
            assigned = fraction == fraction.max()
        target = instances[region]
        target[assigned] = lesion.info.instance
        best[region][assigned] = fraction[assigned]
        labels[region][assigned] = LESION_LABEL
    for lesion, region in zip(lesions, regions, strict=True):
        voxels = np.argwhere(instances[region] == lesion.info.instance)
        if voxels.size:
            start = np.array([s.start for s in region])
            center = grid.origin + grid.spacing * (start + voxels.mean(axis=0))
        else:
            center = np.asarray(lesion.info.center_mm)
        infos.append(_replace_output(lesion.info, center, len(voxels)))
    return instances, infos


def _replace_output(info: LesionInfo, center: np.ndarray, voxels: int) -> LesionInfo:
    data = info.to_dict()
    data.update(center_mm=tuple(float(c) for c in center), voxels=int(voxels))
    return LesionInfo(**data)
