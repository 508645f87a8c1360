"""PET metrics on analytic phantoms whose answers are known exactly, and on one real crop."""

from __future__ import annotations

import itertools
import json

import nibabel as nib
import numpy as np
import pytest

from conftest import shared_path
from seganypet.errors import InputError
from seganypet.image import PetImage
from seganypet.quant import (
    PEAK_RADIUS_MM,
    check_mask_matches,
    lesions_above,
    liver_reference,
    quantify,
    sphere_kernel,
    sul_per_unit,
    suv_peak,
)


def make_image(array: np.ndarray, spacing=(2.0, 2.0, 2.0), origin=(0.0, 0.0, 0.0)) -> PetImage:
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = origin
    return PetImage(np.asarray(array, dtype=np.float32), affine)


def brute_force_peak(image: PetImage, roi: np.ndarray) -> float:
    """Sphere mean at every ROI voxel, from world-space distances to the image voxels near it."""
    reach = [int(np.ceil(PEAK_RADIUS_MM / s)) + 1 for s in image.spacing]
    best = -np.inf
    for voxel in np.argwhere(roi):
        box = tuple(
            slice(max(v - r, 0), min(v + r + 1, n))
            for v, r, n in zip(voxel, reach, image.shape, strict=True)
        )
        grid = np.stack(np.mgrid[box], axis=-1).reshape(-1, 3)
        distance = np.linalg.norm(image.voxel_to_world(grid) - image.voxel_to_world(voxel), axis=1)
        values = image.array[tuple(grid.T)].astype(np.float64)
        best = max(best, values[distance <= PEAK_RADIUS_MM].mean())
    return best


def offsets_within(spacing, radius_mm: float, reach: int = 12) -> list[tuple[int, int, int]]:
    steps = range(-reach, reach + 1)
    return [
        offset
        for offset in itertools.product(steps, steps, steps)
        if sum((o * s) ** 2 for o, s in zip(offset, spacing, strict=True)) <= radius_mm**2
    ]


def test_peak_radius_is_that_of_a_one_millilitre_sphere():
    assert 4 / 3 * np.pi * PEAK_RADIUS_MM**3 == pytest.approx(1000.0)
    assert round(PEAK_RADIUS_MM, 1) == 6.2


def test_uniform_cube_has_exact_statistics():
    spacing = (2.0, 3.0, 4.0)
    array = np.ones((30, 30, 30))
    array[8:17, 8:17, 8:17] = 4.0
    labels = np.zeros(array.shape, dtype=np.uint8)
    labels[8:17, 8:17, 8:17] = 1

    report = quantify(make_image(array, spacing), labels)

    (cube,) = report.labels
    assert cube.voxels == 9**3
    assert cube.volume_ml == pytest.approx(9**3 * 2 * 3 * 4 / 1000)
    assert cube.mtv_ml == cube.volume_ml
    assert cube.suv_mean == pytest.approx(4.0)
    assert cube.suv_max == 4.0
    assert cube.suv_max_voxel == (8, 8, 8)  # first maximum in array order
    assert cube.suv_max_world_mm == (16.0, 24.0, 32.0)
    # The sphere (half-widths 3, 2, 1 voxels) fits inside the cube around its centre.
    assert cube.suv_peak == pytest.approx(4.0)
    assert cube.tlg == pytest.approx(4.0 * cube.volume_ml)
    assert report.lesion_count == 1
    assert report.lesions[0].component == 1


