"""A batch's manifest: one row per study, as CSV or JSON.

Columns (CSV header, or keys of each JSON object):

- ``study`` (required): a NIfTI file (values in SUV) or a DICOM folder or file, relative to the
  manifest's folder unless absolute.
- ``prompts`` (required): the study's prompts in the one JSON form of every seganypet prompt file
  (:func:`seganypet.prompts.prompt_objects`): ``{"coordinates": "voxel"|"mm", "objects": [{"name":
  ..., "prompts": [...]}]}``, a bare list of prompts, or an autoPET IV click file ``{"tumor":
  [[x, y, z], ...], "background": [...]}``. Inline (a CSV cell holding the JSON; in a JSON
  manifest the object or list itself) or the path of a prompts file.
- ``id``: the study's name in the outputs (default: the study's file or folder name, prefixed with
  its parent folder's name where several studies share it).
- ``coordinates``: ``voxel`` (default) or ``mm``, for prompts that do not say.
- SUV options of a DICOM study, overriding the command line's: ``series``, ``suv``,
  ``lbm_formula``, ``weight_kg``, ``height_cm``, ``sex``, ``dose_mbq``, ``injection_time``.
- ``dicomweb_study_uid``, ``dicomweb_series_uid``: a PET series on the DICOMweb server of
  ``seganypet batch --dicomweb URL``, instead of ``study`` (:func:`dicomweb_study`; the series UID
  may be left out when the study holds one PET series). The coordinator fetches it, and stores
  its DICOM SEG back (:mod:`seganypet.batch.run`).

A manifest that cannot be read as a whole (not CSV or JSON, no ``study`` column, an unknown column,
two rows with one name) is refused. A row whose content is wrong (its prompts, its SUV values, a
missing study) becomes a failure of that study alone, with its reason, and the batch goes on.

Voxel coordinates are indices in the order of the input image's array axes (for DICOM: column,
row, slice) unless the prompts or the ``coordinates`` column say ``mm`` (world millimetres, RAS+).
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seganypet.errors import InputError

STUDY_COLUMN = "study"
PROMPTS_COLUMN = "prompts"
ID_COLUMN = "id"
COORDINATES_COLUMN = "coordinates"
DICOMWEB_COLUMNS = ("dicomweb_study_uid", "dicomweb_series_uid")
NUMBER_OPTIONS = ("weight_kg", "height_cm", "dose_mbq")
CHOICE_OPTIONS = {
    "suv": ("bw", "lbm", "bsa", "ibw"),
    "lbm_formula": ("janmahasatian", "james"),
    "sex": ("M", "F"),
}
TEXT_OPTIONS = ("series", "injection_time")
SUV_OPTION_COLUMNS = (*TEXT_OPTIONS, *CHOICE_OPTIONS, *NUMBER_OPTIONS)
COLUMNS = (
    STUDY_COLUMN,
    PROMPTS_COLUMN,
    ID_COLUMN,
    COORDINATES_COLUMN,
    *SUV_OPTION_COLUMNS,
    *DICOMWEB_COLUMNS,
)
#: Manifest column -> keyword of :func:`seganypet.io.load_image`.
LOAD_IMAGE_KEYWORDS = {
    "series": "series_uid",
    "suv": "suv_type",
    "lbm_formula": "lbm_formula",
    "weight_kg": "weight_kg",
    "height_cm": "height_cm",
    "sex": "sex",
    "dose_mbq": "dose_mbq",
    "injection_time": "injection_time",
}
_UNSAFE_IN_NAMES = re.compile(r"[^A-Za-z0-9._-]+")
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")


@dataclass(frozen=True)
class DicomwebSource:
    """A study on the DICOMweb server: its study UID, and its PET series' UID when given."""

    study_uid: str
    series_uid: str | None = None

    def __str__(self) -> str:
        return f"dicomweb:{self.study_uid}" + (f"/{self.series_uid}" if self.series_uid else "")


