"""Evaluation data: finding the cases of a data folder or manifest, and the objects of a case.

Three kinds of ``--data`` are recognised:

- **nnU-Net raw layout**: a folder with ``dataset.json``, ``imagesTr/<case>_<channel>.nii.gz``
  and ``labelsTr/<case>.nii.gz`` (``file_ending`` from ``dataset.json``). The PET channel is the
  one whose ``channel_names`` entry names PET or SUV (``0000`` when there is one channel). Label
  names come from ``dataset.json``'s ``labels`` (v2 ``{"name": value}`` or v1 ``{"value": "name"}``).
- **Crops layout** (the IBSI sarcoma crops): a folder of case folders, each holding
  ``PET_image.nii.gz`` and ``PET_mask.nii.gz``; label 1 is named ``GTV``.
- **Manifest**: a JSON file, either a list of cases or ``{"cases": [...], "lesion_labels": [...]}``.
  A case is ``{"case": "name", "image": PATH, "mask": PATH, "roi": ["GTV_Mass"],
  "labels": {"1": "GTV"}, "lesion_labels": ["GTV"], "liver_centre": [i, j, k]}``; only ``image``
  and ``mask`` are required. Paths are relative to the manifest's folder. The image is NIfTI in
  SUV or DICOM PT (converted to SUVbw); the mask is a NIfTI label map, a DICOM SEG or an RTSTRUCT
  (``roi`` picks ROIs or segments by name), loaded by :func:`seganypet.io.masks.load_mask`.
  ``labels`` names the values of a NIfTI label map.

**Objects.** Every label value of a case is an object; a *lesion label* is split into its
26-connected components, each one object (``<label>_<k>``, k = 1, 2, … in decreasing volume).
Objects smaller than ``MIN_OBJECT_ML`` (0.1 ml, the rule the training crops use) are skipped and
counted. A label is a lesion label when its name contains one of ``LESION_NAME_WORDS``
(case-insensitive), unless lesion labels are named explicitly.

**Liver reference** (for the PERCIST baseline): the manifest's ``liver_centre``, else the most
interior voxel of a label named ``liver``; none otherwise.
"""

from __future__ import annotations

import fnmatch
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from seganypet.errors import InputError
from seganypet.image import PetImage
from seganypet.prompts import most_interior_voxel

MIN_OBJECT_ML = 0.1
LESION_NAME_WORDS = ("lesion", "tumor", "tumour", "gtv", "metasta", "lymphoma", "mass")
LIVER_LABEL_NAME = "liver"
CROPS_IMAGE_NAME = "PET_image.nii.gz"
CROPS_MASK_NAME = "PET_mask.nii.gz"
CROPS_LABEL_NAME = "GTV"
CONNECTIVITY_26 = np.ones((3, 3, 3), dtype=bool)

Voxel = tuple[int, int, int]


@dataclass(frozen=True)
class CaseSource:
    """Where one case's image and mask are, and what its labels are called."""

    case: str
    image: Path
    mask: Path
    dataset: str
    label_names: dict[int, str] = field(default_factory=dict)
    roi_names: tuple[str, ...] | None = None
    lesion_labels: tuple[str, ...] | None = None
    liver_centre: Voxel | None = None


@dataclass(frozen=True)
class EvaluationObject:
    """One object of a case: a label, or one connected component of a lesion label.

    ``box`` is its bounding box on the image grid and ``crop`` its mask inside that box.
    """

    case: str
    name: str
    label: int
    label_name: str
    is_lesion: bool
    volume_ml: float
    box: tuple[slice, ...]
    crop: np.ndarray

    def mask(self, shape: Sequence[int]) -> np.ndarray:
        """The object's mask on the whole image grid."""
        full = np.zeros(tuple(shape), dtype=bool)
        full[self.box] = self.crop
        return full


@dataclass
class LoadedCase:
    """A case read into memory: the image, its label map and the objects found in it."""

    source: CaseSource
    image: PetImage
    labels: np.ndarray
    label_names: dict[int, str]
    objects: list[EvaluationObject]
    skipped_small: int
    lesion_mask: np.ndarray
    liver_centre: Voxel | None


