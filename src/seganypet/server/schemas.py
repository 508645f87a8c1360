"""The request and response bodies of ``seganypet serve`` (its OpenAPI schema)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class OpenStudy(BaseModel):
    study: str = Field(
        description="path of a NIfTI file or DICOM folder, relative to --data, or "
        "dicomweb:<study UID>/<series UID> of a PET series on the --dicomweb server"
    )


class NewObject(BaseModel):
    name: str | None = Field(None, max_length=200)


class RenameObject(BaseModel):
    name: str = Field(min_length=1, max_length=200)


class SaveIn(BaseModel):
    format: Literal["nifti", "dicom-seg"] | None = Field(
        None, description="default: dicom-seg for a DICOM input, nifti otherwise"
    )


PROMPT_BODY = {
    "description": (
        "one prompt in its JSON form, voxel indices of the input array: "
        '{"point": [x, y, z], "positive": true}, {"box": [x0, y0, z0, x1, y1, z1]}, '
        '{"scribble": [[x, y, z], ...], "positive": true} (a line on one slice) or '
        '{"lasso": [[x, y, z], ...], "positive": true} (a closed outline on one slice)'
    ),
    "examples": [{"point": [60, 72, 101], "positive": True}],
}


class ObjectInfo(BaseModel):
    index: int
    label: int
    name: str
    prompts: int
    prompt_list: list[dict[str, Any]] = Field(
        default_factory=list,
        description="the object's prompts in their JSON form, oldest first (for the viewer)",
    )
    voxels: int
    volume_ml: float


class LabelRegion(BaseModel):
    """Part of the label map: the labels inside an inclusive box, run-length coded in Fortran
    order (first axis fastest); ``runs`` alternates label and count."""

    lo: list[int]
    hi: list[int]
    runs: list[int]
    extent: list[list[int]] | None = Field(
        None, description="the box [lo, hi] around every labelled voxel of the whole map"
    )


class StudyHeader(BaseModel):
    """What the study's file records about the patient and the scan; None: not recorded (a
    NIfTI image records none of it)."""

    format: str = Field(description="dicom or nifti")
    patient_id: str | None = None
    patient_name: str | None = Field(None, description="as stored in the file (DICOM: Last^First)")
    study_date: str | None = Field(None, description="YYYY-MM-DD")
    tracer: str | None = Field(None, description="the radiopharmaceutical")
    radionuclide: str | None = None
    weight_kg: float | None = None
    height_m: float | None = None
    sex: str | None = None
    injected_dose_mbq: float | None = None
    suv_type: str = Field(description="the units of the image's values: SUVbw, SUVlbm, ...")
    suv_factor: float | None = Field(
        None, description="SUV = stored value (after rescale) x this factor (DICOM only)"
    )
    source_units: str | None = Field(None, description="the DICOM Units the SUV came from")


class ReferenceLabel(BaseModel):
    label: int
    name: str
    voxels: int
    dice: float | None = Field(
        None, description="Dice with the current object's mask (None: both are empty)"
    )


class ReferenceInfo(BaseModel):
    """A reference segmentation (a label map, an RTSTRUCT or a SEG) on the study's grid."""

    source: str = Field(description="the reference's path under --data, or its uploaded name")
    kind: str = Field(description="labels, rtstruct or seg")
    object: int = Field(description="the object compared with it (the current one)")
    labels: list[ReferenceLabel]
    dice_all: float | None = Field(
        None, description="Dice of every reference label together with the current object"
    )


class ReferenceIn(BaseModel):
    path: str = Field(description="a label map, RTSTRUCT or SEG, relative to --data")


class LiverIn(BaseModel):
    voxel: list[float] = Field(
        min_length=3, max_length=3, description="the sphere's centre, a voxel of the input array"
    )


class LiverInfo(BaseModel):
    """The PERCIST liver reference: a 3 cm sphere VOI (seganypet.quant.liver_reference)."""

    centre_voxel: list[int]
    centre_world_mm: list[float]
    diameter_mm: float
    voxels: int
    mean: float
    sd: float
    units: str = Field(description="SUL, or the image's units when SUL cannot be had")
    sul_per_unit: float | None
    percist_threshold: float = Field(description="1.5 x mean + 2 x SD")
    note: str


class PercistInfo(BaseModel):
    """The PERCIST baseline threshold kept with the session, and the lesions reaching it."""

    threshold: float
    units: str
    lesions_above: list[list[int]] = Field(
        description="[label, lesion] of each lesion whose SULpeak reaches the threshold"
    )


class SessionInfo(BaseModel):
    session_id: str
    study: str
    shape: list[int]
    spacing_mm: list[float]
    affine: list[list[float]]
    units: str
    dicom: bool
    current: int
    objects: list[ObjectInfo]
    can_undo: bool
    replayed: int = Field(0, description="operations replayed from the journal when opened")
    change: LabelRegion | None = Field(
        None, description="where the label map changed with this request, and its new labels"
    )
    stats: dict[str, Any] | None = Field(
        None, description="SUVmax, SUVpeak, SUVmean, MTV and TLG per object (as GET .../stats)"
    )
    header: StudyHeader | None = None
    reference: ReferenceInfo | None = None
    liver: LiverInfo | None = None
    percist: PercistInfo | None = None


class SavedFile(BaseModel):
    file: str
    format: str
    path: str
    download: str
    stored: str | None = Field(
        None,
        description="a DICOM SEG of a study from the DICOMweb server, stored there (STOW-RS): "
        "the server, the study and the SEG's series UID",
    )
