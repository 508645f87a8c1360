"""Data sets: finding the cases of data folders and manifests, and the objects of a case.

Both ``seganypet train`` and ``seganypet evaluate`` read their ``--data`` here, and both take
their prompt targets (training) and objects (evaluation) from :func:`find_objects`, so that a
model is evaluated on exactly the kind of object it was trained to segment.

Layouts
-------
``--data`` names one or more data sets (:func:`discover_cases`), each

- an **nnU-Net raw folder**: ``dataset.json``, ``imagesTr/<case>_<channel><file_ending>`` and
  ``labelsTr/<case><file_ending>`` (``file_ending`` defaults to ``.nii.gz``). The PET channel is
  the one ``channel_names`` (v1: ``modality``) names PET, PT or SUV (exactly, else the one name
  containing PET or SUV); with a single channel, that one. Label names come from ``labels``
  (v2 ``{"name": value}`` or v1 ``{"value": "name"}``; region labels, lists of values, are not
  single structures and stay unnamed). Optional ``tracer`` and ``label_quality`` (``"high"`` or
  ``"low"``) apply to every case.
- a **crops folder** (the IBSI sarcoma crops): a folder of case folders, each holding
  ``PET_image.nii.gz`` and ``PET_mask.nii.gz``; label 1 is named ``GTV``.
- a **manifest**: a ``.json`` file, a list of cases or ``{"name": ..., "cases": [...], <defaults>}``,
  or a ``.csv`` file with one case a row; or a folder holding ``manifest.json`` or
  ``manifest.csv``. A case is ``image`` and ``label`` (or ``mask``), both required, plus
  optionally ``id`` (or ``case``), ``label_names`` (or ``labels``: ``{"1": "liver"}``, nnU-Net's
  ``{"liver": 1}``, or in a CSV ``1:liver;2:lesion``), ``tracer``, ``label_quality``, ``roi``
  (RTSTRUCT ROIs or SEG segments to load, by name), ``lesion_labels`` (the names of this case's
  lesion labels, overriding the keywords) and ``liver_centre`` (``[i, j, k]``). The top level of a
  JSON manifest may give any of the optional fields as defaults for its cases; its ``name`` (else
  the file's stem, or the folder's name for ``manifest.*``) names the data set. Relative paths are
  relative to the manifest. The image is NIfTI in SUV or DICOM PT, the mask a NIfTI label map on
  the image's grid, a DICOM SEG or an RTSTRUCT (:func:`seganypet.io.masks.load_mask`); training
  reads NIfTI only.

A case is known by its ``key``, ``<data set>/<case id>``, which must be unique; its ``name`` is
the case id, or the key where two data sets hold the same case id. ``--cases`` patterns (names
or shell globs, ``STS_01*``) select cases by name.

Objects
-------
A **lesion label** is a label whose name contains one of :data:`LESION_KEYWORDS`
(case-insensitive), unless the lesion labels are named explicitly. Every other label value present
in a case is one object, the whole structure; a lesion label is split into its 26-connected
components, each one object (named ``<label>_<k>``, k = 1, 2, ... in decreasing volume), because
one click names one lesion, not all of them. nnU-Net's ``ignore`` label (unannotated voxels) is
never an object.

**Tiny objects** are skipped: an object is kept when its volume on the case's native grid is at
least :data:`MIN_OBJECT_ML` (0.1 ml; below the PET resolution, where a click teaches and measures
noise). Training additionally drops targets with fewer than ``min_target_voxels`` voxels at the
network's spacing (:mod:`seganypet.train.data`).
"""

from __future__ import annotations

import csv
import fnmatch
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from seganypet.errors import InputError