def test_tlg_is_mean_times_volume_and_totals_add_up():
    rng = np.random.default_rng(0)
    array = rng.uniform(0.5, 9.0, size=(20, 20, 20))
    labels = np.zeros(array.shape, dtype=np.int16)
    labels[2:8, 2:8, 2:8] = 1
    labels[10:18, 3:9, 5:15] = 2
    image = make_image(array, (1.5, 2.5, 3.0))

    report = quantify(image, labels, label_names={1: "liver", 2: "tumour"})

    voxel_ml = 1.5 * 2.5 * 3.0 / 1000
    for region in report.labels:
        roi = labels == region.label
        values = image.array[roi].astype(np.float64)
        assert region.voxels == roi.sum()
        assert region.suv_mean == pytest.approx(values.mean())
        assert region.suv_max == values.max()
        assert image.array[region.suv_max_voxel] == values.max()
        assert region.tlg == pytest.approx(values.mean() * roi.sum() * voxel_ml)
    assert [r.name for r in report.labels] == ["liver", "tumour"]
    assert report.total_mtv_ml == pytest.approx((labels > 0).sum() * voxel_ml)
    assert report.total_tlg == pytest.approx(image.array[labels > 0].sum() * voxel_ml, rel=1e-6)


def test_separate_cubes_are_separate_lesions_and_corner_contact_joins():
    array = np.full((24, 24, 24), 2.0)
    labels = np.zeros(array.shape, dtype=np.uint8)
    labels[2:5, 2:5, 2:5] = 1  # 27 voxels
    labels[10:14, 10:14, 10:14] = 1  # 64 voxels, apart from the first
    labels[14:16, 14:16, 14:16] = 1  # touches the 64-voxel cube at one corner only

    report = quantify(make_image(array), labels)

    assert report.lesion_count == 2
    assert report.lesion_counts == {1: 2}
    big, small = report.lesions_of(1)
    assert (big.component, big.voxels) == (1, 64 + 8)
    assert (small.component, small.voxels) == (2, 27)
    assert report.label(1).voxels == 27 + 64 + 8


def test_per_component_off_counts_lesions_without_their_statistics():
    labels = np.zeros((10, 10, 10), dtype=np.uint8)
    labels[1, 1, 1] = labels[5, 5, 5] = labels[8, 8, 8] = 1
    report = quantify(make_image(np.ones(labels.shape)), labels, per_component=False)
    assert report.lesion_count == 3
    assert report.lesions == []
    assert "lesions" not in report.to_dict()["labels"][0]


def test_peak_sphere_sees_hot_voxels_outside_the_roi():
    # A step: cold (0) for i < 10, hot (10) for i >= 10. The ROI is cold, so its SUVmax is 0,
    # but the sphere around the ROI voxels of plane i = 9 reaches into the hot side.
    array = np.zeros((20, 20, 20))
    array[10:] = 10.0
    roi = np.zeros(array.shape, dtype=bool)
    roi[7:10, 5:15, 5:15] = True
    image = make_image(array, (2.0, 2.0, 2.0))

    offsets = offsets_within((2.0, 2.0, 2.0), PEAK_RADIUS_MM)
    hot_fraction = sum(1 for o in offsets if o[0] >= 1) / len(offsets)

    (region,) = quantify(image, roi).labels
    assert region.suv_max == 0.0
    assert region.suv_peak == pytest.approx(10.0 * hot_fraction)
    assert region.suv_peak_center_voxel[0] == 9
    assert suv_peak(image, roi)[0] == pytest.approx(10.0 * hot_fraction)


def test_peak_at_the_border_averages_only_voxels_inside_the_image():
    array = np.zeros((12, 12, 12))
    array[0, 0, 0] = 100.0
    roi = np.zeros(array.shape, dtype=bool)
    roi[0, 0, 0] = True
    spacing = (2.0, 2.5, 3.0)

    inside = [o for o in offsets_within(spacing, PEAK_RADIUS_MM) if min(o) >= 0]
    value, center = suv_peak(make_image(array, spacing), roi)

    assert center == (0, 0, 0)
    assert value == pytest.approx(100.0 / len(inside))


