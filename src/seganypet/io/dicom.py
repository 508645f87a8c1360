"""Reading a PET (Modality PT) DICOM series into a PetImage in SUV.

Array axes are (column, row, slice): each slice's pixel array (rows, columns) is transposed and the
slices are stacked along the third axis in ascending order along the slice normal (the cross
product of the row and column directions of ImageOrientationPatient). This is the layout that
dicom2nifti-style converters write, so a series converted to NIfTI keeps its array and voxel
indices. The affine maps those indices to RAS+ millimetres (DICOM's LPS with x and y negated).

Policies:

* Non-image objects in the folder (RTSTRUCT, SEG, RWVM, SR, ...) are ignored; files that are not
  DICOM at all are skipped silently.
* Files repeating a SOPInstanceUID are read once. Distinct instances at the same slice position
  (several time frames or gates in one series) are refused: a 3D image needs one frame.
* Slice spacing counts as uniform when every slice lies within 0.01 mm or 5% of the spacing
  (whichever is larger) of the evenly spaced grid from the first to the last slice; that grid is
  the affine. The bound is on the misplacement of a slice, the error of not resampling. Scanners
  round positions at bed boundaries (the GE whole-body test series is off by up to 0.04 mm, 1.2%
  of its 3.27 mm spacing), and resampling such a series would only blur it. Beyond the bound
  (missing slices, mixed spacings) the slices are resampled linearly to a uniform grid at the
  median spacing, starting at the first slice; a warning says so and
  ``metadata["resampled_slices"]`` records the original positions.
* A single slice gets SpacingBetweenSlices, else SliceThickness, else 1 mm as its thickness.
"""

from __future__ import annotations

import os
import struct
import warnings
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, time
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from seganypet.errors import InputError
from seganypet.image import PetImage
from seganypet.io.suv import LbmFormula, SuvOverrides, SuvResult, suv_factor

PET_MODALITY = "PT"
# Objects that share a folder with images but are not images themselves.
NON_IMAGE_MODALITIES = frozenset(
    {"RTSTRUCT", "SEG", "RWV", "SR", "PR", "KO", "REG", "RTPLAN", "RTRECORD", "DOC", "FID", "PLAN"}
)
POSITION_TOLERANCE_MM = 0.01
SPACING_RELATIVE_TOLERANCE = 0.05
ORIENTATION_TOLERANCE = 1e-4


@dataclass
class _SeriesFile:
    path: Path
    header: Dataset


