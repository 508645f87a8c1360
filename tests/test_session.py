"""Session geometry: prompts land where the user clicked, results return on the input grid,
large objects are covered without seams. Test doubles stand in for the network here."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from network_doubles import SphereNetwork, ThresholdNetwork
from seganypet.errors import InputError
from seganypet.image import PetImage
from seganypet.model.network import STROKE_LABELS
from seganypet.prompts import MAX_CLICKS_PER_STROKE, Lasso, Point, Scribble
from seganypet.session import Session


def permuted_image(shape=(40, 30, 24)) -> PetImage:
    affine = np.array([[0, 0, -4.0, 90], [-2.0, 0, 0, 40], [0, 3.0, 0, -60], [0, 0, 0, 1]])
    background = 1.0 + 0.01 * np.arange(np.prod(shape), dtype=np.float32).reshape(shape) / np.prod(
        shape
    )
    return PetImage(background, affine)


def test_point_lands_where_clicked_and_result_is_on_input_grid():
    image = permuted_image()
    network = SphereNetwork(radius=8.0)
    session = Session(network)
    session.set_image(image)
    click = (20, 14, 11)
    mask = session.add_point(click)
    assert mask.shape == image.shape and mask.dtype == bool
    assert mask[click]
    centroid = np.argwhere(mask).mean(0)
    world_error = np.linalg.norm(
        image.voxel_to_world(centroid) - image.voxel_to_world(np.array(click))
    )
    assert world_error < 2.0, "the sphere is centred on the clicked voxel"
    radius_mm = network.radius * network.config.spacing_mm[0]
    expected_ml = 4 / 3 * np.pi * radius_mm**3 / 1000
    assert mask.sum() * image.voxel_volume_ml == pytest.approx(expected_ml, rel=0.15)


def test_embedding_is_cached_and_prompts_are_undone_exactly():
    image = PetImage(np.zeros((48, 48, 48), np.float32), np.diag([4.0, 4.0, 4.0, 1.0]))
    image.array[10:30, 10:30, 10:30] = 3.0
    network = ThresholdNetwork(threshold=1.5)
    network_embed = network.embed
    calls = []
    network.embed = lambda crop: calls.append(1) or network_embed(crop)
    session = Session(network)
    session.set_image(image)
    first = session.add_point((20, 20, 20)).copy()
    assert first[11:29, 11:29, 11:29].all() and not first[33:, 33:, 33:].any()
    second = session.add_point((12, 12, 12), positive=False)
    assert not second[12, 12, 12] and second[25, 25, 25]
    assert len(calls) == 1, "a second click in the same tile reuses the embedding"
    session.undo()
    np.testing.assert_array_equal(session.mask, first)
    session.reset()
    assert not session.mask.any()
    session.undo()
    np.testing.assert_array_equal(session.mask, first)


def test_large_object_is_covered_without_seams():
    image = PetImage(np.zeros((180, 40, 40), np.float32), np.diag([2.0, 2.0, 2.0, 1.0]))
    bar = np.zeros(image.shape, bool)
    bar[15:165, 8:32, 8:32] = True  # 300 mm long: more than two tiles of 128 mm
    image.array[bar] = 4.0
    session = Session(ThresholdNetwork(threshold=2.0))
    session.set_image(image)
    mask = session.add_point((90, 20, 20))
    dice = 2 * (mask & bar).sum() / (mask.sum() + bar.sum())
    assert dice > 0.9
    _, components = ndimage.label(mask)
    assert components == 1, "one object"
    cross_sections = mask[17:163].sum(axis=(1, 2))
    assert cross_sections.min() >= 0.9 * np.median(cross_sections), "no seam between tiles"
    assert len(session.current.tiles) >= 3


def test_objects_are_independent_and_form_a_label_map():
    image = permuted_image()
    session = Session(SphereNetwork(radius=5.0))
    session.set_image(image)
    session.add_point((10, 10, 5))
    session.new_object("second")
    session.add_point((30, 20, 18))
    labels, names = session.label_map()
    assert names == {1: "object 1", 2: "second"}
    assert labels[10, 10, 5] == 1 and labels[30, 20, 18] == 2


def test_box_is_centred_on_its_middle():
    image = permuted_image()
    session = Session(SphereNetwork(radius=6.0))
    session.set_image(image)
    with pytest.raises(InputError, match="empty"):
        session.add_box((5, 5, 5), (5, 9, 9))
    # The sphere double ignores boxes, so the box's centre must come as a point: check that
    # the session routed the prompt to a tile around the box.
    session.network.decode = _box_as_centre(session.network.decode)
    mask = session.add_box((10, 8, 6), (20, 16, 14))
    assert mask[15, 12, 10]


def _box_as_centre(decode):
    def wrapped(embedding, points, labels, boxes=None, mask_logits=None):
        if boxes is not None and points.shape[1] == 0:
            centre = boxes.float().mean(dim=1)
            return decode(embedding, centre[:, None], torch.ones(1, 1, dtype=torch.long))
        return decode(embedding, points, labels)

    return wrapped


@pytest.mark.parametrize("value", [0.0, 2.5, -1.0])
def test_an_image_without_uptake_is_refused(value):
    """All zeros or constant: nothing to segment (a model would return an arbitrary blob)."""
    session = Session(SphereNetwork())
    blank = PetImage(np.full((20, 20, 20), value, np.float32), np.diag([4.0, 4.0, 4.0, 1.0]))
    with pytest.raises(InputError, match="no uptake"):
        session.set_image(blank)
    negative = blank.with_array(np.where(np.arange(20)[:, None, None] % 2, -1.0, 0.0))
    with pytest.raises(InputError, match="no voxel is above 0"):
        session.set_image(negative)


def test_a_point_sign_must_be_a_boolean():
    session = Session(SphereNetwork())
    session.set_image(permuted_image())
    for sign in ("false", 0, None):
        with pytest.raises(InputError, match="'positive' must be true or false"):
            session.add_point((10, 10, 5), positive=sign)
    with pytest.raises(InputError, match="three numbers"):
        session.add_point(("a", 1, 2))
    assert session.add_point((10, 10, 5), positive=np.bool_(True)).any()


def test_bad_prompts_are_clear_errors():
    session = Session(SphereNetwork())
    with pytest.raises(InputError, match="no image"):
        session.add_point((1, 1, 1))
    session.set_image(permuted_image())
    with pytest.raises(InputError, match="outside the image"):
        session.add_point((40, 1, 1))
    with pytest.raises(InputError, match="first prompt"):
        session.add_point((5, 5, 5), positive=False)
    with pytest.raises(InputError, match="nothing to undo"):
        session.undo()


def test_mask_prompt_seeds_the_object():
    image = permuted_image()
    session = Session(SphereNetwork(radius=5.0))
    session.set_image(image)
    seed = np.zeros(image.shape, bool)
    seed[5:9, 5:9, 5:9] = True
    np.testing.assert_array_equal(session.add_mask(seed), seed)


def _blobs_image() -> tuple[PetImage, np.ndarray, np.ndarray]:
    """2 mm voxels: a 1 ml sphere and a 65 ml sphere, SUV 6 on a background of 1."""
    shape = (160, 80, 96)  # the two are more than a 3 mm tile (19.2 cm) apart
    grid = np.stack(np.meshgrid(*[np.arange(n) * 2.0 for n in shape], indexing="ij"), -1)
    small = np.linalg.norm(grid - (80.0, 80.0, 60.0), axis=-1) <= 6.2
    large = np.linalg.norm(grid - (260.0, 80.0, 120.0), axis=-1) <= 25.0
    array = np.where(small | large, 6.0, 1.0).astype(np.float32)
    return PetImage(array, np.diag([2.0, 2.0, 2.0, 1.0])), small, large


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * (a & b).sum() / (a.sum() + b.sum())


def test_a_small_object_is_segmented_again_at_a_finer_spacing():
    image, small, large = _blobs_image()
    click = tuple(int(v) for v in np.argwhere(small).mean(0).round())
    coarse = Session(ThresholdNetwork(threshold=3.0, spacing_mm=3.0), zoom_small_objects=False)
    coarse.set_image(image)
    coarse_mask = coarse.add_point(click)
    session = Session(ThresholdNetwork(threshold=3.0, spacing_mm=3.0))
    session.set_image(image)
    mask = session.add_point(click)
    obj = session.current
    assert obj.zoom == 2.0 and all(np.allclose(t.step, 0.75) for t in obj.tiles)
    (tile,) = obj.tiles  # the finer tile is centred on the click, not on anything else
    np.testing.assert_allclose(tile.origin + (tile.size // 2) * tile.step, click)
    assert _dice(mask, small) > _dice(coarse_mask, small) + 0.05
    assert _dice(mask, small) > 0.6  # the coarse tile (12 mm logits) misses it entirely
    # later clicks keep the finer tiles; undoing the first click forgets the zoom
    session.add_point(click, positive=True)
    assert session.current.zoom == 2.0
    session.undo()
    session.undo()
    assert session.current.zoom == 1.0 and not session.mask.any()
    # a large object stays at the network's spacing
    session.new_object("large")
    big = session.add_point(tuple(int(v) for v in np.argwhere(large).mean(0).round()))
    assert session.current.zoom == 1.0 and _dice(big, large) > 0.8
    # a network that already samples at 1.5 mm never zooms
    fine = Session(ThresholdNetwork(threshold=3.0, input_size=32, spacing_mm=1.5))
    fine.set_image(image)
    fine.add_point(click)
    assert fine.current.zoom == 1.0


class CountingThreshold(ThresholdNetwork):
    """A threshold double that counts its embeddings (a crop per tile)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.embeds = 0

    def embed(self, crop):
        self.embeds += 1
        return super().embed(crop)


