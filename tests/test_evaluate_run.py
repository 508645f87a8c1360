"""`seganypet evaluate` end to end: the session never sees the ground truth, the report is
well-formed, runs resume, and the data layouts (nnU-Net, IBSI crops, manifests) are read."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy import ndimage

from conftest import shared_path
from seganypet.datasets import discover_cases
from seganypet.errors import InputError
from seganypet.evaluate.command import add_evaluate_parser
from seganypet.evaluate.data import load_case
from seganypet.evaluate.protocols import PROTOCOLS
from seganypet.evaluate.runner import EvaluationSettings, run_evaluation
from seganypet.evaluate.table import COLUMNS
from seganypet.model.config import ModelConfig
from seganypet.prompts import Point, most_interior_voxel
from seganypet.session import Session

SPACING_MM = 2.0
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------ helpers


def evaluate_cli(*argv: str) -> dict:
    """Run `seganypet evaluate ARGV` through the subcommand's own parser; return the summary."""
    parser = argparse.ArgumentParser(prog="seganypet")
    add_evaluate_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["evaluate", *argv, "--no-progress"])
    args.func(args)
    return json.loads((args.output / "summary.json").read_text())


def read_rows(report: Path) -> list[dict[str, str]]:
    with open(report / "per_step.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == COLUMNS
        return list(reader)


def write_nnunet(
    folder: Path,
    cases: dict[str, tuple[np.ndarray, np.ndarray]],
    labels: dict[str, int],
    spacing: float = SPACING_MM,
) -> Path:
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = (-40.0, -30.0, -20.0)
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir()
    for name, (pet, label_map) in cases.items():
        nib.save(
            nib.Nifti1Image(pet.astype(np.float32), affine), folder / f"imagesTr/{name}_0000.nii.gz"
        )
        nib.save(
            nib.Nifti1Image(label_map.astype(np.uint8), affine), folder / f"labelsTr/{name}.nii.gz"
        )
    description = {
        "channel_names": {"0": "PET"},
        "labels": {"background": 0, **labels},
        "numTraining": len(cases),
        "file_ending": ".nii.gz",
    }
    (folder / "dataset.json").write_text(json.dumps(description))
    return folder


def blob_case(seed: int, shape=(48, 48, 40)) -> tuple[np.ndarray, np.ndarray]:
    """A PET volume with a liver (label 1) and lesions (label 2): two kept, one tiny."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape)
    pet = 0.8 + 0.1 * rng.random(shape)
    labels = np.zeros(shape, np.uint8)
    liver = ((grid[0] - 30) / 12.0) ** 2 + ((grid[1] - 30) / 10.0) ** 2 + (
        (grid[2] - 20) / 9.0
    ) ** 2 <= 1
    labels[liver] = 1
    pet[liver] = 2.2 + 0.2 * rng.random(int(liver.sum()))
    for centre, radius, suv in (((12, 12, 12), 4.5, 9.0), ((12, 36, 28), 3.0, 6.0)):
        lesion = sum((grid[a] - centre[a]) ** 2 for a in range(3)) <= radius**2
        labels[lesion] = 2
        pet[lesion] = suv
    labels[40, 8, 36] = 2  # one voxel, 0.008 ml: below the 0.1 ml of an object
    return pet.astype(np.float32), labels


def encoded_image(shape) -> np.ndarray:
    """Voxel (x, y, z) holds 1 + x + 100 y + 10000 z: a crop's values say where it was taken."""
    x, y, z = np.indices(shape)
    return (1.0 + x + 100.0 * y + 10000.0 * z).astype(np.float32)


def encoded_image_value(voxel) -> float:
    """The value :func:`encoded_image` has at a (fractional) voxel, as linear interpolation gives."""
    return 1.0 + voxel[0] + 100.0 * voxel[1] + 10000.0 * voxel[2]


def decode_position(value: float) -> tuple[float, float, float]:
    twice = int(round(2 * (value - 1.0)))  # positions are whole or half voxels
    return (twice % 100 / 2.0, twice % 10000 // 100 / 2.0, twice // 10000 / 2.0)


class CropSpyNetwork:
    """A network double that records where each crop it embeds was taken, from its values.

    It predicts a ball of ``radius`` crop voxels around each positive click, minus the
    surroundings of negative clicks, so the simulated user has errors to correct.
    """

    reads_strokes = False

    def __init__(self, size: int = 32, radius: float = 4.0):
        self.config = ModelConfig(
            preset="spy",
            input_size=size,
            spacing_mm=SPACING_MM,
            normalisation="none",
            low_res_size=size // 4,
        )
        self.radius = radius
        self.crop_centres: list[tuple[float, float, float]] = []
        self.crop_centre_values: list[float] = []
        self.decode_calls = 0

    def embed(self, crop):
        half = self.config.input_size[0] // 2
        value = float(crop[0, 0, half, half, half])
        self.crop_centre_values.append(value)
        self.crop_centres.append(decode_position(value))  # for whole or half voxels
        return crop

    def decode(self, embedding, points, labels, boxes=None, mask_logits=None):
        self.decode_calls += 1
        low = self.config.low_res_size[0]
        centres = (torch.arange(low, dtype=torch.float32) + 0.5) * 4 - 0.5
        grid = torch.stack(torch.meshgrid(centres, centres, centres, indexing="ij"), -1)
        logits = torch.full((low, low, low), -5.0)
        anchors = list(points[0][labels[0] == 1])
        if boxes is not None:
            anchors += [boxes[0].mean(0)]
        for point in anchors:
            logits = torch.maximum(logits, self.radius - torch.linalg.norm(grid - point, dim=-1))
        for point in points[0][labels[0] == 0]:
            logits = torch.where(torch.linalg.norm(grid - point, dim=-1) < 2.5, -5.0, logits)
        return logits[None, None], torch.ones(1, 1)


class RecordingSession(Session):
    """The real session, recording what it is given; a mask prompt would fail the test."""

    log: list[tuple[str, object]] = []

    def __init__(self, network):
        # Crop positions are decoded from the image's values at whole or half voxels; a small
        # object's finer tiles (tests/test_session.py) step 0.75 voxel, so they are off here.
        super().__init__(network, zoom_small_objects=False)

    def set_image(self, image):
        RecordingSession.log.append(("image", image))
        super().set_image(image)

    def add(self, prompt):
        assert prompt.seed_mask is None, "the evaluation must not hand the session a mask"
        if isinstance(prompt, Point):
            RecordingSession.log.append(("point", (prompt.voxel, prompt.positive)))
        else:
            RecordingSession.log.append((prompt.type_name, [prompt.anchor, *prompt.vertices]))
        return super().add(prompt)


# ------------------------------------------------------------------------------ the guarantee


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_the_session_places_every_crop_from_a_prompt_never_from_the_ground_truth(
    tmp_path, protocol
):
    shape = (64, 64, 56)
    labels = np.zeros(shape, np.uint8)
    labels[20:40, 20:28, 18:30] = 1  # an L-shaped lesion: its centre is not its most interior voxel
    labels[20:26, 20:40, 18:30] = 1
    labels[46:54, 46:56, 40:48] = 1  # a second lesion
    pet = encoded_image(shape)
    data = write_nnunet(tmp_path / "data", {"coded": (pet, labels)}, {"lesion": 1})
    # A scribble reaches the network as a dozen clicks along its line: thinner balls around
    # them keep the mask inside its first crop, so no crop moves to cover the whole mask.
    network = CropSpyNetwork(radius=1.5 if protocol == "scribbles" else 4.0)
    RecordingSession.log = []

    summary = run_evaluation(
        EvaluationSettings(
            data=(str(data),),
            report_dir=tmp_path / "report",
            protocol=protocol,
            clicks=4,
            model="spy",
            progress=False,
        ),
        network=network,
        session_factory=RecordingSession,
    )

    objects = 1 if protocol == "autopet" else 2  # autoPET scores the whole tumour burden
    assert summary["counts"]["objects"] == objects
    images = [item for kind, item in RecordingSession.log if kind == "image"]
    assert len(images) == objects  # one fresh session per object, given the PET image only
    for image in images:
        np.testing.assert_array_equal(image.array, pet)
    anchors = [
        np.asarray(voxel)
        for kind, item in RecordingSession.log
        if kind != "image"
        for voxel in ([item[0]] if kind == "point" else item)
    ]
    assert anchors and network.crop_centres
    # A tile is centred on its prompt, shifted only as far as needed to stay inside the image.
    half = network.config.input_size[0] // 2
    allowed = [np.clip(a, half, np.asarray(shape) - 1 - (half - 1)) for a in anchors]
    # (A scribble's anchor, its vertices' mean, is no half voxel: compare the crops' values.)
    allowed_values = [float(encoded_image_value(a)) for a in allowed]
    for value in network.crop_centre_values:
        # float32 holds these values to 0.06; anchors half a voxel apart differ by 0.5 or more
        assert any(abs(value - a) < 0.2 for a in allowed_values), (value, allowed_values)
    rows = read_rows(tmp_path / "report")
    assert len(rows) == objects * 4
    if protocol == "autopet":
        # Both lesions get a tumour click (their centres) before any border click.
        components, _ = ndimage.label(labels, structure=np.ones((3, 3, 3)))
        tumour = [item[0] for kind, item in RecordingSession.log if kind == "point" and item[1]]
        assert {components[tuple(int(v) for v in t)] for t in tumour[:2]} == {1, 2}
    if protocol == "clicks":
        # The first crop of each object is centred on its first click, its most interior voxel.
        components, _ = ndimage.label(labels, structure=np.ones((3, 3, 3)))
        first_clicks = [a for a in anchors if labels[tuple(a.astype(int))]][:1]
        expected = most_interior_voxel(components == components[22, 22, 20], (2.0, 2.0, 2.0))
        assert tuple(first_clicks[0]) == tuple(float(v) for v in expected)
        assert network.crop_centres[0] == tuple(float(v) for v in expected)


def test_a_hottest_first_click_seeds_the_model_and_the_baselines_alike(tmp_path):
    pet, labels = blob_case(3)
    hot = (12, 13, 11)  # inside the first lesion, off its centre
    assert labels[hot] == 2
    pet[hot] = 15.0
    data = write_nnunet(tmp_path / "data", {"blobs": (pet, labels)}, {"liver": 1, "lesion": 2})
    RecordingSession.log = []
    summary = run_evaluation(
        EvaluationSettings(
            data=(str(data),),
            report_dir=tmp_path / "report",
            clicks=3,
            first_click="hottest",
            model="spy",
            baselines=True,
            labels=("lesion",),
            progress=False,
        ),
        network=CropSpyNetwork(),
        session_factory=RecordingSession,
    )
    assert summary["first_click"] == "hottest"
    points = [item for kind, item in RecordingSession.log if kind == "point"]
    assert points[0] == (tuple(float(v) for v in hot), True)
    rows = read_rows(tmp_path / "report")
    first_lesion = [r for r in rows if r["object"] == "lesion_1"]
    for row in first_lesion:
        if row["method"] != "seganypet:spy":
            assert row["prompt"].startswith("seed (12 13 11)"), row

    # Clicks that lower Dice: counted over the prompted steps after the first, as the rows say.
    model_rows = [r for r in rows if r["method"] == "seganypet:spy"]
    steps, lowering = 0, 0
    for obj in {r["object"] for r in model_rows}:
        dice = sorted((int(r["step"]), float(r["dice"]), r["prompt_type"]) for r in model_rows
                      if r["object"] == obj)  # fmt: skip
        for (_, before, _), (_, after, kind) in zip(dice, dice[1:], strict=False):
            if kind != "none":
                steps += 1
                lowering += after < before - 1e-6
    counted = summary["methods"]["seganypet:spy"]["clicks_lowering_dice"]
    assert (counted["steps"], counted["lowering"]) == (steps, lowering)
    assert steps > 0


def test_test_time_flips_average_mirror_images_of_a_symmetric_network_to_itself(tmp_path):
    data = write_nnunet(tmp_path / "data", {"blobs": blob_case(4)}, {"liver": 1, "lesion": 2})

    def evaluate(report: str, flips: bool) -> list[dict[str, str]]:
        run_evaluation(
            EvaluationSettings(
                data=(str(data),),
                report_dir=tmp_path / report,
                clicks=2,
                model="spy",
                flips=flips,
                progress=False,
            ),  # fmt: skip
            network=CropSpyNetwork(),
        )
        return read_rows(tmp_path / report)

    plain, flipped = evaluate("plain", False), evaluate("flipped", True)
    assert {r["method"] for r in flipped} == {"seganypet:spy+flips"}
    assert [r["dice"] for r in flipped] == [r["dice"] for r in plain]  # balls mirror to balls


def test_cases_the_model_trained_on_are_refused_or_scored_and_marked(tmp_path):
    from seganypet.io import load_image

    cases = {"seen": blob_case(1), "unseen": blob_case(2)}
    data = write_nnunet(tmp_path / "data", cases, {"liver": 1, "lesion": 2})
    digest = load_image(data / "imagesTr" / "seen_0000.nii.gz").content_digest()
    network = CropSpyNetwork()
    network.config = network.config.replace(training_cases=(("blobs/seen", digest),))

    def settings(report: str, **changes) -> EvaluationSettings:
        return EvaluationSettings(
            data=(str(data),), report_dir=tmp_path / report, clicks=1, model="spy",
            labels=("lesion",), progress=False, **changes,
        )  # fmt: skip

    with pytest.raises(InputError, match=r"case seen: the model was trained on this image"):
        run_evaluation(settings("refused"), network=network)
    unseen_only = run_evaluation(settings("unseen", cases=("unseen",)), network=network)
    assert unseen_only["training_cases"]["scored"] == {}
    assert unseen_only["training_cases"]["recorded_in_model"] is True
    marked = run_evaluation(settings("marked", include_training_cases=True), network=network)
    assert marked["training_cases"]["scored"] == {"seen": "blobs/seen"}
    assert marked["counts"]["cases"] == 2


# ------------------------------------------------------------------------------ real data


def test_ibsi_crops_with_baselines_only(tmp_path):
    data = shared_path("data", "ibsi_sts_crops")
    report = tmp_path / "report"
    summary = evaluate_cli(
        "--data", str(data), "--cases", "STS_003,STS_00[8]", "--protocol", "clicks",
        "--baselines", "-o", str(report),
    )  # fmt: skip

    rows = read_rows(report)
    assert {r["case"] for r in rows} == {"STS_003", "STS_008"}
    assert {r["method"] for r in rows} == {"suv2.5", "suv4.0", "pct41", "pct50"}
    assert all(r["step"] == "1" and r["prompt_type"] == "seed" for r in rows)
    assert len(rows) == 2 * 4
    suv25 = next(r for r in rows if r["case"] == "STS_003" and r["method"] == "suv2.5")
    assert 0.75 < float(suv25["dice"]) <= 1.0
    for row in rows:
        assert 0.0 <= float(row["dice"]) <= 1.0 and 0.0 <= float(row["nsd"]) <= 1.0
        assert float(row["hd95"]) >= 0 and float(row["fp_ml"]) >= 0 and float(row["fn_ml"]) >= 0

    assert "percist" in summary["baselines"]["skipped"]
    assert "no liver reference" in summary["baselines"]["skipped"]["percist"]
    assert summary["model"] is None
    assert summary["counts"] == {
        "cases": 2,
        "objects": 2,
        "objects_by_class": {"GTV": 2},
        "objects_skipped_below_min_volume": 0,
        "objects_resumed_from_earlier_runs": 0,
        "incomplete_rows_dropped_and_redone": 0,
        "rows": 8,
    }
    assert list(summary["methods"]) == ["suv2.5", "suv4.0", "pct41", "pct50"]
    step = summary["methods"]["suv2.5"]["steps"][0]
    assert step["step"] == 1 and step["objects"] == 2
    assert summary["methods"]["suv2.5"]["by_class"]["GTV"]["steps"][0][
        "dice_mean"
    ] == pytest.approx(step["dice_mean"])
    assert summary["command"].startswith("seganypet evaluate --data")
    assert "--baselines" in summary["command"]
    assert summary["seed"] == 0 and summary["protocol"] == "clicks"
    assert (report / "dice_vs_clicks.png").read_bytes()[:8] == PNG_MAGIC


def test_a_click_is_obeyed_when_the_mask_labels_its_own_voxel_as_the_click_says():
    from seganypet.evaluate.runner import share_of_clicks_obeyed
    from seganypet.prompts import Point

    mask = np.zeros((10, 10, 10), bool)
    mask[2:6, 2:6, 2:6] = True
    inside, outside = (3.4, 2.0, 5.0), (7.0, 7.0, 7.0)
    assert share_of_clicks_obeyed(mask, [Point(inside), Point(outside, positive=False)]) == 1.0
    assert share_of_clicks_obeyed(mask, [Point(inside, positive=False)]) == 0.0
    assert share_of_clicks_obeyed(mask, [Point(outside), Point(inside), Point(inside)]) == 2 / 3
    assert share_of_clicks_obeyed(mask, [Point((9.6, 0.0, 0.0))]) == 0.0  # nearest voxel
    assert share_of_clicks_obeyed(mask, []) is None


def test_ibsi_crops_with_a_tiny_random_model_for_two_clicks(tmp_path):
    from seganypet.model import SamMed3D, save_model

    data = shared_path("data", "ibsi_sts_crops")
    torch.manual_seed(0)
    checkpoint = save_model(SamMed3D("small"), tmp_path / "tiny.safetensors")
    report = tmp_path / "report"
    summary = evaluate_cli(
        "--data", str(data), "--cases", "STS_003,STS_008", "--model", str(checkpoint),
        "--clicks", "2", "--baselines", "-o", str(report),
    )  # fmt: skip

    rows = read_rows(report)
    model_rows = [r for r in rows if r["method"] == "seganypet:tiny"]
    assert len(model_rows) == 2 * 2
    assert [r["step"] for r in model_rows] == ["1", "2", "1", "2"]
    assert model_rows[0]["prompt_type"] == "click+"
    assert all(r["prompt_type"] in ("click+", "click-", "none") for r in model_rows)
    assert all(float(r["seconds"]) >= 0 for r in model_rows)
    clicked = [r for r in model_rows if r["prompt_type"] != "none"]
    assert all(float(r["obeyed"]) in (0.0, 1.0) for r in clicked)  # one click per step
    assert all(r["obeyed"] == "" for r in rows if r not in clicked)  # baselines, no click
    not_obeyed = summary["methods"]["seganypet:tiny"]["prompts_not_obeyed"]
    assert not_obeyed["prompts"] == len(clicked)
    assert not_obeyed["not_obeyed"] == sum(float(r["obeyed"]) < 1 for r in clicked)
    assert len(rows) == 2 * 2 + 2 * 4
    model = summary["model"]
    assert model["method"] == "seganypet:tiny" and model["preset"] == "small"
    methods = summary["methods"]
    assert list(methods)[0] == "seganypet:tiny"
    assert [s["step"] for s in methods["seganypet:tiny"]["steps"]] == [1, 2]
    assert methods["seganypet:tiny"]["auc"]["objects"] == 2
    assert summary["timing"]["model_load_seconds"] > 0
    assert (report / "dice_vs_clicks.png").read_bytes()[:8] == PNG_MAGIC


def test_manifest_with_dicom_pet_and_rtstruct(tmp_path):
    case = shared_path("data", "sts_crops_dicom_gml", "STS_001")
    manifest = tmp_path / "manifest.json"
    manifest.write_text(
        json.dumps(
            {
                "cases": [
                    {
                        "case": "STS_001_dicom",
                        "image": str(case / "image"),
                        "mask": str(case / "mask" / "RS.dcm"),
                        "roi": ["GTV_Mass_PET"],
                    }
                ]
            }
        )
    )
    summary = evaluate_cli(
        "--data", str(manifest), "--baselines", "-o", str(tmp_path / "report")
    )  # fmt: skip
    rows = read_rows(tmp_path / "report")
    assert {(r["case"], r["object"], r["label"]) for r in rows} == {
        ("STS_001_dicom", "GTV_Mass_PET_1", "GTV_Mass_PET")
    }
    assert summary["methods"]["suv2.5"]["objects"] == 1


# ------------------------------------------------------------------------------ synthetic data


def test_synthetic_blobs_objects_percist_and_resume(tmp_path):
    data = write_nnunet(
        tmp_path / "data",
        {"blob_a": blob_case(1), "blob_b": blob_case(2)},
        {"liver": 1, "lesion": 2},
    )
    report = tmp_path / "report"
    settings = EvaluationSettings(
        data=(str(data),),
        report_dir=report,
        protocol="clicks",
        clicks=3,
        model="spy",
        baselines=True,
        progress=False,
    )
    network = CropSpyNetwork()
    summary = run_evaluation(settings, network=network)

    rows = read_rows(report)
    objects = sorted({(r["case"], r["object"]) for r in rows})
    assert objects == [
        (case, name) for case in ("blob_a", "blob_b") for name in ("lesion_1", "lesion_2", "liver")
    ]
    assert summary["counts"]["objects_skipped_below_min_volume"] == 2  # the two tiny lesions
    assert summary["baselines"]["skipped"] == {}
    methods = {r["method"] for r in rows}
    assert methods == {"seganypet:spy", "suv2.5", "suv4.0", "pct41", "pct50", "percist"}
    assert len(rows) == 6 * (3 + 5)
    lesion_1 = [r for r in rows if r["object"] == "lesion_1" and r["method"] == "suv2.5"]
    assert all(float(r["dice"]) > 0.8 for r in lesion_1)
    assert summary["methods"]["seganypet:spy"]["by_class"]["lesion"]["objects"] == 4
    assert summary["methods"]["seganypet:spy"]["by_class"]["liver"]["objects"] == 2

    # Resume: nothing is evaluated again and the table is unchanged.
    before = (report / "per_step.csv").read_text()
    calls = network.decode_calls
    again = run_evaluation(settings, network=network)
    assert network.decode_calls == calls
    assert (report / "per_step.csv").read_text() == before
    assert again["counts"]["objects_resumed_from_earlier_runs"] == 6
    assert again["methods"] == summary["methods"]

    # A run cut off while writing: a torn line and an incomplete group are evaluated again.
    lines = before.splitlines(keepends=True)
    last = lines[-1].split(",")
    kept = [line for line in lines if not line.startswith(f"{last[0]},{last[1]},")]
    model_rows = [i for i, line in enumerate(kept) if ",seganypet:spy," in line]
    del kept[model_rows[-1]]  # the last object's final model step is missing
    (report / "per_step.csv").write_text("".join(kept) + "blob_b,lesion_2,lesion,suv")
    redone = run_evaluation(settings, network=network)
    assert network.decode_calls > calls
    assert redone["counts"]["incomplete_rows_dropped_and_redone"] == 2

    def without_seconds(rows):
        return sorted(tuple(v for k, v in row.items() if k != "seconds") for row in rows)

    assert without_seconds(read_rows(report)) == without_seconds(
        csv.DictReader(before.splitlines())
    )


def test_synth_phantoms_lesions_with_baselines(tmp_path):
    from seganypet.synth import PhantomConfig, write_dataset

    config = PhantomConfig(
        lesion_count_range=(1, 3),
        lesion_volume_range_ml=(2.0, 40.0),
        fine_spacing_mm=4.0,  # coarse phantoms: fast enough for a unit test
        spacing_range_mm=(4.0, 5.0),
    )
    write_dataset(tmp_path / "synth", 2, seed=3, config=config, progress=False)
    summary = evaluate_cli(
        "--data", str(tmp_path / "synth"), "--labels", "lesion", "--protocol", "autopet",
        "--baselines", "-o", str(tmp_path / "report"),
    )  # fmt: skip
    rows = read_rows(tmp_path / "report")
    assert rows and {r["label"] for r in rows} == {"lesion"}
    assert {r["method"] for r in rows} == {"suv2.5", "suv4.0", "pct41", "pct50", "percist"}
    assert summary["counts"]["cases"] == 2
    assert summary["baselines"]["skipped"] == {}  # the phantoms have a liver label
    assert {r["object"] for r in rows} == {"lesions"}  # autoPET scores each case's burden
    assert summary["counts"]["objects"] == len({r["case"] for r in rows})


# ------------------------------------------------------------------------------ data layouts


def test_nnunet_pet_channel_and_v1_labels(tmp_path):
    folder = tmp_path / "Dataset001"
    pet, labels = blob_case(0)
    write_nnunet(folder, {"c1": (pet, labels)}, {"liver": 1, "lesion": 2})
    image = folder / "imagesTr" / "c1_0000.nii.gz"
    image.rename(folder / "imagesTr" / "c1_0001.nii.gz")
    nib.save(
        nib.load(folder / "imagesTr" / "c1_0001.nii.gz"), folder / "imagesTr" / "c1_0000.nii.gz"
    )
    description = json.loads((folder / "dataset.json").read_text())
    description["channel_names"] = {"0": "CT", "1": "PET"}
    description["labels"] = {"0": "background", "1": "liver", "2": "lesion"}
    (folder / "dataset.json").write_text(json.dumps(description))

    (source,) = discover_cases([folder])
    assert source.image.name == "c1_0001.nii.gz"
    case = load_case(source)
    assert [o.name for o in case.objects] == ["liver", "lesion_1", "lesion_2"]
    assert case.objects[1].volume_ml > case.objects[2].volume_ml
    assert case.liver_centre is not None and labels[case.liver_centre] == 1
    assert case.skipped_small == 1


def test_cases_from_two_data_folders_with_the_same_names_are_qualified(tmp_path):
    for name in ("first", "second"):
        write_nnunet(tmp_path / name, {"c1": blob_case(0)}, {"liver": 1, "lesion": 2})
    sources = discover_cases([tmp_path / "first", tmp_path / "second"])
    assert [s.name for s in sources] == ["first/c1", "second/c1"]
    assert [
        s.name for s in discover_cases([tmp_path / "first", tmp_path / "second"], ["second/*"])
    ] == ["second/c1"]


# ------------------------------------------------------------------------------ user errors


def test_user_errors_are_input_errors(tmp_path):
    data = write_nnunet(tmp_path / "data", {"c1": blob_case(0)}, {"liver": 1, "lesion": 2})
    report = str(tmp_path / "report")
    with pytest.raises(InputError, match="nothing to evaluate"):
        evaluate_cli("--data", str(data), "-o", report)
    with pytest.raises(InputError, match="no such file or folder"):
        evaluate_cli("--data", str(tmp_path / "missing"), "--baselines", "-o", report)
    with pytest.raises(InputError, match="not a data folder"):
        evaluate_cli("--data", str(tmp_path), "--baselines", "-o", report)
    with pytest.raises(InputError, match="matches no case"):
        evaluate_cli("--data", str(data), "--cases", "STS_9*", "--baselines", "-o", report)
    with pytest.raises(InputError, match="--first-click hottest applies to the protocols clicks"):
        evaluate_cli(
            "--data", str(data), "--baselines", "--protocol", "autopet", "--first-click",
            "hottest", "-o", report,
        )  # fmt: skip

    from seganypet.model.checkpoint import WEIGHTS_DIR

    if not (WEIGHTS_DIR / "default.safetensors").exists():
        with pytest.raises(InputError, match="no bundled model named 'default'"):
            evaluate_cli("--data", str(data), "--model", "default", "-o", report)

    evaluate_cli("--data", str(data), "--baselines", "-o", report)
    with pytest.raises(InputError, match="other settings.*protocol 'clicks' -> 'box-clicks'"):
        evaluate_cli("--data", str(data), "--baselines", "--protocol", "box-clicks", "-o", report)
