"""The promptable network interface, and the SAM-Med3D network that implements it.

The interactive session drives every model family through two calls (:class:`PromptableNetwork`):

- ``embed(image)``: a normalised crop ``(B, 1, D, H, W)`` (float32, the config's input size and
  normalisation) to an opaque embedding, computed once per crop;
- ``decode(embedding, points, labels, boxes=None, mask_logits=None)``: one prompt round to
  ``(low_res_logits (B, 1, *config.low_res_size), iou (B, 1))``, run on every click.

Points are crop voxel indices ``(B, N, 3)`` in the crop tensor's axis order, labels ``(B, N)``
1 positive, 0 negative, -1 padding (to batch items with fewer points). Boxes are ``(B, 2, 3)``
inclusive corners (see :mod:`seganypet.model.boxes`). ``mask_logits`` are the previous round's
low-resolution logits; ``None`` means a first round, which for SAM-Med3D is an all-zero mask
input, as in its training and in the reference rounds.
"""

from __future__ import annotations

import contextlib
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from seganypet.errors import InputError
from seganypet.model.boxes import as_boxes, box_centre_points, clip_logits_to_boxes
from seganypet.model.config import ModelConfig
from seganypet.model.image_encoder import ImageEncoderViT3D
from seganypet.model.mask_decoder import MaskDecoder3D
from seganypet.model.presets import check_config, default_config
from seganypet.model.prompt_encoder import PromptEncoder3D

PRECISIONS = ("fp32", "bf16")

#: The point labels a network reads. A click is 1 (positive) or 0 (negative); a click sampled
#: along a drawn line (a scribble) is 3 or 2 for a network that ``reads_strokes`` (it has input
#: channels of their own, as nnInteractive's), else 1 or 0 like any click; -1 pads.
CLICK_LABELS = {True: 1, False: 0}
STROKE_LABELS = {True: 3, False: 2}


def point_label(positive: bool, along_line: bool = False, reads_strokes: bool = False) -> int:
    """The label of a click for a network (see :data:`STROKE_LABELS`)."""
    return (STROKE_LABELS if along_line and reads_strokes else CLICK_LABELS)[bool(positive)]