#: A label whose name contains one of these (case-insensitive) is a lesion label.
LESION_KEYWORDS = ("lesion", "tumor", "tumour", "gtv", "metasta", "lymphoma", "mass")
#: Objects below this volume (ml, on the native grid) are skipped.
MIN_OBJECT_ML = 0.1
#: nnU-Net v2's "ignore" label marks unannotated voxels: never an object.
IGNORED_LABEL_NAMES = ("ignore",)
CONNECTIVITY_26 = np.ones((3, 3, 3), dtype=bool)
PET_CHANNEL_NAMES = ("pet", "pt", "suv")
CROPS_IMAGE_NAME = "PET_image.nii.gz"
CROPS_MASK_NAME = "PET_mask.nii.gz"
CROPS_LABEL_NAME = "GTV"
MANIFEST_NAMES = ("manifest.json", "manifest.csv")
#: Case fields a JSON manifest's top level may give for all of its cases.
MANIFEST_DEFAULTS = (
    "tracer",
    "label_names",
    "labels",
    "label_quality",
    "roi",
    "lesion_labels",
    "liver_centre",
)
LAYOUTS_HELP = (
    "give a folder in nnU-Net raw layout (dataset.json, imagesTr/, labelsTr/), a folder of case "
    f"folders each holding {CROPS_IMAGE_NAME} and {CROPS_MASK_NAME}, a manifest .json or .csv, "
    "or a folder holding manifest.json or manifest.csv"
)

Voxel = tuple[int, int, int]


# ====================================================================================== cases


def shared_data_dir() -> Path | None:
    """The project's real PET data (``shared/data``, kept beside the checkout), when present.

    ``$SEGANYPET_SHARED`` names the ``shared`` folder; otherwise ``../shared`` from the working
    directory, then the folder beside the source checkout this package runs from.
    """
    candidates = (
        [Path(os.environ["SEGANYPET_SHARED"])] if os.environ.get("SEGANYPET_SHARED") else []
    )
    candidates += [Path.cwd().parent / "shared", Path(__file__).resolve().parents[3] / "shared"]
    for shared in candidates:
        if (shared / "data").is_dir():
            return (shared / "data").resolve()
    return None


@dataclass(frozen=True)
class CaseSource:
    """Where one case's image and label map are, and what is known about them."""

    dataset: str
    case_id: str
    image: Path
    label: Path  # NIfTI label map, DICOM SEG or RTSTRUCT
    label_names: dict[int, str] = field(default_factory=dict, hash=False)
    tracer: str = "unknown"
    low_quality: bool = False  # label_quality "low": noisy labels (CPCL in training)
    roi_names: tuple[str, ...] | None = None  # RTSTRUCT ROIs / SEG segments to load
    lesion_labels: tuple[str, ...] | None = None  # names of the lesion labels, else keywords
    liver_centre: Voxel | None = None
    name: str = ""  # unique among the discovered cases: the case id, or the key on a clash

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", self.case_id)

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.case_id}"


def split_entries(entries: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """``--data A,B`` and repeated entries as one list of paths."""
    if isinstance(entries, (str, os.PathLike)):
        entries = [entries]
    return [part.strip() for entry in entries for part in str(entry).split(",") if part.strip()]


def discover_cases(
    data: Sequence[str | os.PathLike],
    case_patterns: Sequence[str] | None = None,
    low_quality: Sequence[str | os.PathLike] = (),
) -> list[CaseSource]:
    """Every case of the ``data`` folders and manifests (see the module), filtered by name.

    ``case_patterns`` are case names or shell globs; ``low_quality`` entries (given as in
    ``data``) mark their cases' labels noisy.
    """
    if isinstance(data, (str, os.PathLike)):
        data = [data]
    if not data:
        raise InputError(
            "no data given: pass --data with a data folder or a manifest; " + LAYOUTS_HELP
        )
    noisy = {_resolved(p) for p in low_quality}
    sources: list[CaseSource] = []
    for entry in data:
        found = _cases_of(Path(entry).expanduser())
        if not found:
            raise InputError(f"--data {entry}: no cases found")
        if _resolved(entry) in noisy:
            found = [replace(c, low_quality=True) for c in found]
        sources.extend(found)
    sources = _unique_names(sources)
    if case_patterns:
        sources = select_cases(sources, case_patterns)
    return sources


def select_cases(sources: Sequence[CaseSource], patterns: Sequence[str]) -> list[CaseSource]:
    """The cases whose name matches one of ``patterns`` (names or shell globs)."""
    unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(s.name, p) for s in sources)]
    if unmatched:
        examples = ", ".join(s.name for s in sources[:5])
        raise InputError(
            f"--cases: {', '.join(unmatched)} matches no case (cases look like {examples}"
            f"{', ...' if len(sources) > 5 else ''})"
        )
    return [s for s in sources if any(fnmatch.fnmatchcase(s.name, p) for p in patterns)]


