"""The simulated user of training and validation, and the click rounds that drive a network.

A batch's prompts (:class:`Prompts`) start with a first prompt per crop (:func:`first_prompts`):
a positive click at the target's hottest voxel, its most interior voxel (EDT maximum) or a random
target voxel, or, for a whole batch, a jittered bounding box. Every later round adds one corrective click per
crop, placed from the network's *current* error (:func:`corrective_click`): at the centre of the
largest error region (``next_click_at_error_centre``, computed on the region's bounding box) or at a random error voxel
(``next_click_at_random_error``, SAM-Med3D's user); positive where foreground is missed,
negative where the mask leaks. With ``scribble_probability`` a first or corrective prompt is
instead a scribble through the target or the largest error (on a slice across a random crop
axis, as a reader draws in any of the three views), reaching the network as the clicks along
its line that the session gives it. Points accumulate; crops that are already perfect get no
click (their lists are padded with label -1).

:func:`click_rounds` is the loop itself. It only calls ``decode(embedding, points, labels,
boxes, mask_logits)`` of the :class:`~seganypet.model.network.PromptableNetwork` protocol,
feeding each round's low-resolution logits back (detached) as the next round's mask input, and
yields each round's logits upsampled to the crop (trilinear, as the interactive session does).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from seganypet.model.network import point_label
from seganypet.prompts import (
    Point,
    Prompt,
    hottest_voxel,
    largest_error_region,
    mask_extent,
    most_interior_voxel,
    next_click_at_random_error,
    scribble_in_region,
)

Decode = Callable[..., tuple[torch.Tensor, torch.Tensor]]


@dataclass
class Prompts:
    """Per-crop point lists (crop voxel indices) and labels, and optional boxes ``(B, 2, 3)``.

    ``reads_strokes``: the network reads a scribble's clicks apart (their own point labels)."""

    points: list[list[tuple[float, float, float]]]
    labels: list[list[int]]
    boxes: np.ndarray | None = None
    reads_strokes: bool = False

    @classmethod
    def empty(cls, batch: int, reads_strokes: bool = False) -> Prompts:
        return cls([[] for _ in range(batch)], [[] for _ in range(batch)], None, reads_strokes)

    def add(
        self, item: int, voxel: Sequence[float], positive: bool, along_line: bool = False
    ) -> None:
        self.points[item].append(tuple(float(v) for v in voxel))  # type: ignore[arg-type]
        self.labels[item].append(point_label(positive, along_line, self.reads_strokes))

    def add_prompt(self, item: int, prompt: Prompt) -> None:
        """The clicks a click or scribble gives the network."""
        for click in prompt.clicks():
            self.add(item, click.voxel, click.positive, prompt.clicks_along_line)

    def point_tensors(
        self, device: torch.device
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """``(B, N, 3)`` float points and ``(B, N)`` labels, padded with label -1; None if none."""
        count = max(len(p) for p in self.points)
        if count == 0:
            return None, None
        batch = len(self.points)
        points = torch.zeros((batch, count, 3), dtype=torch.float32)
        labels = torch.full((batch, count), -1, dtype=torch.int64)
        for item, (pts, labs) in enumerate(zip(self.points, self.labels, strict=True)):
            if pts:
                points[item, : len(pts)] = torch.tensor(pts, dtype=torch.float32)
                labels[item, : len(labs)] = torch.tensor(labs, dtype=torch.int64)
        return points.to(device), labels.to(device)

    def box_tensor(self, device: torch.device) -> torch.Tensor | None:
        if self.boxes is None:
            return None
        return torch.as_tensor(self.boxes, dtype=torch.float32, device=device)


def interior_voxel(mask: np.ndarray) -> tuple[int, int, int]:
    """``most_interior_voxel(mask)``, computed on the mask's bounding box only.

    Exact: for a voxel inside the box, the nearest background voxel outside the box can be
    replaced by its clamp onto the one-voxel margin around the box, which is background too and
    no farther; and the first maximum in C order stays the first one.
    """
    where = np.argwhere(mask)
    lo = where.min(0)
    hi = where.max(0) + 1
    inner = most_interior_voxel(mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]])
    return tuple(int(v) for v in np.asarray(inner) + lo)  # type: ignore[return-value]


def click_at_error_centre(prediction: np.ndarray, target: np.ndarray) -> Point | None:
    """``next_click_at_error_centre`` (isotropic crop voxels), with :func:`interior_voxel`."""
    region = largest_error_region(prediction.astype(bool), target.astype(bool))
    if region is None:
        return None
    error, missed = region
    return Point(tuple(float(v) for v in interior_voxel(error)), positive=missed)


def first_click(
    target: np.ndarray,
    rng: np.random.Generator,
    interior_probability: float,
    image: np.ndarray | None = None,
    hottest_probability: float = 0.0,
) -> tuple[int, int, int]:
    """Where the first click goes: the target's hottest voxel in ``image`` (with
    ``hottest_probability``, where a reader clicks), else its EDT-most-interior voxel (with
    ``interior_probability``), else a random target voxel."""
    if image is not None and hottest_probability > 0 and rng.random() < hottest_probability:
        return hottest_voxel(image, target)
    if rng.random() < interior_probability:
        return interior_voxel(target)
    voxels = np.argwhere(target)
    return tuple(int(v) for v in voxels[int(rng.integers(len(voxels)))])  # type: ignore[return-value]