@dataclass(frozen=True)
class StudySpec:
    """One study of the manifest, read and checked: what a worker needs to segment it.

    ``objects`` are ``{"name": ..., "prompts": [Prompt, ...]}``; ``mm`` says their coordinates are
    world millimetres. ``load_options`` are the keywords of :func:`seganypet.io.load_image`
    (the command line's SUV options with the row's overrides). A study on a DICOMweb server
    (``dicomweb``) has no ``source`` until the coordinator has fetched it into a folder.
    """

    name: str
    source: Path
    objects: list[dict[str, Any]]
    mm: bool
    load_options: dict[str, Any]
    where: str
    dicomweb: DicomwebSource | None = None

    @property
    def is_dicom(self) -> bool:
        from seganypet.io.nifti import is_nifti_path

        if self.dicomweb is not None:
            return True
        return not (self.source.is_file() and is_nifti_path(self.source))

    @property
    def origin(self) -> str:
        """Where the study comes from, for the tables: its path, or its DICOMweb UIDs."""
        return str(self.dicomweb) if self.dicomweb is not None else str(self.source)


@dataclass(frozen=True)
class RowFailure:
    """A study that could not be segmented, and why (the failures table's row)."""

    study: str
    source: str
    reason: str


@dataclass
class Manifest:
    path: Path
    studies: list[StudySpec] = field(default_factory=list)
    failures: list[RowFailure] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.studies] + [f.study for f in self.failures]


def read_manifest(path: str | Path, default_load_options: Mapping[str, Any]) -> Manifest:
    """Every row of a CSV or JSON manifest, as a study to run or a failure with its reason.

    ``default_load_options`` are :func:`seganypet.io.load_image`'s keywords from the command line
    (:func:`seganypet.cli_options.dicom_options`); a row's SUV columns override them.
    """
    path = Path(path)
    rows = _read_rows(path)
    if not rows:
        raise InputError(f"{path}: the manifest lists no study")
    names = _study_names(path, rows)
    manifest = Manifest(path)
    for number, (row, name) in enumerate(zip(rows, names, strict=True), start=1):
        where = f"{path.name} row {number} ({name})"
        try:
            folder = path.parent.absolute()  # workers elsewhere have another cwd
            manifest.studies.append(_study(folder, row, name, where, default_load_options))
        except InputError as exc:
            message = str(exc)
            reason = message if message.startswith(where) else f"{where}: {message}"
            manifest.failures.append(RowFailure(name, _origin(row), reason))
    return manifest


def dicomweb_study(row: Mapping[str, Any], where: str) -> DicomwebSource:
    """The DICOMweb study (and series) a row names; fetched later, by the coordinator
    (:func:`seganypet.batch.run.fetch_dicomweb_studies`)."""
    study_uid, series_uid = (row.get(key) for key in DICOMWEB_COLUMNS)
    uids = []
    for column, value in zip(DICOMWEB_COLUMNS, (study_uid, series_uid), strict=True):
        if not _given(value):
            uids.append(None)
            continue
        text = str(value).strip()
        if len(text) > 64 or not _UID.fullmatch(text):
            raise InputError(
                f"{where}: '{column}' is a DICOM UID (digits and dots, at most 64), got {value!r}"
            )
        uids.append(text)
    if uids[0] is None:
        raise InputError(
            f"{where}: '{DICOMWEB_COLUMNS[1]}' needs the study's '{DICOMWEB_COLUMNS[0]}' too"
        )
    return DicomwebSource(uids[0], uids[1])


def _origin(row: Mapping[str, Any]) -> str:
    if _given(row.get(STUDY_COLUMN)) or not any(_given(row.get(k)) for k in DICOMWEB_COLUMNS):
        return str(row.get(STUDY_COLUMN, ""))
    return "dicomweb:" + "/".join(
        str(row[k]).strip() for k in DICOMWEB_COLUMNS if _given(row.get(k))
    )


