"""The request and response bodies of ``seganypet serve`` (its OpenAPI schema)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class OpenStudy(BaseModel):
    study: str = Field(description="path of a NIfTI file or DICOM folder, relative to --data")


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


class SavedFile(BaseModel):
    file: str
    format: str
    path: str
    download: str
