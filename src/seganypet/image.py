"""PetImage: a PET volume with its geometry, its units and where it came from."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

import nibabel.orientations as nio
import numpy as np

from seganypet.errors import InputError


@dataclass
class PetImage:
    """A 3D PET volume.

    ``array`` holds float32 voxel values, SUV unless ``units`` says otherwise. Its axes are the
    input's own array axes (for DICOM: column, row, slice). ``affine`` maps voxel indices of
    ``array`` to world millimetres in RAS+ (the NIfTI convention; DICOM's LPS is converted on
    reading). ``metadata`` records the source: modality, series UID, the SUV factor and the header
    fields it came from. ``dicom_headers`` keeps the sorted source headers (without pixel data) of
    a DICOM series, needed to write a DICOM SEG that references it.
    """

    array: np.ndarray
    affine: np.ndarray
    units: str = "SUVbw"
    metadata: dict[str, Any] = field(default_factory=dict)
    dicom_headers: list[Any] | None = None

    def __post_init__(self) -> None:
        self.array = np.asarray(self.array, dtype=np.float32)
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.array.ndim != 3:
            raise InputError(
                f"expected a 3D PET volume, got an array of shape {self.array.shape}; "
                "give a single 3D PET image (one time frame)"
            )
        if self.affine.shape != (4, 4):
            raise InputError(f"the image affine must be 4x4, got shape {self.affine.shape}")
        if not np.isfinite(self.affine).all() or abs(np.linalg.det(self.affine[:3, :3])) < 1e-9:
            raise InputError("the image geometry is degenerate (zero or non-finite voxel size)")

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.array.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along each array axis."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]

    @property
    def voxel_volume_ml(self) -> float:
        return float(abs(np.linalg.det(self.affine[:3, :3])) / 1000.0)

    @property
    def is_suv(self) -> bool:
        return self.units.upper().startswith("SUV")

    def content_digest(self) -> str:
        """SHA-256 of the voxel values in RAS+ order with their shape: the same scan read from
        another file, or stored in another axis order, has the same digest."""
        canonical = np.ascontiguousarray(self.canonical().image.array, dtype="<f4")
        digest = hashlib.sha256(repr(canonical.shape).encode())
        digest.update(canonical.tobytes())
        return digest.hexdigest()

    def with_array(self, array: np.ndarray, units: str | None = None) -> PetImage:
        """The same geometry and source with other voxel values."""
        return replace(self, array=array, units=self.units if units is None else units)

    def same_grid(self, shape: tuple[int, ...], affine: np.ndarray, tol_mm: float = 1e-3) -> bool:
        """Whether an array of ``shape`` placed by ``affine`` lies on exactly this image's grid."""
        return tuple(shape) == self.shape and bool(
            np.allclose(np.asarray(affine, dtype=np.float64), self.affine, atol=tol_mm)
        )

    def voxel_to_world(self, ijk: np.ndarray) -> np.ndarray:
        ijk = np.asarray(ijk, dtype=np.float64)
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]

    def world_to_voxel(self, xyz: np.ndarray) -> np.ndarray:
        inv = np.linalg.inv(self.affine)
        xyz = np.asarray(xyz, dtype=np.float64)
        return xyz @ inv[:3, :3].T + inv[:3, 3]

    def canonical(self) -> CanonicalView:
        """This image reoriented so that its axes run closest to R, A, S (no resampling)."""
        return CanonicalView.of(self)


@dataclass
class CanonicalView:
    """An image permuted and flipped to RAS+ axis order, and the way back to the input's grid.

    Processing works in this orientation; every result goes back through ``to_input`` so that it
    lies on the input's exact grid. No voxel is resampled either way.
    """

    image: PetImage
    input_affine: np.ndarray
    orientation: np.ndarray  # per input axis: (canonical axis, flip)
    input_shape: tuple[int, int, int]

    @classmethod
    def of(cls, image: PetImage) -> CanonicalView:
        orientation = nio.io_orientation(image.affine)
        array = nio.apply_orientation(image.array, orientation)
        affine = image.affine @ nio.inv_ornt_aff(orientation, image.shape)
        canonical = replace(image, array=np.ascontiguousarray(array), affine=affine)
        return cls(canonical, image.affine.copy(), orientation, image.shape)

    def from_input(self, array: np.ndarray) -> np.ndarray:
        """Map an array on the input image's grid onto the canonical grid."""
        return np.ascontiguousarray(nio.apply_orientation(np.asarray(array), self.orientation))

    def to_input(self, array: np.ndarray) -> np.ndarray:
        """Map an array on the canonical grid back to the input image's grid."""
        identity = np.array([[0, 1], [1, 1], [2, 1]], dtype=float)
        back = nio.ornt_transform(identity, self.orientation)
        return np.ascontiguousarray(nio.apply_orientation(array, back))

    def voxel_from_input(self, ijk: np.ndarray) -> np.ndarray:
        """Input-grid voxel indices expressed as canonical-grid voxel indices."""
        ijk = np.asarray(ijk, dtype=np.float64)
        world = ijk @ self.input_affine[:3, :3].T + self.input_affine[:3, 3]
        return self.image.world_to_voxel(world)

    def voxel_to_input(self, ijk: np.ndarray) -> np.ndarray:
        """Canonical-grid voxel indices expressed as input-grid voxel indices."""
        inv = np.linalg.inv(self.input_affine)
        return self.image.voxel_to_world(ijk) @ inv[:3, :3].T + inv[:3, 3]
