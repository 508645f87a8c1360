"""The open studies of ``seganypet serve``, and the one owner of each study's state.

A :class:`StudyRegistry` opens a study once, keeps at most ``max_open`` studies in memory (the
least recently used goes first) and gives each its own lock, so a reader opening a study never
holds up another reader's clicks. A study that was let go reopens from its journal when it is
next asked for.

Every change goes through :meth:`Study.apply`: written to the journal (fsynced) first, applied to
the session, then the label map is computed once, and what changed is returned as a
:class:`~seganypet.server.schemas.LabelRegion` for the viewer.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from seganypet.errors import InputError
from seganypet.image import PetImage
from seganypet.io import load_image
from seganypet.prompts import Prompt
from seganypet.quant import LiverReference, QuantReport
from seganypet.server.journal import Journal
from seganypet.server.schemas import (
    LabelRegion,
    LiverInfo,
    ObjectInfo,
    PercistInfo,
    ReferenceInfo,
    ReferenceLabel,
    SessionInfo,
    StudyHeader,
)
from seganypet.server.studies import reference_kind
from seganypet.session import Session

log = logging.getLogger("seganypet.server")

DEFAULT_MAX_OPEN = 4


class UnknownStudy(LookupError):
    """No study was opened under this session id."""


def session_id_of(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def label_map_rle(labels: np.ndarray) -> dict[str, Any]:
    """Run-length code of a label map in Fortran order (first axis fastest, as NIfTI stores it):
    ``runs`` alternates value and count."""
    flat = np.asarray(labels).ravel(order="F")
    if flat.size == 0:
        return {"shape": list(labels.shape), "order": "F", "runs": []}
    starts = np.r_[0, np.flatnonzero(np.diff(flat)) + 1]
    counts = np.diff(np.r_[starts, flat.size])
    runs = np.empty(2 * len(starts), np.int64)
    runs[0::2] = flat[starts]
    runs[1::2] = counts
    return {"shape": list(labels.shape), "order": "F", "runs": runs.tolist()}


def extent(mask: np.ndarray) -> tuple[list[int], list[int]] | None:
    """The inclusive box [lo, hi] around a mask's voxels, from its projections (fast)."""
    ranges = []
    for axis in range(mask.ndim):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        where = np.flatnonzero(mask.any(axis=others))
        if where.size == 0:
            return None
        ranges.append((int(where[0]), int(where[-1])))
    return [r[0] for r in ranges], [r[1] for r in ranges]


def label_region(labels: np.ndarray, lo: list[int], hi: list[int]) -> LabelRegion:
    """The labels inside the box ``lo``-``hi``, with the extent of the whole map."""
    box = tuple(slice(a, b + 1) for a, b in zip(lo, hi, strict=True))
    whole = extent(labels > 0)
    return LabelRegion(
        lo=lo,
        hi=hi,
        runs=label_map_rle(labels[box])["runs"],
        extent=None if whole is None else [whole[0], whole[1]],
    )


def dice(a: np.ndarray, b: np.ndarray) -> float | None:
    """2|A and B| / (|A| + |B|) of two boolean masks; None when both are empty."""
    total = int(a.sum()) + int(b.sum())
    return None if total == 0 else 2.0 * int(np.count_nonzero(a & b)) / total


def study_header(image: PetImage) -> StudyHeader:
    """What the image's file records about the patient and the scan (NIfTI: nothing)."""
    meta = image.metadata
    dicom = image.dicom_headers is not None
    dose = meta.get("injected_dose_bq")
    return StudyHeader(
        format="dicom" if dicom else str(meta.get("format", "nifti")),
        patient_id=meta.get("patient_id"),
        patient_name=meta.get("patient_name"),
        study_date=meta.get("study_date"),
        tracer=meta.get("radiopharmaceutical"),
        radionuclide=meta.get("radionuclide"),
        weight_kg=meta.get("patient_weight_kg"),
        height_m=meta.get("patient_size_m"),
        sex=meta.get("patient_sex"),
        injected_dose_mbq=None if dose is None else float(dose) / 1e6,
        suv_type=image.units,
        suv_factor=meta.get("suv_factor") if dicom else None,
        source_units=meta.get("units") if dicom else None,
    )


@dataclass
class Reference:
    """A reference segmentation loaded onto the study's grid."""

    path: Path
    source: str
    kind: str
    labels: np.ndarray = field(repr=False)
    names: dict[int, str]


#: Journal operations that change what the study holds beside the session's objects.
STUDY_OPERATIONS = ("reference", "liver", "percist")