@pytest.mark.parametrize(
    "spacing", [(4.6875, 4.6875, 3.27), (1.2, 2.5, 4.1), (1.0, 1.0, 1.5), (7.0, 7.0, 7.0)]
)
def test_sphere_kernel_matches_a_brute_force_count(spacing):
    kernel = sphere_kernel(spacing, PEAK_RADIUS_MM)
    expected = offsets_within(spacing, PEAK_RADIUS_MM)
    assert kernel.sum() == len(expected)
    half = np.array(kernel.shape) // 2
    assert sorted(map(tuple, np.argwhere(kernel) - half)) == sorted(expected)
    assert np.array_equal(kernel, kernel[::-1, ::-1, ::-1])


@pytest.mark.parametrize("spacing", [(1.2, 2.5, 4.1), (1.0, 1.0, 1.5)])  # direct and FFT paths
def test_peak_equals_brute_force_on_noise_with_anisotropic_spacing(spacing):
    rng = np.random.default_rng(1)
    array = rng.gamma(2.0, 1.5, size=(18, 16, 14))
    roi = np.zeros(array.shape, dtype=bool)
    roi[0:6, 3:9, 2:8] = True  # touches the image border
    roi[12:15, 10:13, 9:12] = True
    image = make_image(array, spacing)

    report = quantify(image, roi)

    assert report.labels[0].suv_peak == pytest.approx(brute_force_peak(image, roi), rel=1e-9)
    first_block = np.zeros(array.shape, dtype=bool)
    first_block[0:6, 3:9, 2:8] = True
    second_block = roi & ~first_block
    big, small = report.lesions
    assert big.suv_peak == pytest.approx(brute_force_peak(image, first_block), rel=1e-9)
    assert small.suv_peak == pytest.approx(brute_force_peak(image, second_block), rel=1e-9)


def test_report_is_json_ready_with_self_explaining_keys():
    labels = np.zeros((10, 10, 10), dtype=np.uint8)
    labels[2:5, 2:5, 2:5] = 1
    labels[6:9, 6:9, 6:9] = 2
    report = quantify(make_image(np.ones(labels.shape), origin=(-10, 5, 0)), labels, {1: "a"})

    data = json.loads(json.dumps(report.to_dict()))

    assert data["totals"] == {
        "voxels": 54,
        "mtv_ml": pytest.approx(54 * 0.008),
        "tlg": pytest.approx(54 * 0.008),
        "lesion_count": 2,
    }
    assert data["units"]["suv"] == "SUVbw"
    first = data["labels"][0]
    for key in (
        "label",
        "name",
        "voxels",
        "volume_ml",
        "mtv_ml",
        "suv_mean",
        "suv_max",
        "suv_max_voxel",
        "suv_max_world_mm",
        "suv_peak",
        "suv_peak_center_voxel",
        "suv_peak_center_world_mm",
        "tlg",
        "lesion_count",
        "lesions",
    ):
        assert key in first
    assert first["name"] == "a" and data["labels"][1]["name"] is None
    assert first["suv_max_world_mm"] == [-6.0, 9.0, 4.0]
    assert first["lesions"][0]["lesion"] == 1


def test_empty_label_map_gives_an_empty_report():
    report = quantify(make_image(np.ones((5, 5, 5))), np.zeros((5, 5, 5), dtype=np.uint8))
    assert report.labels == [] and report.lesion_count == 0 and report.total_mtv_ml == 0


def test_bad_label_maps_are_refused():
    image = make_image(np.ones((5, 5, 5)))
    with pytest.raises(InputError, match="shape"):
        quantify(image, np.zeros((5, 5, 4), dtype=np.uint8))
    with pytest.raises(InputError, match="non-integer"):
        quantify(image, np.full((5, 5, 5), 0.5))
    with pytest.raises(InputError, match="negative"):
        quantify(image, np.full((5, 5, 5), -1))


