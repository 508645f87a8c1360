"""What one training step computes: the interactive click loop, its loss, and CPCL targets.

Per batch of crops the image is embedded once (with gradients) and decoded ``click_rounds``
times (see :mod:`seganypet.train.clicks`). Every round's low-resolution logits are upsampled
trilinearly to the crop and compared with the full-resolution target, as SAM-Med3D trains and as
the interactive session uses the logits: small lesions that would vanish from a 2x-downsampled
target keep their voxels, and the loss sees the same mask the user will see.

Loss per round and crop: binary cross-entropy (mean over voxels) + soft Dice (1 - Dice of the
sigmoid probabilities), plus ``iou_loss_weight`` x the squared error of the IoU head against the
round's true IoU (so that the head's score means something), plus ``monotone_loss_weight`` x by
how much the round's soft Dice fell below the round before (a corrective click must not make
the mask worse; 0 turns it off). The rounds are summed; the crops
are averaged, each multiplied by its weight (1, or ``cpcl_weight`` for low-quality labels under
``--cpcl``).

CPCL (``--cpcl``): cross-prompting label rectification for crops whose labels are marked low
quality (``label_quality: low`` in a data set, or ``low_quality_data``; with no data set marked,
every crop is treated so). Before the rounds, the network decodes the same embedding ``K =
cpcl_passes`` times without gradients, each pass from its own prompt set: 1 to
``cpcl_max_clicks`` positive clicks at random voxels of the label, no mask input. With ``p_k`` the
K probability maps, ``mean`` their mean and ``var`` their voxel-wise (population) variance, the
rectified target is

    target = mean    where var <  cpcl_variance_threshold   (the prompts agree: trust the model)
    target = label   where var >= cpcl_variance_threshold   (the prompts disagree: keep the label)

and the crop's loss (every round, against this soft target) is weighted by ``cpcl_weight``. Why:
when differently prompted predictions agree, the network's answer there does not hinge on where
the user clicked; it is the image speaking, and a noisy label that contradicts it is more likely
wrong than the network. Where the predictions depend on the prompts, the network does not know
and the label is the best evidence. The lower weight bounds what a low-quality label, rectified
or not, can pull. Rectification starts at ``cpcl_start_step`` (before it, low-quality crops learn
their label at the lower weight) because an untrained network agrees with itself everywhere. The
simulated user still clicks from the label: it plays the annotator.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from seganypet.model.network import CLICK_LABELS, STROKE_LABELS
from seganypet.train.clicks import (
    Prompts,
    click_rounds,
    corrective_click,
    dice_scores,
    first_prompts,
    upsample_logits,
)
from seganypet.train.config import TrainConfig

DICE_EPSILON = 1.0


def trainable_calls(network) -> tuple[Callable, Callable]:
    """The network's ``embed`` and ``decode`` in forms that record gradients.

    The :class:`~seganypet.model.network.PromptableNetwork` calls are inference calls (SamMed3D
    runs them under ``no_grad``). A family that also exposes the same two calls with gradients as
    ``encode_image(crop)`` and ``predict(embedding, points, labels, boxes, mask_logits)`` (as
    :class:`~seganypet.model.network.SamMed3D` does) is trained through those; for any other
    family ``embed``/``decode`` themselves must record gradients when grad mode is on. Nothing
    else of the network is used, so every family trains through this same loop.
    """
    embed = getattr(network, "encode_image", None)
    decode = getattr(network, "predict", None)
    if callable(embed) and callable(decode):
        return embed, decode
    return network.embed, network.decode


def dice_ce_per_item(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE (mean over voxels) + soft Dice loss, per crop: ``(B,)``. ``target`` may be soft."""
    logits = logits.float().flatten(1)
    target = target.float().flatten(1)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(1)
    return bce + (1 - soft_dice_per_item(logits, target))