# ------------------------------------------------------------------------------ discovery


def discover_cases(
    data: Sequence[str | os.PathLike], case_patterns: Sequence[str] | None = None
) -> list[CaseSource]:
    """Every case of the ``--data`` folders or manifests, filtered by ``case_patterns``.

    A pattern is a case name or a shell glob (``STS_01*``). Case names must be unique; when two
    data sets share a name, both are qualified as ``<data folder>/<case>``.
    """
    if not data:
        raise InputError("no data given: pass --data DIR (or a manifest .json) at least once")
    sources: list[CaseSource] = []
    for item in data:
        sources.extend(_cases_of(Path(item)))
    sources = _qualify_duplicates(sources)
    if case_patterns:
        sources = _select(sources, case_patterns)
    if not sources:
        raise InputError("the data holds no cases to evaluate")
    return sources


def _cases_of(path: Path) -> list[CaseSource]:
    if not path.exists():
        raise InputError(f"--data {path}: no such file or folder")
    if path.is_file():
        if path.suffix.lower() != ".json":
            raise InputError(
                f"--data {path}: a data file must be a JSON manifest; give a folder in nnU-Net "
                "raw layout, a folder of case folders with PET_image.nii.gz and PET_mask.nii.gz, "
                "or a manifest .json"
            )
        return _manifest_cases(path)
    if (path / "dataset.json").is_file():
        return _nnunet_cases(path)
    crops = sorted(p for p in path.iterdir() if (p / CROPS_IMAGE_NAME).is_file())
    if crops:
        return [_crop_case(folder, path.name) for folder in crops]
    raise InputError(
        f"--data {path}: not a data folder this command knows. Give a folder in nnU-Net raw "
        "layout (dataset.json, imagesTr/, labelsTr/), a folder of case folders each holding "
        f"{CROPS_IMAGE_NAME} and {CROPS_MASK_NAME}, or a manifest .json"
    )


def _crop_case(folder: Path, dataset: str) -> CaseSource:
    mask = folder / CROPS_MASK_NAME
    if not mask.is_file():
        raise InputError(f"{folder}: has {CROPS_IMAGE_NAME} but no {CROPS_MASK_NAME}")
    return CaseSource(
        case=folder.name,
        image=folder / CROPS_IMAGE_NAME,
        mask=mask,
        dataset=dataset,
        label_names={1: CROPS_LABEL_NAME},
    )


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None


def _nnunet_cases(folder: Path) -> list[CaseSource]:
    description = _read_json(folder / "dataset.json")
    if not isinstance(description, dict):
        raise InputError(f"{folder / 'dataset.json'}: expected a JSON object")
    ending = str(description.get("file_ending", ".nii.gz"))
    channel = _pet_channel(description, folder)
    label_names = _nnunet_label_names(description.get("labels", {}), folder)
    images, labels = folder / "imagesTr", folder / "labelsTr"
    if not images.is_dir() or not labels.is_dir():
        raise InputError(f"{folder}: an nnU-Net raw folder needs imagesTr/ and labelsTr/")
    cases = []
    for label_file in sorted(labels.glob(f"*{ending}")):
        case = label_file.name[: -len(ending)]
        image_file = images / f"{case}_{channel:04d}{ending}"
        if not image_file.is_file():
            raise InputError(f"{label_file}: no image {image_file.name} in {images}")
        cases.append(CaseSource(case, image_file, label_file, folder.name, dict(label_names)))
    if not cases:
        raise InputError(f"{labels}: no label maps ending in {ending}")
    return cases


def _pet_channel(description: dict, folder: Path) -> int:
    channels = description.get("channel_names", description.get("modality", {"0": "PET"}))
    if not isinstance(channels, dict) or not channels:
        return 0
    if len(channels) == 1:
        return int(next(iter(channels)))
    pet = [int(k) for k, v in channels.items() if any(w in str(v).upper() for w in ("PET", "SUV"))]
    if len(pet) != 1:
        raise InputError(
            f"{folder / 'dataset.json'}: cannot tell which channel is PET among {channels}; "
            "name exactly one channel PET"
        )
    return pet[0]