def test_check_mask_matches_names_both_grids():
    image = make_image(np.ones((5, 6, 7)), (2.0, 2.0, 3.0))
    check_mask_matches(image, np.zeros((5, 6, 7)), image.affine.copy())

    with pytest.raises(InputError) as wrong_shape:
        check_mask_matches(image, np.zeros((5, 6, 8)), image.affine)
    message = str(wrong_shape.value)
    assert "(5, 6, 8)" in message and "(5, 6, 7)" in message and "image's" in message
    assert "\n" not in message

    shifted = image.affine.copy()
    shifted[0, 3] += 2.0
    with pytest.raises(InputError, match="affines differ by up to 2 mm"):
        check_mask_matches(image, np.zeros((5, 6, 7)), shifted)
    with pytest.raises(InputError, match="affine has shape"):
        check_mask_matches(image, np.zeros((5, 6, 7)), np.eye(3))


def test_whole_body_sized_image_with_a_large_roi_counts_every_voxel_once():
    """STS_001's grid with a 2.3-million-voxel ROI and a small one inside it (its speed is
    measured by ``seganypet bench --quant``, never asserted here)."""
    rng = np.random.default_rng(2)
    array = rng.gamma(2.0, 1.0, size=(128, 128, 267)).astype(np.float32)
    labels = np.zeros(array.shape, dtype=np.uint8)
    labels[10:118, 20:110, 15:250] = 1  # about 2.3 million voxels
    labels[60:70, 60:70, 100:110] = 2  # carved out of label 1
    image = make_image(array, (4.6875, 4.6875, 3.27))

    report = quantify(image, labels)

    assert report.lesion_count == 2
    assert [region.label for region in report.labels] == [1, 2]
    assert [len(report.lesions_of(label)) for label in (1, 2)] == [1, 1]
    voxel_ml = 4.6875 * 4.6875 * 3.27 / 1000.0
    assert report.voxel_volume_ml == pytest.approx(voxel_ml)
    for label, voxels in ((1, 108 * 90 * 235 - 1000), (2, 1000)):
        region = report.label(label)
        inside = labels == label
        assert region.voxels == int(inside.sum()) == voxels
        assert region.mtv_ml == pytest.approx(voxels * voxel_ml, rel=1e-9)
        assert region.suv_max == array[inside].max()
        assert labels[region.suv_max_voxel] == label
        assert array[region.suv_max_voxel] == region.suv_max
        assert region.suv_mean == pytest.approx(
            float(array[inside].mean(dtype=np.float64)), rel=1e-6
        )
        assert region.tlg == pytest.approx(region.suv_mean * region.mtv_ml)
    assert report.total_voxels == int((labels > 0).sum())


def test_real_sarcoma_crop_values_are_plausible_and_peak_matches_brute_force():
    case = shared_path("data", "ibsi_sts_crops", "STS_001")
    pet = nib.load(case / "PET_image.nii.gz")
    mask = nib.load(case / "PET_mask.nii.gz")
    image = PetImage(np.asarray(pet.dataobj, dtype=np.float32), pet.affine)
    roi = np.asarray(mask.dataobj) > 0
    check_mask_matches(image, roi, mask.affine)

    report = quantify(image, roi.astype(np.uint8), {1: "GTV_Mass"})

    (gtv,) = report.labels
    values = image.array[roi].astype(np.float64)
    assert report.lesion_count == 1
    assert gtv.voxels == roi.sum()
    assert gtv.volume_ml == pytest.approx(roi.sum() * 4.6875 * 4.6875 * 3.27 / 1000, rel=1e-6)
    assert 100 < gtv.volume_ml < 1000  # a large thigh sarcoma
    assert gtv.suv_max == values.max()
    assert gtv.suv_mean == pytest.approx(values.mean())
    assert 1 < gtv.suv_mean < gtv.suv_peak < gtv.suv_max < 30
    assert gtv.suv_peak == pytest.approx(brute_force_peak(image, roi), rel=1e-9)
    assert gtv.tlg == pytest.approx(gtv.suv_mean * gtv.mtv_ml)


