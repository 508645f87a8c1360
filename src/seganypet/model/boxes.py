"""3D box prompts, for networks with and without learned box embeddings.

A box is two voxel corners of the crop, ``[[d0, h0, w0], [d1, h1, w1]]`` with ``d0 <= d1`` etc.,
both inclusive, in the crop tensor's axis order (like points).

Networks with learned box corners (``config.has_box_embeddings``, our own trained models) embed
the two corners with their own tokens, as SAM does in 2D.

The released SegAnyPET / SAM-Med3D weights were never trained with boxes (their box-corner
embeddings do not exist), so for them a box is *mapped*:

1. a positive click at the box centre ``(lo + hi) / 2`` is added to the points, and
2. the low-resolution logits outside the box are pushed down to at most
   :data:`BOX_OUTSIDE_LOGIT` (a low-resolution voxel counts as inside when its block of crop
   voxels overlaps the box), so the mask never leaves the box, also when those logits are fed
   back as the next round's mask input.

No dense mask prior is fed for the box: the mask input of the released weights only ever saw
their own previous logits, and an invented prior would be out of distribution. Clip the
full-resolution mask with :func:`box_mask` as well after upsampling.
"""

from __future__ import annotations

import torch

from seganypet.errors import InputError

#: Logit that low-resolution voxels outside a mapped box are capped at (sigmoid ~ 2e-9).
BOX_OUTSIDE_LOGIT = -20.0


def as_boxes(boxes, batch: int, input_size: tuple[int, int, int], device=None) -> torch.Tensor:
    """Boxes as float ``(B, 2, 3)``; accepts ``(2, 3)``, ``(6,)``, ``(B, 6)`` or ``(B, 2, 3)``."""
    t = torch.as_tensor(boxes, dtype=torch.float32, device=device)
    if t.ndim == 1 and t.numel() == 6:
        t = t.reshape(1, 2, 3)
    elif t.ndim == 2 and t.shape == (2, 3):
        t = t.reshape(1, 2, 3)
    elif t.ndim == 2 and t.shape[1] == 6:
        t = t.reshape(-1, 2, 3)
    if t.ndim != 3 or t.shape[1:] != (2, 3):
        raise InputError(
            f"a box is two corners [[d0, h0, w0], [d1, h1, w1]]; got shape {tuple(t.shape)}"
        )
    if t.shape[0] == 1 and batch > 1:
        t = t.expand(batch, 2, 3)
    if t.shape[0] != batch:
        raise InputError(f"{t.shape[0]} boxes given for a batch of {batch}")
    if not torch.isfinite(t).all():
        raise InputError("box corners must be finite numbers")
    if (t[:, 0] > t[:, 1]).any():
        raise InputError("a box's first corner must not exceed its second corner on any axis")
    size = torch.tensor(input_size, dtype=torch.float32, device=t.device)
    if (t[:, 1] < 0).any() or (t[:, 0] > size - 1).any():
        raise InputError(f"the box lies outside the {tuple(input_size)} crop")
    return t


def box_centre_points(boxes: torch.Tensor) -> torch.Tensor:
    """The centre of each box as one point per item, ``(B, 1, 3)``."""
    return ((boxes[:, 0] + boxes[:, 1]) / 2).unsqueeze(1)


def box_mask(
    boxes: torch.Tensor, shape: tuple[int, int, int], scale: float | tuple = 1.0
) -> torch.Tensor:
    """Boolean ``(B, 1, *shape)``: the cells of a grid ``scale`` crop voxels wide that overlap a box."""
    scales = scale if isinstance(scale, tuple) else (scale,) * 3
    masks = []
    for axis in range(3):
        idx = torch.arange(shape[axis], device=boxes.device, dtype=torch.float32)
        first = idx * scales[axis]
        last = (idx + 1) * scales[axis] - 1
        lo = boxes[:, 0, axis, None]
        hi = boxes[:, 1, axis, None]
        masks.append((last >= lo) & (first <= hi))  # (B, n)
    md, mh, mw = masks
    inside = md[:, :, None, None] & mh[:, None, :, None] & mw[:, None, None, :]
    return inside.unsqueeze(1)


def clip_logits_to_boxes(
    logits: torch.Tensor, boxes: torch.Tensor, input_size: tuple[int, int, int]
) -> torch.Tensor:
    """Cap logits ``(B, M, *low_res)`` outside each box at :data:`BOX_OUTSIDE_LOGIT`."""
    low_res = tuple(logits.shape[2:])
    scale = tuple(i / r for i, r in zip(input_size, low_res, strict=True))
    inside = box_mask(boxes, low_res, scale)
    capped = torch.clamp(logits, max=BOX_OUTSIDE_LOGIT)
    return torch.where(inside, logits, capped)