def _resolved(path: str | os.PathLike) -> str:
    return str(Path(path).expanduser().resolve())


def _unique_names(sources: list[CaseSource]) -> list[CaseSource]:
    seen: dict[str, CaseSource] = {}
    counts: dict[str, int] = {}
    for source in sources:
        if source.key in seen:
            raise InputError(
                f"two cases are named {source.key!r} ({seen[source.key].image} and "
                f"{source.image}); give each data set its own name"
            )
        seen[source.key] = source
        counts[source.case_id] = counts.get(source.case_id, 0) + 1
    return [replace(s, name=s.key) if counts[s.case_id] > 1 else s for s in sources]


def _cases_of(path: Path) -> list[CaseSource]:
    if not path.exists():
        raise InputError(f"--data {path}: no such file or folder")
    if path.is_file():
        if path.suffix.lower() not in (".json", ".csv"):
            raise InputError(f"--data {path}: a data file must be a manifest; " + LAYOUTS_HELP)
        return _manifest_cases(path)
    if (path / "dataset.json").is_file():
        return _nnunet_cases(path)
    for name in MANIFEST_NAMES:
        if (path / name).is_file():
            return _manifest_cases(path / name)
    crops = sorted(p for p in path.iterdir() if (p / CROPS_IMAGE_NAME).is_file())
    if crops:
        return [_crop_case(folder, path.name) for folder in crops]
    raise InputError(f"--data {path}: not a data folder this command knows; " + LAYOUTS_HELP)


def read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read it as JSON ({exc})") from None


# -------------------------------------------------------------------------------- layouts


def _nnunet_cases(folder: Path) -> list[CaseSource]:
    where = folder / "dataset.json"
    description = read_json(where)
    if not isinstance(description, dict):
        raise InputError(f"{where}: expected a JSON object")
    ending = str(description.get("file_ending", ".nii.gz"))
    channels = description.get("channel_names", description.get("modality", {"0": "PET"}))
    channel = pet_channel(channels, where)
    names = parse_label_names(description.get("labels"), str(where))
    tracer = str(description.get("tracer") or "unknown")
    low = _is_low_quality(description.get("label_quality"), str(where))
    images, labels = folder / "imagesTr", folder / "labelsTr"
    if not images.is_dir() or not labels.is_dir():
        raise InputError(f"{folder}: an nnU-Net raw folder needs imagesTr/ and labelsTr/")
    cases = []
    for label in sorted(labels.glob(f"*{ending}")):
        case_id = label.name[: -len(ending)]
        image = images / f"{case_id}_{channel:04d}{ending}"
        if not image.is_file():
            raise InputError(f"{label}: its image {image.name} is missing from {images}")
        cases.append(CaseSource(folder.name, case_id, image, label, dict(names), tracer, low))
    return cases