@dataclass
class Study:
    """One open study: its session, journal and the label map of its current state."""

    key: str
    name: str
    image_path: Path
    session: Session
    journal: Journal
    image: PetImage = field(repr=False)  # as loaded: the grid of every voxel index and mask
    replayed: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    image_bytes: bytes | None = field(default=None, repr=False)
    labels: np.ndarray | None = field(default=None, repr=False)
    names: dict[int, str] = field(default_factory=dict)
    reference: Reference | None = None
    liver: LiverReference | None = None
    percist: dict[str, Any] | None = None  # the baseline threshold, its units and SUL factor
    _stats: dict[str, Any] | None = field(default=None, repr=False)
    _report: QuantReport | None = field(default=None, repr=False)

    @property
    def session_id(self) -> str:
        return session_id_of(self.key)

    def apply(self, operation: dict[str, Any]) -> SessionInfo:
        """Journal an operation, apply it, and describe the result with what changed."""
        with self.lock:
            self.journal.append(operation)  # on disk before it is applied
            try:
                apply_operation(self.session, operation)
            finally:
                change = self._relabel()
            return self.info(change)

    def update(self, operation: dict[str, Any]) -> SessionInfo:
        """Journal and apply an operation on the study's reference, liver VOI or PERCIST
        baseline (see :data:`STUDY_OPERATIONS`). It is checked (a reference loaded, a VOI
        measured) before it is journaled, so a refused one leaves no trace."""
        with self.lock:
            apply = self.prepare(operation)
            self.journal.append(operation)
            apply()
            return self.info()

    def prepare(self, operation: dict[str, Any]):
        """The work of a study operation done, and a function that makes it take effect."""
        from seganypet.io.masks import load_mask
        from seganypet.quant import liver_reference

        kind = operation["op"]
        if kind == "reference":
            path = operation.get("path")
            if path is None:
                return lambda: setattr(self, "reference", None)
            mask_kind = reference_kind(Path(path))
            if mask_kind == "unknown":
                raise InputError(
                    f"{operation['source']!r} is not a label map, an RTSTRUCT or a DICOM SEG, so "
                    "it cannot be a reference"
                )
            labels, names = load_mask(path, self.image)
            reference = Reference(Path(path), operation["source"], mask_kind, labels, names)
            return lambda: setattr(self, "reference", reference)
        if kind == "liver":
            liver = liver_reference(self.image, operation["voxel"])
            return lambda: setattr(self, "liver", liver)
        if kind == "percist":
            threshold = operation.get("threshold")
            if threshold is None:
                return lambda: setattr(self, "percist", None)
            baseline = {
                "threshold": float(threshold),
                "units": operation["units"],
                "sul_per_unit": operation.get("sul_per_unit"),
            }
            return lambda: setattr(self, "percist", baseline)
        raise ValueError(f"unknown study operation {kind!r}")

    def label_map(self) -> tuple[np.ndarray, dict[int, str]]:
        with self.lock:
            if self.labels is None:
                self._relabel()
            return self.labels, dict(self.names)

    def stats(self) -> dict[str, Any]:
        with self.lock:
            if self._stats is None:
                self._stats = self.report().to_dict()
            return self._stats

    def report(self) -> QuantReport:
        from seganypet.quant import quantify

        with self.lock:
            if self._report is None:
                labels, names = self.label_map()
                self._report = quantify(self.image, labels, label_names=names)
            return self._report

    def reference_info(self) -> ReferenceInfo | None:
        """The reference and the Dice of each of its labels with the current object."""
        reference = self.reference
        if reference is None:
            return None
        current = self.session.current_index
        mask = self.session.object_mask(current)
        rows = []
        for label, name in sorted(reference.names.items()):
            region = reference.labels == label
            rows.append(
                ReferenceLabel(
                    label=label, name=name, voxels=int(region.sum()), dice=dice(region, mask)
                )
            )
        return ReferenceInfo(
            source=reference.source,
            kind=reference.kind,
            object=current,
            labels=rows,
            dice_all=dice(reference.labels > 0, mask),
        )

    def percist_info(self) -> PercistInfo | None:
        from seganypet.quant import lesions_above

        if self.percist is None:
            return None
        above = lesions_above(
            self.report().lesions, self.percist["threshold"], self.percist["sul_per_unit"]
        )
        return PercistInfo(
            threshold=self.percist["threshold"],
            units=self.percist["units"],
            lesions_above=[[lesion.label, lesion.component or 1] for lesion in above],
        )

    def info(self, change: LabelRegion | None = None) -> SessionInfo:
        with self.lock:
            session, image = self.session, self.image
            objects = []
            for index, obj in enumerate(session.objects):
                voxels = int((obj.logits > 0).sum()) if obj.logits is not None else 0
                objects.append(
                    ObjectInfo(
                        index=index,
                        label=index + 1,
                        name=obj.name,
                        prompts=len(obj.prompts),
                        prompt_list=[prompt.to_dict() for prompt in obj.prompts],
                        voxels=voxels,
                        volume_ml=voxels * image.voxel_volume_ml,
                    )
                )
            return SessionInfo(
                session_id=self.session_id,
                study=self.name,
                shape=list(image.shape),
                spacing_mm=list(image.spacing),
                affine=np.asarray(image.affine).tolist(),
                units=image.units,
                dicom=image.dicom_headers is not None,
                current=session.current_index,
                objects=objects,
                can_undo=session.can_undo,
                replayed=self.replayed,
                change=change,
                stats=self.stats(),
                header=study_header(image),
                reference=self.reference_info(),
                liver=None if self.liver is None else LiverInfo(**self.liver.to_dict()),
                percist=self.percist_info(),
            )

    def _relabel(self) -> LabelRegion | None:
        """Compute the label map once; the region where it differs from the previous one. The
        statistics are kept when neither the labels nor their names changed (a selection)."""
        previous, previous_names = self.labels, self.names
        self.labels, self.names = self.session.label_map()
        if previous is None:
            self._stats = self._report = None
            return None
        changed = extent(previous != self.labels)
        if changed is not None or self.names != previous_names:
            self._stats = self._report = None
        return None if changed is None else label_region(self.labels, *changed)


