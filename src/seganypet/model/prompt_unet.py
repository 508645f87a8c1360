"""The ``prompt_unet`` family: a residual 3D U-Net embedding and a light per-click prompt U-Net.

Why a second family: on real PET crops a small U-Net fed the image and click maps segmented
better after one click than a small SAM-style ViT, and it followed corrective clicks. Re-running
a whole U-Net on the 64³ crop for every click is too slow for an interactive CPU session, so
the work is split the SAM way, behind the same :class:`~seganypet.model.network.PromptableNetwork`
interface:

``embed`` (once per crop): a residual 3D U-Net over the normalised crop (64³ at 3 mm for
``unet_small``): one convolution at full resolution, strided convolutions down to 1/16, a
residual block per level, transposed convolutions back up with additive skips. The embedding is
the decoder's features at the low resolution (input/2, 32³) and at 1/4 and 1/8: a tuple
``(f_low, f_quarter, f_eighth)``.

``decode`` (every click): prompt channels are built *at low resolution*:

- positive and negative click maps: for each click a Gaussian (``click_sigma`` low-res voxels) at
  ``(index + 0.5) * low / input - 0.5`` (voxel centres aligned), the maximum over the clicks of a
  label; padding points (label -1) are left out;
- the box: 1 on the low-res cells that overlap the (inclusive) box, else 0 (no box: all 0);
  boxes are first-class, nothing is mapped;
- the previous round's logits squashed as ``tanh(logits / 4)`` (zeros on a first round);
- with ``relative_uptake`` (preset ``unet_small_rel``): the crop's SUV (mean over each low-res
  cell, from the ``suv_log`` input) divided by the highest cell within ``relative_radius_mm`` of
  the first positive click (of the box's centre when there is no click), clipped to [0, 2]:
  what the 41 %-of-SUVmax rule thresholds. The SUV at low resolution is the embedding's fourth
  part, computed once per crop;
- with ``stroke_channels`` (preset ``unet_small_strokes``): positive and negative maps, as the
  click maps, of the clicks along scribbles (point labels 3 and 2), which then stay out of the
  click maps: a scribble is many clicks close together, and learning that from the click maps
  changed what one click meant (a negative click no longer removed its own voxel).

They are concatenated with the cached low-res features and run through a small U-Net: low_res ->
/2 -> /4 (adding the cached features of those levels) with depthwise-separable residual blocks at
the two fine levels and dense, dilated 3³ convolutions plus a global-context term at /4, so one
click can reach every voxel of an object that fills the crop; then back up with additive skips.
The last 1x1 convolution also sees the prompt channels, a direct path from a click to its
neighbourhood. IoU: global average pool of the /4 features through a 2-layer MLP.

``encode_image``/``predict`` are the same two calls with gradients (the trainer's, see
:func:`~seganypet.train.objective.trainable_calls`); ``precision`` ``"bf16"`` runs the image
U-Net under bfloat16 autocast, the prompt head always in float32.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from seganypet.errors import InputError
from seganypet.model.boxes import box_mask
from seganypet.model.config import ModelConfig
from seganypet.model.network import CLICK_LABELS, STROKE_LABELS, PromptInputs
from seganypet.model.presets import GROWN_FROM, check_unet_config, default_config

PROMPT_CHANNELS = 4  # positive clicks, negative clicks, box, previous mask (+ relative uptake)
MASK_SCALE = 4.0  # previous logits enter as tanh(logits / MASK_SCALE)
RELATIVE_MAX = 2.0


class Conv3d(nn.Conv3d):
    """``nn.Conv3d`` that calls oneDNN directly for float32 on the CPU.

    PyTorch's backend choice (``use_mkldnn``) sends a batch-1 3D convolution to the naive
    ``slow_conv3d`` whenever ``N * C * D * H`` is below 20480, a threshold tuned for 2D: for
    this network's 16-channel 32³ convolutions that is ~15x slower on one thread. The oneDNN
    call gives the same result (and gradients) as ``F.conv3d``. Anything else (autocast, other
    devices and dtypes, non-zero padding modes) goes the ordinary way.
    """

    def _conv_forward(self, input, weight, bias):
        if (
            input.device.type == "cpu"
            and input.dtype == torch.float32
            and weight.dtype == torch.float32
            and self.padding_mode == "zeros"
            and not isinstance(self.padding, str)
            and not torch.is_autocast_enabled("cpu")
        ):
            return torch.ops.aten.mkldnn_convolution(
                input.contiguous(),
                weight,
                bias,
                list(self.padding),
                list(self.stride),
                list(self.dilation),
                self.groups,
            )
        return super()._conv_forward(input, weight, bias)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(max(1, channels // 4), channels)


def _act() -> nn.Module:
    return nn.LeakyReLU(0.01, inplace=True)


class ConvNormAct(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1, dilation: int = 1):
        padding = dilation * (kernel - 1) // 2 if stride == 1 else (kernel - 1) // 2
        super().__init__(
            Conv3d(c_in, c_out, kernel, stride, padding, dilation=dilation, bias=False),
            _norm(c_out),
            _act(),
        )


class ResBlock(nn.Module):
    """Two 3³ convolutions with group norm and a residual connection."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = Conv3d(channels, channels, 3, padding=1, bias=False)
        self.norm1 = _norm(channels)
        self.conv2 = Conv3d(channels, channels, 3, padding=1, bias=False)
        self.norm2 = _norm(channels)
        self.act = _act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.norm1(self.conv1(x)))
        return self.act(self.norm2(self.conv2(y)) + x)