def pet_channel(channels: object, where: str | os.PathLike = "dataset.json") -> int:
    """The PET channel of nnU-Net ``channel_names`` (see the module)."""
    if not isinstance(channels, dict) or not channels:
        return 0
    numbered = {int(k): str(v) for k, v in channels.items() if str(k).strip().isdigit()}
    exact = [k for k, v in numbered.items() if v.strip().lower() in PET_CHANNEL_NAMES]
    if len(exact) == 1:
        return exact[0]
    named = [k for k, v in numbered.items() if any(w in v.upper() for w in ("PET", "SUV"))]
    if len(named) == 1:
        return named[0]
    if len(numbered) == 1:
        return next(iter(numbered))
    raise InputError(
        f"{where}: cannot tell which channel is PET among {channels}; name exactly one channel PET"
    )


def _crop_case(folder: Path, dataset: str) -> CaseSource:
    mask = folder / CROPS_MASK_NAME
    if not mask.is_file():
        raise InputError(f"{folder}: has {CROPS_IMAGE_NAME} but no {CROPS_MASK_NAME}")
    return CaseSource(dataset, folder.name, folder / CROPS_IMAGE_NAME, mask, {1: CROPS_LABEL_NAME})


def _manifest_cases(path: Path) -> list[CaseSource]:
    base = path.parent
    dataset = path.stem if path.stem != "manifest" else base.name
    defaults: dict[str, object] = {}
    if path.suffix.lower() == ".csv":
        try:
            with open(path, newline="", encoding="utf-8") as f:
                rows: object = list(csv.DictReader(f))
        except (OSError, csv.Error, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: cannot read it as CSV ({exc})") from None
    else:
        rows = read_json(path)
        if isinstance(rows, dict):
            defaults = {k: rows[k] for k in MANIFEST_DEFAULTS if k in rows}
            dataset = str(rows.get("name") or dataset)
            rows = rows.get("cases")
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        raise InputError(
            f'{path}: a manifest is a list of cases or {{"cases": [...]}}; each case is '
            '{"image": PATH, "label": PATH} plus optional "id", "label_names", "tracer", '
            '"label_quality", "roi", "lesion_labels", "liver_centre"'
        )
    return [
        _manifest_case(row, defaults, base, dataset, f"{path}, case {number}")
        for number, row in enumerate(rows, start=1)
    ]


def _manifest_case(
    row: dict, defaults: dict[str, object], base: Path, dataset: str, where: str
) -> CaseSource:
    row = {k: v for k, v in row.items() if v not in (None, "")}  # empty CSV cells
    if "label" in row and "mask" in row:
        raise InputError(f"{where}: give 'label' or 'mask', not both")
    row["label"] = row.get("label", row.get("mask"))
    if not row.get("image") or not row.get("label"):
        raise InputError(f"{where}: every case needs 'image' and 'label' (or 'mask')")
    entry = {**defaults, **row}
    image, label = (_manifest_path(base, entry[k], where) for k in ("image", "label"))
    names = entry.get("label_names", entry.get("labels"))
    return CaseSource(
        dataset=dataset,
        case_id=str(entry.get("id") or entry.get("case") or strip_nifti(image.name)),
        image=image,
        label=label,
        label_names=parse_label_names(names, where),
        tracer=str(entry.get("tracer") or "unknown"),
        low_quality=_is_low_quality(entry.get("label_quality"), where),
        roi_names=_names(entry.get("roi")),
        lesion_labels=_names(entry.get("lesion_labels")),
        liver_centre=_voxel_or_none(entry.get("liver_centre"), where),
    )


def _manifest_path(base: Path, value: object, where: str) -> Path:
    path = (base / Path(str(value)).expanduser()).resolve()
    if not path.exists():
        raise InputError(f"{where}: {path} not found")
    return path


def strip_nifti(name: str) -> str:
    """A file name without ``.nii.gz`` / ``.nii``."""
    for ending in (".nii.gz", ".nii"):
        if name.lower().endswith(ending):
            return name[: -len(ending)]
    return name


def _is_low_quality(value: object, where: str) -> bool:
    """``label_quality`` ("high" or "low") as "is low"."""
    if value is None or value == "":
        return False
    text = str(value).strip().lower()
    if text not in ("high", "low"):
        raise InputError(f"{where}: label_quality must be 'high' or 'low', got {value!r}")
    return text == "low"


def parse_label_names(value: object, where: str) -> dict[int, str]:
    """Label names from ``{"1": "liver"}``, nnU-Net's ``{"liver": 1}`` or ``1:liver;2:lesion``.

    Values 0 (background) and below are dropped, and so are nnU-Net region labels (lists).
    """
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InputError(f"{where}: label_names is not valid JSON ({exc})") from None
        else:
            pairs = [p.split(":", 1) for p in text.replace(",", ";").split(";") if p.strip()]
            if any(len(p) != 2 for p in pairs):
                raise InputError(f"{where}: label_names must look like 1:liver;2:lesion")
            value = {k.strip(): v.strip() for k, v in pairs}
    if not isinstance(value, dict):
        raise InputError(f"{where}: label names must map label values to names")
    names: dict[int, str] = {}
    for key, item in value.items():
        if str(key).strip().lstrip("-").isdigit():
            number, name = int(key), str(item)
        elif isinstance(item, int) and not isinstance(item, bool):
            number, name = item, str(key)
        elif isinstance(item, list):
            continue  # nnU-Net region labels (tuples of values): not single structures
        else:
            raise InputError(f"{where}: cannot read the label {key!r}: {item!r}")
        if number > 0:
            names[number] = name
    return names


def _names(value: object) -> tuple[str, ...] | None:
    """A list of names, or one string (``;``-separated in a CSV)."""
    if value is None or value == "":
        return None
    items = value.split(";") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        items = [items]
    names = tuple(str(n).strip() for n in items if str(n).strip())
    return names or None


def _voxel_or_none(value: object, where: str) -> Voxel | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):  # a CSV cell: "i j k", "i;j;k" or "[i, j, k]"
        parts = [v for v in re.split(r"[\s,;\[\]]+", value) if v]
        value = [int(v) if v.lstrip("-").isdigit() else v for v in parts]
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 3
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise InputError(f'{where}: "liver_centre" must be 3 voxel indices [i, j, k]')
    return (value[0], value[1], value[2])


