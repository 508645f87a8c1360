"""The label table of the synthetic phantoms and the uptake each structure is given per tracer.

The ids are fixed (they are the ``labels`` of every generated ``dataset.json``) and consecutive,
as nnU-Net requires. Every lesion carries the one id ``lesion``, whatever the tissue it sits in;
its voxels overwrite the organ underneath. Separate lesions are told apart by the instance map
(0 = no lesion, k = the k-th entry of ``Phantom.lesions``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Structure:
    """One labelled structure and the range its mean FDG uptake (SUVbw) is drawn from."""

    label: int
    name: str
    suv_range: tuple[float, float]
    note: str = ""


STRUCTURES: tuple[Structure, ...] = (
    Structure(1, "brain", (6.0, 12.0), "grey matter hotter than white matter; cerebellum included"),
    Structure(
        2, "myocardium", (1.0, 10.0), "left ventricle wall; often near background after fasting"
    ),
    Structure(3, "blood_pool", (1.5, 2.2), "heart chambers, aorta, venae cavae, iliac vessels"),
    Structure(4, "liver", (1.8, 2.8)),
    Structure(5, "spleen", (1.5, 2.2)),
    Structure(
        6, "kidney_right", (2.0, 4.0), "parenchyma; the collecting system holds urine, SUV 6-60"
    ),
    Structure(7, "kidney_left", (2.0, 4.0), "as kidney_right"),
    Structure(8, "bladder", (5.0, 50.0), "urine"),
    Structure(9, "lungs", (0.3, 0.7)),
    Structure(
        10,
        "bone_marrow",
        (1.2, 2.0),
        "vertebral bodies, sacrum, pelvis, sternum, humeral and femoral heads",
    ),
    Structure(11, "muscle", (0.6, 1.0), "all lean soft tissue outside the organs"),
    Structure(12, "fat", (0.2, 0.5), "subcutaneous, visceral and mediastinal fat"),
    Structure(
        13,
        "salivary_glands",
        (1.5, 3.0),
        "parotid and submandibular glands (and the lacrimal glands of PSMA cases)",
    ),
    Structure(14, "tonsils", (2.0, 5.0), "palatine tonsils"),
    Structure(
        15,
        "bowel",
        (0.8, 2.5),
        "colon and small bowel; patchy, hot patches up to about 2.5x the mean",
    ),
    Structure(16, "stomach", (1.2, 3.0)),
    Structure(
        17,
        "ureters",
        (0.6, 40.0),
        "urine boluses (the drawn value) between empty, muscle-like segments",
    ),
    Structure(18, "bone", (0.3, 0.8), "skull and long-bone shafts (cortex, fatty marrow)"),
    Structure(19, "lesion", (2.0, 30.0), "every lesion, whatever tissue it sits in"),
)

LABELS: dict[str, int] = {"background": 0, **{s.name: s.label for s in STRUCTURES}}
LABEL_NAMES: dict[int, str] = {label: name for name, label in LABELS.items()}
SUV_RANGES: dict[str, tuple[float, float]] = {s.name: s.suv_range for s in STRUCTURES}
LESION_LABEL = LABELS["lesion"]

# Urine in the renal collecting system is far hotter than the parenchyma.
COLLECTING_SYSTEM_SUV = (6.0, 60.0)

TRACERS = ("FDG", "PSMA")

#: Mean uptake (SUVbw) of each structure with a PSMA ligand (68Ga-PSMA-11, 18F-DCFPyL, about an
#: hour after injection): hot salivary and lacrimal glands, kidneys, liver, spleen and small bowel,
#: urine in the collecting system and bladder, a cold brain and little else.
PSMA_SUV_RANGES: dict[str, tuple[float, float]] = {
    "brain": (0.1, 0.5),
    "myocardium": (0.8, 2.0),
    "blood_pool": (0.8, 1.8),
    "liver": (4.0, 8.0),
    "spleen": (4.0, 10.0),
    "kidney_right": (18.0, 45.0),
    "kidney_left": (18.0, 45.0),
    "bladder": (8.0, 80.0),
    "lungs": (0.2, 0.5),
    "bone_marrow": (0.7, 1.6),
    "muscle": (0.4, 0.9),
    "fat": (0.1, 0.3),
    "salivary_glands": (9.0, 22.0),
    "tonsils": (1.5, 4.0),
    "bowel": (2.0, 9.0),
    "stomach": (1.0, 3.0),
    "ureters": (0.6, 60.0),
    "bone": (0.3, 0.8),
    "lesion": (2.0, 80.0),
}
PSMA_LACRIMAL_SUV = (5.0, 12.0)
PSMA_COLLECTING_SYSTEM_SUV = (15.0, 120.0)


def label_table_markdown() -> str:
    """The table as documentation: id, name, SUV range, note."""
    rows = [
        "| id | name | SUV range | note |",
        "| --- | --- | --- | --- |",
        "| 0 | background | 0 | outside the body |",
    ]
    for s in STRUCTURES:
        rows.append(f"| {s.label} | {s.name} | {s.suv_range[0]:g}-{s.suv_range[1]:g} | {s.note} |")
    return "\n".join(rows)
