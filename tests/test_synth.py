"""The synthetic whole-body FDG phantoms: determinism, labels, uptake, lesions, layout."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from conftest import shared_path
from seganypet.errors import InputError
from seganypet.synth import (
    LABEL_NAMES,
    LABELS,
    LESION_LABEL,
    SUV_RANGES,
    PhantomConfig,
    case_seed,
    generate_phantom,
    write_dataset,
)
from seganypet.synth.figures import coronal_mip, save_mip

SEEDS = (3, 11, 24)
# Structures measured on their eroded interior; thin ones (tonsils, salivary glands, ureters, cortical
# bone) are too small for that at 5 mm voxels and are checked through their drawn uptake instead.
MEASURED = (
    "brain", "blood_pool", "liver", "spleen", "bladder", "lungs", "bone_marrow", "muscle", "fat", "stomach", "bowel",
)  # fmt: skip


@pytest.fixture(scope="module")
def phantoms():
    return {seed: generate_phantom(seed) for seed in SEEDS}


def _interior(mask: np.ndarray, spacing: tuple[float, float, float], depth_mm: float) -> np.ndarray:
    """``mask`` eroded by about ``depth_mm`` along every axis (voxels may be anisotropic)."""
    steps = np.maximum(1, np.round(depth_mm / np.asarray(spacing)).astype(int))
    eroded = mask
    for axis, count in enumerate(steps):
        structure = np.ones([3 if k == axis else 1 for k in range(3)], dtype=bool)
        eroded = ndimage.binary_erosion(eroded, structure, iterations=int(count))
    return eroded


def test_same_seed_same_phantom_other_seed_other_phantom(phantoms):
    again = generate_phantom(SEEDS[0])
    first = phantoms[SEEDS[0]]
    np.testing.assert_array_equal(again.image.array, first.image.array)
    np.testing.assert_array_equal(again.labels, first.labels)
    np.testing.assert_array_equal(again.lesion_instances, first.lesion_instances)
    np.testing.assert_array_equal(again.image.affine, first.image.affine)
    assert again.lesions == first.lesions
    other = phantoms[SEEDS[1]]
    assert other.image.shape != first.image.shape or not np.array_equal(
        other.image.array, first.image.array
    )
    assert case_seed(5, 0) == case_seed(5, 0) != case_seed(5, 1) != case_seed(6, 1)


def test_image_is_suv_float32_non_negative_with_empty_air(phantoms):
    for phantom in phantoms.values():
        image = phantom.image
        assert image.array.dtype == np.float32 and image.units == "SUVbw"
        assert image.array.min() >= 0.0 and np.isfinite(image.array).all()
        assert phantom.labels.shape == phantom.lesion_instances.shape == image.shape
        spacing = image.spacing
        assert spacing[0] == spacing[1] and all(2.0 <= s <= 5.0 for s in spacing)
        air = ~ndimage.binary_dilation(phantom.labels > 0, iterations=4)
        assert float(np.mean(image.array[air])) < 0.05, "outside the body is close to zero"
        assert set(np.unique(phantom.labels)) <= set(LABEL_NAMES)


def test_organ_means_inside_literature_ranges_after_noise(phantoms):
    for seed, phantom in phantoms.items():
        image = phantom.image
        for name in MEASURED:
            interior = _interior(phantom.labels == LABELS[name], image.spacing, depth_mm=6.0)
            if interior.sum() < 20:  # e.g. thin subcutaneous fat in a lean patient
                continue
            low, high = SUV_RANGES[name]
            mean = float(image.array[interior].mean())
            assert low <= mean <= high, (
                f"seed {seed}: {name} mean SUV {mean:.2f} outside {low}-{high}"
            )
        for name in ("kidney_right", "kidney_left"):
            # The parenchyma: the median over the kidney, which its hot collecting system hardly moves.
            median = float(np.median(image.array[phantom.labels == LABELS[name]]))
            assert 2.0 <= median <= 4.0, f"seed {seed}: {name} median SUV {median:.2f}"
        myocardium = _interior(phantom.labels == LABELS["myocardium"], image.spacing, depth_mm=2.0)
        if myocardium.sum() >= 5:
            mean = float(image.array[myocardium].mean())
            assert 1.0 <= mean <= 10.0, f"seed {seed}: myocardium mean SUV {mean:.2f}"
        for name, value in phantom.parameters["uptake_suv"].items():
            if name in SUV_RANGES:
                low, high = SUV_RANGES[name]
                assert low <= value <= high, f"seed {seed}: drawn {name} uptake {value:.2f}"


def test_every_structure_is_present(phantoms):
    for phantom in phantoms.values():
        present = set(np.unique(phantom.labels))
        missing = {
            name
            for name, label in LABELS.items()
            if label not in present and name not in ("background", "lesion")
        }
        assert not missing, f"missing structures: {missing}"


def test_lesions_count_volume_uptake_and_labels():
    counts = []
    for seed in range(30, 33):
        phantom = generate_phantom(seed)
        lesions = phantom.lesions
        counts.append(len(lesions))
        assert 0 <= len(lesions) <= 20
        assert [lesion.instance for lesion in lesions] == list(range(1, len(lesions) + 1))
        instances = phantom.lesion_instances
        assert ((instances > 0) == (phantom.labels == LESION_LABEL)).all(), (
            "lesion label = union of instances"
        )
        for lesion in lesions:
            assert 0.3 * 0.95 <= lesion.volume_ml <= 300.0 * 1.05, lesion
            assert 2.0 <= lesion.suv_mean <= 30.0, lesion
            assert lesion.shape in ("sphere", "ellipsoid", "irregular")
            voxels = int((instances == lesion.instance).sum())
            assert voxels == lesion.voxels >= 1, lesion
            expected = lesion.volume_ml / phantom.image.voxel_volume_ml
            if expected > 30:  # big enough for partial volume to average out
                assert 0.6 * expected <= voxels <= 1.4 * expected, (lesion, voxels, expected)
        if lesions:
            largest = max(lesions, key=lambda lesion: lesion.volume_ml)
            peak = float(phantom.image.array[instances == largest.instance].max())
            assert peak > 1.5, "lesions are visible above background"
    assert max(counts) > 0


def test_a_phantom_depends_on_its_seed_only_not_on_global_random_state(phantoms):
    """Generated alone, after the global RNGs were disturbed, a phantom equals the one made in a
    batch, so ``write_dataset`` may make its cases in any order or resume. (How long generation
    takes is not a test's business: tests never assert a wall-clock budget.)"""
    import random

    np.random.seed(12345)  # noqa: NPY002 (the legacy global state, on purpose)
    random.seed(12345)
    np.random.random(7)  # noqa: NPY002
    alone = generate_phantom(SEEDS[-1])
    batched = phantoms[SEEDS[-1]]
    np.testing.assert_array_equal(alone.image.array, batched.image.array)
    np.testing.assert_array_equal(alone.labels, batched.labels)
    np.testing.assert_array_equal(alone.lesion_instances, batched.lesion_instances)
    assert alone.lesions == batched.lesions


def test_nnunet_layout_loads_back_on_one_grid(tmp_path):
    out = tmp_path / "Dataset900_synth"
    coarse = PhantomConfig(spacing_range_mm=(4.0, 5.0))  # small files: a fast test
    dataset_json = write_dataset(out, cases=2, seed=9, config=coarse, progress=False)
    description = json.loads(dataset_json.read_text())
    assert description["channel_names"] == {"0": "PET"}
    assert description["labels"] == LABELS
    assert description["labels"]["background"] == 0
    assert sorted(description["labels"].values()) == list(range(len(LABELS))), (
        "nnU-Net wants consecutive ids"
    )
    assert description["numTraining"] == 2 and description["file_ending"] == ".nii.gz"
    assert (
        description["tracer"] == "FDG"
        and description["units"] == "SUVbw"
        and description["seed"] == 9
    )
    for index in range(2):
        image = nib.load(out / "imagesTr" / f"case_{index:04d}_0000.nii.gz")
        labels = nib.load(out / "labelsTr" / f"case_{index:04d}.nii.gz")
        instances = nib.load(out / "instancesTr" / f"case_{index:04d}.nii.gz")
        for other in (labels, instances):
            assert other.shape == image.shape
            np.testing.assert_allclose(other.affine, image.affine)
        assert image.get_data_dtype() == np.float32
        label_values = set(np.unique(np.asarray(labels.dataobj)).tolist())
        assert label_values <= set(description["labels"].values())
        metadata = json.loads((out / "metadataTr" / f"case_{index:04d}.json").read_text())
        assert metadata["case_seed"] == case_seed(9, index)
        assert len(metadata["lesions"]) == int(np.asarray(instances.dataobj).max())
        if index == 0:
            regenerated = generate_phantom(case_seed(9, index), coarse)
            np.testing.assert_array_equal(np.asarray(image.dataobj), regenerated.image.array)
    assert not list(out.rglob(".*tmp*")), "no temporary file left behind"


def test_rerun_skips_complete_cases_and_refuses_other_arguments(tmp_path, monkeypatch):
    out = tmp_path / "synth"
    write_dataset(out, cases=1, seed=4, progress=False)
    written = (out / "imagesTr" / "case_0000_0000.nii.gz").stat().st_mtime_ns

    def must_not_run(*args, **kwargs):
        raise AssertionError("a complete case was generated again")

    monkeypatch.setattr("seganypet.synth.dataset.generate_phantom", must_not_run)
    write_dataset(out, cases=1, seed=4, progress=False)
    assert (out / "imagesTr" / "case_0000_0000.nii.gz").stat().st_mtime_ns == written
    with pytest.raises(InputError, match="another seed"):
        write_dataset(out, cases=1, seed=5, progress=False)
    with pytest.raises(InputError, match="another config"):
        write_dataset(out, cases=1, seed=4, config=PhantomConfig(tracer="PSMA"), progress=False)
    # A data set written before the tracer and variety settings existed resumes: their
    # defaults repeat it exactly.
    description = json.loads((out / "dataset.json").read_text())
    for key in ("tracer", "lesion_variety", "lesion_contrast_range"):
        del description["config"][key]
    (out / "dataset.json").write_text(json.dumps(description))
    write_dataset(out, cases=1, seed=4, progress=False)
    (out / "labelsTr" / "case_0001.nii.gz").write_bytes(b"")  # a case beyond those asked for
    with pytest.raises(InputError, match="beyond"):
        write_dataset(out, cases=1, seed=4, progress=False)


def test_synth_command_writes_psma_and_wide_data_sets(tmp_path, capsys):
    from seganypet.cli import main

    out = tmp_path / "psma"
    main(["synth", "-o", str(out), "--cases", "1", "--seed", "2", "--tracer", "psma",
          "--variety", "wide", "--quiet"])  # fmt: skip
    description = json.loads((out / "dataset.json").read_text())
    assert description["tracer"] == "PSMA"
    assert description["config"]["lesion_variety"] == "wide"
    assert description["config"]["psf_fwhm_range_mm"] == [4.0, 9.0]
    metadata = json.loads((out / "metadataTr" / "case_0000.json").read_text())
    assert metadata["parameters"]["tracer"] == "PSMA"


@pytest.mark.parametrize("cases, seed", [(0, 1), (-3, 1), (2, -1), (1.5, 1)])
def test_bad_counts_and_seeds_are_clear_errors(tmp_path, cases, seed):
    with pytest.raises(InputError):
        write_dataset(tmp_path / "out", cases=cases, seed=seed, progress=False)


def test_coronal_mip_shows_brain_on_top_and_bladder_low(phantoms, tmp_path):
    import matplotlib.image as mpimg

    phantom = phantoms[SEEDS[0]]
    png = save_mip(phantom.image, tmp_path / "mip.png", title="phantom")
    picture = mpimg.imread(png)
    assert picture.ndim == 3 and picture.shape[0] > 300 and picture[..., :3].std() > 0.05

    mip, _ = coronal_mip(phantom.image)
    rows = mip.shape[0]
    hot_rows = np.flatnonzero((mip > 5.0).sum(axis=1) >= 3)
    assert hot_rows.min() < 0.2 * rows, "the brain is hot and at the top"
    body_rows = np.flatnonzero((mip > 0.3).sum(axis=1) > 0)
    assert body_rows.min() < 0.05 * rows, "the body fills the field of view from the top"

    project = coronal_mip
    bladder = phantom.image.with_array((phantom.labels == LABELS["bladder"]).astype(np.float32))
    bladder_rows = np.flatnonzero(project(bladder)[0].max(axis=1) > 0)
    brain = phantom.image.with_array((phantom.labels == LABELS["brain"]).astype(np.float32))
    brain_rows = np.flatnonzero(project(brain)[0].max(axis=1) > 0)
    assert brain_rows.mean() < 0.2 * rows
    assert 0.55 * rows < bladder_rows.mean() < 0.95 * rows
    assert mip[bladder_rows].max() > 5.0, "the bladder is among the hottest structures"
    liver = phantom.image.with_array((phantom.labels == LABELS["liver"]).astype(np.float32))
    liver_columns = np.flatnonzero(project(liver)[0].max(axis=0) > 0)
    assert liver_columns.mean() < mip.shape[1] / 2, (
        "the liver (patient's right) is on the viewer's left"
    )


def test_figure_beside_real_whole_body_scan(tmp_path):
    from seganypet.synth.figures import compare_mip, read_pet_series

    real_dir = shared_path("data", "sts001_wholebody_ge", "image")
    real = read_pet_series(real_dir, 2.42903e-4)
    assert real.shape == (128, 128, 267)
    assert 5.0 < float(real.array.max()) < 100.0
    png = compare_mip(tmp_path / "compare.png", real_dir)
    assert png.is_file() and png.stat().st_size > 10_000


def test_psma_phantoms_have_the_psma_uptake_pattern():
    from seganypet.synth.labels import PSMA_SUV_RANGES

    config = PhantomConfig(tracer="PSMA", spacing_range_mm=(4.0, 5.0))
    for seed in (5, 6):
        psma = generate_phantom(seed, config)
        fdg = generate_phantom(seed, PhantomConfig(spacing_range_mm=(4.0, 5.0)))
        assert psma.image.metadata["tracer"] == "PSMA" == psma.parameters["tracer"]
        uptake = psma.parameters["uptake_suv"]
        for name, (low, high) in PSMA_SUV_RANGES.items():
            if name in uptake:
                assert low <= uptake[name] <= high, (name, uptake[name])
        psma_suv, fdg_suv = psma.image.array, fdg.image.array

        def masks(phantom):
            labels = phantom.labels
            brain = _interior(labels == LABELS["brain"], phantom.image.spacing, 6.0)
            kidneys = np.isin(labels, [LABELS["kidney_right"], LABELS["kidney_left"]])
            return brain, kidneys, labels == LABELS["salivary_glands"]

        (brain, kidneys, glands), (fdg_brain, fdg_kidneys, fdg_glands) = masks(psma), masks(fdg)
        assert psma_suv[brain].mean() < 0.6 < 6.0 < fdg_suv[fdg_brain].mean()  # a cold brain
        assert np.median(psma_suv[kidneys]) > 10.0 > 4.0 >= np.median(fdg_suv[fdg_kidneys])
        assert psma_suv[glands].max() > 2 * fdg_suv[fdg_glands].max()
        # The lacrimal glands: gland voxels far above the salivary glands' level in the orbit.
        lacrimal = glands & (psma_suv > 0) & (np.indices(glands.shape)[2] > np.argwhere(
            glands).mean(0)[2] + 30 / psma.image.spacing[2])  # fmt: skip
        assert lacrimal.any()


def test_a_mixed_data_set_draws_its_tracer_per_case_and_records_it(tmp_path):
    config = PhantomConfig(tracer="mixed")
    tracers = [config.case_tracer(case_seed(0, index)) for index in range(12)]
    assert set(tracers) == {"FDG", "PSMA"}
    assert tracers == [config.case_tracer(case_seed(0, index)) for index in range(12)]
    with pytest.raises(ValueError, match="unknown tracer"):
        PhantomConfig(tracer="FLT")


def test_the_wide_variety_draws_rims_lobes_infiltration_and_faint_lesions():
    config = PhantomConfig.wide(
        spacing_range_mm=(4.0, 5.0), lesion_count_range=(15, 20), lesion_volume_range_ml=(5, 80)
    )
    lesions, contrasts = [], []
    for seed in (40, 41, 42):
        phantom = generate_phantom(seed, config)
        uptake = phantom.parameters["uptake_suv"]
        lesions += phantom.lesions
        contrasts += [
            lesion.suv_mean / max(uptake.get(lesion.host, 1.0), 1.2) for lesion in phantom.lesions
        ]
    assert {lesion.shape for lesion in lesions} >= {"lobulated", "infiltrative"}
    assert any(lesion.hot_rim for lesion in lesions)
    assert all(lesion.necrotic for lesion in lesions if lesion.hot_rim)
    assert any(lesion.site == "head_neck" for lesion in lesions)
    assert min(contrasts) < 1.8  # fainter than the standard style's floor
    assert all(1.15 * 0.999 <= c for c in contrasts if c < 1.8)
    # The standard style is unchanged: none of the new kinds.
    standard = [
        lesion
        for seed in (40, 41)
        for lesion in generate_phantom(seed, PhantomConfig(spacing_range_mm=(4.0, 5.0))).lesions
    ]
    assert {lesion.shape for lesion in standard} <= {"sphere", "ellipsoid", "irregular"}
    assert not any(lesion.hot_rim or lesion.site == "head_neck" for lesion in standard)


def test_lesions_inserted_into_a_scan_add_uptake_only_where_labelled():
    from seganypet.image import PetImage
    from seganypet.synth.insert import INSERTED_LABELS, insert_lesions

    rng = np.random.default_rng(0)
    shape = (60, 60, 50)
    values = (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
    grid = np.indices(shape)
    avoid = ((grid - np.array([30, 30, 25])[:, None, None, None]) ** 2).sum(0) <= 6**2
    values[avoid] = 8.0  # a real tumour, held out
    image = PetImage(values, np.diag([3.0, 3.0, 3.0, 1.0]))

    case = insert_lesions(image, avoid, np.random.default_rng(5))
    again = insert_lesions(image, avoid, np.random.default_rng(5))
    np.testing.assert_array_equal(case.image.array, again.image.array)
    assert case.lesions
    assert ((case.labels == INSERTED_LABELS["ignore"]) == avoid).all()
    lesion = case.labels == INSERTED_LABELS["lesion"]
    assert ((case.instances > 0) == lesion).all()
    for info in case.lesions:
        voxels = case.instances == info.instance
        assert voxels.sum() == info.voxels
        if info.voxels >= 30 and not info.necrotic:  # big enough to keep its contrast
            added = case.image.array[voxels].mean() - values[voxels].mean()
            assert added > 0.3 * (info.suv_mean - 1.0), (info, added)
    changed = np.abs(case.image.array - values) > 1e-6
    near = ndimage.binary_dilation(lesion, iterations=8)  # the PSF's reach at 3 mm voxels
    assert not (changed & ~near).any()
    assert np.abs(case.image.array[avoid] - values[avoid]).max() < 1e-2
    assert (case.image.array >= 0).all()


def test_synth_inserts_lesions_into_the_real_whole_body_scan(tmp_path):
    from seganypet.cli import main
    from seganypet.datasets import discover_cases, find_objects
    from seganypet.io import load_image
    from seganypet.io.masks import load_mask

    scan = shared_path("data", "sts001_wholebody_ge")
    out = tmp_path / "inserted"
    main(["synth", "-o", str(out), "--cases", "1", "--seed", "3", "--background",
          str(scan / "image"), "--background-mask", str(scan / "mask" / "1-1.dcm"),
          "--background-roi", "GTV_Mass", "--quiet"])  # fmt: skip
    (source,) = discover_cases([str(out)])
    image = load_image(source.image)
    labels, names = load_mask(source.label, image)
    real = load_image(scan / "image")
    tumour = load_mask(scan / "mask" / "1-1.dcm", real, roi_names=["GTV_Mass"])[0] > 0
    assert (labels == 2).sum() == tumour.sum()
    assert image.content_digest() != real.content_digest()  # evaluate may score the real scan
    objects, _ = find_objects(labels, {1: "lesion", 2: "ignore"}, image.voxel_volume_ml)
    assert objects and all(obj.label == 1 for obj in objects)  # the held-out tumour never is


def test_workers_generate_the_same_phantoms_side_by_side(tmp_path):
    config = PhantomConfig(fine_spacing_mm=4.0, spacing_range_mm=(4.0, 5.0))
    write_dataset(tmp_path / "one", 3, seed=8, config=config, progress=False)
    write_dataset(tmp_path / "two", 3, seed=8, config=config, progress=False, workers=2)
    for name in ("case_0000_0000", "case_0001_0000", "case_0002_0000"):
        one = nib.load(tmp_path / "one" / "imagesTr" / f"{name}.nii.gz").get_fdata()
        two = nib.load(tmp_path / "two" / "imagesTr" / f"{name}.nii.gz").get_fdata()
        np.testing.assert_array_equal(one, two)
    with pytest.raises(InputError, match="workers"):
        write_dataset(tmp_path / "three", 1, seed=8, config=config, workers=0)
