"""`seganypet batch`: a cohort of real PET studies (IBSI sarcoma crops, one DICOM series and one
bad study) segmented with the bundled model on this machine's cores and on a real dask cluster
started on loopback (a scheduler and two worker processes): outputs, statistics, failures,
reruns decided by hashes, Ctrl-C."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import shared_path
from seganypet.batch.engines import LocalEngine, make_engine
from seganypet.batch.manifest import read_manifest
from seganypet.batch.run import (
    FAILURES_CSV,
    STATISTICS_COLUMNS,
    STATISTICS_CSV,
    STATISTICS_PARQUET,
    WorkerSetup,
    run_batch,
    study_key,
)
from seganypet.cli import EXIT_USER_ERROR, main
from seganypet.errors import InputError
from seganypet.model.files import WEIGHTS_DIR, model_fingerprint
from seganypet.prompts import most_interior_voxel

NIFTI_CASES = ("STS_019", "STS_042", "STS_003", "STS_002")
DICOM_CASE = "STS_002"
BAD_CASE = "STS_035"
SETUP = WorkerSetup("default", threads=1)


def _click_in_tumour(case: str) -> list[int]:
    mask = nib.load(str(shared_path("data", "ibsi_sts_crops", case, "PET_mask.nii.gz")))
    return list(most_interior_voxel(np.asarray(mask.dataobj) > 0, mask.header.get_zooms()[:3]))


def _prompts(name: str, *prompts: dict) -> str:
    return json.dumps({"objects": [{"name": name, "prompts": list(prompts)}]})


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    """A CSV manifest: four NIfTI crops (one with a prompts file, one as an autoPET click file),
    a DICOM series, and a study whose click lies outside its image."""
    from seganypet.io import load_image

    folder = tmp_path_factory.mktemp("cohort")
    crops = shared_path("data", "ibsi_sts_crops")
    rows = []
    for index, case in enumerate(NIFTI_CASES):
        study = str(crops / case / "PET_image.nii.gz")
        click = {"point": _click_in_tumour(case), "positive": True}
        if index == 1:
            (folder / f"{case}.json").write_text(_prompts("GTV", click))
            rows.append({"id": case, "study": study, "prompts": f"{case}.json"})
        elif index == 2:
            autopet = {"tumor": [click["point"]], "background": [[1, 1, 1]]}
            (folder / f"{case}_clicks.json").write_text(json.dumps(autopet))
            rows.append({"id": case, "study": study, "prompts": f"{case}_clicks.json"})
        else:
            rows.append({"id": case, "study": study, "prompts": _prompts("GTV", click)})
    series = shared_path("data", "sts_crops_dicom_gml", DICOM_CASE, "image")
    image = load_image(series)
    hottest = [int(i) for i in np.unravel_index(np.argmax(image.array), image.shape)]
    rows.append(
        {
            "id": f"{DICOM_CASE}_dicom",
            "study": str(series),
            "prompts": _prompts("GTV", {"point": hottest}),
        }
    )
    outside = {"point": [500, 1, 1]}
    rows.append(
        {
            "id": "bad",
            "study": str(crops / BAD_CASE / "PET_image.nii.gz"),
            "prompts": _prompts("GTV", outside),
        }
    )
    manifest = folder / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["id", "study", "prompts"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest


GOOD = [*NIFTI_CASES, f"{DICOM_CASE}_dicom"]


@pytest.fixture(scope="module")
def local_run(cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "out"
    engine = LocalEngine(SETUP, workers=2)
    summary = run_batch(cohort, out, engine, SETUP, mask_format="dicom-seg", progress=False)
    return out, summary


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_each_study_gets_a_label_map_and_the_bad_one_a_failure_with_its_reason(local_run):
    out, summary = local_run
    assert sorted(summary.segmented) == sorted(GOOD) and summary.skipped == []
    for case in NIFTI_CASES:
        written = nib.load(str(out / "masks" / f"{case}.nii.gz"))
        source = nib.load(str(shared_path("data", "ibsi_sts_crops", case, "PET_image.nii.gz")))
        assert written.shape == source.shape
        np.testing.assert_allclose(written.affine, source.affine, atol=1e-4)
        assert np.asarray(written.dataobj).max() == 1
    import pydicom

    seg = pydicom.dcmread(out / "masks" / f"{DICOM_CASE}_dicom.dcm")
    assert seg.Modality == "SEG" and seg.SegmentSequence[0].SegmentLabel == "GTV"

    failures = _csv_rows(out / FAILURES_CSV)
    assert [row["study"] for row in failures] == ["bad"]
    reason = failures[0]["reason"]
    assert reason.startswith("manifest.csv row 6 (bad): the point (500, 1, 1) lies outside")
    assert "\n" not in reason
    assert not (out / "masks" / "bad.nii.gz").exists()


def test_the_statistics_table_holds_each_object_and_lesion_as_quantify_measures_them(local_run):
    from seganypet.io import load_image
    from seganypet.io.masks import load_mask
    from seganypet.quant import quantify

    out, _ = local_run
    rows = _csv_rows(out / STATISTICS_CSV)
    assert list(rows[0]) == list(STATISTICS_COLUMNS)
    assert {row["study"] for row in rows} == set(GOOD)
    sha256 = hashlib.sha256((WEIGHTS_DIR / "default.safetensors").read_bytes()).hexdigest()
    assert {(row["model"], row["model_sha256"]) for row in rows} == {("default", sha256)}

    objects = {row["study"]: row for row in rows if row["level"] == "object"}
    assert objects[NIFTI_CASES[2]]["object"] == "lesions"  # the autoPET click file's object
    for case in NIFTI_CASES:
        image = load_image(shared_path("data", "ibsi_sts_crops", case, "PET_image.nii.gz"))
        labels, _ = load_mask(out / "masks" / f"{case}.nii.gz", image)
        expected = quantify(image, labels).to_dict()["labels"][0]
        row = objects[case]
        assert int(row["voxels"]) == expected["voxels"]
        for key in ("volume_ml", "mtv_ml", "suv_mean", "suv_max", "suv_peak", "tlg"):
            assert float(row[key]) == pytest.approx(expected[key], rel=1e-12), (case, key)
        lesions = [r for r in rows if r["study"] == case and r["level"] == "lesion"]
        assert len(lesions) == int(row["lesion_count"]) == expected["lesion_count"]
        assert sum(int(r["voxels"]) for r in lesions) == expected["voxels"]

    import pyarrow.parquet as pq

    table = pq.read_table(out / STATISTICS_PARQUET)
    assert table.column_names == list(STATISTICS_COLUMNS)
    assert str(table.schema.field("suv_max").type) == "double"
    parquet_rows = table.to_pylist()
    assert len(parquet_rows) == len(rows)
    for written, read in zip(parquet_rows, rows, strict=True):
        assert written["study"] == read["study"] and written["level"] == read["level"]
        assert written["suv_peak"] == float(read["suv_peak"])


def test_batch_and_segment_give_the_same_mask_from_the_same_prompts(local_run, cohort, tmp_path):
    out, _ = local_run
    case = NIFTI_CASES[1]  # its prompts are in a file, which segment reads as it is
    image = shared_path("data", "ibsi_sts_crops", case, "PET_image.nii.gz")
    mask = tmp_path / "segment.nii.gz"
    argv = ["segment", "-i", image, "-o", mask, "--prompts", cohort.parent / f"{case}.json"]
    assert main([str(a) for a in [*argv, "--threads", "1"]]) == 0
    by_segment = np.asarray(nib.load(str(mask)).dataobj)
    by_batch = np.asarray(nib.load(str(out / "masks" / f"{case}.nii.gz")).dataobj)
    np.testing.assert_array_equal(by_segment, by_batch)


def test_a_rerun_skips_studies_whose_hash_is_unchanged_and_redoes_a_changed_prompt(
    local_run, cohort, tmp_path
):
    done, _ = local_run
    out = tmp_path / "out"
    shutil.copytree(done, out)
    records = {p.name: p.read_bytes() for p in (out / "records").iterdir()}

    again = run_batch(
        cohort, out, LocalEngine(SETUP, workers=1), SETUP, mask_format="dicom-seg", progress=False
    )
    assert again.segmented == [] and sorted(again.skipped) == sorted(GOOD)
    assert [f.study for f in again.failures] == ["bad"]  # a failed study is tried again
    assert {p.name: p.read_bytes() for p in (out / "records").iterdir()} == records
    assert _csv_rows(out / STATISTICS_CSV) == _csv_rows(done / STATISTICS_CSV)

    # the same outputs are there, but one study's prompt changed: only that study runs again
    changed = tmp_path / "manifest.csv"
    text = cohort.read_text().replace('"name"": ""GTV""', '"name"": ""tumour""', 1)
    assert text != cohort.read_text()
    changed.write_text(text)
    for prompts in cohort.parent.glob("*.json"):
        shutil.copy(prompts, tmp_path)
    rerun = run_batch(
        changed, out, LocalEngine(SETUP, workers=1), SETUP, mask_format="dicom-seg", progress=False
    )
    assert rerun.segmented == [NIFTI_CASES[0]]
    assert sorted(rerun.skipped) == sorted(GOOD[1:])
    rows = _csv_rows(out / STATISTICS_CSV)
    assert {row["object"] for row in rows if row["study"] == NIFTI_CASES[0]} == {"tumour"}


def test_the_key_follows_inputs_prompts_model_and_dicom_options(cohort, tmp_path):
    image = tmp_path / "pet.nii.gz"
    shutil.copy(shared_path("data", "ibsi_sts_crops", "STS_002", "PET_image.nii.gz"), image)
    manifest = tmp_path / "m.json"
    prompts = [{"point": [14, 13, 24]}]
    manifest.write_text(json.dumps([{"study": "pet.nii.gz", "prompts": prompts}]))
    model = model_fingerprint("default")

    def key(options: dict | None = None, model=model) -> str:
        spec = read_manifest(manifest, options or {}).studies[0]
        return study_key(spec, model, "nifti", SETUP)

    first = key()
    assert key() == first
    assert key({"weight_kg": 70.0}) == first  # a NIfTI study is in SUV already
    other_model = model_fingerprint(WEIGHTS_DIR / "default_small.safetensors")
    assert key(model=other_model) != first
    manifest.write_text(json.dumps([{"study": "pet.nii.gz", "prompts": [{"point": [14, 13, 23]}]}]))
    assert key() != first
    manifest.write_text(json.dumps([{"study": "pet.nii.gz", "prompts": prompts}]))
    data = image.read_bytes()
    image.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # same path and size, new contents
    assert key() != first

    series = shared_path("data", "sts_crops_dicom_gml", "STS_002", "image")
    manifest.write_text(json.dumps([{"study": str(series), "prompts": prompts}]))
    assert key({"weight_kg": 70.0}) != key({"weight_kg": 80.0})


def test_a_real_dask_cluster_gives_the_statistics_of_the_local_run(local_run, cohort, tmp_path):
    from seganypet.batch.dask_engine import LoopbackDaskCluster

    local_out, _ = local_run
    with LoopbackDaskCluster(workers=2, folder=tmp_path / "cluster") as cluster:
        engine = make_engine("dask", SETUP, workers=2, address=cluster.address)
        out = tmp_path / "out"
        summary = run_batch(cohort, out, engine, SETUP, mask_format="dicom-seg", progress=False)
    assert summary.engine == "dask" and summary.workers == 2
    assert sorted(summary.segmented) == sorted(GOOD)
    assert _csv_rows(out / STATISTICS_CSV) == _csv_rows(local_out / STATISTICS_CSV)
    assert _csv_rows(out / FAILURES_CSV) == _csv_rows(local_out / FAILURES_CSV)
    workers = {json.loads(p.read_text())["worker"] for p in (out / "records").iterdir()}
    assert str(os.getpid()) not in {worker.rsplit(":", 1)[1] for worker in workers}


def test_ctrl_c_leaves_finished_studies_and_tables_and_no_half_written_file(cohort, tmp_path):
    # The cohort's studies eight times over, so that many are left when the first is done and
    # the interrupt comes (a short cohort can finish before the signal lands).
    rows = _csv_rows(cohort)
    many = [{**row, "id": f"{row['id']}_{copy}"} for copy in range(8) for row in rows]
    manifest = cohort.parent / "many.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(many)
    good = {row["id"] for row in many if not row["id"].startswith("bad")}
    out = tmp_path / "out"
    command = [sys.executable, "-m", "seganypet", "batch", str(manifest), "-o", str(out)]
    process = subprocess.Popen(
        [*command, "--workers", "1", "--threads", "1", "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell running the tests in the background ignores SIGINT, and a child inherits that
        # (Python then never raises KeyboardInterrupt): give it the terminal's default.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    while not list((out / "records").glob("*.json")) and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "seganypet batch: interrupted"
    leftovers = [p for p in out.rglob("*") if ".tmp" in p.name]
    assert leftovers == []
    done = {json.loads(p.read_text())["study"] for p in (out / "records").iterdir()}
    assert done and done < good
    for study in done:
        assert list((out / "masks").glob(f"{study}.*"))
    assert {row["study"] for row in _csv_rows(out / STATISTICS_CSV)} == done


# ---------------------------------------------------------------------------- the manifest


def test_a_json_manifest_takes_inline_prompts_files_autopet_clicks_and_mm(tmp_path):
    image = shared_path("data", "ibsi_sts_crops", "STS_002", "PET_image.nii.gz")
    (tmp_path / "clicks.json").write_text(
        json.dumps({"tumor": [[1, 2, 3]], "background": [[4, 5, 6]]})
    )
    rows = [
        {
            "id": "inline",
            "study": str(image),
            "prompts": {
                "coordinates": "mm",
                "objects": [{"name": "a", "prompts": [{"box": [0, 0, 0, 5, 5, 5]}]}],
            },
        },
        {"id": "list", "study": str(image), "prompts": [{"point": [1, 2, 3]}], "coordinates": "mm"},
        {"id": "autopet", "study": str(image), "prompts": "clicks.json", "weight_kg": 71.5},
    ]
    (tmp_path / "m.json").write_text(json.dumps({"studies": rows}))
    manifest = read_manifest(tmp_path / "m.json", {"weight_kg": None, "suv_type": "bw"})
    assert manifest.failures == []
    inline, listed, autopet = manifest.studies
    assert inline.mm and inline.objects[0]["name"] == "a"
    assert listed.mm and listed.objects[0]["name"] == "object 1"
    assert not autopet.mm and autopet.objects[0]["name"] == "lesions"
    assert [p.positive for p in autopet.objects[0]["prompts"]] == [True, False]
    assert autopet.load_options == {"weight_kg": 71.5, "suv_type": "bw"}


def test_a_bad_row_is_a_failure_of_that_study_alone(tmp_path):
    image = shared_path("data", "ibsi_sts_crops", "STS_002", "PET_image.nii.gz")
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "study,prompts,weight_kg\n"
        f'{image},"[{{""point"": [1, 2, 3]}}]",\n'
        f'{image.parent.parent / "STS_003" / "PET_image.nii.gz"},"[{{""point"": [1, 2]}}]",\n'
        f"missing.nii.gz,[],\n"
        f'{image.parent.parent / "STS_004" / "PET_image.nii.gz"},"[{{""point"": [1, 2, 3]}}]",heavy\n'
    )
    read = read_manifest(manifest, {})
    assert [s.name for s in read.studies] == ["STS_002_PET_image"]
    reasons = {f.study: f.reason for f in read.failures}
    assert reasons["STS_003_PET_image"].startswith(
        "m.csv row 2 (STS_003_PET_image): prompts: objects[0].prompts[0]: 'point' takes"
    )
    assert "missing.nii.gz: no such file or folder" in reasons["missing"]
    assert reasons["STS_004_PET_image"].endswith(
        "'weight_kg' must be a positive number, got 'heavy'"
    )


@pytest.mark.parametrize(
    "content, message",
    [
        ("study,prompts,weight\nx.nii.gz,[]\n", "unknown column 'weight'"),
        ("name,prompts\nx,[]\n", "must include 'study' and 'prompts'"),
        ("study,prompts,id\na.nii.gz,[],s\nb.nii.gz,[],s\n", "rows 1, 2 share the study name 's'"),
        (
            "study,dicomweb_study_uid,prompts\na.nii.gz,1.2.3,[]\n",
            "give either a 'study' or DICOMweb UIDs (dicomweb_study_uid, dicomweb_series_uid)",
        ),
    ],
)
def test_a_manifest_that_cannot_be_read_is_refused_in_one_line(tmp_path, capsys, content, message):
    (tmp_path / "m.csv").write_text(content)
    code = main(["batch", str(tmp_path / "m.csv"), "-o", str(tmp_path / "out")])
    assert code == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert err.startswith("seganypet batch: error: ") and message in err
    assert len(err.strip().splitlines()) == 1


def test_engine_options_are_checked_in_one_line(tmp_path, capsys):
    manifest = tmp_path / "m.csv"
    manifest.write_text("study,prompts\n")
    assert main(["batch", str(manifest), "-o", str(tmp_path), "--engine", "dask"]) == 2
    assert "--engine dask needs --address" in capsys.readouterr().err
    assert main(["batch", str(manifest), "-o", str(tmp_path), "--address", "tcp://h:1"]) == 2
    assert "--address is for --engine dask" in capsys.readouterr().err
    with pytest.raises(InputError, match="no such manifest file"):
        read_manifest(tmp_path / "none.csv", {})
