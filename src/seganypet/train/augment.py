"""Cheap CPU augmentation of one crop and its target mask (torch ops, random numbers from numpy).

Spatial (on the raw SUV crop, before normalisation, so padding stays zero):

- a flip of each axis with ``flip_probability``;
- with ``geometric_probability``, one resampling: a rotation by up to ``rotation_degrees`` about
  a random axis and a zoom drawn from ``zoom_range`` (>1 enlarges the content), both about the
  crop centre. The image is interpolated trilinearly (zero outside), the mask trilinearly and
  thresholded at 0.5.

Intensity (on the normalised crop): ``x * scale + shift``, scale from ``intensity_scale_range``,
shift uniform in ``±intensity_shift``. A scaling of the SUV before normalisation would be undone
by the z-score, so contrast and brightness are varied after it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Augmentation:
    flip_probability: float = 0.5
    geometric_probability: float = 0.5
    rotation_degrees: float = 10.0
    zoom_range: tuple[float, float] = (0.9, 1.1)
    intensity_scale_range: tuple[float, float] = (0.9, 1.1)
    intensity_shift: float = 0.1

    @classmethod
    def from_config(cls, config) -> Augmentation:
        """From a :class:`~seganypet.train.config.TrainConfig` (same field names)."""
        return cls(
            flip_probability=config.flip_probability,
            geometric_probability=config.geometric_probability,
            rotation_degrees=config.rotation_degrees,
            zoom_range=tuple(config.zoom_range),
            intensity_scale_range=tuple(config.intensity_scale_range),
            intensity_shift=config.intensity_shift,
        )

    def spatial(
        self, image: torch.Tensor, mask: torch.Tensor, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Flip, rotate and zoom a ``(D, H, W)`` crop and its boolean mask alike."""
        flips = [axis for axis in range(3) if rng.random() < self.flip_probability]
        if flips:
            image = torch.flip(image, flips)
            mask = torch.flip(mask, flips)
        if rng.random() < self.geometric_probability:
            angle = math.radians(rng.uniform(-self.rotation_degrees, self.rotation_degrees))
            axis = rng.normal(size=3)
            zoom = rng.uniform(*self.zoom_range)
            sampling = rotation_matrix(axis, angle) / zoom
            image, mask = _resample_about_centre(image, mask, sampling)
        return image, mask

    def intensity(self, image: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        scale = rng.uniform(*self.intensity_scale_range)
        shift = rng.uniform(-self.intensity_shift, self.intensity_shift)
        return image * float(scale) + float(shift)


def rotation_matrix(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rotation by ``angle`` (radians) about ``axis`` (Rodrigues' formula)."""
    axis = np.asarray(axis, dtype=np.float64)
    norm = np.linalg.norm(axis)
    if norm == 0:
        return np.eye(3)
    x, y, z = axis / norm
    cross = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) + math.sin(angle) * cross + (1 - math.cos(angle)) * cross @ cross


def _resample_about_centre(
    image: torch.Tensor, mask: torch.Tensor, sampling: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """Output voxel ``v`` takes the input at ``c + sampling @ (v - c)`` (voxel units, axis order)."""
    size = np.asarray(image.shape, dtype=np.float64)
    # affine_grid works in normalised (x, y, z) = (W, H, D) coordinates, align_corners=False:
    # voxel v <-> (2v + 1) / n - 1. In those units the voxel-space matrix becomes S^-1 A S.
    flip = np.eye(3)[::-1]  # (D, H, W) <-> (W, H, D)
    half = np.diag(size[::-1] / 2.0)
    theta = np.linalg.inv(half) @ flip @ sampling @ flip @ half
    theta_t = torch.zeros(1, 3, 4, dtype=torch.float32)
    theta_t[0, :, :3] = torch.from_numpy(theta.astype(np.float32))
    shape = (1, 1, *image.shape)
    grid = F.affine_grid(theta_t, shape, align_corners=False)
    stacked = torch.stack([image.to(torch.float32), mask.to(torch.float32)])[:, None]
    out = F.grid_sample(
        stacked,
        grid.expand(2, -1, -1, -1, -1),
        mode="bilinear",
        padding_mode="zeros",
        align_corners=False,
    )
    return out[0, 0], out[1, 0] >= 0.5


__all__ = ["Augmentation", "rotation_matrix"]
