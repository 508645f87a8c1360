"""PET quantification: SUV statistics, MTV and TLG per label and per lesion.

A lesion is a 26-connected component of one label. Every statistic is computed on the input's
own voxel grid; voxel indices are in the input array's axis order, world positions in mm (RAS+)
through the image affine.

SUVpeak follows the IBSI "global intensity peak": the mean SUV of the image voxels whose centres
lie within ``PEAK_RADIUS_MM`` (the radius of a 1 cm³ sphere, 6.2 mm) of a voxel centre, taken at
every ROI voxel and maximised over them. The sphere sees every image voxel, not only the ROI's.
At the image border the mean is over the voxels that exist: voxels outside the image are left
out of both the sum and the count, never padded with zeros or mirrored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy import ndimage, signal

from seganypet.body_size import lean_body_mass_kg
from seganypet.errors import InputError
from seganypet.image import PetImage

PEAK_RADIUS_MM = float((3.0 * 1000.0 / (4.0 * np.pi)) ** (1.0 / 3.0))
"""Radius of a sphere of 1 cm³ (6.2035 mm): the IBSI SUVpeak neighbourhood."""

CONNECTIVITY_26 = np.ones((3, 3, 3), dtype=bool)

# Above this many kernel voxels an FFT correlation beats direct summation.
_FFT_MIN_KERNEL_VOXELS = 100

SUV_PEAK_DEFINITION = (
    "IBSI global intensity peak: mean of the image voxels whose centres lie within "
    f"{PEAK_RADIUS_MM:.4f} mm (a 1 cm3 sphere) of an ROI voxel's centre, maximised over the ROI "
    "voxels; the sphere includes non-ROI voxels; at the image border only voxels inside the "
    "image are averaged"
)

LIVER_VOI_DIAMETER_MM = 30.0
"""PERCIST's liver reference: a sphere of 3 cm diameter in the right lobe."""

Voxel = tuple[int, int, int]
WorldMm = tuple[float, float, float]


@dataclass(frozen=True)
class RegionStats:
    """Statistics of one ROI: a whole label, or one lesion (26-connected component) of it.

    Values are in the image's units (``QuantReport.units``, normally SUVbw). ``component`` is
    None for a whole label; lesions are numbered 1, 2, ... by decreasing volume within their
    label. Where several voxels share the maximum, the first in array (C) order is reported.
    """

    label: int
    name: str | None
    component: int | None
    voxels: int
    volume_ml: float
    suv_mean: float
    suv_max: float
    suv_max_voxel: Voxel
    suv_max_world_mm: WorldMm
    suv_peak: float
    suv_peak_center_voxel: Voxel
    suv_peak_center_world_mm: WorldMm

    @property
    def mtv_ml(self) -> float:
        """Metabolic tumour volume: the volume of the ROI."""
        return self.volume_ml

    @property
    def tlg(self) -> float:
        """Total lesion glycolysis: SUVmean × MTV (SUV·ml)."""
        return self.suv_mean * self.mtv_ml

    def to_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {"label": self.label, "name": self.name}
        if self.component is not None:
            record["lesion"] = self.component
        record.update(
            voxels=self.voxels,
            volume_ml=self.volume_ml,
            mtv_ml=self.mtv_ml,
            suv_mean=self.suv_mean,
            suv_max=self.suv_max,
            suv_max_voxel=list(self.suv_max_voxel),
            suv_max_world_mm=list(self.suv_max_world_mm),
            suv_peak=self.suv_peak,
            suv_peak_center_voxel=list(self.suv_peak_center_voxel),
            suv_peak_center_world_mm=list(self.suv_peak_center_world_mm),
            tlg=self.tlg,
        )
        return record