@runtime_checkable
class PromptableNetwork(Protocol):
    """What the interactive session needs from a network, whatever its family."""

    config: ModelConfig

    @property
    def reads_strokes(self) -> bool:
        """Whether a scribble's clicks are given as :data:`STROKE_LABELS` (else as clicks)."""
        ...

    def embed(self, image: torch.Tensor) -> Any:
        """Normalised crop ``(B, 1, *config.input_size)`` to an embedding for :meth:`decode`."""
        ...

    def decode(
        self,
        embedding: Any,
        points: Any,
        labels: Any,
        boxes: Any = None,
        mask_logits: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One prompt round: ``(low_res_logits (B, 1, *config.low_res_size), iou (B, 1))``."""
        ...


class PromptInputs:
    """What the network families share: input checks, the precision setting, and ``embed`` /
    ``decode`` as no-grad wrappers of each family's differentiable ``encode_image`` /
    ``predict`` (which the trainer calls). A family provides ``config``, ``device``,
    ``encode_image`` and ``predict``."""

    config: ModelConfig
    device: torch.device
    #: The ``ModelConfig.family`` a class builds (:mod:`seganypet.model.registry`).
    family: ClassVar[str]
    #: Whether :attr:`reference_order` can be switched on (windowed attention only).
    has_reference_order: ClassVar[bool] = False

    @property
    def reference_order(self) -> bool:
        """Whether attention runs in the reference implementation's order (its float32
        results bit for bit, slower). Only a family with windowed attention has the choice."""
        return False

    @reference_order.setter
    def reference_order(self, value: bool) -> None:
        if value:
            raise InputError(
                f"the reference attention order concerns SAM-Med3D's windowed attention; "
                f"this is a {self.family} network"
            )

    @property
    def reads_strokes(self) -> bool:
        """Whether the clicks along a scribble are read apart from clicks (labels 3 and 2)."""
        return False

    def with_box_embeddings(self) -> PromptInputs:
        """This network, able to take boxes (a family that always can returns itself)."""
        if self.config.has_box_embeddings:
            return self
        raise InputError(f"a {self.family} network cannot be given box embeddings")

    def grown_to(self, preset: str) -> PromptInputs:
        """This network's weights in a larger ``preset`` of its family (see ``GROWN_FROM``)."""
        raise InputError(f"a {self.config.preset!r} network cannot grow into preset {preset!r}")

    @property
    def dtype(self) -> torch.dtype:
        """The float type of the weights, in which inputs and outputs are given: float32, or
        float64 after ``.double()`` (how the golden test proves the function exact)."""
        return next(self.parameters()).dtype

    def embed(self, image: torch.Tensor | np.ndarray) -> Any:
        """Normalised crop ``(B, 1, *input_size)`` to the family's embedding, without gradients."""
        x = self._check_image(image)
        with torch.no_grad():
            return self.encode_image(x)

    def decode(
        self,
        embedding: Any,
        points: Any,
        labels: Any,
        boxes: Any = None,
        mask_logits: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One prompt round without gradients: ``(low_res_logits, iou)`` in :attr:`dtype`."""
        with torch.no_grad():
            return self.predict(embedding, points, labels, boxes, mask_logits)

    def _autocast(self):
        if self._precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @property
    def precision(self) -> str:
        return self._precision

    @precision.setter
    def precision(self, value: str) -> None:
        if value not in PRECISIONS:
            raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {value!r}")
        self._precision = value

    def _check_image(self, image: torch.Tensor | np.ndarray) -> torch.Tensor:
        x = torch.as_tensor(image)
        if x.ndim == 3:
            x = x[None, None]
        expected = (1, *self.config.input_size)
        if x.ndim != 5 or tuple(x.shape[1:]) != expected:
            raise InputError(
                f"the network takes a normalised crop of shape (B, {', '.join(map(str, expected))}), "
                f"got {tuple(x.shape)}"
            )
        return x.to(device=self.device, dtype=self.dtype)

    def _check_points(self, points: Any, labels: Any):
        if points is None:
            if labels is not None and np.size(labels) != 0:
                raise InputError("labels given without points")
            return None, None
        pts = torch.as_tensor(
            np.asarray(points, dtype=np.float64) if not isinstance(points, torch.Tensor) else points
        )
        labs = torch.as_tensor(
            np.asarray(labels, dtype=np.int64) if not isinstance(labels, torch.Tensor) else labels
        )
        if pts.numel() == 0:
            return None, None
        if pts.ndim == 2:
            pts = pts.unsqueeze(0)
        if labs.ndim == 1:
            labs = labs.unsqueeze(0)
        if pts.ndim != 3 or pts.shape[-1] != 3:
            raise InputError(
                f"points must be (B, N, 3) voxel indices, got shape {tuple(pts.shape)}"
            )
        if labs.shape != pts.shape[:2]:
            raise InputError(f"labels {tuple(labs.shape)} do not match points {tuple(pts.shape)}")
        if labs.is_floating_point():
            labs = labs.round()
        labs = labs.to(torch.int64)
        top = 3 if self.reads_strokes else 1
        if not bool(((labs >= -1) & (labs <= top)).all()):
            strokes = ", 3 or 2 (along a scribble)" if self.reads_strokes else ""
            raise InputError(
                f"point labels must be 1 (positive), 0 (negative){strokes} or -1 (padding)"
            )
        pts = pts.to(self.dtype)
        real = labs != -1
        size = torch.tensor(self.config.input_size, dtype=self.dtype)
        inside = torch.isfinite(pts).all(-1) & (pts >= -0.5).all(-1) & (pts <= size - 0.5).all(-1)
        if bool((real & ~inside).any()):
            raise InputError(f"a point lies outside the {self.config.input_size} crop")
        return pts.to(self.device), labs.to(self.device)

    def _check_mask_logits(self, mask_logits: torch.Tensor | None, batch: int) -> torch.Tensor:
        shape = (1, *self.config.low_res_size)
        if mask_logits is None:
            return torch.zeros((batch, *shape), device=self.device, dtype=self.dtype)
        m = torch.as_tensor(mask_logits, dtype=self.dtype, device=self.device)
        if m.ndim == 3:
            m = m[None, None]
        if m.ndim != 5 or tuple(m.shape[1:]) != shape:
            raise InputError(
                f"mask_logits must be the previous low-resolution logits (B, {', '.join(map(str, shape))}), "
                f"got {tuple(m.shape)}"
            )
        if m.shape[0] == 1 and batch > 1:
            m = m.expand(batch, *shape)
        return m

    def _check_prompts(self, embedding_batch: int, points, labels, boxes, mask_logits):
        """Checked prompts of one round, broadcast to a common batch size.

        Returns ``(batch, points (B, N, 3) or None, labels (B, N) or None, boxes (B, 2, 3) or
        None, mask_logits (B, 1, *low_res))`` (zeros for no mask).
        """
        pts, labs = self._check_points(points, labels)
        sizes = [embedding_batch]
        if pts is not None:
            sizes.append(pts.shape[0])
        if boxes is not None:
            boxes = torch.as_tensor(boxes, dtype=self.dtype)
            sizes.append(
                boxes.shape[0]
                if boxes.ndim == 3 or (boxes.ndim == 2 and boxes.shape[1] == 6)
                else 1
            )
        if mask_logits is not None and torch.as_tensor(mask_logits).ndim == 5:
            sizes.append(torch.as_tensor(mask_logits).shape[0])
        batch = max(sizes)
        if any(n not in (1, batch) for n in sizes):
            raise InputError(f"batch sizes of embedding and prompts do not agree: {sizes}")
        if pts is not None and pts.shape[0] != batch:
            pts, labs = pts.expand(batch, -1, -1), labs.expand(batch, -1)
        box_t = None
        if boxes is not None:
            box_t = as_boxes(boxes, batch, self.config.input_size, device=self.device)
        mask_in = self._check_mask_logits(mask_logits, batch)
        return batch, pts, labs, box_t, mask_in


class SamMed3D(PromptInputs, nn.Module):
    """A SAM-Med3D-style network (``vit_b_ori`` for the released weights, ``small`` for CPU).

    Its state-dict keys are those of the reference (``image_encoder.*``, ``prompt_encoder.*``,
    ``mask_decoder.*``), in the reference's order. ``precision`` ``"bf16"`` runs the image
    encoder under bfloat16 autocast (faster on CPUs with bf16 instructions, not bit-exact);
    prompts and decoding always run in float32.
    """

    family = "sam_med3d"
    has_reference_order = True

    def __init__(self, config: ModelConfig | str = "vit_b_ori") -> None:
        super().__init__()
        if isinstance(config, str):
            config = default_config(config)
        arch = check_config(config)
        self.config = config
        self.arch = arch
        grid = (arch.grid_size,) * 3
        self.image_encoder = ImageEncoderViT3D(
            img_size=arch.img_size,
            patch_size=arch.patch_size,
            embed_dim=arch.encoder_dim,
            depth=arch.encoder_depth,
            num_heads=arch.encoder_heads,
            mlp_ratio=arch.mlp_ratio,
            out_chans=arch.prompt_dim,
            window_size=arch.window_size,
            global_attn_indexes=arch.global_attn_indexes,
        )
        self.prompt_encoder = PromptEncoder3D(
            embed_dim=arch.prompt_dim,
            image_embedding_size=grid,
            input_image_size=(arch.img_size,) * 3,
            mask_in_chans=arch.mask_in_chans,
            has_box_embeddings=config.has_box_embeddings,
        )
        self.mask_decoder = MaskDecoder3D(
            transformer_dim=arch.prompt_dim,
            num_multimask_outputs=arch.num_multimask_outputs,
            transformer_depth=arch.decoder_depth,
            transformer_heads=arch.decoder_heads,
            transformer_mlp_dim=arch.decoder_mlp_dim,
            iou_head_depth=arch.iou_head_depth,
            iou_head_hidden_dim=arch.iou_head_hidden_dim,
        )
        self.precision = "fp32"
        self.eval()

    # ----------------------------------------------------------------------------- settings

    @property
    def device(self) -> torch.device:
        return self.image_encoder.pos_embed.device

    @property
    def reference_order(self) -> bool:
        return self.image_encoder.attention_mode == "padded"

    @reference_order.setter
    def reference_order(self, value: bool) -> None:
        self.image_encoder.attention_mode = "padded" if value else "fast"

    def with_box_embeddings(self) -> SamMed3D:
        """The same network with (freshly initialised) learned box-corner embeddings."""
        if self.config.has_box_embeddings:
            return self
        grown = SamMed3D(self.config.replace(has_box_embeddings=True))
        missing, unexpected = grown.load_state_dict(self.state_dict(), strict=False)
        if not all(key.startswith("prompt_encoder.point_embeddings.") for key in missing) or (
            unexpected
        ):
            raise RuntimeError(f"adding box embeddings: missing {missing}, unexpected {unexpected}")
        grown.precision = self.precision
        grown.reference_order = self.reference_order
        return grown

    # ------------------------------------------------------------------ differentiable parts

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        """The image encoder (with gradients if enabled); honours ``precision``."""
        with self._autocast():
            emb = self.image_encoder(x)
        return emb.to(self.dtype)

    def forward(
        self,
        image: torch.Tensor,
        points: Any,
        labels: Any,
        boxes: Any = None,
        mask_logits: torch.Tensor | None = None,
        multimask_output: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed and decode in one differentiable call (for training)."""
        emb = self.encode_image(self._check_image(image))
        return self.predict(emb, points, labels, boxes, mask_logits, multimask_output)

    def predict(
        self,
        embedding: torch.Tensor,
        points: Any,
        labels: Any,
        boxes: Any = None,
        mask_logits: torch.Tensor | None = None,
        multimask_output: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt encoder and mask decoder on an embedding (with gradients if enabled)."""
        embedding = self._check_embedding(embedding)
        batch, pts, labs, box_t, mask_in = self._check_prompts(
            embedding.shape[0], points, labels, boxes, mask_logits
        )

        learned_boxes = box_t if self.config.has_box_embeddings else None
        if box_t is not None and learned_boxes is None:
            # Released weights: the box becomes a positive click at its centre (boxes.py).
            centre = box_centre_points(box_t)
            centre_label = torch.ones((batch, 1), dtype=torch.int64, device=self.device)
            if pts is None:
                pts, labs = centre, centre_label
            else:
                pts = torch.cat([pts, centre], dim=1)
                labs = torch.cat([labs, centre_label], dim=1)

        sparse, dense = self.prompt_encoder(
            points=(pts, labs) if pts is not None else None,
            boxes=learned_boxes,
            masks=mask_in,
        )
        logits, iou = self.mask_decoder(
            image_embeddings=embedding,
            image_pe=self.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
        )
        if box_t is not None and learned_boxes is None:
            logits = clip_logits_to_boxes(logits, box_t, self.config.input_size)
        return logits, iou

    # ------------------------------------------------------------------------------ checks

    def _check_embedding(self, embedding: torch.Tensor) -> torch.Tensor:
        grid = (self.arch.grid_size,) * 3
        if (
            not isinstance(embedding, torch.Tensor)
            or embedding.ndim != 5
            or tuple(embedding.shape[1:]) != (self.arch.prompt_dim, *grid)
        ):
            shape = (
                tuple(embedding.shape) if isinstance(embedding, torch.Tensor) else type(embedding)
            )
            raise InputError(f"not an embedding of this network: {shape}; use its embed() output")
        return embedding