def jittered_box(target: np.ndarray, rng: np.random.Generator, jitter: float) -> np.ndarray:
    """The target's bounding box, each corner moved by up to ``jitter`` x the box extent
    (at least one voxel), kept inside the crop: ``(2, 3)`` inclusive corners."""
    lo, hi = mask_extent(target)
    reach = np.maximum(1, np.round(jitter * (hi - lo + 1))).astype(np.int64)
    lo = lo + rng.integers(-reach, reach + 1)
    hi = hi + rng.integers(-reach, reach + 1)
    last = np.asarray(target.shape) - 1
    lo = np.clip(lo, 0, last)
    hi = np.clip(hi, 0, last)
    return np.stack([np.minimum(lo, hi), np.maximum(lo, hi)]).astype(np.float32)


def first_prompts(
    targets: np.ndarray,
    rngs: Sequence[np.random.Generator],
    *,
    use_box: bool,
    interior_probability: float,
    box_jitter: float,
    images: np.ndarray | None = None,
    hottest_probability: float = 0.0,
    scribble_probability: float = 0.0,
    reads_strokes: bool = False,
) -> Prompts:
    """The first prompt of every crop of ``targets`` ``(B, D, H, W)`` bool: a click, a scribble
    (``scribble_probability``), or a box.

    ``images`` ``(B, D, H, W)`` are the crops' values, for the hottest first click;
    ``reads_strokes`` is the network's (see :class:`Prompts`).
    """
    prompts = Prompts.empty(len(targets), reads_strokes)
    if use_box:
        prompts.boxes = np.stack(
            [jittered_box(t, rng, box_jitter) for t, rng in zip(targets, rngs, strict=True)]
        )
        return prompts
    for item, (target, rng) in enumerate(zip(targets, rngs, strict=True)):
        if scribble_probability > 0 and rng.random() < scribble_probability:
            prompts.add_prompt(item, _scribble(target, True, rng))
            continue
        image = None if images is None else images[item]
        voxel = first_click(target, rng, interior_probability, image, hottest_probability)
        prompts.add(item, voxel, positive=True)
    return prompts


def _scribble(region: np.ndarray, positive: bool, rng: np.random.Generator) -> Prompt:
    return scribble_in_region(region, positive, axis=int(rng.integers(3)))


def corrective_click(
    prediction: np.ndarray,
    target: np.ndarray,
    rng: np.random.Generator,
    error_centre_probability: float,
    image: np.ndarray | None = None,
    hottest_probability: float = 0.0,
    scribble_probability: float = 0.0,
) -> Prompt | None:
    """The next prompt from the current error: a :class:`~seganypet.prompts.Point`, a
    :class:`~seganypet.prompts.Scribble` through the largest error (``scribble_probability``),
    or None when there is no error.

    With ``hottest_probability`` (and the crop's ``image``) the click goes to the hottest voxel of
    the error, as a reader clicks a hot leak away or the hottest part of what was missed; else
    to the centre of the largest error (``error_centre_probability``) or a random error voxel.
    """
    if scribble_probability > 0 and rng.random() < scribble_probability:
        region = largest_error_region(prediction, target)
        return None if region is None else _scribble(region[0], region[1], rng)
    if image is not None and hottest_probability > 0 and rng.random() < hottest_probability:
        error = prediction != target
        if not error.any():
            return None
        voxel = hottest_voxel(image, error)
        return Point(tuple(float(i) for i in voxel), positive=bool(target[voxel]))
    if rng.random() < error_centre_probability:
        return click_at_error_centre(prediction, target)
    return next_click_at_random_error(prediction, target, rng)


def upsample_logits(low_res: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Low-resolution logits to the crop, trilinear, float32 (as the session upsamples them)."""
    return F.interpolate(low_res.float(), size=tuple(size), mode="trilinear", align_corners=False)


@dataclass
class Round:
    """One decoder round: logits at crop resolution (with gradients if recorded) and IoU."""

    index: int
    logits: torch.Tensor  # (B, 1, *input_size) float32
    low_res_logits: torch.Tensor  # (B, 1, *low_res_size)
    iou: torch.Tensor  # (B, 1)


def click_rounds(
    decode: Decode,
    embedding,
    prompts: Prompts,
    targets: np.ndarray,
    rounds: int,
    next_click: Callable[[np.ndarray, np.ndarray, int], object],
    *,
    input_size: Sequence[int],
    device: torch.device,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> Iterator[Round]:
    """Run ``rounds`` prompt rounds on one embedding; yields every round.

    ``next_click(prediction, target, item)`` gives the corrective prompt (or None) of crop
    ``item`` from its current binary prediction. ``prompts`` is updated in place, so after the
    loop it holds every click that was given.
    """
    mask_logits = None
    previous: torch.Tensor | None = None
    for index in range(rounds):
        if previous is not None:
            prediction = previous.detach().cpu().numpy()[:, 0] > 0
            for item in range(len(targets)):
                prompt = next_click(prediction[item], targets[item], item)
                if prompt is not None:
                    prompts.add_prompt(item, prompt)
        points, labels = prompts.point_tensors(device)
        with autocast():
            low_res, iou = decode(
                embedding,
                points,
                labels,
                boxes=prompts.box_tensor(device),
                mask_logits=mask_logits,
            )
        logits = upsample_logits(low_res, input_size)
        yield Round(index, logits, low_res, iou)
        previous = logits
        mask_logits = low_res.detach().float()


def dice_scores(prediction: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Dice per item of boolean ``(B, ...)`` arrays; 1 where both are empty."""
    axes = tuple(range(1, prediction.ndim))
    overlap = np.logical_and(prediction, target).sum(axes)
    total = prediction.sum(axes) + target.sum(axes)
    return np.where(total > 0, 2.0 * overlap / np.maximum(total, 1), 1.0)


__all__ = [
    "Prompts",
    "Round",
    "click_at_error_centre",
    "click_rounds",
    "corrective_click",
    "dice_scores",
    "first_click",
    "first_prompts",
    "interior_voxel",
    "jittered_box",
    "upsample_logits",
]