@dataclass(frozen=True)
class QuantReport:
    """Per-label and per-lesion statistics of one label map on one PET image."""

    units: str
    image_shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    voxel_volume_ml: float
    labels: list[RegionStats]
    lesions: list[RegionStats] = field(default_factory=list)
    lesion_counts: dict[int, int] = field(default_factory=dict)
    """Number of lesions of each label (counted even when per-lesion statistics are off)."""

    @property
    def lesion_count(self) -> int:
        return sum(self.lesion_counts.values())

    @property
    def total_voxels(self) -> int:
        return sum(region.voxels for region in self.labels)

    @property
    def total_mtv_ml(self) -> float:
        return sum(region.mtv_ml for region in self.labels)

    @property
    def total_tlg(self) -> float:
        return sum(region.tlg for region in self.labels)

    def label(self, label: int) -> RegionStats:
        for region in self.labels:
            if region.label == label:
                return region
        raise KeyError(label)

    def lesions_of(self, label: int) -> list[RegionStats]:
        return [lesion for lesion in self.lesions if lesion.label == label]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary: units, image geometry, totals, then each label and its lesions."""
        labels = []
        for region in self.labels:
            record = region.to_dict()
            record["lesion_count"] = self.lesion_counts.get(region.label, 0)
            if self.lesions:
                record["lesions"] = [lesion.to_dict() for lesion in self.lesions_of(region.label)]
            labels.append(record)
        return {
            "units": {
                "suv": self.units,
                "volume": "ml",
                "tlg": f"{self.units}*ml",
                "world": "mm, RAS+ (NIfTI convention)",
                "voxel": "array index in the input image's axis order, 0-based",
            },
            "suv_peak_definition": SUV_PEAK_DEFINITION,
            "image": {
                "shape": list(self.image_shape),
                "spacing_mm": list(self.spacing_mm),
                "voxel_volume_ml": self.voxel_volume_ml,
            },
            "totals": {
                "voxels": self.total_voxels,
                "mtv_ml": self.total_mtv_ml,
                "tlg": self.total_tlg,
                "lesion_count": self.lesion_count,
            },
            "labels": labels,
        }


def sphere_kernel(spacing: Sequence[float], radius_mm: float) -> np.ndarray:
    """Boolean kernel of the voxels whose centres lie within ``radius_mm`` of the centre voxel's.

    ``spacing`` is the voxel size in mm along each array axis, so the sphere stays round on
    anisotropic grids. The kernel has 2·floor(radius/spacing)+1 voxels along each axis.
    """
    spacing_mm = np.asarray(spacing, dtype=np.float64)
    if spacing_mm.shape != (3,) or not (spacing_mm > 0).all() or radius_mm < 0:
        raise InputError(
            f"a sphere needs three positive voxel sizes and a radius >= 0, got spacing {spacing} "
            f"and radius {radius_mm}"
        )
    # The relative tolerance keeps voxels lying exactly on the sphere despite rounding.
    half_widths = np.floor(radius_mm / spacing_mm * (1 + 1e-9)).astype(int)
    axes = np.ogrid[tuple(slice(-h, h + 1) for h in half_widths)]
    squared_mm = sum((offset * size) ** 2 for offset, size in zip(axes, spacing_mm, strict=True))
    return squared_mm <= radius_mm**2 * (1 + 1e-9)


def _correlate(values: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Sum of ``values`` under the (symmetric, odd-sized) kernel around each voxel; zero outside."""
    weights = kernel.astype(np.float64)
    if kernel.sum() >= _FFT_MIN_KERNEL_VOXELS:
        return signal.fftconvolve(values, weights, mode="same")
    return ndimage.correlate(values, weights, mode="constant", cval=0.0)