def test_a_small_object_network_takes_over_small_objects_at_its_own_spacing():
    image, small, large = _blobs_image()
    click = tuple(int(v) for v in np.argwhere(small).mean(0).round())
    coarse = CountingThreshold(threshold=3.0, spacing_mm=3.0)
    fine = CountingThreshold(threshold=3.0, input_size=48, spacing_mm=1.5)
    session = Session(coarse, small_object_network=fine)
    session.set_image(image)
    mask = session.add_point(click)
    obj = session.current
    assert obj.fine and obj.zoom == 1.0 and fine.embeds >= 1
    assert all(t.fine and t.size == 48 and np.allclose(t.step, 0.75) for t in obj.tiles)
    assert _dice(mask, small) > 0.6
    embeds = (coarse.embeds, fine.embeds)
    session.add_point(click, positive=True)  # later prompts of the object stay with it
    assert session.current.fine and coarse.embeds == embeds[0]
    session.new_object("large")  # a large object stays with the main network
    big = session.add_point(tuple(int(v) for v in np.argwhere(large).mean(0).round()))
    assert not session.current.fine and _dice(big, large) > 0.8
    session.undo()
    session.select_object(0)
    session.undo()
    session.undo()
    assert not session.current.fine and not session.mask.any()

    # A small-object network that finds nothing leaves the main network's result.
    blind = CountingThreshold(threshold=100.0, input_size=48, spacing_mm=1.5)
    main = CountingThreshold(threshold=3.0, spacing_mm=3.0)
    fallback = Session(main, small_object_network=blind)
    fallback.set_image(image)
    kept = fallback.add_point(click)
    assert blind.embeds >= 1 and not fallback.current.fine
    plain = Session(CountingThreshold(threshold=3.0, spacing_mm=3.0), zoom_small_objects=False)
    plain.set_image(image)
    np.testing.assert_array_equal(kept, plain.add_point(click))