# ====================================================================================== objects


def is_lesion_label(
    name: str,
    lesion_labels: Sequence[str] | None = None,
    keywords: Sequence[str] = LESION_KEYWORDS,
) -> bool:
    """Whether a label's objects are its 26-connected components (see the module).

    ``lesion_labels`` names the lesion labels exactly (case-insensitive); else a name containing
    one of ``keywords`` is a lesion label.
    """
    lowered = name.lower()
    if lesion_labels is not None:
        return lowered in {n.lower() for n in lesion_labels}
    return any(k.lower() in lowered for k in keywords)


def is_ignored_label(name: str) -> bool:
    """nnU-Net's ``ignore`` label: never an object."""
    return name.strip().lower() in IGNORED_LABEL_NAMES


def label_name(label_names: dict[int, str], value: int) -> str:
    """A label value's name; ``label_<value>`` when it has none."""
    return label_names.get(value, f"label_{value}")


def lesion_values(
    label_names: dict[int, str],
    values: Iterable[int],
    lesion_labels: Sequence[str] | None = None,
    keywords: Sequence[str] = LESION_KEYWORDS,
) -> list[int]:
    """Which of ``values`` are lesion labels."""
    return [
        int(v)
        for v in values
        if is_lesion_label(label_name(label_names, int(v)), lesion_labels, keywords)
    ]


def keep_object(volume_ml: float, min_ml: float = MIN_OBJECT_ML) -> bool:
    """The tiny-object rule: kept when at least ``min_ml`` on the native grid."""
    return volume_ml >= min_ml


