"""A real PACS: Orthanc with its DICOMweb plugin, started on loopback with a user and password,
holding the whole-body STS_001 PET series and its RTSTRUCT.

`seganypet batch --dicomweb` fetches a manifest row's series (QIDO-RS, WADO-RS), segments the
sarcoma from a click at its SUVmax voxel and stores the DICOM SEG back (STOW-RS): the SEG read
back from Orthanc measures what the same batch measures on the local DICOM folder. `seganypet
serve --dicomweb` lists the PACS's PET series, opens one and stores the saved SEG. A server that
cannot be reached, refuses the password, does not know a UID or holds no PET under it is one
line: a failure of that study in batch, an HTTP 4xx in serve.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
import requests

from conftest import shared_path
from seganypet.cli import main
from seganypet.errors import InputError
from seganypet.io.dicomweb import (
    PASSWORD_VARIABLE,
    DicomwebServer,
    DicomwebSettings,
)

USER, PASSWORD = "reader", "pacs-password-42"
PLUGIN_PATTERNS = (
    "/usr/share/orthanc/plugins/libOrthancDicomWeb.so*",
    "/usr/lib/orthanc/libOrthancDicomWeb.so*",
    "/usr/lib/*/orthanc/libOrthancDicomWeb.so*",
)
ORTHANC_START_S = 60  # how long to wait for Orthanc to answer before giving up


def _missing(what: str) -> None:
    reason = f"{what} not installed (bash scripts/setup.sh --dev installs Debian's orthanc and orthanc-dicomweb)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI must have {reason}")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Orthanc:
    """An Orthanc process with the DICOMweb plugin, on a free loopback port, its own storage."""

    def __init__(self, folder: Path):
        binary = shutil.which("Orthanc") or next(
            (p for p in ("/usr/sbin/Orthanc", "/usr/bin/Orthanc") if Path(p).exists()), None
        )
        plugins = [p for pattern in PLUGIN_PATTERNS for p in sorted(glob.glob(pattern))]
        if binary is None:
            _missing("Orthanc")
        if not plugins:
            _missing("Orthanc's DICOMweb plugin")
        self.port = _free_port()
        self.root = f"http://127.0.0.1:{self.port}"
        self.url = f"{self.root}/dicom-web"
        config = {
            "Name": "seganypet-test",
            "StorageDirectory": str(folder / "storage"),
            "IndexDirectory": str(folder / "storage"),
            "HttpPort": self.port,
            "RemoteAccessAllowed": False,
            "DicomServerEnabled": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {USER: PASSWORD},
            "SaveJobs": False,
            "Plugins": [plugins[0]],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        }
        (folder / "orthanc.json").write_text(json.dumps(config))
        self.log = folder / "orthanc.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [binary, str(folder / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT
            )
        self._wait_until_up()

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + ORTHANC_START_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"Orthanc exited: {self.log.read_text()[-2000:]}")
            try:
                if requests.get(f"{self.url}/studies", auth=(USER, PASSWORD), timeout=2).ok:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        self.stop()
        pytest.fail(
            f"Orthanc did not answer in {ORTHANC_START_S} s: {self.log.read_text()[-2000:]}"
        )

    def client(self):
        from dicomweb_client.api import DICOMwebClient

        session = requests.Session()
        session.auth = (USER, PASSWORD)
        return DICOMwebClient(self.url, session=session)

    def seg_series(self) -> set[str]:
        found = self.client().search_for_series(search_filters={"Modality": "SEG"})
        return {item["0020000E"]["Value"][0] for item in found}

    def retrieve_series(self, study_uid: str, series_uid: str, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for dataset in self.client().retrieve_series(study_uid, series_uid):
            dataset.save_as(folder / f"{dataset.SOPInstanceUID}.dcm", enforce_file_format=True)
        return folder

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


STS001 = ("data", "sts001_wholebody_ge")


@pytest.fixture(scope="module")
def sts001() -> dict:
    """STS_001's PT series on disk, its UIDs, and the GTV_Mass SUVmax voxel (the click)."""
    from seganypet.io import load_image
    from seganypet.io.masks import load_mask

    folder = shared_path(*STS001, "image")
    rtstruct = shared_path(*STS001, "mask", "1-1.dcm")
    image = load_image(folder)
    labels, _ = load_mask(rtstruct, image, roi_names=["GTV_Mass"])
    inside = np.where(labels == 1, image.array, -np.inf)
    hottest = [int(i) for i in np.unravel_index(np.argmax(inside), image.shape)]
    first = image.dicom_headers[0]
    structure = pydicom.dcmread(rtstruct, stop_before_pixels=True)
    return {
        "folder": folder,
        "image": image,
        "click": hottest,
        "study_uid": str(first.StudyInstanceUID),
        "series_uid": str(first.SeriesInstanceUID),
        "instances": {str(h.SOPInstanceUID) for h in image.dicom_headers},
        "rtstruct": rtstruct,
        "rtstruct_series_uid": str(structure.SeriesInstanceUID),
    }


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory, sts001) -> Orthanc:
    """Orthanc holding STS_001: its 267 PT slices and its RTSTRUCT (a series that is not PET)."""
    server = Orthanc(tmp_path_factory.mktemp("orthanc"))
    try:
        files = sorted(p for p in Path(sts001["folder"]).rglob("*") if p.is_file())
        datasets = [pydicom.dcmread(p) for p in files] + [pydicom.dcmread(sts001["rtstruct"])]
        server.client().store_instances(datasets)
        yield server
    finally:
        server.stop()


