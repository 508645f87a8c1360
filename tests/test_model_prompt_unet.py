"""The ``prompt_unet`` family (``unet_small``): interface, prompts, gradients, checkpoints,
the interactive session and a few training steps, all on random weights and synthetic blobs."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from seganypet.errors import InputError
from seganypet.image import PetImage
from seganypet.model import PromptableNetwork, build_network, default_config, normalise_crop
from seganypet.model.checkpoint import load_model, read_config, save_model
from seganypet.model.config import ModelConfig
from seganypet.model.prompt_unet import PromptUNet, click_maps
from seganypet.session import Session
from seganypet.train.config import from_dict
from seganypet.train.loop import Trainer
from seganypet.train.objective import trainable_calls
from training_checks import fixed_batch_loss

SIZE = 64
LOW = 32


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def net() -> PromptUNet:
    torch.manual_seed(0)
    return build_network("unet_small")


def _crop(seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn((1, 1, SIZE, SIZE, SIZE), generator=gen)


def test_config_and_interface_shapes(net):
    config = net.config
    assert isinstance(net, PromptUNet) and isinstance(net, PromptableNetwork)
    assert config.family == "prompt_unet" and config.preset == "unet_small"
    assert config.input_size == (SIZE,) * 3 and config.low_res_size == (LOW,) * 3
    assert config.spacing_mm == (3.0,) * 3 and config.has_box_embeddings
    assert config.normalisation == "suv_log"
    assert 1.0e6 < sum(p.numel() for p in net.parameters()) < 2.2e6
    emb = net.embed(_crop())
    logits, iou = net.decode(emb, [[[30, 31, 32], [10, 12, 50]]], [[1, 0]])
    assert logits.shape == (1, 1, LOW, LOW, LOW) and iou.shape == (1, 1)
    assert logits.dtype == torch.float32 and not logits.requires_grad
    # boxes, mask feedback, a batch of 2 from one embedding, no points at all
    logits2, iou2 = net.decode(
        emb,
        torch.tensor([[[30.0, 31, 32]], [[5.0, 6, 7]]]),
        torch.tensor([[1], [1]]),
        boxes=[[[20, 20, 20], [40, 40, 40]], [[0, 0, 0], [10, 10, 10]]],
        mask_logits=logits,
    )
    assert logits2.shape == (2, 1, LOW, LOW, LOW) and iou2.shape == (2, 1)
    only_box, _ = net.decode(emb, None, None, boxes=[[20, 20, 20], [40, 40, 40]])
    assert only_box.shape == (1, 1, LOW, LOW, LOW)
    with pytest.raises(InputError):
        net.decode(torch.zeros(1, 16, 8, 8, 8), [[[1, 2, 3]]], [[1]])
    with pytest.raises(InputError):
        net.decode(emb, [[[70, 2, 3]]], [[1]])
    with pytest.raises(InputError):
        PromptUNet(default_config("unet_small").replace(low_res_size=16))


def test_click_maps_follow_low_res_voxel_centres():
    points = torch.tensor([[[0.0, 63.0, 31.5], [10.0, 10.0, 10.0]]])
    labels = torch.tensor([[1, -1]])
    maps = click_maps(points, labels, 1, (SIZE,) * 3, (LOW,) * 3, 1.5, torch.device("cpu"))
    assert maps.shape == (1, 2, LOW, LOW, LOW)
    peak = np.unravel_index(int(maps[0, 0].argmax()), (LOW,) * 3)
    # crop 0 -> low -0.25 (voxel 0), crop 63 -> 31.25 (voxel 31), crop 31.5 -> 15.5 (15 or 16)
    assert peak[0] == 0 and peak[1] == 31 and peak[2] in (15, 16)
    assert float(maps[0, 1].abs().max()) == 0.0, "no negative clicks, the padding is ignored"


def test_padding_points_are_ignored(net):
    emb = net.embed(_crop(1))
    plain, plain_iou = net.decode(emb, [[[30, 30, 30]]], [[1]])
    padded, padded_iou = net.decode(emb, [[[30, 30, 30], [5, 60, 2], [40, 1, 1]]], [[1, -1, -1]])
    torch.testing.assert_close(plain, padded)
    torch.testing.assert_close(plain_iou, padded_iou)


def test_a_positive_click_acts_near_it_more_than_far_away(net):
    emb = net.embed(_crop(2))
    base, _ = net.decode(emb, [[[50, 50, 50]]], [[0]])
    clicked, _ = net.decode(emb, [[[50, 50, 50], [16, 16, 16]]], [[0, 1]])
    change = (clicked - base).abs()[0, 0]
    grid = torch.stack(torch.meshgrid(*[torch.arange(LOW)] * 3, indexing="ij"), -1).float()
    distance = torch.linalg.norm(grid - 7.75, dim=-1)  # the click in low-res voxels
    near = change[distance <= 2].mean()
    far = change[distance >= 12].mean()
    assert near > 3 * far, (float(near), float(far))


def test_gradients_flow_through_encode_image_and_predict(net):
    embed, decode = trainable_calls(net)
    assert embed == net.encode_image and decode == net.predict
    net.zero_grad()
    emb = embed(_crop(3))
    logits, iou = decode(emb, [[[30, 31, 32]]], [[1]], boxes=[[20, 20, 20], [40, 40, 40]])
    assert logits.requires_grad
    (logits.mean() + iou.sum()).backward()
    for name in (
        "image_encoder.stem.0.weight",
        "image_encoder.down.0.1.conv1.weight",
        "prompt_head.inp.0.weight",
        "prompt_head.deep.1.0.weight",
        "prompt_head.out.weight",
        "prompt_head.iou.2.weight",
    ):
        grad = dict(net.named_parameters())[name].grad
        assert grad is not None and float(grad.abs().sum()) > 0, name
    net.zero_grad()


def test_save_and_load_round_trip(net, tmp_path):
    path = save_model(net, tmp_path / "unet.safetensors")
    assert read_config(path) == net.config
    loaded = load_model(path)
    assert isinstance(loaded, PromptUNet) and loaded.config == net.config
    x = _crop(4)
    a, a_iou = net.decode(net.embed(x), [[[30, 31, 32]]], [[1]])
    b, b_iou = loaded.decode(loaded.embed(x), [[[30, 31, 32]]], [[1]])
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a_iou, b_iou)
    assert ModelConfig.from_json(net.config.to_json()) == net.config


def test_suv_log_normalisation_keeps_absolute_suv():
    crop = np.array([[[-0.5, 0.0, 1.0, 9.0]]], np.float32)
    out = normalise_crop(crop, "suv_log")[0, 0].numpy()
    np.testing.assert_allclose(out, [[[-np.log1p(0.5), 0.0, np.log(2.0), np.log(10.0)]]], 1e-6)
    # the same SUV maps to the same value whatever else the crop holds
    hot = normalise_crop(np.concatenate([crop, crop * 10], 0), "suv_log")[0, 0, 0]
    assert float(hot[0, 2]) == pytest.approx(float(np.log(2.0)))


def test_session_drives_it_end_to_end(net):
    shape = (40, 36, 30)
    array = np.zeros(shape, np.float32) + 1.0
    array[15:25, 12:22, 10:20] = 8.0
    image = PetImage(array, np.diag([3.5, 3.0, 2.5, 1.0]))
    session = Session(net)
    session.set_image(image)
    mask = session.add_point((20, 17, 15))
    assert mask.shape == shape and mask.dtype == bool
    mask = session.add_point((5, 5, 5), positive=False)
    assert mask.shape == shape
    mask = session.add_box((15, 12, 10), (24, 21, 19))
    assert mask.shape == shape


def _write_blobs(folder: Path, cases: int = 2, shape=(48, 48, 48), spacing=3.0) -> Path:
    rng = np.random.default_rng(0)
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir(parents=True)
    grid = np.indices(shape).transpose(1, 2, 3, 0)
    for index in range(cases):
        centre = rng.integers(18, 30, size=3)
        labels = (((grid - centre) ** 2).sum(-1) <= 7**2).astype(np.uint8)
        image = rng.normal(1.0, 0.1, shape).astype(np.float32)
        image[labels == 1] += 6.0
        affine = np.diag([spacing, spacing, spacing, 1.0])
        name = f"case_{index:03d}"
        nib.save(nib.Nifti1Image(image, affine), folder / "imagesTr" / f"{name}_0000.nii.gz")
        nib.save(nib.Nifti1Image(labels, affine), folder / "labelsTr" / f"{name}.nii.gz")
    description = {
        "channel_names": {"0": "PET"},
        "labels": {"background": 0, "lesion": 1},
        "numTraining": cases,
        "file_ending": ".nii.gz",
    }
    (folder / "dataset.json").write_text(json.dumps(description))
    return folder


def test_training_steps_lower_the_loss_on_a_blob(tmp_path):
    data = _write_blobs(tmp_path / "blobs")
    config = from_dict(
        dict(
            data=(str(data),),
            out=str(tmp_path / "run"),
            preset="unet_small",
            cache_dir=str(tmp_path / "cache"),
            steps=12,
            batch_size=2,
            click_rounds=2,
            learning_rate=3e-3,
            warmup_steps=1,
            val_every=0,
            num_threads=1,
            progress=False,
            precision="fp32",
            box_probability=0.0,
            geometric_probability=0.0,
            flip_probability=0.0,
        )
    )
    trainer = Trainer(config)
    assert isinstance(trainer.network, PromptUNet)
    before, after = fixed_batch_loss(trainer, steps=10)
    assert after < 0.8 * before, (before, after)


def test_a_grown_relative_uptake_network_starts_as_the_network_it_grew_from(net):
    from seganypet.model.prompt_unet import grown_network

    grown = grown_network(net, "unet_small_rel")
    assert grown.config.preset == "unet_small_rel"
    x = normalise_crop(torch.rand(64, 64, 64) * 6.0, "suv_log")
    points = torch.tensor([[[30.0, 31.0, 32.0], [10.0, 12.0, 40.0]]])
    labels = torch.tensor([[1, 0]])
    before, iou_before = net.decode(net.embed(x), points, labels)
    after, iou_after = grown.decode(grown.embed(x), points, labels)
    assert torch.allclose(before, after, atol=1e-5)
    assert torch.allclose(iou_before, iou_after, atol=1e-5)
    with pytest.raises(InputError, match="cannot grow"):
        grown_network(grown, "unet_small_rel")


def test_training_grows_a_unet_small_checkpoint_into_unet_small_rel(net, tmp_path):
    from seganypet.train.loop import build_network as build_for_training

    checkpoint = save_model(net, tmp_path / "small.safetensors")
    config = from_dict(
        {"init": str(checkpoint), "preset": "unet_small_rel", "out": str(tmp_path / "run")}
    )
    grown = build_for_training(config)
    assert grown.config.preset == "unet_small_rel"
    weight = grown.prompt_head.inp[0].weight
    assert weight.shape[1] == net.prompt_head.inp[0].weight.shape[1] + 1
    assert not weight[:, -1].any()


def test_a_grown_stroke_network_reads_a_scribble_apart_and_starts_as_its_clicks(net):
    from seganypet.model.prompt_unet import grown_network

    torch.manual_seed(1)
    parent = grown_network(net, "unet_small_rel")
    with torch.no_grad():  # the grown relative channel is zero: give it weights to carry over
        parent.prompt_head.inp[0].weight[:, -1].normal_()
    strokes = grown_network(parent, "unet_small_strokes")
    assert strokes.reads_strokes and not parent.reads_strokes
    x = normalise_crop(torch.rand(64, 64, 64) * 6.0, "suv_log")
    line = [[30.0, 20.0 + 2 * i, 32.0] for i in range(8)]  # a scribble's clicks
    points = torch.tensor([[*line, [10.0, 12.0, 50.0]]])
    as_clicks = torch.tensor([[1] * 8 + [0]])
    as_stroke = torch.tensor([[3] * 8 + [0]])
    parent_logits, _ = parent.decode(parent.embed(x), points, as_clicks)
    embedding = strokes.embed(x)
    clicks_logits, _ = strokes.decode(embedding, points, as_clicks)
    stroke_logits, _ = strokes.decode(embedding, points, as_stroke)
    # clicks mean exactly what they meant, and a scribble at first what its clicks meant
    assert torch.equal(clicks_logits, parent_logits)
    assert torch.allclose(stroke_logits, parent_logits, atol=1e-4)
    # ... through channels of their own: with those zeroed the scribble is not seen at all
    with torch.no_grad():
        for conv in (strokes.prompt_head.inp[0], strokes.prompt_head.out):
            conv.weight[:, -2:] = 0
    negative_stroke = torch.tensor([[2] * 8 + [1]])
    unseen, _ = strokes.decode(embedding, points, negative_stroke)
    click_only, _ = strokes.decode(embedding, points[:, -1:], negative_stroke[:, -1:])
    assert torch.allclose(unseen, click_only, atol=1e-5)
    seen_as_clicks, _ = strokes.decode(embedding, points, torch.tensor([[0] * 8 + [1]]))
    assert not torch.allclose(unseen, seen_as_clicks, atol=1e-3)
    # the first positive (here a scribble's) click centres the relative-uptake channel
    assert torch.equal(
        strokes._relative_uptake(embedding[3], points, as_stroke, None, 1),
        strokes._relative_uptake(embedding[3], points, as_clicks, None, 1),
    )
    with pytest.raises(InputError, match=r"1 \(positive\), 0 \(negative\) or -1"):
        parent.decode(parent.embed(x), points, as_stroke)


def test_the_relative_uptake_channel_is_suv_over_the_peak_near_the_first_click():
    network = PromptUNet("unet_small_rel")
    suv = torch.full((64, 64, 64), 1.0)
    suv[30:34, 30:34, 30:34] = 10.0  # a lesion at low-res cells 15-16
    suv[2:6, 2:6, 2:6] = 40.0  # a hotter spot far from the click
    embedding = network.embed(normalise_crop(suv, "suv_log"))
    assert len(embedding) == 4 and embedding[3].shape == (1, 1, 32, 32, 32)
    assert torch.allclose(embedding[3][0, 0, 15, 15, 15], torch.tensor(10.0), rtol=1e-4)
    relative = network._relative_uptake(
        embedding[3], torch.tensor([[[31.0, 31.0, 31.0]]]), torch.tensor([[1]]), None, 1
    )
    assert relative[0, 0, 15, 15, 15] == pytest.approx(1.0)
    assert relative[0, 0, 25, 25, 25] == pytest.approx(0.1, rel=1e-3)
    assert relative[0, 0, 1, 1, 1] == pytest.approx(2.0)  # clipped: hotter than the local peak
    none = network._relative_uptake(embedding[3], None, None, None, 1)
    assert not none.any()
    boxed = network._relative_uptake(
        embedding[3], None, None, torch.tensor([[[28.0, 28.0, 28.0], [35.0, 35.0, 35.0]]]), 1
    )
    assert torch.equal(boxed, relative)


def test_a_relative_uptake_network_runs_a_session_and_round_trips(tmp_path):
    network = PromptUNet("unet_small_rel")
    path = save_model(network, tmp_path / "rel.safetensors")
    loaded = load_model(path)
    assert loaded.config.preset == "unet_small_rel"
    image = np.full((40, 40, 30), 1.0, np.float32)
    image[15:25, 15:25, 10:20] = 8.0
    session = Session(loaded)
    session.set_image(PetImage(image, np.diag([3.0, 3.0, 3.0, 1.0])))
    assert session.add_point((20, 20, 15)).shape == image.shape
    with pytest.raises(InputError, match="normalisation must be suv_log"):
        PromptUNet(default_config("unet_small_rel", normalisation="none"))


def test_flip_averaging_makes_the_network_mirror_symmetric(net):
    from seganypet.model.flips import FlipAveraged

    averaged = FlipAveraged(net, ((), (0,)))
    x = normalise_crop(torch.rand(64, 64, 64) * 6.0, "suv_log")
    points = torch.tensor([[[30.0, 31.0, 32.0], [10.0, 12.0, 40.0]]])
    labels = torch.tensor([[1, 0]])
    box = torch.tensor([[[20.0, 22.0, 24.0], [40.0, 41.0, 42.0]]])
    mirrored_points = points.clone()
    mirrored_points[..., 0] = 63 - points[..., 0]
    mirrored_box = torch.stack([63 - box[:, 1, 0], 63 - box[:, 0, 0]], 1)
    mirrored_box = torch.cat(
        [torch.stack([mirrored_box[:, 0], box[:, 0, 1], box[:, 0, 2]], 1)[:, None],
         torch.stack([mirrored_box[:, 1], box[:, 1, 1], box[:, 1, 2]], 1)[:, None]], 1
    )  # fmt: skip
    logits, iou = averaged.decode(averaged.embed(x), points, labels, boxes=box)
    flipped, flipped_iou = averaged.decode(
        averaged.embed(torch.flip(x, [2])), mirrored_points, labels, boxes=mirrored_box
    )
    assert torch.allclose(torch.flip(flipped, [2]), logits, atol=1e-4)
    assert torch.allclose(iou, flipped_iou, atol=1e-5)
    plain, _ = net.decode(net.embed(x), points, labels, boxes=box)
    assert not torch.allclose(plain, logits, atol=1e-3)  # a random network is not symmetric
    again, _ = averaged.decode(averaged.embed(x), points, labels, boxes=box, mask_logits=logits)
    assert again.shape == logits.shape
    with pytest.raises(InputError, match="test-time flips"):
        FlipAveraged(net, ((3,),))


def test_unet_fine_starts_from_the_3mm_weights_at_half_the_spacing(net):
    from seganypet.model.prompt_unet import grown_network

    fine = grown_network(net, "unet_fine")
    assert fine.config.spacing_mm == (1.5, 1.5, 1.5) and net.config.spacing_mm == (3.0, 3.0, 3.0)
    for name, value in net.state_dict().items():
        assert torch.equal(fine.state_dict()[name], value), name


def test_a_small_object_companion_is_found_beside_its_model(net, tmp_path):
    from seganypet.model import load_small_object_model
    from seganypet.model.prompt_unet import grown_network

    main = save_model(net, tmp_path / "model.safetensors")
    assert load_small_object_model(main) is None
    save_model(grown_network(net, "unet_fine"), tmp_path / "model_small.safetensors")
    companion = load_small_object_model(main)
    assert companion is not None and companion.config.preset == "unet_fine"
    assert load_small_object_model(tmp_path / "model_small.safetensors") is None