@dataclass(frozen=True)
class PromptObject:
    """One object of a case: a whole label, or one 26-connected component of a lesion label.

    ``box`` is its bounding box on the label map's grid and ``crop`` its mask inside that box.
    """

    name: str  # the label's name, or "<label>_<k>" for the k-th largest lesion component
    label: int
    label_name: str
    is_lesion: bool
    component: int  # k, 1.. in decreasing volume within its label; 0 for a whole label
    voxels: int
    volume_ml: float
    box: tuple[slice, ...]
    crop: np.ndarray

    def mask(self, shape: Sequence[int]) -> np.ndarray:
        """The object's mask on the whole grid."""
        full = np.zeros(tuple(shape), dtype=bool)
        full[self.box] = self.crop
        return full


def find_objects(
    labels: np.ndarray,
    label_names: dict[int, str],
    voxel_volume_ml: float,
    *,
    values: Iterable[int] | None = None,
    lesion_labels: Sequence[str] | None = None,
    keywords: Sequence[str] = LESION_KEYWORDS,
    min_ml: float = MIN_OBJECT_ML,
) -> tuple[list[PromptObject], int]:
    """The objects of a label map on its native grid (see the module) and how many were tiny.

    ``values`` restricts the labels looked at (default: every value present); objects come in
    label order, a lesion label's components in decreasing volume (ties in scan order).
    ``min_ml`` 0 keeps everything.
    """
    from scipy import ndimage  # here, not at the top: `seganypet --help` reads this module

    labels = np.asarray(labels)
    if labels.dtype == bool:
        labels = labels.astype(np.uint8)
    boxes = ndimage.find_objects(labels)
    present = [v + 1 for v, box in enumerate(boxes) if box is not None]
    wanted = present if values is None else sorted(set(int(v) for v in values) & set(present))
    wanted = [v for v in wanted if not is_ignored_label(label_names.get(v, ""))]
    lesions = set(lesion_values(label_names, wanted, lesion_labels, keywords))
    objects: list[PromptObject] = []
    skipped = 0
    for value in wanted:
        name = label_name(label_names, value)
        box = boxes[value - 1]
        inside = labels[box] == value
        if value not in lesions:
            voxels = int(inside.sum())
            volume = float(voxels * voxel_volume_ml)
            if not keep_object(volume, min_ml):
                skipped += 1
                continue
            objects.append(PromptObject(name, value, name, False, 0, voxels, volume, box, inside))
            continue
        numbered, count = ndimage.label(inside, structure=CONNECTIVITY_26)
        sizes = np.bincount(numbered.ravel(), minlength=count + 1)[1:]
        sub_boxes = ndimage.find_objects(numbered)
        order = sorted(range(count), key=lambda i: (-int(sizes[i]), i))
        kept = [i for i in order if keep_object(float(sizes[i] * voxel_volume_ml), min_ml)]
        skipped += count - len(kept)
        for number, index in enumerate(kept, start=1):
            sub = sub_boxes[index]
            objects.append(
                PromptObject(
                    name=f"{name}_{number}",
                    label=value,
                    label_name=name,
                    is_lesion=True,
                    component=number,
                    voxels=int(sizes[index]),
                    volume_ml=float(sizes[index] * voxel_volume_ml),
                    box=tuple(
                        slice(b.start + s.start, b.start + s.stop)
                        for b, s in zip(box, sub, strict=True)
                    ),
                    crop=numbered[sub] == index + 1,
                )
            )
    return objects, skipped


__all__ = [
    "CONNECTIVITY_26",
    "IGNORED_LABEL_NAMES",
    "LESION_KEYWORDS",
    "MIN_OBJECT_ML",
    "CaseSource",
    "PromptObject",
    "discover_cases",
    "find_objects",
    "is_ignored_label",
    "is_lesion_label",
    "keep_object",
    "label_name",
    "lesion_values",
    "parse_label_names",
    "pet_channel",
    "read_json",
    "select_cases",
    "split_entries",
    "strip_nifti",
]
