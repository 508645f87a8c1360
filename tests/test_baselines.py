"""Classical seeded segmentations on synthetic images whose answers are known, and one real crop."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from conftest import shared_path
from seganypet.baselines import (
    BASELINES,
    LIVER_VOI_DIAMETER_MM,
    fixed_threshold,
    liver_reference,
    local_max,
    percent_of_local_max,
    percist,
    run_baseline,
)
from seganypet.errors import InputError
from seganypet.image import PetImage

SPACING = (2.0, 2.0, 3.0)
SHAPE = (40, 40, 30)
CENTER = (20, 20, 15)
PEAK, SLOPE, RADIUS = 10.0, 0.5, 15.0  # SUV at the centre, SUV lost per mm, lesion radius mm
BACKGROUND = 1.0


def distance_mm(center=CENTER, shape=SHAPE, spacing=SPACING) -> np.ndarray:
    axes = np.ogrid[tuple(slice(0, n) for n in shape)]
    return np.sqrt(sum(((a - c) * s) ** 2 for a, c, s in zip(axes, center, spacing, strict=True)))


def hot_sphere_image() -> PetImage:
    """A warm background with a cone-shaped hot sphere: SUV = 10 - 0.5 r inside r <= 15 mm."""
    r = distance_mm()
    array = np.where(r <= RADIUS, PEAK - SLOPE * r, BACKGROUND)
    return PetImage(array.astype(np.float32), np.diag([*SPACING, 1.0]))


def within_mm(radius: float) -> np.ndarray:
    return distance_mm() <= radius + 1e-9


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * (a & b).sum() / (a.sum() + b.sum())


@pytest.mark.parametrize(
    ("name", "radius_mm"),
    [
        ("suv2.5", RADIUS),  # 10 - 0.5 r >= 2.5  <=>  r <= 15
        ("suv4.0", 12.0),  # r <= 12
        ("pct41", 11.8),  # 10 - 0.5 r >= 4.1  <=>  r <= 11.8
        ("pct50", 10.0),  # r <= 10
    ],
)
def test_threshold_masks_equal_the_analytic_sets(name, radius_mm):
    result = run_baseline(name, hot_sphere_image(), CENTER)
    assert result.ok and result.method == name
    assert result.mask.dtype == bool and result.mask.shape == SHAPE
    assert np.array_equal(result.mask, within_mm(radius_mm))
    assert result.grown_from == CENTER


def test_percentage_threshold_is_relative_to_the_local_max():
    result = percent_of_local_max(hot_sphere_image(), CENTER, 41.0)
    assert result.reference["local_suv_max"] == PEAK
    assert result.threshold == pytest.approx(0.41 * PEAK)


def test_two_touching_regions_grow_together_only_when_both_pass():
    array = np.ones((20, 20, 20))
    array[5:10, 5:10, 5:10] = 6.0
    array[10:15, 5:10, 5:10] = 3.0  # shares a face with the hot cube
    array[15:18, 10:13, 10:13] = 3.0  # meets the warm cube at one corner only (26-connected)
    image = PetImage(array, np.diag([2.0, 2.0, 2.0, 1.0]))

    hot = fixed_threshold(image, (7, 7, 7), 4.0).mask
    warm = fixed_threshold(image, (7, 7, 7), 2.5).mask

    assert np.array_equal(hot, array == 6.0)
    assert np.array_equal(warm, array >= 2.5)


def test_seed_below_a_fixed_threshold_gives_an_empty_flagged_mask():
    result = run_baseline("suv2.5", hot_sphere_image(), (2, 2, 2))
    assert not result.ok
    assert result.status == "seed_below_threshold"
    assert not result.mask.any() and result.mask.shape == SHAPE
    assert result.grown_from is None


def test_seed_below_a_percentage_threshold_moves_to_the_local_max():
    seed = (20, 20, 10)  # 15 mm from the centre along the third axis: SUV 2.5 < 4.1
    image = hot_sphere_image()
    assert image.array[seed] < 4.1

    result = run_baseline("pct41", image, seed)

    assert result.ok and result.seed_voxel == seed
    assert result.grown_from == CENTER  # climbed from 10 mm away to the true peak
    assert np.array_equal(result.mask, within_mm(11.8))


def test_local_max_stays_put_on_a_flat_background():
    image = PetImage(np.ones((10, 10, 10)), np.eye(4))
    assert local_max(image, (4, 5, 6), 10.0) == (4, 5, 6)


def test_max_volume_discards_runaway_growth():
    image = hot_sphere_image()
    far = (2, 2, 2)  # in flat background: 41% of 1.0 floods the whole image
    flooded = run_baseline("pct41", image, far)
    assert flooded.ok and flooded.mask.all()

    guarded = run_baseline("pct41", image, far, max_volume_ml=50.0)
    assert guarded.status == "exceeded_max_volume"
    assert not guarded.mask.any()
    assert guarded.reference["rejected_volume_ml"] == pytest.approx(
        np.prod(SHAPE) * np.prod(SPACING) / 1000
    )


def liver_and_lesion_image() -> tuple[PetImage, tuple[int, int, int], np.ndarray]:
    """A checkerboard liver (1.5 / 2.5 SUV) far from the cone lesion; returns the liver sphere."""
    shape = (40, 40, 60)
    array = np.full(shape, 0.5)
    lesion_r = distance_mm(CENTER, shape)
    array = np.where(lesion_r <= RADIUS, PEAK - SLOPE * lesion_r, array)
    liver = (slice(5, 35), slice(5, 35), slice(38, 58))
    checker = np.indices(shape).sum(axis=0) % 2
    array[liver] = np.where(checker[liver] == 1, 2.5, 1.5)
    liver_center = (20, 20, 48)
    sphere = distance_mm(liver_center, shape) <= LIVER_VOI_DIAMETER_MM / 2
    image = PetImage(array.astype(np.float32), np.diag([*SPACING, 1.0]))
    return image, liver_center, sphere


def test_percist_threshold_comes_from_the_liver_sphere():
    image, liver_center, sphere = liver_and_lesion_image()
    liver_values = image.array[sphere].astype(np.float64)
    expected = 1.5 * liver_values.mean() + 2.0 * liver_values.std(ddof=1)

    result = run_baseline("percist", image, CENTER, liver_center_voxel=liver_center)

    assert liver_reference(image, liver_center) == pytest.approx(
        (liver_values.mean(), liver_values.std(ddof=1))
    )
    assert result.threshold == pytest.approx(expected)
    radius = (PEAK - expected) / SLOPE
    analytic = distance_mm(CENTER, image.shape) <= radius
    assert result.ok and np.array_equal(result.mask, analytic)


def test_percist_without_a_liver_centre_is_refused():
    with pytest.raises(InputError, match="liver_center_voxel"):
        percist(hot_sphere_image(), CENTER)


def test_percist_liver_sphere_outside_the_image_is_refused():
    with pytest.raises(InputError, match="outside the image"):
        percist(hot_sphere_image(), CENTER, liver_center_voxel=(0, 0, 0))


def test_registry_and_bad_arguments():
    assert set(BASELINES) == {"suv2.5", "suv4.0", "pct41", "pct50", "percist"}
    image = hot_sphere_image()
    with pytest.raises(InputError, match="unknown baseline 'otsu'"):
        run_baseline("otsu", image, CENTER)
    with pytest.raises(InputError, match="outside the image"):
        run_baseline("suv2.5", image, (40, 0, 0))
    with pytest.raises(InputError, match="three voxel indices"):
        run_baseline("suv2.5", image, (1, 2))
    with pytest.raises(InputError, match="integer"):
        run_baseline("suv2.5", image, (1.5, 2, 3))
    with pytest.raises(InputError, match="percentage"):
        percent_of_local_max(image, CENTER, 0.0)


def test_real_sarcoma_crop_suv25_from_the_gtv_maximum_overlaps_the_gtv():
    case = shared_path("data", "ibsi_sts_crops", "STS_001")
    pet = nib.load(case / "PET_image.nii.gz")
    image = PetImage(np.asarray(pet.dataobj, dtype=np.float32), pet.affine)
    gtv = np.asarray(nib.load(case / "PET_mask.nii.gz").dataobj) > 0
    seed = np.unravel_index(np.argmax(np.where(gtv, image.array, -np.inf)), image.shape)

    result = run_baseline("suv2.5", image, seed)

    assert result.ok
    assert dice(result.mask, gtv) > 0.5
    for name in ("suv4.0", "pct41", "pct50"):
        assert run_baseline(name, image, seed).mask.any()
