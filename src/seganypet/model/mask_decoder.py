"""Mask decoder of SAM-Med3D: image and prompt embeddings to low-resolution mask logits and IoU."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seganypet.model.common import MLP, LayerNorm3d
from seganypet.model.transformer import TwoWayTransformer


class MaskDecoder3D(nn.Module):
    """Predicts ``1 + num_multimask_outputs`` masks and their IoU from prompt and image tokens.

    The logits are 4x the embedding grid (two transposed convolutions of stride 2). Only the
    masks asked for are computed: the single-mask output (token 0), or the three multimask ones.
    """

    def __init__(
        self,
        transformer_dim: int,
        num_multimask_outputs: int = 3,
        transformer_depth: int = 2,
        transformer_heads: int = 8,
        transformer_mlp_dim: int = 2048,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
    ) -> None:
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = TwoWayTransformer(
            depth=transformer_depth,
            embedding_dim=transformer_dim,
            num_heads=transformer_heads,
            mlp_dim=transformer_mlp_dim,
        )
        self.num_multimask_outputs = num_multimask_outputs
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.num_mask_tokens = num_multimask_outputs + 1
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose3d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm3d(transformer_dim // 4),
            nn.GELU(),
            nn.ConvTranspose3d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3)
            for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(
            transformer_dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth
        )

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Masks ``(B, M, 4d, 4h, 4w)`` and IoU ``(B, M)``; ``M`` is 1, or 3 with multimask."""
        selected = list(range(1, self.num_mask_tokens)) if multimask_output else [0]
        tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = tokens.unsqueeze(0).expand(sparse_prompt_embeddings.shape[0], -1, -1)
        tokens = torch.cat([tokens, sparse_prompt_embeddings.to(tokens.dtype)], dim=1)
        b = tokens.shape[0]
        src = image_embeddings
        if src.shape[0] != b:
            src = torch.repeat_interleave(src, b, dim=0)
        src = src + dense_prompt_embeddings
        pos = image_pe
        if pos.shape[0] != b:
            pos = torch.repeat_interleave(pos, b, dim=0)
        grid = tuple(src.shape[2:])

        hs, src_tokens = self.transformer(src, pos, tokens)
        iou_token_out = hs[:, 0]
        hyper_in = torch.stack(
            [self.output_hypernetworks_mlps[i](hs[:, 1 + i]) for i in selected], dim=1
        )
        masks = self._masks(src_tokens, grid, hyper_in)
        iou_pred = self.iou_prediction_head(iou_token_out)[:, selected]
        return masks, iou_pred

    def _masks(
        self, src_tokens: torch.Tensor, grid: tuple[int, ...], hyper_in: torch.Tensor
    ) -> torch.Tensor:
        """Upscale the image tokens 4x and take each mask as a dot product with ``hyper_in``.

        The stride-2 transposed convolutions have no overlap, so each is one matrix product on
        channels-last tokens; the 8 sub-voxel offsets are kept as axes and the mask channels are
        contracted before the (then single-channel) volume is put back in spatial order.
        """
        up1, norm, act1, up2, act2 = self.output_upscaling
        b = src_tokens.shape[0]
        d, h, w = grid
        c1 = up1.weight.shape[1]
        c2 = up2.weight.shape[1]
        # Each stride-2 transposed convolution is (tokens, C_in) @ (C_in, 8 offsets x C_out), its
        # weight columns ordered offsets-major so that the channels end up last and contiguous.
        w1 = up1.weight.reshape(up1.weight.shape[0], c1, 8).transpose(1, 2).reshape(-1, 8 * c1)
        x = F.linear(src_tokens, w1.t(), up1.bias.repeat(8))
        x = act1(
            F.layer_norm(x.reshape(b, d, h, w, 8, c1), (c1,), norm.weight, norm.bias, norm.eps)
        )
        # The second keeps (C_out, offsets) order: the channels are contracted next.
        y = F.linear(x, up2.weight.reshape(c1, -1).t(), up2.bias.repeat_interleave(8))
        y = act2(y.reshape(b, d, h, w, 8, c2, 8))
        # Contract the mask channels: (B, d, h, w, o1, c2, o2) x (B, M, c2) -> (B, M, d, h, w, o1, o2)
        m = torch.einsum("bxyzpcq,bmc->bmxyzpq", y, hyper_in.to(y.dtype))
        mm = hyper_in.shape[1]
        m = m.reshape(b, mm, d, h, w, 2, 2, 2, 2, 2, 2)
        # axes: b m x y z p0 p1 p2 q0 q1 q2 -> b m (x p0 q0) (y p1 q1) (z p2 q2)
        m = m.permute(0, 1, 2, 5, 8, 3, 6, 9, 4, 7, 10)
        return m.reshape(b, mm, 4 * d, 4 * h, 4 * w)