# ---- the PERCIST liver reference -----------------------------------------------------------


def test_liver_reference_is_the_mean_and_sd_of_a_3_cm_sphere():
    """Every voxel centre within 15 mm of the clicked voxel's centre, and none further, on an
    anisotropic grid; values are SUVbw here (no body size recorded), so the note says so."""
    rng = np.random.default_rng(3)
    spacing = (4.0, 3.0, 5.0)
    array = rng.normal(2.0, 0.3, (30, 30, 20)).astype(np.float32)
    image = make_image(array, spacing=spacing)
    centre = (14, 15, 9)
    reference = liver_reference(image, centre)
    grid = np.stack(np.indices(array.shape), axis=-1) * spacing
    distance = np.linalg.norm(grid - np.multiply(centre, spacing), axis=-1)
    inside = array[distance <= 15.0].astype(np.float64)
    assert reference.voxels == inside.size
    assert reference.mean == pytest.approx(inside.mean(), rel=1e-12)
    assert reference.sd == pytest.approx(inside.std(ddof=1), rel=1e-12)
    assert reference.percist_threshold == pytest.approx(
        1.5 * inside.mean() + 2 * inside.std(ddof=1)
    )
    assert (
        reference.units == "SUVbw"
        and reference.sul_per_unit is None
        and "not SUL" in reference.note
    )
    assert reference.centre_world_mm == pytest.approx(np.multiply(centre, spacing))
    assert reference.to_dict()["percist_threshold"] == reference.percist_threshold

    # at the border only the image's own voxels count
    corner = liver_reference(image, (0, 0, 0))
    assert corner.voxels == int((np.linalg.norm(grid, axis=-1) <= 15.0).sum())
    with pytest.raises(InputError, match="outside the image"):
        liver_reference(image, (30, 0, 0))


def test_liver_reference_in_sul_from_the_recorded_body_size():
    from seganypet.io.suv import lean_body_mass_kg

    array = np.full((20, 20, 20), 2.5, np.float32)
    image = make_image(array)
    image.metadata.update(patient_weight_kg=80.0, patient_size_m=1.75, patient_sex="M")
    factor, note = sul_per_unit(image)
    assert factor == pytest.approx(lean_body_mass_kg(80.0, 175.0, "M") / 80.0)
    assert "Janmahasatian" in note
    reference = liver_reference(image, (10, 10, 10))
    assert reference.units == "SUL"
    assert reference.mean == pytest.approx(2.5 * factor) and reference.sd == pytest.approx(0.0)
    assert reference.percist_threshold == pytest.approx(1.5 * 2.5 * factor)
    assert sul_per_unit(image.with_array(array, units="SUVlbm"))[0] == 1.0
    image.metadata["patient_sex"] = "O"  # no lean body mass formula: no SUL
    assert sul_per_unit(image)[0] is None


def test_lesions_above_the_percist_threshold_compare_sulpeak():
    array = np.ones((30, 30, 30), np.float32)
    array[4:9, 4:9, 4:9] = 6.0  # a hot lesion
    array[20:25, 20:25, 20:25] = 2.0  # a faint one
    labels = np.zeros(array.shape, np.uint8)
    labels[4:9, 4:9, 4:9] = 1
    labels[20:25, 20:25, 20:25] = 1
    report = quantify(make_image(array), labels)
    assert len(report.lesions) == 2
    peaks = sorted(lesion.suv_peak for lesion in report.lesions)
    above = lesions_above(report.lesions, threshold=(peaks[0] + peaks[1]) / 2)
    assert [lesion.suv_peak for lesion in above] == [peaks[1]]
    halved = lesions_above(report.lesions, threshold=peaks[1] * 0.5, to_reference_units=0.5)
    assert [lesion.suv_peak for lesion in halved] == [peaks[1]]
    assert len(lesions_above(report.lesions, threshold=peaks[0])) == 2  # reaching it counts