# ------------------------------------------------------------------------------ reading rows


def _read_rows(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{path}: no such manifest file") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text file; a manifest is CSV or JSON") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read the manifest ({exc.strerror})") from None
    if path.suffix.lower() == ".json" or text.lstrip().startswith(("[", "{")):
        rows = _json_rows(path, text)
    else:
        rows = _csv_rows(path, text)
    for number, row in enumerate(rows, start=1):
        unknown = sorted(set(row) - set(COLUMNS))
        if unknown:
            raise InputError(
                f"{path.name} row {number}: unknown column {unknown[0]!r}; a manifest's columns "
                f"are {', '.join(COLUMNS)}"
            )
        on_dicomweb = any(_given(row.get(key)) for key in DICOMWEB_COLUMNS)
        if on_dicomweb and _given(row.get(STUDY_COLUMN)):
            raise InputError(
                f"{path.name} row {number}: give either a '{STUDY_COLUMN}' or DICOMweb UIDs "
                f"({', '.join(DICOMWEB_COLUMNS)}), not both"
            )
        if not on_dicomweb and not _given(row.get(STUDY_COLUMN)):
            raise InputError(
                f"{path.name} row {number}: no study; give a NIfTI file or a DICOM folder in the "
                f"'{STUDY_COLUMN}' column (or a study on a DICOMweb server in "
                f"'{DICOMWEB_COLUMNS[0]}')"
            )
    return rows


def _json_rows(path: Path, text: str) -> list[dict[str, Any]]:
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, ValueError, RecursionError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    if isinstance(data, dict) and set(data) == {"studies"}:
        data = data["studies"]
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise InputError(
            f'{path}: a JSON manifest is a list of studies, [{{"study": ..., "prompts": ...}}, '
            '...], or {"studies": [...]}'
        )
    return data


def _csv_rows(path: Path, text: str) -> list[dict[str, Any]]:
    reader = csv.DictReader(text.splitlines())
    header = [name.strip() for name in (reader.fieldnames or [])]
    if STUDY_COLUMN not in header and not set(DICOMWEB_COLUMNS) & set(header):
        raise InputError(
            f"{path}: a CSV manifest's first line names its columns and must include "
            f"'{STUDY_COLUMN}' and '{PROMPTS_COLUMN}' (got {', '.join(header) or 'nothing'})"
        )
    unknown = [name for name in header if name not in COLUMNS]
    if unknown:
        raise InputError(
            f"{path.name}: unknown column {unknown[0]!r}; a manifest's columns are "
            f"{', '.join(COLUMNS)}"
        )
    reader.fieldnames = header
    rows = []
    for row in reader:
        if None in row:
            raise InputError(
                f"{path.name} line {reader.line_num}: more cells than columns; quote a cell "
                'holding commas ("...", with "" for a quote inside)'
            )
        rows.append({key: value for key, value in row.items() if _given(value)})
    return rows


def _given(value: object) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


# ------------------------------------------------------------------------------ one row