def sphere_means(image: PetImage, box: tuple[slice, ...], radius_mm: float) -> np.ndarray:
    """Mean image value in a sphere around each voxel of ``box`` (a window of the image).

    The sphere sees the whole image, not only the window; voxels outside the image are left out
    of the mean.
    """
    box = tuple(
        slice(*window.indices(size)[:2]) for window, size in zip(box, image.shape, strict=True)
    )
    kernel = sphere_kernel(image.spacing, radius_mm)
    margins = [(k - 1) // 2 for k in kernel.shape]
    padded_box = tuple(
        slice(max(window.start - margin, 0), min(window.stop + margin, size))
        for window, margin, size in zip(box, margins, image.shape, strict=True)
    )
    values = image.array[padded_box].astype(np.float64)
    sums = _correlate(values, kernel)
    touches_border = any(
        window.start - margin < 0 or window.stop + margin > size
        for window, margin, size in zip(box, margins, image.shape, strict=True)
    )
    if touches_border:
        counts = np.rint(_correlate(np.ones_like(values), kernel))
    else:
        counts = np.float64(kernel.sum())
    means = sums / counts
    inner = tuple(
        slice(window.start - outer.start, window.stop - outer.start)
        for window, outer in zip(box, padded_box, strict=True)
    )
    return means[inner]


def suv_peak(image: PetImage, roi: np.ndarray) -> tuple[float, Voxel]:
    """SUVpeak of a boolean ROI and the voxel at which its sphere is centred."""
    roi = np.asarray(roi, dtype=bool)
    _check_shape(image, roi)
    box = _bounding_box(roi)
    if box is None:
        raise InputError("the ROI is empty: SUVpeak needs at least one ROI voxel")
    peaks = sphere_means(image, box, PEAK_RADIUS_MM)
    value, where = _masked_argmax(peaks, roi[box])
    return value, _offset(where, box)


@dataclass(frozen=True)
class LiverReference:
    """The PERCIST liver reference: mean and SD of a 3 cm sphere VOI placed in the liver.

    ``mean`` and ``sd`` are in ``units``: SUL (SUV normalised by lean body mass) when the image
    is in SUL or records the patient's weight, height and sex, else the image's own units (then
    ``note`` says so). ``sd`` is the sample standard deviation (n - 1) of the VOI's voxels.
    """

    centre_voxel: Voxel
    centre_world_mm: WorldMm
    diameter_mm: float
    voxels: int
    mean: float
    sd: float
    units: str
    sul_per_unit: float | None
    note: str

    @property
    def percist_threshold(self) -> float:
        """PERCIST's threshold of measurable disease: 1.5 x SULmean + 2 x SD of the liver VOI."""
        return 1.5 * self.mean + 2.0 * self.sd

    def to_dict(self) -> dict[str, Any]:
        return {
            "centre_voxel": list(self.centre_voxel),
            "centre_world_mm": list(self.centre_world_mm),
            "diameter_mm": self.diameter_mm,
            "voxels": self.voxels,
            "mean": self.mean,
            "sd": self.sd,
            "units": self.units,
            "sul_per_unit": self.sul_per_unit,
            "percist_threshold": self.percist_threshold,
            "note": self.note,
        }


def sul_per_unit(image: PetImage) -> tuple[float | None, str]:
    """The factor that turns the image's values into SUL, and how it was found.

    SUL is SUV normalised by lean body mass (Janmahasatian, as PERCIST recommends): 1 for an
    image already in SUVlbm; LBM / weight for SUVbw when the image's metadata record the
    patient's weight (kg), height (m) and sex; otherwise None (the note says what is missing).
    """
    units = image.units
    if units.upper() == "SUVLBM":
        return 1.0, "the image is in SUL (SUVlbm)"
    weight = image.metadata.get("patient_weight_kg")
    height_m = image.metadata.get("patient_size_m")
    sex = image.metadata.get("patient_sex")
    if units.upper() == "SUVBW" and weight and height_m and sex:
        try:
            lean = lean_body_mass_kg(float(weight), 100.0 * float(height_m), str(sex))
        except InputError:
            lean = None
        if lean is not None and lean > 0:
            return lean / float(weight), (
                f"SUL = SUVbw x lean body mass / weight ({lean:.1f} / {float(weight):.1f} kg, "
                "Janmahasatian)"
            )
    return None, (
        f"in {units}, not SUL: SUL needs the patient's weight, height and sex, which this image "
        "does not record"
    )


def liver_reference(
    image: PetImage,
    centre_voxel: Sequence[float],
    diameter_mm: float = LIVER_VOI_DIAMETER_MM,
) -> LiverReference:
    """Mean and SD of the voxels whose centres lie within ``diameter_mm / 2`` of the centre
    voxel's centre (the image's voxels only, at a border), in SUL where :func:`sul_per_unit`
    finds the factor. ``centre_voxel`` is rounded to the nearest voxel."""
    centre = tuple(int(round(float(v))) for v in centre_voxel)
    if len(centre) != 3 or not all(0 <= c < n for c, n in zip(centre, image.shape, strict=True)):
        raise InputError(
            f"the liver reference's centre {list(centre_voxel)} lies outside the image "
            f"(shape {list(image.shape)})"
        )
    kernel = sphere_kernel(image.spacing, diameter_mm / 2.0)
    half = [(k - 1) // 2 for k in kernel.shape]
    image_box = tuple(
        slice(max(c - h, 0), min(c + h + 1, n))
        for c, h, n in zip(centre, half, image.shape, strict=True)
    )
    kernel_box = tuple(
        slice(window.start - (c - h), window.stop - (c - h))
        for window, c, h in zip(image_box, centre, half, strict=True)
    )
    values = image.array[image_box][kernel[kernel_box]].astype(np.float64)
    factor, note = sul_per_unit(image)
    if factor is not None:
        values = values * factor
    sd = float(values.std(ddof=1)) if values.size > 1 else 0.0
    return LiverReference(
        centre_voxel=centre,  # type: ignore[arg-type]
        centre_world_mm=_world(image, centre),  # type: ignore[arg-type]
        diameter_mm=float(diameter_mm),
        voxels=int(values.size),
        mean=float(values.mean()),
        sd=sd,
        units="SUL" if factor is not None else image.units,
        sul_per_unit=factor,
        note=note,
    )


def lesions_above(
    lesions: Sequence[RegionStats], threshold: float, to_reference_units: float | None = None
) -> list[RegionStats]:
    """The lesions whose SUVpeak, times ``to_reference_units`` (the image-to-SUL factor of the
    liver reference; 1 when None), reaches ``threshold``: PERCIST's measurable lesions."""
    scale = 1.0 if to_reference_units is None else float(to_reference_units)
    return [lesion for lesion in lesions if lesion.suv_peak * scale >= threshold]


def check_mask_matches(image: PetImage, labels: np.ndarray, affine: np.ndarray) -> None:
    """Raise InputError unless a mask of ``labels`` placed by ``affine`` lies on the image's grid."""
    shape = tuple(int(s) for s in np.shape(labels))
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape == (4, 4) and image.same_grid(shape, affine):
        return
    if shape != image.shape:
        difference = "their shapes differ"
    elif affine.shape != (4, 4):
        difference = f"the mask affine has shape {affine.shape}"
    else:
        offset = float(np.abs(affine - image.affine).max())
        difference = f"their affines differ by up to {offset:.4g} mm"
    raise InputError(
        f"the mask is not on the image's voxel grid ({difference}): mask shape {shape}, affine "
        f"{_affine_text(affine)}; image shape {image.shape}, affine {_affine_text(image.affine)}. "
        "The mask must have the image's shape and affine: resample it onto the PET image grid "
        "(nearest neighbour) and try again"
    )


def quantify(
    image: PetImage,
    labels: np.ndarray,
    label_names: dict[int, str] | None = None,
    per_component: bool = True,
) -> QuantReport:
    """Statistics of every label of ``labels`` (0 = background) and of each of its lesions.

    ``labels`` must be an integer or boolean array on the image grid (check the affine first with
    ``check_mask_matches``). Only labels present in the map are reported; ``label_names`` names
    them. With ``per_component=False`` lesions are counted but get no statistics of their own.
    """
    label_map = _as_label_map(image, labels)
    names = label_names or {}
    label_stats: list[RegionStats] = []
    lesion_stats: list[RegionStats] = []
    lesion_counts: dict[int, int] = {}
    window = _bounding_box(label_map > 0)
    if window is not None:
        regions = label_map[window]
        values = image.array[window].astype(np.float64)
        peaks = sphere_means(image, window, PEAK_RADIUS_MM)
        label_ids = [index + 1 for index, box in enumerate(ndimage.find_objects(regions)) if box]
        table = _RegionTable.of(image, window, values, peaks, regions)
        label_stats = [table.stats(label, label, names.get(label), None) for label in label_ids]

        lesions, lesion_labels = _lesion_map(regions, label_ids)
        lesion_counts = {label: int((lesion_labels == label).sum()) for label in label_ids}
        if per_component and all(count == 1 for count in lesion_counts.values()):
            lesion_stats = [replace(stats, component=1) for stats in label_stats]
        elif per_component:
            table = _RegionTable.of(image, window, values, peaks, lesions)
            by_label_then_size = np.lexsort((-table.voxels[1:], lesion_labels)) + 1
            numbers: dict[int, int] = {}
            for lesion in by_label_then_size:
                label = int(lesion_labels[lesion - 1])
                numbers[label] = numbers.get(label, 0) + 1
                stats = table.stats(int(lesion), label, names.get(label), numbers[label])
                lesion_stats.append(stats)
    return QuantReport(
        units=image.units,
        image_shape=image.shape,
        spacing_mm=image.spacing,
        voxel_volume_ml=image.voxel_volume_ml,
        labels=label_stats,
        lesions=lesion_stats,
        lesion_counts=lesion_counts,
    )


def _lesion_map(regions: np.ndarray, label_ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Lesions numbered 1..n over all labels, and the label of each (index lesion - 1)."""
    lesions = np.zeros(regions.shape, dtype=np.int64)
    lesion_labels: list[np.ndarray] = []
    numbered = 0
    boxes = ndimage.find_objects(regions)
    for label in label_ids:
        box = boxes[label - 1]
        components, count = ndimage.label(regions[box] == label, structure=CONNECTIVITY_26)
        inside = components > 0
        lesions[box][inside] = components[inside] + numbered
        lesion_labels.append(np.full(count, label))
        numbered += count
    return lesions, np.concatenate(lesion_labels) if lesion_labels else np.zeros(0, dtype=int)


@dataclass(frozen=True)
class _RegionTable:
    """Per-region sums, maxima and their positions for an integer region map, all at once."""

    image: PetImage
    voxels: np.ndarray
    sums: np.ndarray
    max_values: np.ndarray
    max_voxels: np.ndarray
    peak_values: np.ndarray
    peak_voxels: np.ndarray

    @classmethod
    def of(
        cls,
        image: PetImage,
        window: tuple[slice, ...],
        values: np.ndarray,
        peaks: np.ndarray,
        regions: np.ndarray,
    ) -> _RegionTable:
        flat = np.flatnonzero(regions)
        ids = regions.ravel()[flat]
        size = int(ids.max()) + 1
        origin = np.array([w.start for w in window])
        region_values = values.ravel()[flat]
        max_values, max_flat = _argmax_by_region(region_values, ids, flat, size)
        peak_values, peak_flat = _argmax_by_region(peaks.ravel()[flat], ids, flat, size)
        return cls(
            image=image,
            voxels=np.bincount(ids, minlength=size),
            sums=np.bincount(ids, weights=region_values, minlength=size),
            max_values=max_values,
            max_voxels=np.column_stack(np.unravel_index(max_flat, regions.shape)) + origin,
            peak_values=peak_values,
            peak_voxels=np.column_stack(np.unravel_index(peak_flat, regions.shape)) + origin,
        )

    def stats(
        self, region: int, label: int, name: str | None, component: int | None
    ) -> RegionStats:
        voxels = int(self.voxels[region])
        max_voxel = _voxel(self.max_voxels[region])
        peak_voxel = _voxel(self.peak_voxels[region])
        return RegionStats(
            label=label,
            name=name,
            component=component,
            voxels=voxels,
            volume_ml=voxels * self.image.voxel_volume_ml,
            suv_mean=float(self.sums[region] / voxels),
            suv_max=float(self.max_values[region]),
            suv_max_voxel=max_voxel,
            suv_max_world_mm=_world(self.image, max_voxel),
            suv_peak=float(self.peak_values[region]),
            suv_peak_center_voxel=peak_voxel,
            suv_peak_center_world_mm=_world(self.image, peak_voxel),
        )


def _argmax_by_region(
    values: np.ndarray, ids: np.ndarray, flat: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per region id: the largest value and its flat index (the first in C order on ties)."""
    best = np.full(size, -np.inf)
    np.maximum.at(best, ids, values)
    at_best = values == best[ids]
    first = np.zeros(size, dtype=np.int64)
    first_flat, first_index = np.unique(ids[at_best], return_index=True)
    first[first_flat] = flat[at_best][first_index]
    return best, first


def _as_label_map(image: PetImage, labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    _check_shape(image, labels)
    if labels.dtype == bool:
        return labels.astype(np.uint8)
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.issubdtype(labels.dtype, np.floating) or not np.isfinite(labels).all():
            raise InputError(f"a label map must hold integers, got dtype {labels.dtype}")
        if not np.array_equal(labels, np.rint(labels)):
            raise InputError(
                "the label map holds non-integer values; give integer labels "
                "(0 = background, 1, 2, ... = objects) or a binary mask"
            )
    if labels.size and labels.min() < 0:
        raise InputError("the label map holds negative labels; use 0 for background, 1, 2, ...")
    return labels.astype(np.int64)


def _check_shape(image: PetImage, array: np.ndarray) -> None:
    if array.shape != image.shape:
        raise InputError(
            f"the mask has shape {array.shape} but the image has shape {image.shape}; the mask "
            "must lie on the image's voxel grid"
        )


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    boxes = ndimage.find_objects(mask.astype(np.uint8))
    return boxes[0] if boxes else None


def _masked_argmax(values: np.ndarray, mask: np.ndarray) -> tuple[float, Voxel]:
    """Largest value inside ``mask`` and its index (the first in C order on ties)."""
    flat = int(np.argmax(np.where(mask, values, -np.inf)))
    where = np.unravel_index(flat, values.shape)
    return float(values[where]), tuple(int(i) for i in where)  # type: ignore[return-value]


def _offset(index: Sequence[int], box: tuple[slice, ...]) -> Voxel:
    return tuple(int(i) + window.start for i, window in zip(index, box, strict=True))  # type: ignore[return-value]


def _voxel(index: Sequence[int]) -> Voxel:
    return tuple(int(i) for i in index)  # type: ignore[return-value]


def _world(image: PetImage, voxel: Voxel) -> WorldMm:
    return tuple(float(x) for x in image.voxel_to_world(np.array(voxel)))  # type: ignore[return-value]


def _affine_text(affine: np.ndarray) -> str:
    return str(np.round(affine[:3], 3).tolist()) if affine.shape == (4, 4) else str(affine.tolist())