def apply_operation(session: Session, operation: dict[str, Any]) -> None:
    """Apply one journal operation to a session."""
    kind = operation["op"]
    if kind == "prompt":
        session.add(Prompt.from_dict(operation["prompt"], "the prompt"))
    elif kind == "undo":
        session.undo()
    elif kind == "reset":
        session.reset()
    elif kind == "new_object":
        session.new_object(operation.get("name"))
    elif kind == "select":
        session.select_object(operation["index"])
    elif kind == "rename":
        session.rename_object(operation["index"], operation["name"])
    else:
        raise ValueError(f"unknown journal operation {kind!r}")


class StudyRegistry:
    """Studies open in memory, at most ``max_open``, least recently used let go first."""

    def __init__(
        self,
        network: Any,
        journals: Path,
        *,
        small_object_network: Any = None,
        max_open: int = DEFAULT_MAX_OPEN,
    ):
        if max_open < 1:
            raise InputError("the server must hold at least one study in memory")
        self.network = network
        self.small_object_network = small_object_network
        self.journals = journals
        self.max_open = max_open
        self._lock = threading.Lock()  # guards the dictionaries below, never held while working
        self._open: OrderedDict[str, Study] = OrderedDict()
        self._known: dict[str, tuple[str, str, Path]] = {}
        self._opening: dict[str, threading.Lock] = {}

    def __len__(self) -> int:
        with self._lock:
            return len(self._open)

    def is_open(self, key: str) -> bool:
        with self._lock:
            return session_id_of(key) in self._open

    def open(self, key: str, name: str, image_path: Path) -> Study:
        """The study under ``key``, loaded (and its journal replayed) if it is not in memory."""
        session_id = session_id_of(key)
        with self._lock:
            opening = self._opening.setdefault(session_id, threading.Lock())
        with opening:  # one load per study; other studies go on meanwhile
            with self._lock:
                if session_id in self._open:
                    self._open.move_to_end(session_id)
                    return self._open[session_id]
            study = self._load(key, name, image_path)
            with self._lock:
                self._open[session_id] = study
                self._known[session_id] = (key, name, image_path)
                while len(self._open) > self.max_open:
                    _, evicted = self._open.popitem(last=False)
                    log.info("%s: let go of (reopens from its journal)", evicted.name)
            return study

    def get(self, session_id: str) -> Study:
        """An open study by its session id; one let go of is reopened from its journal."""
        with self._lock:
            study = self._open.get(session_id)
            if study is not None:
                self._open.move_to_end(session_id)
                return study
            known = self._known.get(session_id)
        if known is None:
            raise UnknownStudy(session_id)
        return self.open(*known)

    def _load(self, key: str, name: str, image_path: Path) -> Study:
        image = load_image(image_path)
        session = Session(self.network, small_object_network=self.small_object_network)
        session.set_image(image)
        journal = Journal(self.journals / f"{session_id_of(key)}.jsonl")
        header = {
            "study": key,
            "name": name,
            "shape": list(image.shape),
            "affine": np.asarray(image.affine).tolist(),
        }
        # the study's own grid, not the session's RAS working copy (Session.image)
        study = Study(key, name, image_path, session, journal, image)
        previous, operations = journal.read()
        if previous is not None and _same_study(previous, header):
            for operation in operations:
                try:
                    if operation.get("op") in STUDY_OPERATIONS:
                        study.prepare(operation)()
                    else:
                        apply_operation(session, operation)
                except InputError:
                    pass  # refused when it was made, and refused again: no change
                except Exception:  # a failed prompt was rolled back live too
                    log.exception("replaying %s of %s", operation.get("op"), name)
            study.replayed = len(operations)
        else:
            if journal.exists():
                moved = journal.set_aside("stale")
                log.warning("%s: the image changed; its old journal is kept at %s", name, moved)
            journal.start(header)
        study.label_map()
        return study


def _same_study(previous: dict[str, Any], header: dict[str, Any]) -> bool:
    return (
        previous.get("study") == header["study"]
        and previous.get("shape") == header["shape"]
        and np.allclose(previous.get("affine", np.zeros((4, 4))), header["affine"], atol=1e-4)
    )