def test_a_click_beyond_the_fine_tiles_returns_the_object_to_the_main_spacing():
    # A 1 ml hot focus, and 22 cm away a 380 ml sphere wider than a fine tile (36 mm at 0.75
    # voxel steps: 48 x 1.5 mm = 72 mm, the sphere 90 mm): the first click finds a small object,
    # a positive click on the sphere says the object is larger than that.
    shape = (200, 100, 110)
    grid = np.stack(np.meshgrid(*[np.arange(n) * 2.0 for n in shape], indexing="ij"), -1)
    small = np.linalg.norm(grid - (80.0, 80.0, 60.0), axis=-1) <= 6.2
    large = np.linalg.norm(grid - (300.0, 100.0, 110.0), axis=-1) <= 45.0
    image = PetImage(
        np.where(small | large, 6.0, 1.0).astype(np.float32), np.diag([2.0, 2.0, 2.0, 1.0])
    )
    first = tuple(int(v) for v in np.argwhere(small).mean(0).round())
    inside = tuple(int(v) for v in np.argwhere(large).mean(0).round())
    for companion in (CountingThreshold(threshold=3.0, input_size=48, spacing_mm=1.5), None):
        session = Session(
            CountingThreshold(threshold=3.0, spacing_mm=3.0), small_object_network=companion
        )
        session.set_image(image)
        session.add_point(first)
        assert session.current.fine or session.current.zoom != 1.0
        mask = session.add_point(inside)
        obj = session.current
        assert not obj.fine and obj.zoom == 1.0
        assert all(np.allclose(t.step, 1.5) for t in obj.tiles)  # 3 mm over 2 mm voxels
        assert _dice(mask, large) > 0.9  # the fine tile would have cut it at 72 mm
        session.undo()  # back to the small scale, as it was
        assert session.current.fine or session.current.zoom != 1.0
        assert _dice(session.mask, small) > 0.6