@pytest.fixture()
def password(monkeypatch) -> str:
    monkeypatch.setenv(PASSWORD_VARIABLE, PASSWORD)
    return PASSWORD


def _prompts(click: list[int]) -> str:
    return json.dumps({"objects": [{"name": "GTV", "prompts": [{"point": click}]}]})


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _write_manifest(path: Path, rows: list[dict[str, str]]) -> Path:
    columns = ["id", "study", "dicomweb_study_uid", "dicomweb_series_uid", "prompts"]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _batch(manifest: Path, out: Path, url: str, *more: str) -> int:
    return main(
        [
            "batch",
            str(manifest),
            "-o",
            str(out),
            "--workers",
            "1",
            "--threads",
            "1",
            "--no-progress",
            "--dicomweb",
            url,
            "--dicomweb-user",
            USER,
            *more,
        ]
    )


# ------------------------------------------------------------------------------ batch


@pytest.fixture(scope="module")
def cohort(tmp_path_factory, sts001) -> Path:
    """The same click on STS_001 from the local folder and from the PACS, and two PACS rows
    that cannot be had: an unknown study UID and a series that is an RTSTRUCT, not PET."""
    folder = tmp_path_factory.mktemp("cohort")
    prompts = _prompts(sts001["click"])
    rows = [
        {"id": "local", "study": str(sts001["folder"]), "prompts": prompts},
        {
            "id": "pacs",
            "dicomweb_study_uid": sts001["study_uid"],
            "dicomweb_series_uid": sts001["series_uid"],
            "prompts": prompts,
        },
        {"id": "unknown", "dicomweb_study_uid": "1.2.3.4.5.6.7", "prompts": prompts},
        {
            "id": "not_pet",
            "dicomweb_study_uid": sts001["study_uid"],
            "dicomweb_series_uid": sts001["rtstruct_series_uid"],
            "prompts": prompts,
        },
    ]
    return _write_manifest(folder / "cohort.csv", rows)


@pytest.fixture(scope="module")
def pacs_run(orthanc, cohort, tmp_path_factory) -> tuple[Path, set[str]]:
    """The batch run once, with the password in the environment; the SEG series it added."""
    before = orthanc.seg_series()
    out = tmp_path_factory.mktemp("pacs_run") / "out"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(PASSWORD_VARIABLE, PASSWORD)
        assert _batch(cohort, out, orthanc.url, "--format", "dicom-seg") == 0
    return out, orthanc.seg_series() - before


