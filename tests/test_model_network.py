"""The network's modules, its promptable interface and the box mapping."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seganypet.errors import InputError
from seganypet.model import (
    BOX_OUTSIDE_LOGIT,
    ModelConfig,
    PromptableNetwork,
    SamMed3D,
    configure_threads,
    default_config,
    normalise_crop,
)
from seganypet.model.boxes import box_mask
from seganypet.model.image_encoder import Attention3D


def _randomise(module: torch.nn.Module, seed: int = 0, scale: float = 0.5) -> None:
    """Non-trivial values everywhere (zero-initialised rel-pos tables would hide bugs)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * scale)


@pytest.fixture(scope="module")
def small() -> SamMed3D:
    torch.manual_seed(0)
    return SamMed3D("small")


@pytest.fixture(scope="module")
def small_embedding(small) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    return small.embed(torch.randn(1, 1, 64, 64, 64, generator=gen))


# ----------------------------------------------------------------------- collapsed attention


@pytest.mark.parametrize(
    ("grid", "window"),
    [
        ((8, 8, 8), 14),  # vit_b_ori: one window, 8³ real tokens of 14³
        ((6, 6, 6), 4),  # several windows, some cut by the padding
        ((7, 5, 6), 4),  # uneven grid
        ((8, 8, 8), 4),  # whole windows, no padding
        ((5, 5, 5), 0),  # global attention
    ],
)
def test_collapsed_attention_equals_padded_reference(grid, window):
    attn = Attention3D(48, num_heads=3, input_size=grid, window_size=window).double()
    _randomise(attn, scale=0.3)
    x = torch.randn(2, *grid, 48, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        fast = attn(x)
        attn.attention_mode = "padded"
        padded = attn(x)
    assert fast.shape == padded.shape == x.shape
    assert torch.allclose(fast, padded, rtol=0, atol=1e-11), (fast - padded).abs().max()


def test_collapsed_attention_has_the_reference_gradients():
    attn = Attention3D(32, num_heads=2, input_size=(4, 5, 4), window_size=6).double()
    _randomise(attn, scale=0.3)
    x = torch.randn(1, 4, 5, 4, 32, dtype=torch.float64)
    weight = torch.randn(1, 4, 5, 4, 32, dtype=torch.float64)
    grads = {}
    for mode in ("fast", "padded"):
        attn.attention_mode = mode
        attn.zero_grad()
        xi = x.clone().requires_grad_(True)
        (attn(xi) * weight).sum().backward()
        grads[mode] = [xi.grad] + [p.grad.clone() for p in attn.parameters()]
    for fast, padded in zip(grads["fast"], grads["padded"], strict=True):
        assert torch.allclose(fast, padded, rtol=0, atol=1e-10)


def test_padded_keys_matter_and_are_kept():
    """Dropping the virtual key (attending to real keys only) would change the output."""
    attn = Attention3D(48, num_heads=3, input_size=(4, 4, 4), window_size=7).double()
    _randomise(attn, scale=0.3)
    x = torch.randn(1, 4, 4, 4, 48, dtype=torch.float64)
    with torch.no_grad():
        fast = attn(x)
        attn.qkv.bias[48:].zero_()  # padded keys and values become 0: a different function
        changed = attn(x)
    assert (fast - changed).abs().max() > 1e-3


def test_small_network_fast_equals_padded_in_float64():
    net = SamMed3D("small").double()
    _randomise(net, scale=0.2)
    x = torch.randn(1, 1, 64, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        fast = net.image_encoder(x)
        net.image_encoder.attention_mode = "padded"
        padded = net.image_encoder(x)
    assert torch.allclose(fast, padded, rtol=0, atol=1e-9)


# ----------------------------------------------------------------------- layout and config


def test_small_preset_layout_and_box_keys():
    plain = SamMed3D("small")
    keys = list(plain.state_dict())
    assert keys[0] == "image_encoder.pos_embed"
    assert "prompt_encoder.point_embeddings.2.weight" not in keys
    boxed = SamMed3D(default_config("small", has_box_embeddings=True))
    extra = [k for k in boxed.state_dict() if k not in plain.state_dict()]
    assert extra == [
        "prompt_encoder.point_embeddings.2.weight",
        "prompt_encoder.point_embeddings.3.weight",
    ]
    assert plain.config.low_res_size == (32, 32, 32)
    assert plain.config.spacing_mm == (3.0, 3.0, 3.0)
    assert default_config("vit_b_ori").spacing_mm == (1.5, 1.5, 1.5)


def test_config_round_trips_and_validates():
    config = default_config("vit_b_ori", description="released weights")
    assert ModelConfig.from_json(config.to_json()) == config
    with pytest.raises(InputError, match="normalisation"):
        ModelConfig(normalisation="minmax")
    with pytest.raises(InputError, match="unknown fields"):
        ModelConfig.from_dict({"preset": "small", "colour": "blue"})
    with pytest.raises(InputError, match="does not match preset"):
        SamMed3D(default_config("small").replace(input_size=(128, 128, 128)))
    with pytest.raises(InputError, match="unknown model preset"):
        SamMed3D("vit_h")


def test_normalise_crop_is_zscore_over_positive_voxels():
    crop = np.zeros((4, 4, 4), dtype=np.float32)
    crop[1:3, 1:3, 1:3] = [[[1, 2], [3, 4]], [[5, 6], [7, 8]]]
    out = normalise_crop(crop, "zscore_positive")
    positive = crop[crop > 0]
    expected = (crop - positive.mean()) / positive.std(ddof=1)
    assert out.shape == (1, 1, 4, 4, 4)
    np.testing.assert_allclose(out[0, 0].numpy(), expected, rtol=1e-6, atol=1e-6)
    assert normalise_crop(-np.ones((4, 4, 4)), "zscore_positive").abs().max() == 0
    assert torch.equal(normalise_crop(crop, "none")[0, 0], torch.from_numpy(crop))


def test_configure_threads(monkeypatch):
    before = torch.get_num_threads()
    try:
        assert configure_threads(1) == 1 and torch.get_num_threads() == 1
        monkeypatch.setenv("SEGANYPET_NUM_THREADS", "2")
        assert configure_threads() == 2
    finally:
        torch.set_num_threads(before)


# ----------------------------------------------------------------------- the interface


def test_embed_and_decode_follow_the_protocol(small, small_embedding):
    assert isinstance(small, PromptableNetwork)
    assert small_embedding.shape == (1, 192, 8, 8, 8)
    logits, iou = small.decode(small_embedding, [[[10, 20, 30]]], [[1]])
    assert logits.shape == (1, 1, 32, 32, 32) and iou.shape == (1, 1)
    assert logits.dtype == torch.float32 and not logits.requires_grad
    # A first round means an all-zero mask input.
    same, _ = small.decode(
        small_embedding, [[[10, 20, 30]]], [[1]], mask_logits=torch.zeros(1, 1, 32, 32, 32)
    )
    assert torch.equal(logits, same)
    # (N, 3) points, numpy arrays, feeding back the logits.
    again, _ = small.decode(
        small_embedding, np.array([[10, 20, 30], [40, 5, 6]]), np.array([1, 0]), mask_logits=logits
    )
    assert again.shape == logits.shape and not torch.equal(again, logits)


def test_decode_broadcasts_one_prompt_over_a_batch(small):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 1, 64, 64, 64, generator=gen)
    emb = small.embed(x)
    logits, iou = small.decode(emb, [[[10, 20, 30]]], [[1]])
    assert logits.shape == (2, 1, 32, 32, 32) and iou.shape == (2, 1)
    single, _ = small.decode(emb[1:], [[[10, 20, 30]]], [[1]])
    assert torch.allclose(logits[1:], single, atol=1e-5)
    # Padding label -1 lets items carry different numbers of points.
    padded, _ = small.decode(
        emb, [[[10, 20, 30], [0, 0, 0]], [[5, 5, 5], [6, 6, 6]]], [[1, -1], [1, 0]]
    )
    assert padded.shape == (2, 1, 32, 32, 32)


@pytest.mark.parametrize(
    ("points", "labels", "match"),
    [
        ([[[10, 20, 30]]], [[2]], "labels must be"),
        ([[[10, 20, 64]]], [[1]], "outside"),
        ([[[10, 20]]], [[1]], "voxel indices"),
        ([[[10, 20, 30]]], [[1, 0]], "do not match"),
    ],
)
def test_decode_rejects_bad_prompts(small, small_embedding, points, labels, match):
    with pytest.raises(InputError, match=match):
        small.decode(small_embedding, points, labels)


def test_embed_and_decode_reject_wrong_shapes(small, small_embedding):
    with pytest.raises(InputError, match="normalised crop"):
        small.embed(torch.zeros(1, 1, 32, 32, 32))
    with pytest.raises(InputError, match="not an embedding"):
        small.decode(torch.zeros(1, 384, 8, 8, 8), [[[1, 2, 3]]], [[1]])
    with pytest.raises(InputError, match="mask_logits"):
        small.decode(
            small_embedding, [[[1, 2, 3]]], [[1]], mask_logits=torch.zeros(1, 1, 16, 16, 16)
        )


def test_forward_is_differentiable_for_training(small):
    net = SamMed3D("small")
    net.train()
    logits, iou = net(torch.randn(1, 1, 64, 64, 64), [[[10, 20, 30]]], [[1]])
    (logits.mean() + iou.mean()).backward()
    assert net.image_encoder.blocks[0].attn.rel_pos_d.grad is not None
    assert net.prompt_encoder.point_embeddings[1].weight.grad is not None


def test_bf16_embedding_is_close_to_fp32(small):
    x = torch.randn(1, 1, 64, 64, 64, generator=torch.Generator().manual_seed(4))
    ref = small.embed(x)
    small.precision = "bf16"
    try:
        low = small.embed(x)
    finally:
        small.precision = "fp32"
    assert low.dtype == torch.float32
    assert (low - ref).abs().max() < 0.05 * ref.abs().max()
    with pytest.raises(InputError):
        small.precision = "fp16"


# ----------------------------------------------------------------------- boxes


def test_box_on_released_layout_is_a_centre_click_clipped_to_the_box(small, small_embedding):
    box = [[8, 16, 24], [23, 31, 47]]  # inclusive voxel corners of the 64³ crop
    logits, iou = small.decode(small_embedding, None, None, boxes=box)
    centre, centre_iou = small.decode(small_embedding, [[[15.5, 23.5, 35.5]]], [[1]])
    inside = box_mask(torch.tensor([box], dtype=torch.float32), (32, 32, 32), 2.0)
    assert inside.sum() == 8 * 8 * 12
    assert torch.equal(logits[inside], centre[inside])
    assert (logits[~inside] <= BOX_OUTSIDE_LOGIT).all()
    assert torch.equal(iou, centre_iou)
    # With clicks too, the centre click is added after them.
    both, _ = small.decode(small_embedding, [[[10, 20, 30]]], [[0]], boxes=box)
    ref, _ = small.decode(small_embedding, [[[10, 20, 30], [15.5, 23.5, 35.5]]], [[0, 1]])
    assert torch.equal(both[inside], ref[inside])


def test_box_mask_marks_the_low_res_cells_the_box_overlaps():
    box = torch.tensor([[[5, 0, 60], [9, 3, 63]]], dtype=torch.float32)
    m = box_mask(box, (16, 16, 16), 4.0)[0, 0]
    assert m.nonzero()[:, 0].unique().tolist() == [1, 2]
    assert m.nonzero()[:, 1].unique().tolist() == [0]
    assert m.nonzero()[:, 2].unique().tolist() == [15]


@pytest.mark.parametrize(
    ("box", "match"),
    [
        ([[10, 10, 10], [5, 20, 20]], "must not exceed"),
        ([[70, 70, 70], [80, 80, 80]], "outside"),
        ([[1, 2, 3]], "two corners"),
    ],
)
def test_bad_boxes_are_refused(small, small_embedding, box, match):
    with pytest.raises(InputError, match=match):
        small.decode(small_embedding, None, None, boxes=box)


def test_learned_box_embeddings_are_used_when_present():
    net = SamMed3D(default_config("small", has_box_embeddings=True))
    _randomise(net.prompt_encoder, scale=0.5)
    emb = net.embed(torch.randn(1, 1, 64, 64, 64))
    box = torch.tensor([[[8, 16, 24], [23, 31, 47]]], dtype=torch.float32)
    sparse, _ = net.prompt_encoder(None, box, None)
    assert sparse.shape == (1, 2, 192)  # two corner tokens, no padding token
    logits, _ = net.decode(emb, None, None, boxes=box)
    # Not clipped: the learned corners are trusted, no cap outside the box.
    inside = box_mask(box, (32, 32, 32), 2.0)
    assert (logits[~inside] > BOX_OUTSIDE_LOGIT).any()
    with_click, _ = net.decode(emb, [[[15, 20, 30]]], [[1]], boxes=box)
    assert not torch.equal(with_click, logits)


def test_every_family_has_a_network_class_and_answers_the_family_questions():
    from seganypet.model.config import FAMILIES
    from seganypet.model.registry import NETWORK_CLASSES, build_network

    assert sorted(NETWORK_CLASSES) == sorted(FAMILIES)
    vit = build_network("small")
    unet = build_network("unet_small")
    assert vit.family == "sam_med3d" and unet.family == "prompt_unet"
    assert vit.has_reference_order and not unet.has_reference_order
    vit.reference_order = True
    assert vit.image_encoder.attention_mode == "padded"
    with pytest.raises(InputError, match="windowed attention"):
        unet.reference_order = True
    unet.reference_order = False  # asking for the default is no error
    assert unet.with_box_embeddings() is unet  # a prompt_unet always takes boxes
    grown = vit.with_box_embeddings()
    assert grown.config.has_box_embeddings and grown.reference_order
    for key, value in vit.state_dict().items():
        assert torch.equal(grown.state_dict()[key], value)
    with pytest.raises(InputError, match="cannot grow"):
        vit.grown_to("unet_small_rel")
    assert unet.grown_to("unet_small_rel").config.preset == "unet_small_rel"
