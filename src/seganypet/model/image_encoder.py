"""3D ViT image encoder of SAM-Med3D, with exact fast windowed attention.

The encoder turns a normalised crop ``(B, 1, D, H, W)`` into an embedding
``(B, prompt_dim, D/p, H/p, W/p)``: patch embedding, absolute position embedding, transformer
blocks with relative position biases (windowed or global attention), and a convolutional neck.

The relative-position bias the released weights were trained with
-----------------------------------------------------------------
SAM-Med3D ports SAM's decomposed relative positions to 3D, but its broadcasting puts the
per-axis terms on other key axes than the 2D original does. Inside a cubic window of side ``S``
with query ``(x, y, z)`` and key ``(i, j, l)`` the bias added to ``q·k·scale`` is

    bias = q(x,y,z)·Td[x − l + S − 1] + q(x,y,i)·Th[y − l + S − 1] + q(x,y,j)·Tw[j − l + S − 1]

where ``q(·)`` is the (unscaled) query vector at that window position and ``Td, Th, Tw`` are the
``rel_pos_d/h/w`` tables. The network was trained with exactly this, so it is what we compute
(any "fix" changes the function; ``tests/test_model_golden.py`` pins it). The bias only needs
window-sized tensors: ``α[x,y,z,l]``, ``β[x,y,i,l]`` and ``γ[x,y,j,l]``.

Windowed attention without the padding
--------------------------------------
In the released ``vit_b_ori`` layout the token grid is 8³ but the window is 14³. The reference
implementation pads the grid to 14³ with zeros *after* ``norm1`` and runs attention over all
2744 tokens, then throws the padded outputs away. Every padded token is zero, so its query, key
and value are the qkv biases ``q_b, k_b, v_b``. All padded keys therefore share one key and one
value and differ only in their bias, and for a real query the padded keys' total softmax mass is

    exp(q·k_b·scale) · (Σ_all keys exp(bias) − Σ_real keys exp(bias)),
    Σ_keys exp(bias) = Σ_l exp(α[l]) · (Σ_i exp(β[i,l])) · (Σ_j exp(γ[j,l])),

both sums factorising over the key's last index ``l`` (the ``β, γ`` rows use ``q_b`` at padded
positions). So the padded keys collapse into ONE virtual key per query with key ``k_b``, value
``v_b`` and an extra logit ``log(Σ_padded exp(bias))``, computed in log space. Real queries attend
over the real keys plus that virtual key; padded queries are never computed. This is the
reference function, not an approximation. With several windows cut by the padding the same holds
per window; windows are grouped by their real extent.

``attention_mode = "padded"`` runs the reference's padded computation instead; it exists only to
check and to time the fast path (``seganypet.bench``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from seganypet.model.common import LayerNorm3d, MLPBlock

ATTENTION_MODES = ("fast", "padded")


class PatchEmbed3D(nn.Module):
    """Non-overlapping cubic patches to tokens, channels last: ``(B, D', H', W', C)``."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 4, 1)


@dataclass(frozen=True)
class _Segment:
    """A run of equal windows along one axis: ``count`` windows of ``extent`` real tokens."""

    start: int
    stop: int
    extent: int
    count: int


def _axis_segments(n: int, window: int) -> list[_Segment]:
    full = n // window
    segments = []
    if full:
        segments.append(_Segment(0, full * window, window, full))
    if n - full * window:
        segments.append(_Segment(full * window, n, n - full * window, 1))
    return segments


def _window_groups(
    grid: tuple[int, int, int], window: tuple[int, int, int]
) -> Iterator[tuple[_Segment, _Segment, _Segment]]:
    for sd in _axis_segments(grid[0], window[0]):
        for sh in _axis_segments(grid[1], window[1]):
            for sw in _axis_segments(grid[2], window[2]):
                yield sd, sh, sw


def _relative_table(rel_pos: torch.Tensor, q_extent: int, window: int) -> torch.Tensor:
    """Embeddings ``(q_extent, window, C)`` for query positions 0.. and all window key positions.

    Position ``i - j + window - 1`` of the table, as in the reference's ``get_rel_pos`` for equal
    query and key sizes (the only case here).
    """
    q = torch.arange(q_extent, device=rel_pos.device)[:, None]
    k = torch.arange(window, device=rel_pos.device)[None, :]
    return rel_pos[q - k + window - 1]


class Attention3D(nn.Module):
    """Multi-head self-attention with decomposed relative positions, windowed or global.

    ``window_size`` 0 means global attention over the whole ``input_size`` grid; otherwise
    attention within non-overlapping windows of ``window_size``³ tokens, the grid padded (in
    effect) to a multiple of the window.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        input_size: tuple[int, int, int],
        window_size: int = 0,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.window_size = window_size
        self.input_size = tuple(input_size)
        rel_size = (window_size,) * 3 if window_size > 0 else self.input_size
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_d = nn.Parameter(torch.zeros(2 * rel_size[0] - 1, self.head_dim))
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * rel_size[1] - 1, self.head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * rel_size[2] - 1, self.head_dim))
        self.attention_mode = "fast"

    def _window(self, grid: tuple[int, int, int]) -> tuple[int, int, int]:
        if self.window_size > 0:
            return (self.window_size,) * 3
        if grid != self.input_size or len(set(grid)) != 1:
            raise ValueError(
                f"global attention built for the cubic grid {self.input_size}, got {grid}"
            )
        return grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: normalised tokens ``(B, D, H, W, C)``; returns the same shape."""
        if self.attention_mode == "padded":
            return self._forward_padded(x)
        b, d, h, w, c = x.shape
        window = self._window((d, h, w))
        qkv = F.linear(x, self.qkv.weight, self.qkv.bias)
        groups = list(_window_groups((d, h, w), window))
        if len(groups) == 1 and groups[0][0].count * groups[0][1].count * groups[0][2].count == 1:
            # One window holds the whole grid (vit_b_ori's windowed and global blocks).
            out = self._attend(qkv.reshape(b, d * h * w, 3 * c), (d, h, w), window)
            return self.proj(out.reshape(b, d, h, w, c))
        out = x.new_empty((b, d, h, w, c))
        for sd, sh, sw in groups:
            extent = (sd.extent, sh.extent, sw.extent)
            counts = (sd.count, sh.count, sw.count)
            part = qkv[:, sd.start : sd.stop, sh.start : sh.stop, sw.start : sw.stop]
            part = part.reshape(
                b, counts[0], extent[0], counts[1], extent[1], counts[2], extent[2], 3 * c
            )
            part = part.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(
                -1, extent[0] * extent[1] * extent[2], 3 * c
            )
            res = self._attend(part, extent, window)
            res = res.reshape(
                b, counts[0], counts[1], counts[2], extent[0], extent[1], extent[2], c
            )
            res = res.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(
                b, sd.stop - sd.start, sh.stop - sh.start, sw.stop - sw.start, c
            )
            out[:, sd.start : sd.stop, sh.start : sh.stop, sw.start : sw.stop] = res
        return self.proj(out)

    def _attend(
        self, qkv: torch.Tensor, extent: tuple[int, int, int], window: tuple[int, int, int]
    ) -> torch.Tensor:
        """Attention inside windows whose real tokens span ``extent`` of a cubic ``window``.

        ``qkv``: ``(Bw, L, 3C)`` with ``L = prod(extent)`` real tokens per window, in
        ``(d, h, w)`` order. Returns ``(Bw, L, C)`` before the output projection.
        """
        bw, length, _ = qkv.shape
        heads, hd = self.num_heads, self.head_dim
        c = heads * hd
        # The attention itself runs in float32 also under bf16 autocast (its logits can be large).
        dtype = torch.promote_types(qkv.dtype, torch.float32)
        q, k, v = qkv.to(dtype).reshape(bw, length, 3, heads, hd).permute(2, 0, 3, 1, 4).unbind(0)
        ed, eh, ew = extent
        size = window[0]
        qf = q.reshape(bw, heads, ed, eh, ew, hd)
        # Query vectors along each (x, y) row of the window; padded positions hold q_b.
        if ew < size:
            q_b = self.qkv.bias[:c].to(dtype).reshape(1, heads, 1, 1, 1, hd)
            q_row = torch.cat([qf, q_b.expand(bw, heads, ed, eh, size - ew, hd)], dim=4)
        else:
            q_row = qf
        # α[x,y,z,l], β[x,y,i,l], γ[x,y,j,l] over all window positions l, i, j (module docstring).
        td = _relative_table(self.rel_pos_d.to(dtype), ed, size)
        th = _relative_table(self.rel_pos_h.to(dtype), eh, size)
        tw = _relative_table(self.rel_pos_w.to(dtype), size, size)
        alpha = torch.einsum("bnxyzc,xlc->bnxyzl", qf, td)
        beta = torch.einsum("bnxyic,ylc->bnxyil", q_row, th)
        gamma = torch.einsum("bnxyjc,jlc->bnxyjl", q_row, tw)
        padded = extent != (size, size, size)
        if padded:
            # All padded keys of the window collapse into one virtual key (k_b, v_b), appended
            # after the real keys.
            k_b = self.qkv.bias[c : 2 * c].to(dtype).reshape(1, heads, 1, hd)
            v_b = self.qkv.bias[2 * c :].to(dtype).reshape(1, heads, 1, hd)
            k = torch.cat([k, k_b.expand(bw, heads, 1, hd)], dim=2)
            v = torch.cat([v, v_b.expand(bw, heads, 1, hd)], dim=2)
        logits = torch.matmul(q * self.scale, k.transpose(-2, -1))
        # Relative-position terms of the real keys, added in the reference's order so that the
        # (possibly very large) logits round exactly as there: ((q·k·scale + α) + β) + γ.
        real = logits[..., :length].view(bw, heads, ed, eh, ew, ed, eh, ew)
        real.add_(alpha[..., None, None, :ew])
        real.add_(beta[:, :, :, :, None, :ed, None, :ew])
        real.add_(gamma[:, :, :, :, None, None, :eh, :ew])
        if padded:
            row_all = beta.logsumexp(-2) + gamma.logsumexp(-2)  # (Bw, n, x, y, l)
            row_real = beta[..., :ed, :ew].logsumexp(-2) + gamma[..., :eh, :ew].logsumexp(-2)
            log_all = (alpha + row_all[:, :, :, :, None, :]).logsumexp(-1)
            log_real = (alpha[..., :ew] + row_real[:, :, :, :, None, :]).logsumexp(-1)
            log_pad = log_all + torch.log(-torch.expm1(log_real - log_all))
            logits[..., length].add_(log_pad.reshape(bw, heads, length))
        out = torch.matmul(logits.softmax(dim=-1), v)
        return out.transpose(1, 2).reshape(bw, length, c)

    def _forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        """The reference computation: pad to whole windows, attend over all of them, crop."""
        b, d, h, w, c = x.shape
        window = self._window((d, h, w))
        pads = [(-n) % s for n, s in zip((d, h, w), window, strict=True)]
        x = F.pad(x, (0, 0, 0, pads[2], 0, pads[1], 0, pads[0]))
        dp, hp, wp = d + pads[0], h + pads[1], w + pads[2]
        nd, nh, nw = dp // window[0], hp // window[1], wp // window[2]
        win = x.reshape(b, nd, window[0], nh, window[1], nw, window[2], c)
        win = win.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(-1, window[0] * window[1] * window[2], c)
        bw, length = win.shape[:2]
        heads, hd = self.num_heads, self.head_dim
        qkv = self.qkv(win).reshape(bw, length, 3, heads, hd).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.reshape(3, bw * heads, length, hd).unbind(0)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        rq = q.reshape(bw * heads, *window, hd)
        rd = torch.einsum(
            "bxyzc,xkc->bxyzk", rq, _relative_table(self.rel_pos_d, window[0], window[0])
        )
        rh = torch.einsum(
            "bxyzc,ykc->bxyzk", rq, _relative_table(self.rel_pos_h, window[1], window[1])
        )
        rw = torch.einsum(
            "bxyzc,zkc->bxyzk", rq, _relative_table(self.rel_pos_w, window[2], window[2])
        )
        # The reference's broadcasting: each (B, x, y, z, k) term gets two new axes inserted
        # before its 4th (rd: after it), so k always lands on the key's last axis.
        attn = attn.reshape(bw * heads, *window, *window)
        attn = (
            attn
            + rd[:, :, :, :, None, None]
            + rh[:, :, :, None, :, None]
            + rw[:, :, :, None, None, :]
        )
        attn = attn.reshape(bw * heads, length, length).softmax(dim=-1)
        out = (attn @ v).reshape(bw, heads, length, hd).transpose(1, 2).reshape(bw, length, c)
        out = self.proj(out)
        out = out.reshape(b, nd, nh, nw, window[0], window[1], window[2], c)
        out = out.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(b, dp, hp, wp, c)
        return out[:, :d, :h, :w].contiguous()


class Block3D(nn.Module):
    """Pre-norm transformer block: attention then MLP, each with a residual connection."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        input_size: tuple[int, int, int],
        window_size: int,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention3D(dim, num_heads, input_size=input_size, window_size=window_size)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio), act=nn.GELU)
        self.window_size = window_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ImageEncoderViT3D(nn.Module):
    """The SAM-Med3D image encoder: crop ``(B, 1, S, S, S)`` to ``(B, out_chans, S/p, S/p, S/p)``."""

    def __init__(
        self,
        img_size: int,
        patch_size: int,
        embed_dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float,
        out_chans: int,
        window_size: int,
        global_attn_indexes: tuple[int, ...],
        in_chans: int = 1,
    ) -> None:
        super().__init__()
        self.img_size = img_size
        grid = img_size // patch_size
        self.grid_size = (grid, grid, grid)
        self.patch_embed = PatchEmbed3D(patch_size, in_chans, embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, grid, embed_dim))
        self.blocks = nn.ModuleList(
            Block3D(
                embed_dim,
                num_heads,
                mlp_ratio,
                input_size=self.grid_size,
                window_size=0 if i in global_attn_indexes else window_size,
            )
            for i in range(depth)
        )
        self.neck = nn.Sequential(
            nn.Conv3d(embed_dim, out_chans, kernel_size=1, bias=False),
            LayerNorm3d(out_chans),
            nn.Conv3d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm3d(out_chans),
        )

    @property
    def attention_mode(self) -> str:
        return self.blocks[0].attn.attention_mode

    @attention_mode.setter
    def attention_mode(self, mode: str) -> None:
        if mode not in ATTENTION_MODES:
            raise ValueError(f"attention mode must be one of {ATTENTION_MODES}, got {mode!r}")
        for block in self.blocks:
            block.attn.attention_mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The convolutions stay in float32 under bf16 autocast: few FLOPs, slow in bf16 on CPU.
        with _no_autocast(x):
            x = self.patch_embed(x.to(self.pos_embed.dtype)) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        with _no_autocast(x):
            return self.neck(x.to(self.pos_embed.dtype).permute(0, 4, 1, 2, 3))


def _no_autocast(x: torch.Tensor):
    return torch.autocast(device_type=x.device.type, enabled=False)