def _nnunet_label_names(labels: object, folder: Path) -> dict[int, str]:
    if not isinstance(labels, dict):
        raise InputError(f"{folder / 'dataset.json'}: 'labels' must be an object")
    names: dict[int, str] = {}
    for key, value in labels.items():
        if isinstance(value, int) and not isinstance(value, bool):  # v2: {"name": value}
            names[value] = str(key)
        elif str(key).isdigit():  # v1: {"value": "name"}
            names[int(key)] = str(value)
        else:
            raise InputError(
                f"{folder / 'dataset.json'}: label {key!r}: {value!r} is not a single integer "
                "value (region-based labels are not supported)"
            )
    names.pop(0, None)
    return names


def _manifest_cases(path: Path) -> list[CaseSource]:
    data = _read_json(path)
    defaults: dict = {}
    if isinstance(data, dict):
        defaults = {k: v for k, v in data.items() if k != "cases"}
        data = data.get("cases")
    if not isinstance(data, list) or not data:
        raise InputError(
            f'{path}: a manifest is a list of cases or {{"cases": [...]}}; each case is '
            '{"image": PATH, "mask": PATH} plus optional "case", "roi", "labels", '
            '"lesion_labels", "liver_centre"'
        )
    base = path.parent
    cases = []
    for index, entry in enumerate(data):
        if not isinstance(entry, dict) or "image" not in entry or "mask" not in entry:
            raise InputError(f'{path}: case {index + 1} needs "image" and "mask"')
        entry = {**defaults, **entry}
        image = (base / str(entry["image"])).resolve()
        name = str(entry.get("case") or _stem(image))
        roi = entry.get("roi")
        if isinstance(roi, str):
            roi = [roi]
        lesion_labels = entry.get("lesion_labels")
        if isinstance(lesion_labels, str):
            lesion_labels = [lesion_labels]
        cases.append(
            CaseSource(
                case=name,
                image=image,
                mask=(base / str(entry["mask"])).resolve(),
                dataset=path.stem,
                label_names=_manifest_label_names(entry.get("labels", {}), path, name),
                roi_names=tuple(str(r) for r in roi) if roi else None,
                lesion_labels=tuple(str(n) for n in lesion_labels) if lesion_labels else None,
                liver_centre=_voxel_or_none(entry.get("liver_centre"), path, name),
            )
        )
    return cases


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _manifest_label_names(labels: object, path: Path, case: str) -> dict[int, str]:
    if not isinstance(labels, dict):
        raise InputError(f'{path}: case {case}: "labels" must map label values to names')
    try:
        return {int(k): str(v) for k, v in labels.items()}
    except ValueError:
        raise InputError(
            f'{path}: case {case}: "labels" keys must be label values, e.g. {{"1": "GTV"}}'
        ) from None


def _voxel_or_none(value: object, path: Path, case: str) -> Voxel | None:
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) != 3
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise InputError(f'{path}: case {case}: "liver_centre" must be 3 voxel indices [i, j, k]')
    return (value[0], value[1], value[2])


def _qualify_duplicates(sources: list[CaseSource]) -> list[CaseSource]:
    counts: dict[str, int] = {}
    for source in sources:
        counts[source.case] = counts.get(source.case, 0) + 1
    if all(n == 1 for n in counts.values()):
        return sources
    qualified = [
        replace(s, case=f"{s.dataset}/{s.case}") if counts[s.case] > 1 else s for s in sources
    ]
    names = [s.case for s in qualified]
    if len(set(names)) != len(names):
        raise InputError("two --data sources with the same folder name hold the same case names")
    return qualified


def _select(sources: list[CaseSource], patterns: Sequence[str]) -> list[CaseSource]:
    unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(s.case, p) for s in sources)]
    if unmatched:
        examples = ", ".join(s.case for s in sources[:5])
        raise InputError(
            f"--cases: {', '.join(unmatched)} matches no case (cases look like {examples}"
            f"{', ...' if len(sources) > 5 else ''})"
        )
    return [s for s in sources if any(fnmatch.fnmatchcase(s.case, p) for p in patterns)]