def test_batch_stores_a_seg_in_orthanc_that_measures_what_the_local_run_measures(
    pacs_run, orthanc, sts001, tmp_path
):
    from seganypet.io.masks import load_mask
    from seganypet.quant import quantify

    out, added = pacs_run
    assert len(added) == 1, "one SEG stored, for the one PACS study segmented"
    (seg_uid,) = added
    record = json.loads((out / "records" / "pacs.json").read_text())
    assert record["stored"]["series_uid"] == seg_uid
    assert record["stored"]["url"] == orthanc.url
    assert record["source"] == f"dicomweb:{sts001['study_uid']}/{sts001['series_uid']}"

    fetched = orthanc.retrieve_series(sts001["study_uid"], seg_uid, tmp_path / "seg")
    (seg_file,) = list(fetched.iterdir())
    seg = pydicom.dcmread(seg_file)
    assert seg.Modality == "SEG"
    (referenced,) = seg.ReferencedSeriesSequence
    assert referenced.SeriesInstanceUID == sts001["series_uid"]
    assert {item.ReferencedSOPInstanceUID for item in referenced.ReferencedInstanceSequence} == (
        sts001["instances"]
    )

    image = sts001["image"]
    from_pacs, names = load_mask(seg_file, image)
    local, local_names = load_mask(out / "masks" / "local.dcm", image)
    assert names == local_names == {1: "GTV"}
    assert from_pacs.any() and np.array_equal(from_pacs, local)
    assert np.array_equal(from_pacs, load_mask(out / "masks" / "pacs.dcm", image)[0])

    measured = quantify(image, from_pacs, label_names=names).to_dict()["labels"][0]
    rows = {(r["study"], r["level"]): r for r in _csv(out / "statistics.csv")}
    for study in ("local", "pacs"):
        row = rows[(study, "object")]
        assert float(row["suv_max"]) == pytest.approx(measured["suv_max"], rel=1e-6)
        assert float(row["suv_mean"]) == pytest.approx(measured["suv_mean"], rel=1e-6)
        assert float(row["suv_peak"]) == pytest.approx(measured["suv_peak"], rel=1e-6)
        assert float(row["volume_ml"]) == pytest.approx(measured["volume_ml"], rel=1e-9)
        assert int(row["voxels"]) == measured["voxels"]
    assert not (out / ".dicomweb").exists(), "fetched series are removed once their study is done"


def test_a_study_the_pacs_cannot_give_is_one_failure_line_and_the_batch_goes_on(pacs_run, sts001):
    out, _ = pacs_run
    failures = {row["study"]: row for row in _csv(out / "failures.csv")}
    assert set(failures) == {"unknown", "not_pet"}
    unknown = failures["unknown"]["reason"]
    assert "cohort.csv row 3 (unknown)" in unknown and "no study 1.2.3.4.5.6.7" in unknown
    assert failures["unknown"]["source"] == "dicomweb:1.2.3.4.5.6.7"
    not_pet = failures["not_pet"]["reason"]
    assert f"series {sts001['rtstruct_series_uid']}" in not_pet
    assert "is RTSTRUCT, not PET (Modality PT)" in not_pet
    assert sts001["series_uid"] in not_pet, "it names the study's PET series"
    assert all("\n" not in row["reason"] for row in failures.values())


def test_a_rerun_skips_the_pacs_study_whose_fetched_instances_are_unchanged(
    pacs_run, orthanc, cohort, password, capsys
):
    out, _ = pacs_run
    before = orthanc.seg_series()
    key = json.loads((out / "records" / "pacs.json").read_text())["key"]
    assert _batch(cohort, out, orthanc.url, "--format", "dicom-seg") == 0
    assert "4 studies: 0 segmented, 2 already done (skipped), 2 failed" in capsys.readouterr().out
    assert json.loads((out / "records" / "pacs.json").read_text())["key"] == key
    assert orthanc.seg_series() == before, "nothing stored twice"


def test_the_key_of_a_pacs_study_hashes_its_instances(orthanc, sts001, tmp_path):
    from seganypet.batch.manifest import read_manifest
    from seganypet.batch.run import WorkerSetup, fetch_dicomweb_study, study_key
    from seganypet.model.files import model_fingerprint

    manifest = _write_manifest(
        tmp_path / "m.csv",
        [
            {
                "id": "pacs",
                "dicomweb_study_uid": sts001["study_uid"],
                "prompts": _prompts(sts001["click"]),
            }
        ],
    )
    (spec,) = read_manifest(manifest, {}).studies
    server = DicomwebServer(DicomwebSettings(orthanc.url, USER, PASSWORD))
    fetched = fetch_dicomweb_study(spec, server, tmp_path / "fetched")
    assert fetched.dicomweb.series_uid == sts001["series_uid"], "the study's one PET series"
    names = {p.name for p in (tmp_path / "fetched").iterdir()}
    assert names == {f"{uid}.dcm" for uid in sts001["instances"]}
    setup = WorkerSetup("default")
    model = model_fingerprint("default")
    key = study_key(fetched, model, "dicom-seg", setup, orthanc.url)
    assert study_key(fetched, model, "dicom-seg", setup, orthanc.url) == key
    first = sorted((tmp_path / "fetched").iterdir())[0]
    dataset = pydicom.dcmread(first)
    dataset.PatientWeight = float(dataset.PatientWeight) + 1
    dataset.save_as(first)
    assert study_key(fetched, model, "dicom-seg", setup, orthanc.url) != key


