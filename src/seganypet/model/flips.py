"""Test-time flips: a promptable network averaged over mirrored copies of each crop.

:class:`FlipAveraged` wraps any :class:`~seganypet.model.network.PromptableNetwork` and is one
itself. ``embed`` embeds the crop and its mirror images along each set of axes in ``flips``;
``decode`` mirrors the prompts to match (a point's index ``i`` on a flipped axis of ``n`` voxels
becomes ``n - 1 - i``; a box's corners swap on that axis; the previous logits are mirrored), runs
every copy, mirrors the logits back and averages them. The IoU scores are averaged too. Each flip
costs one more embedding per crop and one more decode per click.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from seganypet.errors import InputError
from seganypet.model.network import PromptableNetwork

#: The identity and the three single-axis mirrors.
SINGLE_AXIS_FLIPS: tuple[tuple[int, ...], ...] = ((), (0,), (1,), (2,))


class FlipAveraged:
    """``network`` averaged over the mirror images ``flips`` (axes of the crop, 0-2)."""

    def __init__(
        self,
        network: PromptableNetwork,
        flips: Sequence[Sequence[int]] = SINGLE_AXIS_FLIPS,
    ) -> None:
        flips = tuple(tuple(sorted(set(int(a) for a in axes))) for axes in flips)
        if not flips or any(a not in (0, 1, 2) for axes in flips for a in axes):
            raise InputError("test-time flips: give sets of crop axes among 0, 1 and 2")
        self.network = network
        self.flips = flips
        self.config = network.config

    def __getattr__(self, name: str) -> Any:  # device, dtype, precision, ... of the network
        return getattr(self.network, name)

    def embed(self, image: torch.Tensor) -> list[Any]:
        image = torch.as_tensor(image)
        if image.ndim == 3:
            image = image[None, None]
        return [self.network.embed(_mirror(image, axes, offset=2)) for axes in self.flips]

    def decode(
        self,
        embedding: list[Any],
        points: Any,
        labels: Any,
        boxes: Any = None,
        mask_logits: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        size = self.config.input_size
        logits_sum, iou_sum = None, None
        for axes, part in zip(self.flips, embedding, strict=True):
            low_res, iou = self.network.decode(
                part,
                _mirror_points(points, axes, size),
                labels,
                boxes=_mirror_boxes(boxes, axes, size),
                mask_logits=None if mask_logits is None else _mirror(mask_logits, axes, 2),
            )
            low_res = _mirror(low_res, axes, offset=2)
            logits_sum = low_res if logits_sum is None else logits_sum + low_res
            iou_sum = iou if iou_sum is None else iou_sum + iou
        assert logits_sum is not None and iou_sum is not None
        count = len(self.flips)
        return logits_sum / count, iou_sum / count


def _mirror(volume: torch.Tensor, axes: tuple[int, ...], offset: int) -> torch.Tensor:
    """``volume`` mirrored along crop ``axes`` (tensor dims ``offset + axis``)."""
    return torch.flip(volume, [offset + a for a in axes]) if axes else volume


def _mirror_points(points: Any, axes: tuple[int, ...], size: Sequence[int]) -> Any:
    if points is None or not axes:
        return points
    mirrored = torch.as_tensor(points, dtype=torch.float32).clone()
    for axis in axes:
        mirrored[..., axis] = size[axis] - 1 - mirrored[..., axis]
    return mirrored


def _mirror_boxes(boxes: Any, axes: tuple[int, ...], size: Sequence[int]) -> Any:
    if boxes is None or not axes:
        return boxes
    corners = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 2, 3).clone()
    for axis in axes:
        lo, hi = corners[:, 0, axis].clone(), corners[:, 1, axis].clone()
        corners[:, 0, axis] = size[axis] - 1 - hi
        corners[:, 1, axis] = size[axis] - 1 - lo
    return corners
