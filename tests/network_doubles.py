"""Stand-ins for a promptable network, for tests of the geometry around it (session, server)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from seganypet.model.config import ModelConfig


def double_config(input_size: int, spacing_mm: float) -> ModelConfig:
    return ModelConfig(
        preset="double",
        input_size=input_size,
        spacing_mm=spacing_mm,
        normalisation="none",
        low_res_size=input_size // 4,
    )


class SphereNetwork:
    """Predicts a sphere of ``radius`` crop voxels around the first positive point."""

    reads_strokes = False

    def __init__(self, radius: float = 8.0, input_size: int = 64, spacing_mm: float = 2.0):
        self.config = double_config(input_size, spacing_mm)
        self.radius = radius
        self.embed_calls = 0

    def embed(self, crop):
        self.embed_calls += 1
        return crop

    def decode(self, embedding, points, labels, boxes=None, mask_logits=None):
        low = self.config.low_res_size[0]
        centres = (torch.arange(low, dtype=torch.float32) + 0.5) * 4 - 0.5
        grid = torch.stack(torch.meshgrid(centres, centres, centres, indexing="ij"), -1)
        first = points[0, labels[0] == 1][0]
        logits = self.radius - torch.linalg.norm(grid - first, dim=-1)
        return logits[None, None], torch.ones(1, 1)


class ThresholdNetwork:
    """Segments every crop voxel above ``threshold``, minus spheres around negative clicks."""

    reads_strokes = False

    def __init__(self, threshold: float = 1.0, input_size: int = 64, spacing_mm: float = 2.0):
        self.config = double_config(input_size, spacing_mm)
        self.threshold = threshold

    def embed(self, crop):
        return crop

    def decode(self, embedding, points, labels, boxes=None, mask_logits=None):
        low = F.avg_pool3d(embedding, 4)[0, 0] - self.threshold
        size = self.config.low_res_size[0]
        centres = (torch.arange(size, dtype=torch.float32) + 0.5) * 4 - 0.5
        grid = torch.stack(torch.meshgrid(centres, centres, centres, indexing="ij"), -1)
        for point, label in zip(points[0], labels[0], strict=True):
            if label == 0:
                low = torch.where(torch.linalg.norm(grid - point, dim=-1) < 6, -5.0, low)
        return (low * 4)[None, None], torch.ones(1, 1)
