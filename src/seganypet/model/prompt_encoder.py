"""Prompt encoder of SAM-Med3D: points (and boxes) to sparse tokens, a mask to a dense map.

Coordinates
-----------
Points are voxel indices of the crop tensor in its axis order ``(d, h, w)``, as SAM-Med3D's
training produced them (``torch.argwhere`` on the ``(1, D, H, W)`` error mask, channel dropped).
They are shifted by 0.5 to voxel centres and divided by the crop size per axis.

The dense positional encoding of the embedding grid is reproduced exactly as the reference builds
it: its first coordinate runs along array axis 1 and its second along axis 0 (the third along
axis 2), while a point's first coordinate is its axis-0 index. The released weights were trained
with this pairing, so it is kept as is; do not "fix" it for those weights.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from seganypet.model.common import LayerNorm3d


class PositionEmbeddingRandom3D(nn.Module):
    """Positional encoding with random spatial frequencies (a fixed Gaussian matrix)."""

    def __init__(self, num_pos_feats: int) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn((3, num_pos_feats)))

    def encode(self, coords: torch.Tensor) -> torch.Tensor:
        """Encode coordinates in [0, 1]: ``(..., 3)`` to ``(..., 3 * num_pos_feats)``."""
        coords = (2 * coords - 1) @ self.positional_encoding_gaussian_matrix
        coords = 2 * math.pi * coords
        # The reference concatenates sin, cos and sin again (3 x num_pos_feats = embed_dim).
        return torch.cat([torch.sin(coords), torch.cos(coords), torch.sin(coords)], dim=-1)

    def dense(self, size: tuple[int, int, int]) -> torch.Tensor:
        """Encoding of every cell of a ``size`` grid, channels first ``(C, *size)``."""
        matrix = self.positional_encoding_gaussian_matrix
        idx = [torch.arange(n, device=matrix.device, dtype=matrix.dtype) + 0.5 for n in size]
        i0, i1, i2 = torch.meshgrid(*idx, indexing="ij")
        # First coordinate along axis 1, second along axis 0 (see the module docstring); each
        # divided by the size the reference divides it by (they only differ for non-cubic grids).
        pe = self.encode(torch.stack([i1 / size[0], i0 / size[1], i2 / size[2]], dim=-1))
        return pe.permute(3, 0, 1, 2)

    def points(self, coords: torch.Tensor, image_size: tuple[int, int, int]) -> torch.Tensor:
        """Encode voxel coordinates ``(B, N, 3)`` of a crop of ``image_size``."""
        dtype = self.positional_encoding_gaussian_matrix.dtype
        scale = torch.tensor(image_size, dtype=dtype, device=coords.device)
        return self.encode(coords.to(dtype) / scale)


class PromptEncoder3D(nn.Module):
    """Points, boxes and a low-resolution mask to the mask decoder's prompt embeddings.

    ``num_point_embeddings`` is 2 (negative, positive) in the released layout; networks with
    learned box corners have 4, the last two being the low and high box corner (as in SAM).
    """

    def __init__(
        self,
        embed_dim: int,
        image_embedding_size: tuple[int, int, int],
        input_image_size: tuple[int, int, int],
        mask_in_chans: int,
        has_box_embeddings: bool = False,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.image_embedding_size = tuple(image_embedding_size)
        self.input_image_size = tuple(input_image_size)
        self.has_box_embeddings = has_box_embeddings
        self.pe_layer = PositionEmbeddingRandom3D(embed_dim // 3)
        count = 4 if has_box_embeddings else 2
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(count))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_downscaling = nn.Sequential(
            nn.Conv3d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm3d(mask_in_chans // 4),
            nn.GELU(),
            nn.Conv3d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm3d(mask_in_chans),
            nn.GELU(),
            nn.Conv3d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> torch.Tensor:
        """Positional encoding of the image embedding grid, ``(1, C, d, h, w)``.

        Cached while the Gaussian matrix is unchanged (it is a buffer, never trained), except
        when gradients are being recorded.
        """
        if torch.is_grad_enabled():
            return self.pe_layer.dense(self.image_embedding_size).unsqueeze(0)
        matrix = self.pe_layer.positional_encoding_gaussian_matrix
        key = (matrix.data_ptr(), matrix._version, matrix.dtype, matrix.device)
        cached = getattr(self, "_dense_pe_cache", None)
        if cached is None or cached[0] != key:
            # A normal tensor even when called in inference mode, so it can be reused anywhere.
            with torch.inference_mode(False), torch.no_grad():
                pe = self.pe_layer.dense(self.image_embedding_size).unsqueeze(0)
            cached = self._dense_pe_cache = (key, pe)
        return cached[1]

    def embed_points(self, points: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        """``points`` ``(B, N, 3)``, ``labels`` ``(B, N)``: 1 positive, 0 negative, -1 padding.

        With ``pad`` a not-a-point token is appended (the reference does so when no box is given).
        """
        points = points.to(self.not_a_point_embed.weight.dtype) + 0.5
        labels = labels.to(points.device)
        if pad:
            points = torch.cat([points, points.new_zeros((points.shape[0], 1, 3))], dim=1)
            labels = torch.cat([labels, labels.new_full((labels.shape[0], 1), -1)], dim=1)
        pe = self.pe_layer.points(points, self.input_image_size)
        lab = labels[..., None]
        out = torch.where(lab == -1, self.not_a_point_embed.weight, pe)
        out = out + torch.where(lab == 0, self.point_embeddings[0].weight, 0.0)
        out = out + torch.where(lab == 1, self.point_embeddings[1].weight, 0.0)
        return out

    def embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        """Learned box-corner tokens: ``boxes`` ``(B, 2, 3)`` low and high corner voxel indices."""
        if not self.has_box_embeddings:
            raise ValueError("this prompt encoder has no box embeddings")
        corners = boxes.to(self.not_a_point_embed.weight.dtype).reshape(-1, 2, 3) + 0.5
        pe = self.pe_layer.points(corners, self.input_image_size)
        corner = torch.cat(
            [self.point_embeddings[2].weight, self.point_embeddings[3].weight], dim=0
        )
        return pe + corner

    def embed_masks(self, masks: torch.Tensor) -> torch.Tensor:
        return self.mask_downscaling(masks)

    def forward(
        self,
        points: tuple[torch.Tensor, torch.Tensor] | None,
        boxes: torch.Tensor | None,
        masks: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sparse ``(B, N, C)`` and dense ``(B, C, d, h, w)`` prompt embeddings."""
        if points is not None:
            bs = points[0].shape[0]
        elif boxes is not None:
            bs = boxes.shape[0]
        elif masks is not None:
            bs = masks.shape[0]
        else:
            bs = 1
        device = self.point_embeddings[0].weight.device
        dtype = self.point_embeddings[0].weight.dtype
        sparse = [torch.empty((bs, 0, self.embed_dim), device=device, dtype=dtype)]
        if points is not None:
            sparse.append(self.embed_points(points[0], points[1], pad=boxes is None))
        if boxes is not None:
            sparse.append(self.embed_boxes(boxes))
        sparse_embeddings = torch.cat(sparse, dim=1)
        if masks is not None:
            dense_embeddings = self.embed_masks(masks)
        else:
            dense_embeddings = self.no_mask_embed.weight.reshape(1, -1, 1, 1, 1).expand(
                bs, -1, *self.image_embedding_size
            )
        return sparse_embeddings, dense_embeddings
