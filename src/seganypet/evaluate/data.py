"""Evaluation data: reading a case and finding its objects.

The cases of ``--data`` (nnU-Net raw folders, IBSI-style crops folders, manifests with NIfTI or
DICOM images and NIfTI, DICOM SEG or RTSTRUCT masks) are found by
:func:`seganypet.datasets.discover_cases`, and a case's objects by
:func:`seganypet.datasets.find_objects`, the same definition training draws its targets from:
every label value is an object, every 26-connected component of a lesion label is one
(``<label>_<k>``, k = 1, 2, ... in decreasing volume), and objects under ``--min-object-ml``
(default :data:`seganypet.datasets.MIN_OBJECT_ML`, 0.1 ml on the image's grid) are skipped and
counted. A label is a lesion label when its name contains one of
:data:`seganypet.datasets.LESION_KEYWORDS` (case-insensitive), unless lesion labels are named
explicitly (``--lesion-labels``, or a manifest's ``lesion_labels``, which wins).

The mask is read onto the image's grid by :func:`seganypet.io.masks.load_mask`; a NIfTI label
map's names come from the data set, a SEG's or RTSTRUCT's from the file (the data set's win).

**Liver reference** (for the PERCIST baseline): the manifest's ``liver_centre``, else the most
interior voxel of a label named ``liver``; none otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from seganypet.datasets import (
    MIN_OBJECT_ML,
    CaseSource,
    PromptObject,
    Voxel,
    find_objects,
    label_name,
    lesion_values,
)
from seganypet.image import PetImage
from seganypet.prompts import most_interior_voxel

LIVER_LABEL_NAME = "liver"


@dataclass
class LoadedCase:
    """A case read into memory: the image, its label map and the objects found in it."""

    source: CaseSource
    image: PetImage
    labels: np.ndarray
    label_names: dict[int, str]
    objects: list[PromptObject]
    skipped_small: int
    lesion_mask: np.ndarray
    liver_centre: Voxel | None
    selected_labels: tuple[int, ...] = ()

    def tumour_burden(self, name: str) -> PromptObject | None:
        """Every lesion voxel of the selected labels as one object (autoPET scores it whole)."""
        mask = self.lesion_mask & np.isin(self.labels, self.selected_labels)
        if not mask.any():
            return None
        where = np.argwhere(mask)
        box = tuple(
            slice(int(lo), int(hi) + 1) for lo, hi in zip(where.min(0), where.max(0), strict=True)
        )
        values = sorted({int(v) for v in np.unique(self.labels[mask])})
        voxels = int(mask.sum())
        return PromptObject(
            name=name,
            label=values[0],
            label_name="+".join(self.label_names[v] for v in values),
            is_lesion=True,
            component=0,
            voxels=voxels,
            volume_ml=voxels * self.image.voxel_volume_ml,
            box=box,
            crop=mask[box].copy(),
        )


def load_case(
    source: CaseSource,
    lesion_labels: Sequence[str] | None = None,
    label_filter: Sequence[str] | None = None,
    min_object_ml: float = MIN_OBJECT_ML,
    find_liver: bool = True,
) -> LoadedCase:
    """Read a case's image and mask and find its objects (see the module).

    ``label_filter`` keeps the objects of these labels (names or values); ``find_liver`` False
    skips looking for the liver reference (only PERCIST needs it).
    """
    from seganypet.io import load_image
    from seganypet.io.masks import load_mask

    image = load_image(source.image)
    labels, loaded_names = load_mask(source.label, image, roi_names=source.roi_names)
    names = {**loaded_names, **source.label_names}
    present = [int(v) for v in np.unique(labels) if v != 0]
    label_names = {value: label_name(names, value) for value in present}
    lesion_names = source.lesion_labels or lesion_labels
    lesion_mask = np.isin(labels, lesion_values(label_names, present, lesion_names))
    selected = [
        v
        for v in present
        if label_filter is None or _label_selected(v, label_names[v], label_filter)
    ]
    objects, skipped = find_objects(
        labels,
        label_names,
        image.voxel_volume_ml,
        values=selected,
        lesion_labels=lesion_names,
        min_ml=min_object_ml,
    )
    liver_centre = source.liver_centre
    if liver_centre is None and find_liver:
        liver_centre = _liver_centre(labels, label_names, image.spacing)
    return LoadedCase(
        source,
        image,
        labels,
        label_names,
        objects,
        skipped,
        lesion_mask,
        liver_centre,
        tuple(selected),
    )


def _label_selected(value: int, name: str, wanted: Sequence[str]) -> bool:
    return any(w.lower() == name.lower() or w == str(value) for w in wanted)


def _liver_centre(
    labels: np.ndarray, label_names: dict[int, str], spacing: Sequence[float]
) -> Voxel | None:
    livers = [v for v, n in label_names.items() if n.lower() == LIVER_LABEL_NAME]
    if not livers:
        return None
    return most_interior_voxel(labels == livers[0], tuple(spacing))  # type: ignore[arg-type]