def soft_dice_per_item(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Soft Dice of the sigmoid probabilities per crop: ``(B,)``."""
    probabilities = torch.sigmoid(logits.float().flatten(1))
    target = target.float().flatten(1)
    overlap = (probabilities * target).sum(1)
    return (2 * overlap + DICE_EPSILON) / (probabilities.sum(1) + target.sum(1) + DICE_EPSILON)


def hard_iou(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU per crop of boolean tensors ``(B, ...)``; 1 where both are empty."""
    prediction, target = prediction.flatten(1), target.flatten(1)
    union = (prediction | target).sum(1).float()
    overlap = (prediction & target).sum(1).float()
    return torch.where(union > 0, overlap / union.clamp(min=1), torch.ones_like(union))


def random_target_clicks(
    targets: np.ndarray, rngs: Sequence[np.random.Generator], max_clicks: int
) -> Prompts:
    """For every crop 1..``max_clicks`` positive clicks at random voxels of its target."""
    prompts = Prompts.empty(len(targets))
    for item, (target, rng) in enumerate(zip(targets, rngs, strict=True)):
        voxels = np.argwhere(target)
        count = int(rng.integers(1, max_clicks + 1))
        for row in rng.integers(len(voxels), size=count):
            prompts.add(item, voxels[row], positive=True)
    return prompts


@dataclass
class Rectification:
    targets: torch.Tensor  # (B, 1, D, H, W) soft targets
    confident_fraction: float  # share of voxels where the prompts agreed
    changed_fraction: float  # share of voxels whose hard target differs from the label


def rectify_targets(
    decode: Callable,
    embedding,
    labels: torch.Tensor,
    rngs: Sequence[np.random.Generator],
    *,
    passes: int,
    max_clicks: int,
    variance_threshold: float,
    input_size: Sequence[int],
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> Rectification:
    """CPCL's rectified targets for every crop of ``labels`` ``(B, 1, D, H, W)``; module docstring."""
    label_masks = labels[:, 0].cpu().numpy() > 0.5
    device = labels.device
    probabilities = []
    with torch.no_grad():
        for _ in range(passes):
            prompts = random_target_clicks(label_masks, rngs, max_clicks)
            points, point_labels = prompts.point_tensors(device)
            with autocast():
                low_res, _ = decode(embedding, points, point_labels, boxes=None, mask_logits=None)
            probabilities.append(torch.sigmoid(upsample_logits(low_res, input_size)))
        stacked = torch.stack(probabilities)
        mean = stacked.mean(0)
        variance = stacked.var(0, unbiased=False)
        confident = variance < variance_threshold
        targets = torch.where(confident, mean, labels.float())
        changed = (targets > 0.5) != (labels > 0.5)
    return Rectification(
        targets=targets,
        confident_fraction=float(confident.float().mean()),
        changed_fraction=float(changed.float().mean()),
    )


@dataclass
class StepPlan:
    """The random choices of one step that are not the crops themselves."""

    rngs: list[np.random.Generator]  # one per crop: first prompt, clicks, CPCL prompts
    use_box: bool  # the batch's first prompt is a box
    rectify: bool  # CPCL rectification is on at this step


class InteractiveObjective(nn.Module):
    """The training forward pass around a network; wrap this in DDP, not the bare network."""

    def __init__(self, network: nn.Module, config: TrainConfig) -> None:
        super().__init__()
        self.network = network
        self.config = config

    def _autocast(self, device: torch.device):
        if self.config.precision == "bf16":
            return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext

    def forward(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        low_quality: torch.Tensor,
        plan: StepPlan,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """``images``/``targets`` ``(B, 1, *input_size)``, ``low_quality`` ``(B,)`` bool.

        Returns the loss and plain-number statistics of the step.
        """
        config = self.config
        network = self.network
        input_size = network.config.input_size
        device = images.device
        autocast = self._autocast(device)
        embed, decode = trainable_calls(network)
        with autocast():
            embedding = embed(images)

        target_masks = targets[:, 0].cpu().numpy() > 0.5
        loss_targets = targets
        weights = torch.ones(len(images), device=device)
        stats: dict[str, float] = {}
        if config.cpcl and bool(low_quality.any()):
            weights = torch.where(low_quality.to(device), config.cpcl_weight, 1.0)
            if plan.rectify:
                rectified = rectify_targets(
                    decode,
                    embedding,
                    targets,
                    plan.rngs,
                    passes=config.cpcl_passes,
                    max_clicks=config.cpcl_max_clicks,
                    variance_threshold=config.cpcl_variance_threshold,
                    input_size=input_size,
                    autocast=autocast,
                )
                chosen = low_quality.to(device).view(-1, 1, 1, 1, 1)
                loss_targets = torch.where(chosen, rectified.targets, targets)
                stats["cpcl_confident_fraction"] = rectified.confident_fraction
                stats["cpcl_changed_fraction"] = rectified.changed_fraction

        wants_values = (
            config.first_click_hottest_probability > 0 or config.error_hottest_probability > 0
        )
        crop_values = images[:, 0].detach().float().cpu().numpy() if wants_values else None
        prompts = first_prompts(
            target_masks,
            plan.rngs,
            use_box=plan.use_box,
            interior_probability=config.first_click_interior_probability,
            box_jitter=config.box_jitter,
            images=crop_values,
            hottest_probability=config.first_click_hottest_probability,
            scribble_probability=config.scribble_probability,
            reads_strokes=network.reads_strokes,
        )

        def next_click(prediction: np.ndarray, target: np.ndarray, item: int):
            return corrective_click(
                prediction,
                target,
                plan.rngs[item],
                config.error_centre_probability,
                None if crop_values is None else crop_values[item],
                config.error_hottest_probability,
                config.scribble_probability,
            )

        hard_targets = loss_targets > 0.5
        total = torch.zeros((), device=device)
        last = None
        previous_dice: torch.Tensor | None = None
        lowered = []
        for round_ in click_rounds(
            decode,
            embedding,
            prompts,
            target_masks,
            config.click_rounds,
            next_click,
            input_size=input_size,
            device=device,
            autocast=autocast,
        ):
            if round_.index == 0 and torch.is_grad_enabled() and not round_.logits.requires_grad:
                raise TypeError(
                    f"{type(network).__name__}: its decode returned logits without gradients; a "
                    "trainable network must record gradients (see trainable_calls)"
                )
            segmentation = dice_ce_per_item(round_.logits, loss_targets)
            with torch.no_grad():
                true_iou = hard_iou(round_.logits > 0, hard_targets)
            iou_error = (round_.iou.float()[:, 0] - true_iou) ** 2
            per_crop = segmentation + config.iou_loss_weight * iou_error
            dice = soft_dice_per_item(round_.logits, hard_targets)
            if previous_dice is not None:
                drop = torch.relu(previous_dice - dice)
                per_crop = per_crop + config.monotone_loss_weight * drop
                lowered.append(float((drop > 1e-3).float().mean()))
            previous_dice = dice.detach()
            if config.click_loss_weight > 0:
                per_crop = per_crop + config.click_loss_weight * clicked_voxel_loss(
                    round_.logits, prompts
                )
            total = total + (per_crop * weights).mean()
            last = round_
        assert last is not None
        predictions = last.logits.detach().cpu().numpy()[:, 0] > 0
        stats["train_dice"] = float(dice_scores(predictions, target_masks).mean())
        stats["points"] = float(np.mean([len(p) for p in prompts.points]))
        if lowered:
            stats["rounds_lowering_dice"] = float(np.mean(lowered))
        return total, stats


POSITIVE_LABELS = (CLICK_LABELS[True], STROKE_LABELS[True])


def clicked_voxel_loss(logits: torch.Tensor, prompts: Prompts) -> torch.Tensor:
    """Per crop, the mean binary cross-entropy of ``logits`` ``(B, 1, D, H, W)`` at the voxels of
    its clicks so far, each labelled as its click (0 for crops without clicks): what a reader
    expects first, that a negative click's own voxel leaves the mask and a positive one's
    joins it."""
    losses = []
    top = torch.tensor(logits.shape[2:]) - 1
    for points, labels in zip(prompts.points, prompts.labels, strict=True):
        if not points:
            losses.append(logits.new_zeros(()))
            continue
        voxels = torch.minimum(torch.tensor(points).round().long().clamp(min=0), top)
        voxels = voxels.to(logits.device)
        values = logits[len(losses), 0, voxels[:, 0], voxels[:, 1], voxels[:, 2]].float()
        positive = torch.tensor(
            [label in POSITIVE_LABELS for label in labels], device=values.device
        )
        losses.append(F.binary_cross_entropy_with_logits(values, positive.float()))
    return torch.stack(losses)


__all__ = [
    "InteractiveObjective",
    "clicked_voxel_loss",
    "Rectification",
    "StepPlan",
    "dice_ce_per_item",
    "hard_iou",
    "random_target_clicks",
    "rectify_targets",
    "trainable_calls",
]