def _study_names(path: Path, rows: list[dict[str, Any]]) -> list[str]:
    """Each row's name: its ``id``, else its study's name (without a NIfTI suffix), prefixed
    with the parent folder's name where several rows would share it. Names are file names in
    the outputs: other characters than letters, digits, '.', '_' and '-' become '_'."""

    def stem(value: object) -> Path:
        source = Path(str(value).strip())
        name = re.sub(r"\.nii(\.gz)?$", "", source.name, flags=re.IGNORECASE)
        return source.with_name(name) if name else source

    def plain_name(row: Mapping[str, Any]) -> str:
        if _given(row.get(STUDY_COLUMN)):
            return stem(row[STUDY_COLUMN]).name
        uids = [str(row[key]).strip() for key in DICOMWEB_COLUMNS if _given(row.get(key))]
        return uids[-1]  # the series UID, else the study's

    plain = [plain_name(row) for row in rows]
    repeated = {name for name, count in Counter(plain).items() if count > 1}
    names = []
    for row, name in zip(rows, plain, strict=True):
        if _given(row.get(ID_COLUMN)):
            name = str(row[ID_COLUMN]).strip()
        elif name in repeated and _given(row.get(STUDY_COLUMN)):
            name = f"{stem(row[STUDY_COLUMN]).parent.name}_{name}"
        names.append(_UNSAFE_IN_NAMES.sub("_", name).strip("._") or "study")
    for name, count in Counter(names).items():
        if count > 1:
            rows_named = [str(i) for i, n in enumerate(names, start=1) if n == name]
            raise InputError(
                f"{path}: rows {', '.join(rows_named)} share the study name {name!r}; give each "
                f"study its own '{ID_COLUMN}'"
            )
    return names


def _study(
    folder: Path,
    row: Mapping[str, Any],
    name: str,
    where: str,
    default_load_options: Mapping[str, Any],
) -> StudySpec:
    from seganypet.prompts import prompt_objects, read_prompt_file

    dicomweb = None
    if _given(row.get(STUDY_COLUMN)):
        source = _path(folder, row[STUDY_COLUMN], where, "study")
        if not source.exists():
            raise InputError(f"{where}: {source}: no such file or folder")
    else:
        dicomweb = dicomweb_study(row, where)
        source = Path()  # the folder it is fetched into, once it is
    if not _given(row.get(PROMPTS_COLUMN)):
        raise InputError(
            f"{where}: no prompts; give the prompts JSON or a prompts file in '{PROMPTS_COLUMN}'"
        )
    prompts = row[PROMPTS_COLUMN]
    if isinstance(prompts, str) and prompts.lstrip().startswith(("{", "[")):
        try:
            prompts = json.loads(prompts)
        except (json.JSONDecodeError, ValueError, RecursionError) as exc:
            raise InputError(f"{where}: the prompts are not valid JSON ({exc})") from None
    if isinstance(prompts, str):
        objects, mm = read_prompt_file(_path(folder, prompts, where, "prompts"))
    else:
        objects, mm = prompt_objects(prompts, f"{where}: prompts")
    coordinates = row.get(COORDINATES_COLUMN, "voxel")
    if coordinates not in ("voxel", "mm"):
        raise InputError(f"{where}: 'coordinates' is voxel or mm, got {coordinates!r}")
    return StudySpec(
        name=name,
        source=source,
        objects=objects,
        mm=mm or coordinates == "mm",
        load_options=_load_options(row, where, default_load_options),
        where=where,
        dicomweb=dicomweb,
    )


def _path(folder: Path, value: object, where: str, what: str) -> Path:
    if not isinstance(value, str):
        raise InputError(f"{where}: '{what}' is a path, got {type(value).__name__} {value!r}")
    path = Path(value.strip()).expanduser()
    return path if path.is_absolute() else folder / path


def _load_options(
    row: Mapping[str, Any], where: str, defaults: Mapping[str, Any]
) -> dict[str, Any]:
    options = dict(defaults)
    for column in SUV_OPTION_COLUMNS:
        if not _given(row.get(column)):
            continue
        value = row[column]
        if column in NUMBER_OPTIONS:
            value = _positive_number(value, column, where)
        elif column in CHOICE_OPTIONS:
            choices = CHOICE_OPTIONS[column]
            if value not in choices:
                raise InputError(
                    f"{where}: '{column}' is one of {', '.join(choices)}, got {value!r}"
                )
        else:
            value = str(value).strip()
        options[LOAD_IMAGE_KEYWORDS[column]] = value
    return options


def _positive_number(value: object, column: str, where: str) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not (math.isfinite(number) and number > 0):
        raise InputError(f"{where}: '{column}' must be a positive number, got {value!r}")
    return number
