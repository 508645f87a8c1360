"""The simulated users: where each protocol clicks, with which sign, and reproducibly."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from seganypet.errors import InputError
from seganypet.evaluate.users import autopet_clicks, make_user, object_rng
from seganypet.prompts import (
    Box,
    Point,
    Scribble,
    bounding_box,
    most_interior_voxel,
    next_click_at_error_centre,
    next_click_at_random_error,
)

SPACING = (2.0, 2.0, 4.0)


def edt_mm(mask: np.ndarray, spacing=SPACING) -> np.ndarray:
    return ndimage.distance_transform_edt(np.pad(mask, 1), sampling=spacing)[1:-1, 1:-1, 1:-1]


def slab_object(shape=(40, 40, 30)) -> np.ndarray:
    """An L-shaped object whose most interior voxel differs from its centroid."""
    truth = np.zeros(shape, bool)
    truth[8:30, 10:18, 8:20] = True
    truth[8:14, 10:34, 8:20] = True
    return truth


def rng(seed=0):
    return object_rng(seed, "case", "object")


def only_point(interaction) -> Point:
    assert len(interaction.prompts) == 1
    (prompt,) = interaction.prompts
    assert isinstance(prompt, Point)
    return prompt


def test_clicks_first_click_is_the_edt_maximum_in_mm():
    truth = slab_object()
    user = make_user("clicks", truth, SPACING, rng=rng())
    click = only_point(user.interaction(1, np.zeros_like(truth)))
    voxel = tuple(int(v) for v in click.voxel)
    distance = edt_mm(truth)
    assert click.positive
    assert truth[voxel]
    assert distance[voxel] == pytest.approx(distance.max())
    assert user.baseline_seed == voxel


def test_the_first_click_can_be_the_hottest_or_a_seeded_random_voxel():
    truth = slab_object()
    suv = np.where(truth, 4.0, 1.0)
    suv[20, 12, 10] = 9.0  # the object's SUVmax, far from its most interior voxel
    suv[35, 35, 25] = 50.0  # hotter, but outside the object
    hottest = make_user("clicks", truth, SPACING, rng=rng(), suv=suv, first_click="hottest")
    click = only_point(hottest.interaction(1, np.zeros_like(truth)))
    assert click.positive and click.voxel == (20.0, 12.0, 10.0)
    assert hottest.baseline_seed == (20, 12, 10)

    drawn = [
        make_user("clicks", truth, SPACING, rng=rng(seed), first_click="random").baseline_seed
        for seed in (4, 4, 5, 6)
    ]
    assert drawn[0] == drawn[1] and len(set(drawn)) > 1
    assert all(truth[voxel] for voxel in drawn)

    box_user = make_user("box-clicks", truth, SPACING, rng=rng(), suv=suv, first_click="hottest")
    assert isinstance(box_user.interaction(1, np.zeros_like(truth)).prompts[0], Box)
    assert box_user.baseline_seed == (20, 12, 10)

    for protocol in ("clicks-random", "autopet"):
        with pytest.raises(InputError, match="places its own first click"):
            make_user(protocol, truth, SPACING, rng=rng(), suv=suv, first_click="hottest")


def test_clicks_corrections_are_positive_on_misses_and_negative_on_leaks():
    truth = slab_object()
    user = make_user("clicks", truth, SPACING, rng=rng())

    missing = truth.copy()
    missing[8:30, 10:18, 8:20] = False  # the long arm is missed
    click = only_point(user.interaction(2, missing))
    assert click.positive
    assert truth[tuple(int(v) for v in click.voxel)]
    assert not missing[tuple(int(v) for v in click.voxel)]

    leaking = truth.copy()
    leaking[30:38, 25:35, 5:25] = True  # a large leak beside the object
    click = only_point(user.interaction(2, leaking))
    assert not click.positive
    voxel = tuple(int(v) for v in click.voxel)
    assert leaking[voxel] and not truth[voxel]

    assert user.interaction(3, truth).prompts == ()  # nothing left to correct


def test_clicks_on_a_crop_equal_the_whole_image_user():
    truth = slab_object()
    prediction = truth.copy()
    prediction[8:20, 10:18, 8:20] = False
    prediction[32:36, 30:36, 20:26] = True
    user = make_user("clicks", truth, SPACING, rng=rng())
    click = only_point(user.interaction(2, prediction))
    assert click == next_click_at_error_centre(prediction, truth, SPACING)

    random_user = make_user("clicks-random", truth, SPACING, rng=rng(5))
    random_click = only_point(random_user.interaction(2, prediction))
    generator = rng(5)
    next_click_at_random_error(np.zeros_like(truth), truth, generator)  # the first click
    assert random_click == next_click_at_random_error(prediction, truth, generator)


def test_clicks_random_is_seeded_and_signs_follow_the_error():
    truth = slab_object()
    first = [
        only_point(make_user("clicks-random", truth, SPACING, rng=rng(s)).interaction(1, truth))
        for s in (1, 1, 2)
    ]
    assert first[0] == first[1]
    assert all(truth[tuple(int(v) for v in c.voxel)] and c.positive for c in first)

    user = make_user("clicks-random", truth, SPACING, rng=rng(3))
    user.interaction(1, np.zeros_like(truth))
    leak_only = truth.copy()
    leak_only[32:36, 30:36, 20:26] = True
    click = only_point(user.interaction(2, leak_only))
    assert not click.positive and not truth[tuple(int(v) for v in click.voxel)]
    seeded = make_user("clicks-random", truth, SPACING, rng=rng(1))
    assert seeded.baseline_seed == tuple(int(v) for v in first[0].voxel)


def test_box_clicks_starts_with_the_ground_truth_bounding_box():
    truth = slab_object()
    user = make_user("box-clicks", truth, SPACING, rng=rng())
    (box,) = user.interaction(1, np.zeros_like(truth)).prompts
    assert isinstance(box, Box)
    where = np.argwhere(truth)
    assert box.lo == tuple(float(v) for v in where.min(0))
    assert box.hi == tuple(float(v) for v in where.max(0))
    # Then clicks as in `clicks`.
    half = truth.copy()
    half[8:14, 18:34, 8:20] = False
    assert only_point(user.interaction(2, half)) == next_click_at_error_centre(half, truth, SPACING)


def test_a_box_one_voxel_thick_is_widened_to_the_voxel_faces():
    truth = np.zeros((10, 10, 10), bool)
    truth[2:6, 3:7, 0] = True
    box = bounding_box(truth)
    assert box.lo == (2.0, 3.0, -0.5)
    assert box.hi == (5.0, 6.0, 0.5)


def two_lesions(shape=(48, 48, 24)):
    truth = np.zeros(shape, bool)
    truth[10:22, 10:22, 8:16] = True  # the larger lesion
    truth[30:35, 30:35, 10:14] = True
    suv = np.ones(shape, np.float32)
    suv[truth] = 8.0
    suv[40:44, 2:6, 2:5] = 5.0  # hot tissue outside the lesions (a bladder, say)
    suv[2:5, 40:43, 18:21] = 4.0  # and a smaller one
    return truth, suv


def test_autopet_clicks_follow_the_autopet_iv_rule_and_are_deterministic():
    truth, suv = two_lesions()
    tumour, background = autopet_clicks(truth, suv, 10, rng(7))
    assert (tumour, background) == autopet_clicks(truth, suv, 10, rng(7))
    assert len(tumour) == 10 and len(background) == 10

    components, _ = ndimage.label(truth, structure=np.ones((3, 3, 3)))
    # The first clicks: the EDT centre (in voxels) of each lesion component, in a random order.
    firsts = {components[v] for v in tumour[:2]}
    assert firsts == {1, 2}
    for voxel in tumour[:2]:
        component = components == components[voxel]
        distance = ndimage.distance_transform_edt(np.pad(component, 1))[1:-1, 1:-1, 1:-1]
        assert distance[voxel] == distance.max()
    # Then the components take turns giving a click on their border.
    distance = ndimage.distance_transform_edt(np.pad(truth, 1))[1:-1, 1:-1, 1:-1]
    assert all(truth[v] and distance[v] == 1 for v in tumour[2:])
    assert [components[v] for v in tumour[2:6]] == [components[v] for v in tumour[:2]] * 2

    # Background: the hot components outside the lesions, centres first, never in a lesion.
    hot = (suv > np.percentile(suv[~truth], 99.75)) & ~truth
    assert all(hot[v] for v in background)
    assert {suv[v] for v in background[:2]} == {5.0, 4.0}
    assert not any(truth[v] for v in background)

    others = [autopet_clicks(truth, suv, 10, rng(seed))[0][:2] for seed in range(8)]
    assert len({tuple(first) for first in others}) == 2  # the order of the components is drawn


def test_autopet_user_gives_one_tumour_and_one_background_click_per_step():
    truth, suv = two_lesions()
    user = make_user("autopet", truth, SPACING, rng=rng(), suv=suv, steps=3)
    for step in (1, 2, 3):
        interaction = user.interaction(step, np.zeros_like(truth))
        tumour, background = interaction.prompts
        assert isinstance(tumour, Point) and tumour.positive
        assert tumour.voxel == tuple(float(v) for v in user.tumour[step - 1])
        assert isinstance(background, Point) and not background.positive
        assert interaction.prompt_type == "click+/click-"
    assert user.baseline_seed == user.tumour[0]


def test_autopet_with_nothing_hot_outside_gives_tumour_clicks_only():
    truth = np.ones((6, 6, 6), bool)
    tumour, background = autopet_clicks(truth, np.ones((6, 6, 6)), 3, rng())
    assert len(tumour) == 3 and background == []
    flat = np.zeros((8, 8, 8), bool)
    flat[2:5, 2:5, 2:5] = True
    _, background = autopet_clicks(flat, np.where(flat, 5.0, 1.0), 3, rng())
    assert background == []  # uniform background: nothing above its own 99.75th percentile


def test_every_registered_protocol_has_its_simulated_user():
    from seganypet.evaluate.protocols import FIRST_CLICK_PROTOCOLS, PROTOCOLS
    from seganypet.evaluate.users import USERS

    assert list(USERS) == list(PROTOCOLS)
    assert set(FIRST_CLICK_PROTOCOLS) == {"clicks", "box-clicks"}
    with pytest.raises(InputError, match="unknown protocol 'lasso'; choose one of clicks"):
        make_user("lasso", slab_object(), SPACING, rng=rng())


def test_scribbles_are_strokes_on_one_axial_slice_inside_the_object_then_the_error():
    truth = slab_object()
    user = make_user("scribbles", truth, SPACING, rng=rng())
    (first,) = user.interaction(1, np.zeros_like(truth)).prompts
    assert isinstance(first, Scribble) and first.positive
    assert first.slice_axis == 2
    assert first.path[0][2] == most_interior_voxel(truth, SPACING)[2]
    assert len(first.path) >= 5  # a stroke along the L's long arm, not a dot
    assert all(truth[tuple(int(v) for v in vertex)] for vertex in first.path)
    assert user.baseline_seed == most_interior_voxel(truth, SPACING)

    missing = truth.copy()
    missing[8:30, 10:18, 8:20] = False  # the long arm is missed
    (stroke,) = user.interaction(2, missing).prompts
    assert stroke.positive
    assert all(truth[tuple(int(v) for v in vertex)] for vertex in stroke.vertices)
    assert not any(missing[tuple(int(v) for v in vertex)] for vertex in stroke.vertices)

    leaking = truth.copy()
    leaking[30:38, 25:35, 5:25] = True
    (stroke,) = user.interaction(2, leaking).prompts
    assert not stroke.positive
    assert all(
        leaking[tuple(int(v) for v in vertex)] and not truth[tuple(int(v) for v in vertex)]
        for vertex in stroke.vertices
    )
    assert user.interaction(3, truth).prompts == ()


def test_an_error_too_thin_for_a_stroke_gets_a_click():
    truth = slab_object()
    user = make_user("scribbles", truth, SPACING, rng=rng())
    almost = truth.copy()
    almost[20, 14, 12] = False  # one missed voxel
    (prompt,) = user.interaction(2, almost).prompts
    assert isinstance(prompt, Point) and prompt.positive
    assert prompt.voxel == (20.0, 14.0, 12.0)