def read_dicom_image(
    path: str | os.PathLike,
    series_uid: str | None = None,
    suv_type: str | None = "bw",
    weight_kg: float | None = None,
    dose_mbq: float | None = None,
    injection_time: str | datetime | time | None = None,
    height_cm: float | None = None,
    sex: str | None = None,
    lbm_formula: LbmFormula = "janmahasatian",
) -> PetImage:
    """Read one PET series from a folder (searched recursively) or a single DICOM file, in SUV.

    ``series_uid`` picks a series when the folder holds several PT series. ``suv_type`` is bw,
    lbm, bsa or ibw; ``None`` reads the values in the series' own Units with no SUV conversion
    (for inspecting a series that is not quantitative). ``weight_kg``, ``dose_mbq``, ``injection_time`` (HHMMSS, HH:MM[:SS] or
    YYYYMMDDHHMMSS), ``height_cm`` and ``sex`` replace the header values (or supply missing ones).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    files = _read_headers(path)
    if not files:
        where = " in this folder (searched recursively)" if path.is_dir() else ""
        raise InputError(
            f"{path}: no DICOM files found{where}; "
            "give a folder holding the PET series or one of its .dcm files"
        )
    series = _choose_pet_series(path, files, series_uid)
    series = _unique_instances(series)
    _refuse_multiframe(path, series)
    geometry = _SliceGeometry.of(path, [f.header for f in series])
    headers = [series[i].header for i in geometry.order]

    overrides = SuvOverrides(
        weight_kg=weight_kg,
        dose_mbq=dose_mbq,
        injection_time=injection_time,
        height_cm=height_cm,
        sex=sex,
    )
    if suv_type is None:
        units = str(headers[0].get("Units", "") or "unknown units").upper()
        suv = SuvResult(1.0, "none", units, "values in the series' own units, no SUV conversion")
    else:
        try:
            suv = suv_factor(headers, suv_type, overrides, lbm_formula=lbm_formula)
        except InputError as exc:
            raise InputError(f"{path}: {exc}") from None

    volume = _read_volume(path, [series[i].path for i in geometry.order], suv.factor)
    if not np.isfinite(volume).all():
        bad = int((~np.isfinite(volume)).sum())
        raise InputError(
            f"{path}: {bad} voxels came out NaN or infinite after rescale and SUV conversion; "
            "check RescaleSlope/RescaleIntercept and the SUV header fields"
        )
    metadata = _metadata(path, headers, suv)
    affine = geometry.affine()
    if not geometry.uniform:
        volume, affine, resampled = geometry.resample(volume)
        metadata["resampled_slices"] = resampled
        warnings.warn(
            f"{path}: slice spacing is not uniform ({resampled['spacing_min_mm']:.4g} to "
            f"{resampled['spacing_max_mm']:.4g} mm); resampled linearly to "
            f"{volume.shape[2]} slices at the median spacing {resampled['spacing_mm']:.4g} mm. "
            "The original slice positions are in metadata['resampled_slices']",
            UserWarning,
            stacklevel=2,
        )
    units = suv.units_in if suv_type is None else suv.units
    return PetImage(volume, affine, units=units, metadata=metadata, dicom_headers=headers)


@dataclass(frozen=True)
class SeriesSummary:
    uid: str
    modality: str
    description: str
    instances: int


def list_dicom_series(path: str | os.PathLike) -> list[SeriesSummary]:
    """Every series under ``path`` (searched recursively), PET or not."""
    by_series: dict[str, list[_SeriesFile]] = defaultdict(list)
    for f in _read_headers(Path(path)):
        by_series[str(f.header.get("SeriesInstanceUID", "") or "no SeriesInstanceUID")].append(f)
    return [
        SeriesSummary(
            uid,
            _modality(members),
            str(members[0].header.get("SeriesDescription", "") or ""),
            len(members),
        )
        for uid, members in by_series.items()
    ]


# --------------------------------------------------------------------------------------------
# Discovery
# --------------------------------------------------------------------------------------------


def _read_headers(path: Path) -> list[_SeriesFile]:
    candidates = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    files = []
    for candidate in candidates:
        header = _read_header(candidate)
        if header is not None:
            files.append(_SeriesFile(candidate, header))
    return files


def _read_header(path: Path) -> Dataset | None:
    """The header without pixel data, or None for a file that is not DICOM."""
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError:
        return None
    except Exception as exc:  # pydicom raises many kinds of errors on damaged files
        if _has_dicom_preamble(path) and isinstance(exc, (struct.error, EOFError)):
            raise InputError(
                f"{path}: truncated: the file ends inside a DICOM element ({exc}); it was cut "
                "short when copied or exported. Copy or export it again, or remove it"
            ) from None
        if _has_dicom_preamble(path):
            raise InputError(
                f"{path}: a damaged DICOM file ({type(exc).__name__}: {exc}); re-export or remove it"
            ) from None
        return None


def _has_dicom_preamble(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def _choose_pet_series(
    path: Path, files: list[_SeriesFile], series_uid: str | None
) -> list[_SeriesFile]:
    by_series: dict[str, list[_SeriesFile]] = defaultdict(list)
    for f in files:
        uid = f.header.get("SeriesInstanceUID")
        if uid:
            by_series[str(uid)].append(f)
    pet = {uid: members for uid, members in by_series.items() if _modality(members) == PET_MODALITY}

    if series_uid is not None:
        if series_uid in pet:
            return pet[series_uid]
        if series_uid in by_series:
            raise InputError(
                f"{path}: series {series_uid} is a {_modality(by_series[series_uid])} series, "
                f"not PET (Modality PT); {_pet_choice_hint(pet)}"
            )
        raise InputError(
            f"{path}: no series with SeriesInstanceUID {series_uid}; {_pet_choice_hint(pet)}"
        )

    if len(pet) == 1:
        return next(iter(pet.values()))
    if len(pet) > 1:
        listing = "; ".join(_describe_series(uid, members) for uid, members in pet.items())
        raise InputError(
            f"{path}: the folder holds {len(pet)} PET series: {listing}. Pick one with --series UID"
        )
    images = {
        uid: members
        for uid, members in by_series.items()
        if _modality(members) not in NON_IMAGE_MODALITIES
    }
    if images:
        kinds = "; ".join(
            f"a {_modality(members)} series ({_describe_series(uid, members)})"
            for uid, members in images.items()
        )
        raise InputError(
            f"{path}: no PET series here: found {kinds}, not PET (Modality PT). "
            "Give the folder of the PET series"
        )
    others = sorted({_modality(members) for members in by_series.values()})
    found = f" (only {', '.join(others)} objects)" if others else ""
    raise InputError(f"{path}: no PET image series found{found}; give the folder of the PET series")


def _modality(members: list[_SeriesFile]) -> str:
    return str(members[0].header.get("Modality", "") or "unknown modality").upper()


def _describe_series(uid: str, members: list[_SeriesFile]) -> str:
    description = str(members[0].header.get("SeriesDescription", "") or "no description")
    return f"UID {uid} ({description!r}, {len(members)} slice{'s' if len(members) != 1 else ''})"


def _pet_choice_hint(pet: dict[str, list[_SeriesFile]]) -> str:
    if not pet:
        return "the folder holds no PET series"
    return "PET series here: " + "; ".join(_describe_series(u, m) for u, m in pet.items())


def _unique_instances(series: list[_SeriesFile]) -> list[_SeriesFile]:
    """Drop files that repeat a SOPInstanceUID (the same instance copied twice)."""
    seen: set[str] = set()
    unique = []
    for f in series:
        uid = str(f.header.get("SOPInstanceUID", "")) or str(f.path)
        if uid not in seen:
            seen.add(uid)
            unique.append(f)
    return unique


def _refuse_multiframe(path: Path, series: list[_SeriesFile]) -> None:
    for f in series:
        frames = f.header.get("NumberOfFrames")
        if frames is not None and int(frames) > 1:
            raise InputError(
                f"{f.path}: a multi-frame (enhanced) PET object with {int(frames)} frames; only "
                "classic single-frame PET series are supported. Export the series as one file per slice"
            )


# --------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------


@dataclass
class _SliceGeometry:
    """Where the slices of a series lie: sorted order, positions along the normal, directions."""

    path: Path
    order: list[int]
    row_direction: np.ndarray  # world direction of increasing column index (LPS)
    column_direction: np.ndarray  # world direction of increasing row index (LPS)
    normal: np.ndarray
    pixel_spacing: tuple[float, float]  # (between rows, between columns), DICOM order
    positions: np.ndarray  # ImagePositionPatient of the sorted slices (LPS)
    distances: np.ndarray  # their projections on the normal, ascending
    single_slice_thickness: float

    @classmethod
    def of(cls, path: Path, headers: list[Dataset]) -> _SliceGeometry:
        first = headers[0]
        orientation = _required_floats(path, first, "ImageOrientationPatient", 6)
        spacing = _required_floats(path, first, "PixelSpacing", 2)
        for header in headers[1:]:
            if not np.allclose(
                _required_floats(path, header, "ImageOrientationPatient", 6),
                orientation,
                atol=ORIENTATION_TOLERANCE,
            ):
                raise InputError(
                    f"{path}: the slices have different ImageOrientationPatient; they do not "
                    "form one 3D volume"
                )
            if not np.allclose(
                _required_floats(path, header, "PixelSpacing", 2), spacing, atol=1e-4
            ):
                raise InputError(
                    f"{path}: the slices have different PixelSpacing; they do not form one 3D volume"
                )
            for keyword in ("Rows", "Columns"):
                if header.get(keyword) != first.get(keyword):
                    raise InputError(
                        f"{path}: the slices have different {keyword}; they do not form one 3D volume"
                    )
        row_direction = orientation[:3] / np.linalg.norm(orientation[:3])
        column_direction = orientation[3:] / np.linalg.norm(orientation[3:])
        normal = np.cross(row_direction, column_direction)
        if np.linalg.norm(normal) < 0.5:
            raise InputError(f"{path}: ImageOrientationPatient {list(orientation)} is degenerate")
        normal = normal / np.linalg.norm(normal)
        positions = np.array(
            [_required_floats(path, h, "ImagePositionPatient", 3) for h in headers]
        )
        distances = positions @ normal
        order = [int(i) for i in np.argsort(distances, kind="stable")]
        sorted_distances = distances[order]
        _refuse_duplicate_positions(path, [headers[i] for i in order], sorted_distances)
        thickness = _float_or_none(first.get("SpacingBetweenSlices")) or _float_or_none(
            first.get("SliceThickness")
        )
        return cls(
            path=path,
            order=order,
            row_direction=row_direction,
            column_direction=column_direction,
            normal=normal,
            pixel_spacing=(float(spacing[0]), float(spacing[1])),
            positions=positions[order],
            distances=sorted_distances,
            single_slice_thickness=float(thickness) if thickness and thickness > 0 else 1.0,
        )

    @property
    def gaps(self) -> np.ndarray:
        return np.diff(self.distances)

    @property
    def median_spacing(self) -> float:
        return (
            float(np.median(self.gaps)) if len(self.distances) > 1 else self.single_slice_thickness
        )

    @property
    def uniform(self) -> bool:
        """Whether every slice lies close enough to the evenly spaced grid from first to last."""
        count = len(self.distances)
        if count < 3:
            return True
        even = np.linspace(self.distances[0], self.distances[-1], count)
        spacing = (self.distances[-1] - self.distances[0]) / (count - 1)
        tolerance = max(POSITION_TOLERANCE_MM, SPACING_RELATIVE_TOLERANCE * spacing)
        return bool(np.all(np.abs(self.distances - even) <= tolerance))

    def _slice_step(self, spacing: float) -> np.ndarray:
        """World (LPS) offset between consecutive slices ``spacing`` mm apart along the normal."""
        if len(self.distances) < 2:
            return self.normal * spacing
        # Follow the slice positions themselves (this keeps any in-plane drift, e.g. gantry tilt).
        direction = (self.positions[-1] - self.positions[0]) / (
            self.distances[-1] - self.distances[0]
        )
        return direction * spacing

    def _affine(self, spacing: float) -> np.ndarray:
        lps = np.eye(4)
        lps[:3, 0] = self.row_direction * self.pixel_spacing[1]
        lps[:3, 1] = self.column_direction * self.pixel_spacing[0]
        lps[:3, 2] = self._slice_step(spacing)
        lps[:3, 3] = self.positions[0]
        return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps

    def affine(self) -> np.ndarray:
        """RAS+ affine of the sorted slices (uniform spacing: mean step first to last)."""
        if len(self.distances) < 2:
            return self._affine(self.single_slice_thickness)
        spacing = (self.distances[-1] - self.distances[0]) / (len(self.distances) - 1)
        return self._affine(float(spacing))

    def resample(self, volume: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """Linear resampling along the slice axis onto a uniform grid at the median spacing."""
        spacing = self.median_spacing
        start = self.distances[0]
        count = int(np.floor((self.distances[-1] - start) / spacing + 1e-6)) + 1
        targets = start + spacing * np.arange(count)
        lower = np.clip(
            np.searchsorted(self.distances, targets, side="right") - 1, 0, len(self.distances) - 2
        )
        weights = (targets - self.distances[lower]) / (
            self.distances[lower + 1] - self.distances[lower]
        )
        weights = np.clip(weights, 0.0, 1.0)
        resampled = np.empty(volume.shape[:2] + (count,), dtype=np.float32)
        for k in range(count):
            below = volume[:, :, lower[k]].astype(np.float64)
            above = volume[:, :, lower[k] + 1].astype(np.float64)
            resampled[:, :, k] = (1.0 - weights[k]) * below + weights[k] * above
        record = {
            "original_positions_mm": [float(d) for d in self.distances],
            "original_image_positions_lps": [[float(v) for v in p] for p in self.positions],
            "spacing_mm": spacing,
            "spacing_min_mm": float(self.gaps.min()),
            "spacing_max_mm": float(self.gaps.max()),
            "original_slice_count": len(self.distances),
        }
        return resampled, self._affine(spacing), record


def _refuse_duplicate_positions(path: Path, headers: list[Dataset], distances: np.ndarray) -> None:
    if len(distances) < 2:
        return
    duplicates = np.abs(np.diff(distances)) < POSITION_TOLERANCE_MM
    if not duplicates.any():
        return
    unique_positions = int(len(distances) - duplicates.sum())
    frames = headers[0].get("NumberOfTimeSlices")
    frame_note = f" (NumberOfTimeSlices {frames})" if frames else ""
    raise InputError(
        f"{path}: {len(distances)} slices share {unique_positions} positions: the series holds "
        f"several time frames or gates{frame_note}. A 3D PET image needs one frame; export a "
        "single static frame as its own series"
    )


def _required_floats(path: Path, header: Dataset, keyword: str, count: int) -> np.ndarray:
    value = header.get(keyword)
    try:
        numbers = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        numbers = np.array([])
    if numbers.size != count or not np.isfinite(numbers).all():
        raise InputError(
            f"{path}: {keyword} is missing or malformed in {header.get('SOPInstanceUID', 'a slice')}; "
            "the slice geometry is unknown"
        )
    return numbers


def _iso_date(value: str | None) -> str | None:
    """A DICOM date (YYYYMMDD) as YYYY-MM-DD; anything else as it is."""
    if value and len(value) == 8 and value.isdigit():
        return f"{value[:4]}-{value[4:6]}-{value[6:]}"
    return value


def _float_or_none(value: Any) -> float | None:
    try:
        return float(value) if value is not None and str(value).strip() else None
    except (TypeError, ValueError):
        return None


# --------------------------------------------------------------------------------------------
# Pixels
# --------------------------------------------------------------------------------------------


def _read_slice(file: Path) -> Dataset:
    """A slice with its pixel data, refused with the reason when the file was cut short."""
    try:
        dataset = pydicom.dcmread(file)
    except (struct.error, EOFError) as exc:
        raise InputError(
            f"{file}: truncated: the file ends inside a DICOM element ({exc}); it was cut short "
            "when copied or exported. Copy or export it again"
        ) from None
    if "PixelData" not in dataset:
        raise InputError(
            f"{file}: no pixel data; the file is truncated or holds only a header. Copy or "
            "export it again"
        )
    syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is not None and not syntax.is_compressed:
        expected = _uncompressed_pixel_bytes(dataset)
        stored = len(dataset.PixelData)
        if expected is not None and stored < expected:
            raise InputError(
                f"{file}: truncated: its pixel data holds {stored} of the {expected} bytes that "
                f"{dataset.get('Rows')} rows × {dataset.get('Columns')} columns × "
                f"{dataset.get('BitsAllocated')} bits need; the file was cut short when copied "
                "or exported. Copy or export it again"
            )
    return dataset


def _uncompressed_pixel_bytes(dataset: Dataset) -> int | None:
    try:
        count = (
            int(dataset.Rows)
            * int(dataset.Columns)
            * int(dataset.get("SamplesPerPixel", 1))
            * int(dataset.get("NumberOfFrames", 1) or 1)
        )
        return count * int(dataset.BitsAllocated) // 8
    except (AttributeError, TypeError, ValueError):
        return None


RESCALE_TAGS = {"RescaleSlope": "(0028,1053)", "RescaleIntercept": "(0028,1052)"}


def _rescale_value(file: Path, dataset: Dataset, keyword: str) -> float | None:
    """A slice's RescaleSlope or RescaleIntercept: None when absent or empty (slope 1, intercept
    0), else one finite number (a non-zero one for the slope); anything else is refused, never
    read as 1 or 0."""
    value = dataset.get(keyword)
    if value is None or not str(value).strip(" \x00"):
        return None
    number = _float_or_none(value)
    if number is None or not np.isfinite(number) or (keyword == "RescaleSlope" and number == 0):
        shown = str(value) if str(value).isprintable() else repr(str(value))
        need = "one finite non-zero number" if keyword == "RescaleSlope" else "one finite number"
        raise InputError(
            f"{file}: {keyword} {RESCALE_TAGS[keyword]} is {shown}, not {need}, so the slice's "
            "values cannot be read. Fix the header or re-export the series"
        )
    return number


def _read_volume(path: Path, files: list[Path], factor: float) -> np.ndarray:
    """Stack the slices as (column, row, slice), rescaled per slice in float64, times the SUV factor."""
    volume: np.ndarray | None = None
    for k, file in enumerate(files):
        dataset = _read_slice(file)
        try:
            pixels = dataset.pixel_array
        except Exception as exc:  # no decoder for the transfer syntax, or damaged pixel data
            syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", "unknown")
            raise InputError(
                f"{file}: cannot decode the pixel data (transfer syntax {syntax}: {exc}); "
                "decompress the series (for example with dcmdjpeg or gdcmconv --raw) or install "
                "pylibjpeg"
            ) from None
        if pixels.ndim != 2:
            raise InputError(f"{file}: expected a 2D slice, got pixel data of shape {pixels.shape}")
        slope = _rescale_value(file, dataset, "RescaleSlope")
        intercept = _rescale_value(file, dataset, "RescaleIntercept")
        if volume is None:
            volume = np.empty((pixels.shape[1], pixels.shape[0], len(files)), dtype=np.float32)
        with np.errstate(over="ignore", invalid="ignore"):  # non-finite results are refused later
            values = pixels.astype(np.float64) * (1.0 if slope is None else slope) + (
                0.0 if intercept is None else intercept
            )
            volume[:, :, k] = (values * factor).T
    assert volume is not None
    return volume


# --------------------------------------------------------------------------------------------
# Metadata
# --------------------------------------------------------------------------------------------


def _metadata(path: Path, headers: list[Dataset], suv: SuvResult) -> dict[str, Any]:
    first = headers[0]
    sequence = first.get("RadiopharmaceuticalInformationSequence") or [Dataset()]
    radiopharmaceutical = sequence[0]

    def text(keyword: str, dataset: Dataset = first) -> str | None:
        value = dataset.get(keyword)
        return str(value).strip() if value is not None and str(value).strip() else None

    def number(keyword: str, dataset: Dataset = first) -> float | None:
        value = suv.tags_used.get(keyword)  # the value the SUV factor used, where it used one
        return _float_or_none(dataset.get(keyword) if value is None else value)

    def code_meaning(keyword: str) -> str | None:
        codes = radiopharmaceutical.get(keyword) or [Dataset()]
        return text("CodeMeaning", codes[0])

    study_date = text("StudyDate") or text("SeriesDate")

    return {
        "source": str(path),
        "format": "dicom",
        "modality": text("Modality"),
        "series_uid": text("SeriesInstanceUID"),
        "series_description": text("SeriesDescription"),
        "series_number": text("SeriesNumber"),
        "study_uid": text("StudyInstanceUID"),
        "frame_of_reference_uid": text("FrameOfReferenceUID"),
        "patient_id": text("PatientID"),
        "patient_name": text("PatientName"),
        "study_date": _iso_date(study_date),
        "radiopharmaceutical": text("Radiopharmaceutical", radiopharmaceutical)
        or code_meaning("RadiopharmaceuticalCodeSequence"),
        "radionuclide": code_meaning("RadionuclideCodeSequence"),
        "patient_weight_kg": number("PatientWeight"),
        "patient_size_m": number("PatientSize"),
        "patient_sex": text("PatientSex"),
        "injected_dose_bq": number("RadionuclideTotalDose", radiopharmaceutical),
        "manufacturer": text("Manufacturer"),
        "units": suv.units_in,
        "suv_type": suv.suv_type,
        "suv_factor": suv.factor,
        "suv_method": suv.method,
        "suv_tags": suv.tags_used,
        "suv_supplied": suv.supplied,
        "decay_seconds": suv.decay_seconds,
        "slice_count": len(headers),
    }


__all__ = ["SeriesSummary", "list_dicom_series", "read_dicom_image"]