def test_a_wrong_password_or_an_unreachable_server_fails_each_pacs_study_in_one_line(
    orthanc, cohort, tmp_path, monkeypatch
):
    monkeypatch.setenv(PASSWORD_VARIABLE, "not-the-password")
    pacs_rows = [row for row in _csv(cohort) if row["id"] != "local"]
    pacs_only = _write_manifest(tmp_path / "pacs_only.csv", pacs_rows)
    assert _batch(pacs_only, tmp_path / "refused", orthanc.url) == 0
    refused = {row["study"]: row["reason"] for row in _csv(tmp_path / "refused" / "failures.csv")}
    assert set(refused) == {"pacs", "unknown", "not_pet"}
    assert all("(HTTP 401)" in reason for reason in refused.values()), refused
    assert "--dicomweb-user" in refused["pacs"]

    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/dicom-web"
        assert _batch(cohort, tmp_path / "unreachable", url) == 0
    rows = _csv(tmp_path / "unreachable" / "failures.csv")
    assert {row["study"] for row in rows} == {"pacs", "unknown", "not_pet"}
    for row in rows:
        assert f"cannot reach the DICOMweb server at {url} (" in row["reason"]
        assert "\n" not in row["reason"]
    statistics = _csv(tmp_path / "unreachable" / "statistics.csv")
    assert {row["study"] for row in statistics} == {"local"}, "the local study went on"


def test_dicomweb_options_are_checked_in_one_line(
    orthanc, sts001, cohort, tmp_path, monkeypatch, capsys
):
    import base64

    monkeypatch.delenv(PASSWORD_VARIABLE, raising=False)
    monkeypatch.setattr("sys.stdin", open(os.devnull))  # not a terminal: no password prompt
    assert _batch(cohort, tmp_path / "out", orthanc.url) == 2
    err = capsys.readouterr().err
    assert f"set the password in the environment variable {PASSWORD_VARIABLE}" in err
    assert len(err.strip().splitlines()) == 1

    manifest = str(cohort)
    assert main(["batch", manifest, "-o", str(tmp_path), "--dicomweb-user", USER]) == 2
    assert "--dicomweb-user and --dicomweb-header need --dicomweb URL" in capsys.readouterr().err
    assert main(["batch", manifest, "-o", str(tmp_path), "--dicomweb", "pacs:8042"]) == 2
    assert "give the DICOMweb service's root URL" in capsys.readouterr().err
    assert main(["batch", manifest, "-o", str(tmp_path), "--dicomweb", orthanc.url,
                 "--dicomweb-header", "no colon"]) == 2  # fmt: skip
    assert "write it as 'NAME: VALUE'" in capsys.readouterr().err

    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    settings = DicomwebSettings.from_options(orthanc.url, headers=[f"Authorization: Basic {basic}"])
    listed = DicomwebServer(settings).pet_series()
    assert [s.series_uid for s in listed] == [sts001["series_uid"]], "PET only, not the RTSTRUCT"
    assert listed[0].instances == len(sts001["instances"])
    assert "pacs-password" not in repr(settings)
    with pytest.raises(InputError, match=r"\(HTTP 401\)"):
        DicomwebServer(DicomwebSettings.from_options(orthanc.url)).pet_series()


def test_a_manifest_row_names_a_study_by_path_or_by_uids_not_both(tmp_path):
    from seganypet.batch.manifest import read_manifest

    both = _write_manifest(
        tmp_path / "both.csv",
        [{"id": "x", "study": "a", "dicomweb_study_uid": "1.2", "prompts": "[]"}],
    )
    with pytest.raises(InputError, match="give either a 'study' or DICOMweb UIDs"):
        read_manifest(both, {})
    bad_uid = _write_manifest(
        tmp_path / "uid.csv",
        [{"id": "x", "dicomweb_study_uid": "1.2.x", "prompts": "[]"}],
    )
    (failure,) = read_manifest(bad_uid, {}).failures
    assert "'dicomweb_study_uid' is a DICOM UID" in failure.reason


# ------------------------------------------------------------------------------ serve