class SepBlock(nn.Module):
    """Depthwise 3³ + pointwise convolution, group norm, residual."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.depthwise = Conv3d(channels, channels, 3, padding=1, groups=channels, bias=False)
        self.pointwise = Conv3d(channels, channels, 1, bias=False)
        self.norm = _norm(channels)
        self.act = _act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.pointwise(self.depthwise(x))) + x)


class ImageUNet(nn.Module):
    """The embedding U-Net: crop ``(B, 1, S, S, S)`` to features at S/2, S/4 and S/8."""

    def __init__(self, stem: int, channels: tuple[int, ...]) -> None:
        super().__init__()
        if len(channels) < 3:
            raise InputError("a prompt_unet encoder needs at least 3 levels")
        self.stem = ConvNormAct(1, stem)
        self.down = nn.ModuleList()
        c_prev = stem
        for c in channels:
            self.down.append(nn.Sequential(ConvNormAct(c_prev, c, stride=2), ResBlock(c)))
            c_prev = c
        self.up = nn.ModuleList()
        self.fuse = nn.ModuleList()
        for c_deep, c in zip(channels[:0:-1], channels[-2::-1], strict=True):
            self.up.append(nn.ConvTranspose3d(c_deep, c, 2, stride=2))
            self.fuse.append(ConvNormAct(c, c))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.stem(x)
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        outputs = []
        for up, fuse, skip in zip(self.up, self.fuse, skips[-2::-1], strict=True):
            x = fuse(up(x) + skip)
            outputs.append(x)
        low, quarter, eighth = outputs[-1], outputs[-2], outputs[-3]
        return low, quarter, eighth


class PromptHead(nn.Module):
    """The per-click U-Net at low_res -> /2 -> /4 and back (see the module docstring)."""

    def __init__(
        self,
        feature_channels: tuple[int, int, int],
        head: tuple[int, int, int],
        iou_hidden: int,
        prompt_channels: int = PROMPT_CHANNELS,
    ) -> None:
        super().__init__()
        f0, f1, f2 = feature_channels
        h0, h1, h2 = head
        self.prompt_channels = prompt_channels
        self.inp = nn.Sequential(Conv3d(f0 + prompt_channels, h0, 1, bias=False), _norm(h0), _act())
        self.block0 = SepBlock(h0)
        self.down1 = Conv3d(h0, h1, 2, stride=2, bias=False)
        self.skip1 = Conv3d(f1, h1, 1, bias=False)
        self.norm1 = nn.Sequential(_norm(h1), _act())
        self.block1 = SepBlock(h1)
        self.down2 = Conv3d(h1, h2, 2, stride=2, bias=False)
        self.skip2 = Conv3d(f2, h2, 1, bias=False)
        self.norm2 = nn.Sequential(_norm(h2), _act())
        self.deep = nn.Sequential(ConvNormAct(h2, h2), ConvNormAct(h2, h2, dilation=2))
        self.context = nn.Linear(h2, h2)
        self.reduce2 = Conv3d(h2, h1, 1)
        self.up_block1 = SepBlock(h1)
        self.reduce1 = Conv3d(h1, h0, 1)
        self.up_block0 = SepBlock(h0)
        self.out = Conv3d(h0 + prompt_channels, 1, 1)
        self.iou = nn.Sequential(nn.Linear(h2, iou_hidden), nn.GELU(), nn.Linear(iou_hidden, 1))

    def forward(self, features, prompts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f0, f1, f2 = features
        x0 = self.block0(self.inp(torch.cat([f0, prompts], 1)))
        x1 = self.block1(self.norm1(self.down1(x0) + self.skip1(f1)))
        x2 = self.deep(self.norm2(self.down2(x1) + self.skip2(f2)))
        pooled = x2.mean((2, 3, 4))
        x2 = x2 + self.context(pooled)[:, :, None, None, None]
        iou = self.iou(pooled)
        y1 = F.interpolate(self.reduce2(x2), scale_factor=2, mode="trilinear") + x1
        y1 = self.up_block1(y1)
        y0 = F.interpolate(self.reduce1(y1), scale_factor=2, mode="trilinear") + x0
        y0 = self.up_block0(y0)
        return self.out(torch.cat([y0, prompts], 1)), iou


def click_maps(
    points: torch.Tensor | None,
    labels: torch.Tensor | None,
    batch: int,
    input_size: tuple[int, int, int],
    low_res: tuple[int, int, int],
    sigma: float,
    device: torch.device,
    label_values: tuple[int, int] = (1, 0),
) -> torch.Tensor:
    """Gaussians of the points labelled ``label_values`` ``(positive, negative)``, one channel
    each: ``(B, 2, *low_res)``; points of other labels are left out."""
    out = torch.zeros((batch, 2, *low_res), device=device)
    if points is None:
        return out
    profiles = []
    for axis in range(3):
        scale = low_res[axis] / input_size[axis]
        centre = (points[..., axis] + 0.5) * scale - 0.5  # (B, N) in low-res voxels
        grid = torch.arange(low_res[axis], device=device, dtype=torch.float32)
        profiles.append(torch.exp(-((grid - centre[..., None]) ** 2) / (2 * sigma**2)))
    pd, ph, pw = profiles  # (B, N, n_axis)
    blobs = pd[:, :, :, None, None] * ph[:, :, None, :, None] * pw[:, :, None, None, :]
    for channel, label in enumerate(label_values):
        chosen = (labels == label).to(blobs.dtype)[:, :, None, None, None]
        if bool(chosen.any()):
            out[:, channel] = (blobs * chosen).amax(1)
    return out


class PromptUNet(PromptInputs, nn.Module):
    """A promptable residual 3D U-Net (family ``prompt_unet``, preset ``unet_small``)."""

    family = "prompt_unet"

    def __init__(self, config: ModelConfig | str = "unet_small") -> None:
        super().__init__()
        if isinstance(config, str):
            config = default_config(config)
        spec = check_unet_config(config)
        self.config = config
        self.spec = spec
        channels = tuple(spec.encoder_channels)
        self.image_encoder = ImageUNet(spec.stem_channels, channels)
        self.prompt_head = PromptHead(
            (channels[0], channels[1], channels[2]),
            tuple(spec.head_channels),
            spec.iou_hidden,
            PROMPT_CHANNELS + int(spec.relative_uptake) + 2 * int(spec.stroke_channels),
        )
        self._feature_shapes = [
            (c, *(n // 2**level for n in config.low_res_size))
            for level, c in enumerate(channels[:3])
        ]
        if spec.relative_uptake:
            self._feature_shapes.append((1, *config.low_res_size))
        self.precision = "fp32"
        self.eval()

    # ----------------------------------------------------------------------------- settings

    def grown_to(self, preset: str) -> PromptUNet:
        return grown_network(self, preset)

    @property
    def reads_strokes(self) -> bool:
        return self.spec.stroke_channels

    @property
    def device(self) -> torch.device:
        return self.prompt_head.out.weight.device

    # ------------------------------------------------------------------ differentiable parts

    def encode_image(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The image U-Net (with gradients if enabled); honours ``precision``."""
        with self._autocast():
            features = self.image_encoder(x)
        features = tuple(f.float() for f in features)
        if self.spec.relative_uptake:
            suv = torch.sign(x.float()) * torch.expm1(x.float().abs())  # undo suv_log
            features += (F.adaptive_avg_pool3d(suv, self.config.low_res_size),)
        return features

    def forward(self, image, points, labels, boxes=None, mask_logits=None):
        """Embed and decode in one differentiable call (for training)."""
        return self.predict(
            self.encode_image(self._check_image(image)), points, labels, boxes, mask_logits
        )

    def predict(
        self,
        embedding: tuple[torch.Tensor, ...],
        points: Any,
        labels: Any,
        boxes: Any = None,
        mask_logits: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The prompt head on an embedding (with gradients if enabled)."""
        features = self._check_embedding(embedding)
        batch, pts, labs, box_t, mask_in = self._check_prompts(
            features[0].shape[0], points, labels, boxes, mask_logits
        )
        if features[0].shape[0] != batch:
            features = tuple(f.expand(batch, *f.shape[1:]) for f in features)
        low_res = self.config.low_res_size

        def maps(labels: tuple[int, int]) -> torch.Tensor:
            return click_maps(
                pts,
                labs,
                batch,
                self.config.input_size,
                low_res,
                self.spec.click_sigma,
                self.device,
                labels,
            )

        clicks = maps((CLICK_LABELS[True], CLICK_LABELS[False]))
        if box_t is not None:
            scale = tuple(i / r for i, r in zip(self.config.input_size, low_res, strict=True))
            box = box_mask(box_t, low_res, scale).float()
        else:
            box = torch.zeros((batch, 1, *low_res), device=self.device)
        channels = [clicks, box, torch.tanh(mask_in.float() / MASK_SCALE)]
        if self.spec.relative_uptake:
            channels.append(self._relative_uptake(features[3], pts, labs, box_t, batch))
        if self.spec.stroke_channels:
            channels.append(maps((STROKE_LABELS[True], STROKE_LABELS[False])))
        prompts = torch.cat(channels, 1)
        with torch.autocast(device_type=self.device.type, enabled=False):
            logits, iou = self.prompt_head(tuple(f.float() for f in features[:3]), prompts)
        return logits, iou

    def _relative_uptake(
        self,
        suv_low: torch.Tensor,
        points: torch.Tensor | None,
        labels: torch.Tensor | None,
        boxes: torch.Tensor | None,
        batch: int,
    ) -> torch.Tensor:
        """SUV over the SUVmax near the first positive click (see the module), ``(B, 1, *low)``."""
        low = torch.tensor(self.config.low_res_size, dtype=torch.float32, device=self.device)
        scale = low / torch.tensor(self.config.input_size, dtype=torch.float32, device=self.device)
        cell_mm = float(self.config.spacing_mm[0]) / float(scale[0])
        reach = max(1, round(self.spec.relative_radius_mm / cell_mm))
        out = torch.zeros((batch, 1, *self.config.low_res_size), device=self.device)
        for item in range(batch):
            anchor = _first_positive(points, labels, boxes, item)
            if anchor is None:
                continue
            centre = ((anchor + 0.5) * scale - 0.5).round().long()
            centre = torch.minimum(torch.clamp(centre, min=0), low.long() - 1)
            lo = torch.clamp(centre - reach, min=0)
            hi = torch.minimum(centre + reach + 1, low.long())
            values = suv_low[item % suv_low.shape[0], 0]
            peak = values[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]].max()
            if peak > 0:
                out[item, 0] = torch.clamp(values / peak, 0.0, RELATIVE_MAX)
        return out

    # ------------------------------------------------------------------------------ checks

    def _check_embedding(self, embedding) -> tuple[torch.Tensor, ...]:
        ok = isinstance(embedding, (tuple, list)) and len(embedding) == len(self._feature_shapes)
        if ok:
            for f, shape in zip(embedding, self._feature_shapes, strict=True):
                ok = ok and isinstance(f, torch.Tensor) and f.ndim == 5
                ok = ok and tuple(f.shape[1:]) == shape
                ok = ok and f.shape[0] == embedding[0].shape[0]
        if not ok:
            raise InputError("not an embedding of this network; use its embed() output")
        return tuple(embedding)


def grown_network(network: PromptUNet, preset: str) -> PromptUNet:
    """``network``'s weights in a ``preset`` network (:data:`GROWN_FROM`): new prompt channels
    get zero weights, so on the same crop it computes exactly what ``network`` did; new stroke
    channels get the click channels' weights, so a scribble means at first what its clicks
    meant (exactly so where no click is near it); a preset at another spacing takes the
    weights as they are."""
    if GROWN_FROM.get(preset) != network.config.preset:
        raise InputError(f"a {network.config.preset!r} network cannot grow into preset {preset!r}")
    config = default_config(preset).replace(
        description=network.config.description, training_cases=network.config.training_cases
    )
    grown = PromptUNet(config)
    state = network.state_dict()
    target = grown.state_dict()
    adds_strokes = grown.spec.stroke_channels and not network.spec.stroke_channels
    for key, value in state.items():
        if target[key].shape == value.shape:
            target[key] = value.clone()
        else:  # the 1x1 convolutions that read the prompt channels: new channels last
            widened = torch.zeros_like(target[key])
            widened[:, : value.shape[1]] = value
            if adds_strokes:  # read a scribble's clicks as the click maps did, to start with
                first_prompt_channel = value.shape[1] - network.prompt_head.prompt_channels
                clicks = value[:, first_prompt_channel : first_prompt_channel + 2]
                widened[:, -2:] = clicks
            target[key] = widened
    grown.load_state_dict(target)
    grown.precision = network.precision
    return grown


def _first_positive(
    points: torch.Tensor | None,
    labels: torch.Tensor | None,
    boxes: torch.Tensor | None,
    item: int,
) -> torch.Tensor | None:
    """Crop voxel of item's first positive click (or scribble click), else its box's centre,
    else None."""
    if points is not None and labels is not None:
        label = labels[item]
        positive = torch.nonzero((label == CLICK_LABELS[True]) | (label == STROKE_LABELS[True]))
        if len(positive):
            return points[item, int(positive[0, 0])].float()
    if boxes is not None:
        return boxes[item].float().mean(0)
    return None


__all__ = ["PromptUNet", "click_maps", "grown_network"]