# ------------------------------------------------------------------------------ loading


def load_case(
    source: CaseSource,
    lesion_labels: Sequence[str] | None = None,
    label_filter: Sequence[str] | None = None,
    min_object_ml: float = MIN_OBJECT_ML,
    find_liver: bool = True,
) -> LoadedCase:
    """Read a case's image and mask and find its objects (see the module).

    ``find_liver`` False skips looking for the liver reference (only PERCIST needs it).
    """
    from seganypet.io import load_image
    from seganypet.io.masks import load_mask

    image = load_image(source.image)
    labels, loaded_names = load_mask(source.mask, image, roi_names=source.roi_names)
    names = {**loaded_names, **source.label_names}
    present = [int(v) for v in np.unique(labels) if v != 0]
    label_names = {value: names.get(value, f"label_{value}") for value in present}
    lesion_words = source.lesion_labels or lesion_labels
    is_lesion = {v: is_lesion_label(n, lesion_words) for v, n in label_names.items()}
    lesion_mask = np.isin(labels, [v for v, lesion in is_lesion.items() if lesion])
    selected = [
        v
        for v in present
        if label_filter is None or _label_selected(v, label_names[v], label_filter)
    ]
    objects, skipped = find_objects(
        source.case, labels, label_names, is_lesion, selected, image.voxel_volume_ml, min_object_ml
    )
    liver_centre = source.liver_centre
    if liver_centre is None and find_liver:
        liver_centre = _liver_centre(labels, label_names, image.spacing)
    return LoadedCase(
        source, image, labels, label_names, objects, skipped, lesion_mask, liver_centre
    )


def is_lesion_label(name: str, lesion_labels: Sequence[str] | None = None) -> bool:
    """Whether a label's objects are its connected components (see the module)."""
    if lesion_labels is not None:
        return name.lower() in {n.lower() for n in lesion_labels}
    return any(word in name.lower() for word in LESION_NAME_WORDS)


def _label_selected(value: int, name: str, wanted: Sequence[str]) -> bool:
    return any(w.lower() == name.lower() or w == str(value) for w in wanted)


def find_objects(
    case: str,
    labels: np.ndarray,
    label_names: dict[int, str],
    is_lesion: dict[int, bool],
    values: Iterable[int],
    voxel_volume_ml: float,
    min_object_ml: float = MIN_OBJECT_ML,
) -> tuple[list[EvaluationObject], int]:
    """The objects of the given label values and how many were too small to keep."""
    objects: list[EvaluationObject] = []
    skipped = 0
    for value in values:
        name = label_names[value]
        mask = labels == value
        if is_lesion[value]:
            components, count = ndimage.label(mask, structure=CONNECTIVITY_26)
            sizes = np.bincount(components.ravel(), minlength=count + 1)[1:]
            boxes = ndimage.find_objects(components)
            order = sorted(range(count), key=lambda i: (-int(sizes[i]), i))
            kept = [i for i in order if sizes[i] * voxel_volume_ml >= min_object_ml]
            skipped += count - len(kept)
            for number, index in enumerate(kept, start=1):
                box = boxes[index]
                crop = components[box] == index + 1
                objects.append(
                    EvaluationObject(
                        case=case,
                        name=f"{name}_{number}",
                        label=value,
                        label_name=name,
                        is_lesion=True,
                        volume_ml=float(sizes[index] * voxel_volume_ml),
                        box=box,
                        crop=crop,
                    )
                )
        else:
            volume = float(mask.sum() * voxel_volume_ml)
            if volume < min_object_ml:
                skipped += 1
                continue
            box = ndimage.find_objects(mask.astype(np.int8))[0]
            objects.append(
                EvaluationObject(case, name, value, name, False, volume, box, mask[box].copy())
            )
    return objects, skipped


def _liver_centre(
    labels: np.ndarray, label_names: dict[int, str], spacing: Sequence[float]
) -> Voxel | None:
    livers = [v for v, n in label_names.items() if n.lower() == LIVER_LABEL_NAME]
    if not livers:
        return None
    return most_interior_voxel(labels == livers[0], tuple(spacing))  # type: ignore[arg-type]