def _serve(tmp_path: Path, url: str, password: str = PASSWORD):
    from fastapi.testclient import TestClient

    from seganypet.server.app import create_app

    token = "dicomweb-test-token"
    data = tmp_path / "data"
    data.mkdir(parents=True, exist_ok=True)
    settings = DicomwebSettings(url, USER, password)
    app = create_app(data, "default", token, work_dir=tmp_path / "work", dicomweb=settings)
    return TestClient(app, headers={"Authorization": f"Bearer {token}"})


def test_serve_lists_opens_and_stores_the_saved_seg_in_orthanc(orthanc, sts001, tmp_path):
    from seganypet.io.masks import load_mask
    from seganypet.server.client import decode_labels

    client = _serve(tmp_path, orthanc.url)
    listed = client.get("/api/studies")
    assert listed.status_code == 200, listed.text
    key = f"dicomweb:{sts001['study_uid']}/{sts001['series_uid']}"
    (entry,) = [s for s in listed.json() if s["kind"] == "dicomweb"]
    assert entry["path"] == key and entry["label"].startswith("PACS: STS_001")

    opened = client.post("/api/sessions", json={"study": key})
    assert opened.status_code == 200, opened.text
    info = opened.json()
    assert info["shape"] == list(sts001["image"].shape) and info["dicom"]
    assert info["header"]["suv_factor"] == pytest.approx(2.42903e-4, rel=1e-4)  # data README
    sid = info["session_id"]
    clicked = client.post(f"/api/sessions/{sid}/prompts", json={"point": sts001["click"]})
    assert clicked.status_code == 200, clicked.text

    before = orthanc.seg_series()
    saved = client.post(f"/api/sessions/{sid}/save", json={"format": "dicom-seg"})
    assert saved.status_code == 200, saved.text
    (seg_uid,) = orthanc.seg_series() - before
    assert saved.json()["stored"] == (
        f"{orthanc.url}: study {sts001['study_uid']}, SEG series {seg_uid}"
    )
    nifti = client.post(f"/api/sessions/{sid}/save", json={"format": "nifti"})
    assert nifti.status_code == 200 and nifti.json()["stored"] is None
    assert orthanc.seg_series() - before == {seg_uid}, "a NIfTI stays local"

    folder = orthanc.retrieve_series(sts001["study_uid"], seg_uid, tmp_path / "seg")
    (seg_file,) = list(folder.iterdir())
    stored, names = load_mask(seg_file, sts001["image"])
    payload = client.get(f"/api/sessions/{sid}/mask").json()
    shown = decode_labels(payload["runs"], payload["shape"])
    assert names == {int(label): name for label, name in payload["names"].items()}
    assert stored.any() and np.array_equal(stored, shown)


def test_serve_answers_what_the_pacs_cannot_give_with_one_line(orthanc, sts001, tmp_path):
    client = _serve(tmp_path, orthanc.url)
    study = sts001["study_uid"]
    unknown = client.post("/api/sessions", json={"study": f"dicomweb:{study}/1.2.3.4"})
    assert unknown.status_code == 404
    assert f"no series 1.2.3.4 in study {study}" in unknown.json()["detail"]
    rtstruct = f"dicomweb:{study}/{sts001['rtstruct_series_uid']}"
    not_pet = client.post("/api/sessions", json={"study": rtstruct})
    assert not_pet.status_code == 400
    assert "is RTSTRUCT, not PET (Modality PT)" in not_pet.json()["detail"]

    refused = _serve(tmp_path / "refused", orthanc.url, "wrong").get("/api/studies")
    assert refused.status_code == 400 and "(HTTP 401)" in refused.json()["detail"]
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/dicom-web"
        client = _serve(tmp_path / "closed", url)
        for response in (
            client.get("/api/studies"),
            client.post("/api/sessions", json={"study": f"dicomweb:{study}/1.2"}),
        ):
            assert response.status_code == 400
            detail = response.json()["detail"]
            assert detail.startswith(f"cannot reach the DICOMweb server at {url} (")
            assert "\n" not in detail


def test_serve_refuses_to_start_on_a_server_it_cannot_reach(tmp_path, password, capsys):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/dicom-web"
        command = ["serve", "--data", str(tmp_path), "--port", str(_free_port())]
        assert main([*command, "--dicomweb", url, "--dicomweb-user", USER]) == 2
    err = capsys.readouterr().err
    assert f"cannot reach the DICOMweb server at {url} (Connection refused)" in err
    assert len(err.strip().splitlines()) == 1