def _recording(decode, seen: list):
    def wrapped(embedding, points, labels, boxes=None, mask_logits=None):
        seen.append((points.clone(), labels.clone()))
        return decode(embedding, points, labels, boxes=boxes, mask_logits=mask_logits)

    return wrapped


def test_a_scribble_reaches_the_network_as_clicks_along_its_line():
    image = permuted_image()
    session = Session(SphereNetwork(radius=5.0))
    session.set_image(image)
    seen: list = []
    session.network.decode = _recording(session.network.decode, seen)
    mask = session.add(Scribble(((14, 10, 11), (26, 18, 11))))
    points, labels = seen[0]
    assert points.shape[1] == MAX_CLICKS_PER_STROKE and bool((labels == 1).all())
    steps = torch.diff(points[0], dim=0)  # evenly spaced along one straight line
    assert torch.allclose(steps, steps[0].expand_as(steps), atol=1e-4)
    assert mask[14, 10, 11]  # the double draws its sphere around the first click
    with pytest.raises(InputError, match="one slice"):
        session.add(Scribble(((14, 10, 11), (26, 18, 12))))
    with pytest.raises(InputError, match="outside the image"):
        session.add(Scribble(((14, 10, 11), (46, 18, 11))))


def test_a_network_that_reads_strokes_gets_a_scribbles_clicks_under_labels_of_their_own():
    image = permuted_image()
    network = ThresholdNetwork(threshold=0.5)
    network.reads_strokes = True
    session = Session(network)
    session.set_image(image)
    seen: list = []
    session.network.decode = _recording(session.network.decode, seen)
    session.add(Point((20, 14, 11)))
    session.add(Scribble(((14, 10, 11), (26, 18, 11)), positive=False))
    session.add(Point((8, 4, 11), positive=False))
    _, labels = seen[-1]
    clicks = [1] + [STROKE_LABELS[False]] * MAX_CLICKS_PER_STROKE + [0]
    assert labels[0].tolist() == clicks
    network.reads_strokes = False
    session.reset()
    session.add(Scribble(((14, 10, 11), (26, 18, 11))))
    assert seen[-1][1][0].tolist() == [1] * MAX_CLICKS_PER_STROKE


def test_a_lasso_sets_its_region_on_its_slice_and_undo_takes_it_back():
    image = permuted_image()
    session = Session(ThresholdNetwork(threshold=50.0))  # the double finds nothing by itself
    session.set_image(image)
    outline = ((10, 6, 12), (22, 6, 12), (22, 20, 12), (10, 20, 12))
    mask = session.add(Lasso(outline))
    assert mask[10:23, 6:21, 12].all() and mask.sum() == 13 * 15
    cut = Lasso(((12, 8, 12), (16, 8, 12), (16, 12, 12), (12, 12, 12)), positive=False)
    mask = session.add(cut)
    assert not mask[12:17, 8:13, 12].any() and mask.sum() == 13 * 15 - 25
    session.undo()
    assert session.mask.sum() == 13 * 15
    with pytest.raises(InputError, match="negative lasso has nothing to remove"):
        session.new_object()
        session.add(cut)
