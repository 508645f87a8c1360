"""The HTTP API of ``seganypet serve`` (FastAPI's TestClient; a test-double network):
the token on every request, studies only from under --data, capped and checked uploads,
prompts, masks, statistics, save and download, and the journal replayed on reopening."""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from conftest import shared_path  # noqa: E402
from network_doubles import ThresholdNetwork  # noqa: E402
from seganypet.cli import EXIT_USER_ERROR, main  # noqa: E402
from seganypet.errors import InputError  # noqa: E402
from seganypet.server.app import STATIC_DIR as STATIC  # noqa: E402
from seganypet.server.app import create_app, default_work_dir  # noqa: E402
from seganypet.server.client import decode_labels, nifti_array  # noqa: E402
from seganypet.server.command import choose_token, is_loopback  # noqa: E402
from seganypet.server.journal import Journal  # noqa: E402
from seganypet.server.registry import label_map_rle  # noqa: E402

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
HOT = (slice(10, 20), slice(12, 22), slice(8, 16))  # the hot cube, SUV 8 on a background of 1


def server_double() -> ThresholdNetwork:
    return ThresholdNetwork(threshold=3.0, input_size=32, spacing_mm=3.0)


def _image_array() -> np.ndarray:
    array = np.ones((32, 30, 24), np.float32)
    array[HOT] = 8.0
    return array


AFFINE = np.diag([3.0, 3.0, 3.0, 1.0])


def _nifti_gz_bytes() -> bytes:
    return gzip.compress(nib.Nifti1Image(_image_array(), AFFINE).to_bytes())


@pytest.fixture()
def data_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    (data / "patient1").mkdir(parents=True)
    (data / "patient1" / "pet.nii.gz").write_bytes(_nifti_gz_bytes())
    (tmp_path / "secret.nii.gz").write_bytes(_nifti_gz_bytes())
    return data


def _client(data: Path, **kwargs) -> TestClient:
    app = create_app(data, server_double(), TOKEN, **kwargs)
    return TestClient(app, headers=AUTH)


def _open(client: TestClient, study: str = "patient1/pet.nii.gz") -> dict:
    response = client.post("/api/sessions", json={"study": study})
    assert response.status_code == 200, response.text
    return response.json()


def _labels(client: TestClient, sid: str) -> np.ndarray:
    response = client.get(f"/api/sessions/{sid}/mask", params={"format": "rle"})
    assert response.status_code == 200, response.text
    payload = response.json()
    return decode_labels(payload["runs"], payload["shape"])


# ---- safety --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/api/health", "/api/studies", "/api/openapi.json"])
def test_every_request_needs_the_token(data_dir: Path, path: str) -> None:
    app = create_app(data_dir, server_double(), TOKEN)
    bare = TestClient(app)
    assert bare.get(path).status_code == 401
    assert bare.get(path, headers={"Authorization": "Bearer wrong-token-xyz"}).status_code == 401
    assert bare.get(path, params={"token": TOKEN[:-1]}).status_code == 401
    assert bare.get(path, headers=AUTH).status_code == 200
    assert bare.get(path, params={"token": TOKEN}).status_code == 200
    assert bare.post("/api/sessions", json={"study": "patient1/pet.nii.gz"}).status_code == 401


def test_short_tokens_and_open_binds_without_a_token_are_refused() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")
    assert len(choose_token("127.0.0.1", "auto")) >= 32
    assert choose_token("127.0.0.1", "auto") != choose_token("127.0.0.1", "auto")
    with pytest.raises(InputError, match="explicit --token"):
        choose_token("0.0.0.0", "auto")
    assert choose_token("0.0.0.0", "a-shared-secret") == "a-shared-secret"
    with pytest.raises(InputError, match="at least 8"):
        choose_token("127.0.0.1", "short")


def test_serve_command_refuses_a_public_address_without_a_token(tmp_path: Path, capsys) -> None:
    assert main(["serve", "--host", "0.0.0.0", "--data", str(tmp_path)]) == EXIT_USER_ERROR
    assert "explicit --token" in capsys.readouterr().err


def test_only_studies_under_data_are_served(data_dir: Path, tmp_path: Path) -> None:
    client = _client(data_dir)
    (data_dir / "link.nii.gz").symlink_to(tmp_path / "secret.nii.gz")
    (data_dir / "linkdir").symlink_to(tmp_path, target_is_directory=True)
    (data_dir / "series").mkdir()
    (data_dir / "series" / "x.dcm").symlink_to(tmp_path / "secret.nii.gz")
    for study in [
        "../secret.nii.gz",
        "patient1/../../secret.nii.gz",
        str(tmp_path / "secret.nii.gz"),
        "/etc/passwd",
        "link.nii.gz",
        "linkdir/secret.nii.gz",
        "series",
        "missing.nii.gz",
        ".seganypet",
    ]:
        response = client.post("/api/sessions", json={"study": study})
        assert response.status_code == 400, (study, response.text)
    listed = [s["path"] for s in client.get("/api/studies").json()]
    assert listed == ["patient1/pet.nii.gz"]


def test_uploads_are_capped_and_only_nifti_or_zip(data_dir: Path, tmp_path: Path) -> None:
    client = _client(data_dir, work_dir=tmp_path / "work", max_upload_bytes=20_000)
    upload = "/api/sessions/upload"
    payload = _nifti_gz_bytes()
    assert len(payload) < 20_000
    response = client.post(upload, params={"filename": "scan.nii.gz"}, content=payload)
    assert response.status_code == 200, response.text
    assert response.json()["shape"] == [32, 30, 24]

    big = os.urandom(30_000)
    assert client.post(upload, params={"filename": "b.nii"}, content=big).status_code == 413

    def chunks():  # no Content-Length: the stream is counted as it arrives
        for _ in range(30):
            yield b"\x1f\x8b" + b"\0" * 998

    assert client.post(upload, params={"filename": "c.nii.gz"}, content=chunks()).status_code == 413

    pickled = pickle.dumps({"weights": [1, 2, 3]})
    for name in ("model.pkl", "model.pth", "model.pt", "x.npy"):
        assert client.post(upload, params={"filename": name}, content=pickled).status_code == 400
    response = client.post(upload, params={"filename": "disguised.nii.gz"}, content=pickled)
    assert response.status_code == 400 and "not a gzipped NIfTI" in response.json()["detail"]

    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../../escape.dcm", b"x")
    response = client.post(upload, params={"filename": "s.zip"}, content=archive.getvalue())
    assert response.status_code == 400 and "unsafe path" in response.json()["detail"]
    assert (
        not (tmp_path / "escape.dcm").exists() and not (tmp_path / "work" / "escape.dcm").exists()
    )

    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.dcm", b"\0" * 200_000)
    assert len(bomb.getvalue()) < 20_000
    response = client.post(upload, params={"filename": "s.zip"}, content=bomb.getvalue())
    assert response.status_code == 413


# ---- the session ---------------------------------------------------------------------------


def test_prompts_objects_masks_and_stats(data_dir: Path) -> None:
    client = _client(data_dir)
    info = _open(client)
    sid = info["session_id"]
    assert info["shape"] == [32, 30, 24] and info["objects"][0]["name"] == "object 1"

    response = client.post(
        f"/api/sessions/{sid}/prompts", json={"point": [5, 5, 5], "positive": False}
    )
    assert response.status_code == 400 and "positive" in response.json()["detail"]
    response = client.post(f"/api/sessions/{sid}/prompts", json={"point": [99, 5, 5]})
    assert response.status_code == 400 and "outside the image" in response.json()["detail"]
    response = client.post(f"/api/sessions/{sid}/prompts", json={"point": [1, 2]})
    assert response.status_code == 400 and "3 numbers" in response.json()["detail"]
    response = client.post(f"/api/sessions/{sid}/prompts", json={"voxel": [1, 2, 3]})
    assert response.status_code == 400 and "exactly one of" in response.json()["detail"]

    info = client.post(f"/api/sessions/{sid}/prompts", json={"point": [15, 17, 12]}).json()
    hot = np.zeros((32, 30, 24), bool)
    hot[HOT] = True
    labels = _labels(client, sid)
    assert labels.dtype == np.uint16 and labels.shape == (32, 30, 24)
    dice = 2 * ((labels == 1) & hot).sum() / ((labels == 1).sum() + hot.sum())
    assert dice > 0.8
    assert info["objects"][0]["voxels"] == int((labels == 1).sum())
    assert info["can_undo"]
    (prompt,) = info["objects"][0]["prompt_list"]  # what the viewer marks on the slices
    assert prompt == {"point": [15, 17, 12], "positive": True}

    nifti = client.get(f"/api/sessions/{sid}/mask", params={"format": "nifti"})
    assert nifti.headers["content-type"] == "application/gzip"
    np.testing.assert_array_equal(nifti_array(nifti.content), labels)
    image = nifti_array(client.get(f"/api/sessions/{sid}/image").content)
    np.testing.assert_array_equal(image, _image_array())

    stats = client.get(f"/api/sessions/{sid}/stats").json()
    (row,) = stats["labels"]
    assert row["name"] == "object 1"
    assert row["suv_max"] == pytest.approx(8.0)
    assert set(row) >= {"suv_max", "suv_peak", "suv_mean", "mtv_ml", "tlg"}

    info = client.post(f"/api/sessions/{sid}/objects", json={"name": "liver"}).json()
    assert info["current"] == 1 and info["objects"][1]["name"] == "liver"
    info = client.post(f"/api/sessions/{sid}/prompts", json={"box": [8, 10, 6, 22, 24, 18]}).json()
    assert info["objects"][1]["voxels"] > 0
    (box,) = info["objects"][1]["prompt_list"]
    assert box == {"box": [8, 10, 6, 22, 24, 18]}
    info = client.patch(f"/api/sessions/{sid}/objects/1", json={"name": "lesion"}).json()
    assert info["objects"][1]["name"] == "lesion"
    info = client.post(f"/api/sessions/{sid}/reset").json()
    assert info["objects"][1]["voxels"] == 0 and info["objects"][1]["prompts"] == 0
    info = client.post(f"/api/sessions/{sid}/undo").json()
    assert info["objects"][1]["prompts"] == 1
    info = client.post(f"/api/sessions/{sid}/objects/0/select").json()
    assert info["current"] == 0
    assert client.post(f"/api/sessions/{sid}/objects/7/select").status_code == 400
    assert client.get("/api/sessions/0123456789abcdef").status_code == 404

    schema = client.get("/api/openapi.json").json()
    assert {"/api/sessions", "/api/sessions/upload", "/api/sessions/{session_id}/prompts"} <= set(
        schema["paths"]
    )


def _patched(labels: np.ndarray, change: dict | None) -> np.ndarray:
    """``labels`` with a response's change written in, as the viewer does."""
    labels = labels.copy()
    if change is not None:
        box = tuple(slice(a, b + 1) for a, b in zip(change["lo"], change["hi"], strict=True))
        shape = tuple(b - a + 1 for a, b in zip(change["lo"], change["hi"], strict=True))
        labels[box] = decode_labels(change["runs"], shape)
    return labels


def test_one_request_per_prompt_carries_the_changed_labels_and_the_statistics(
    data_dir: Path,
) -> None:
    client = _client(data_dir)
    sid = _open(client)["session_id"]
    shown = _labels(client, sid)
    steps = [
        ("post", "/prompts", {"point": [15, 17, 12]}),
        ("post", "/prompts", {"point": [11, 13, 9], "positive": False}),
        ("post", "/objects", {"name": "second"}),
        ("post", "/prompts", {"box": [8, 10, 6, 22, 24, 18]}),
        ("post", "/prompts", {"scribble": [[12, 14, 10], [17, 19, 10]], "positive": True}),
        ("post", "/undo", None),
        ("post", "/reset", None),
        ("post", "/undo", None),
        ("post", "/objects/0/select", None),
        ("patch", "/objects/0", {"name": "lesion"}),
    ]
    changes = 0
    for method, path, body in steps:
        response = getattr(client, method)(f"/api/sessions/{sid}{path}", json=body)
        assert response.status_code == 200, response.text
        info = response.json()
        shown = _patched(shown, info["change"])
        truth = _labels(client, sid)
        np.testing.assert_array_equal(shown, truth)  # the answer alone keeps the viewer right
        changes += info["change"] is not None
        if info["change"] is not None:
            lo, hi = info["change"]["extent"]
            where = np.argwhere(truth > 0)
            assert lo == where.min(0).tolist() and hi == where.max(0).tolist()
        assert info["stats"] == client.get(f"/api/sessions/{sid}/stats").json()
        if body and "scribble" in body:  # the prompt reads back in its one JSON form
            assert info["objects"][1]["prompt_list"][-1] == body
    assert changes >= 5
    assert info["objects"][0]["name"] == "lesion"
    assert info["objects"][1]["prompt_list"] == [{"box": [8, 10, 6, 22, 24, 18]}]


def test_a_lasso_over_http_segments_the_region_it_encloses(data_dir: Path) -> None:
    client = _client(data_dir)
    sid = _open(client)["session_id"]
    outline = [[12, 14, 11], [17, 14, 11], [17, 19, 11], [12, 19, 11]]
    info = client.post(f"/api/sessions/{sid}/prompts", json={"lasso": outline}).json()
    labels = _labels(client, sid)
    assert labels[12:18, 14:20, 11].all() and info["objects"][0]["voxels"] > 0
    off_slice = [[12, 14, 11], [17, 14, 12], [17, 19, 11]]
    response = client.post(f"/api/sessions/{sid}/prompts", json={"lasso": off_slice})
    assert response.status_code == 400 and "one slice" in response.json()["detail"]


def test_a_study_let_go_of_reopens_from_its_journal(data_dir: Path) -> None:
    (data_dir / "patient2.nii.gz").write_bytes(_nifti_gz_bytes())
    client = _client(data_dir, max_open_studies=1)
    first = _open(client)["session_id"]
    client.post(f"/api/sessions/{first}/prompts", json={"point": [15, 17, 12]})
    before = client.get(f"/api/sessions/{first}").json()
    labels = _labels(client, first)
    second = _open(client, "patient2.nii.gz")["session_id"]
    assert client.get("/api/health").json()["open_sessions"] == 1
    again = client.get(f"/api/sessions/{first}").json()  # let go of, then reopened
    assert again["replayed"] == 1 and again["objects"] == before["objects"]
    np.testing.assert_array_equal(_labels(client, first), labels)
    assert client.get("/api/health").json()["open_sessions"] == 1
    assert client.get(f"/api/sessions/{second}").json()["objects"][0]["prompts"] == 0


def test_a_journal_of_version_1_replays(data_dir: Path) -> None:
    sid = _open(_client(data_dir))["session_id"]
    journal = default_work_dir(data_dir.resolve()) / "journals" / f"{sid}.jsonl"
    header = journal.read_text().splitlines()[0]
    old = [
        {"op": "point", "voxel": [15, 17, 12], "positive": True},
        {"op": "new_object", "name": "boxed"},
        {"op": "box", "lo": [8, 10, 6], "hi": [22, 24, 18]},
    ]
    journal.write_text("\n".join([header, *map(json.dumps, old)]) + "\n")
    info = _open(_client(data_dir))
    assert info["replayed"] == 3
    assert [o["prompt_list"] for o in info["objects"]] == [
        [{"point": [15, 17, 12], "positive": True}],
        [{"box": [8, 10, 6, 22, 24, 18]}],
    ]


def test_a_study_stored_the_other_way_round_stays_on_its_own_grid(tmp_path: Path) -> None:
    """Voxels, masks, statistics and saved files are on the study's grid, never on the session's
    RAS working copy (a DICOM series, stored LPS, is the usual case)."""
    data = tmp_path / "data"
    data.mkdir()
    array = np.ascontiguousarray(_image_array()[::-1, ::-1])  # the same body, x and y reversed
    affine = AFFINE.copy()
    for axis in (0, 1):
        affine[:3, 3] += affine[:3, axis] * (array.shape[axis] - 1)
        affine[:3, axis] *= -1
    (data / "lps.nii.gz").write_bytes(gzip.compress(nib.Nifti1Image(array, affine).to_bytes()))
    client = _client(data)
    info = _open(client, "lps.nii.gz")
    sid = info["session_id"]
    np.testing.assert_allclose(info["affine"], affine)
    hot = np.zeros(array.shape, bool)
    hot[::-1, ::-1][HOT] = True
    centre = np.argwhere(hot).mean(0).round().tolist()
    client.post(f"/api/sessions/{sid}/prompts", json={"point": centre})
    labels = _labels(client, sid)
    assert 2 * (labels.astype(bool) & hot).sum() / (labels.astype(bool).sum() + hot.sum()) > 0.8

    served = nib.Nifti1Image.from_bytes(
        gzip.decompress(client.get(f"/api/sessions/{sid}/image").content)
    )
    np.testing.assert_array_equal(np.asarray(served.dataobj), array)
    np.testing.assert_allclose(served.affine, affine)
    mask = nib.Nifti1Image.from_bytes(
        gzip.decompress(client.get(f"/api/sessions/{sid}/mask", params={"format": "nifti"}).content)
    )
    np.testing.assert_allclose(mask.affine, affine)
    np.testing.assert_array_equal(np.asarray(mask.dataobj), labels)
    (row,) = client.get(f"/api/sessions/{sid}/stats").json()["labels"]
    assert row["suv_max"] == pytest.approx(8.0) and row["voxels"] == int(labels.sum())
    assert row["suv_mean"] == pytest.approx(array[labels > 0].mean(), rel=1e-5)
    saved = nib.load(client.post(f"/api/sessions/{sid}/save").json()["path"])
    np.testing.assert_allclose(saved.affine, affine)
    np.testing.assert_array_equal(np.asarray(saved.dataobj), labels)


def test_save_and_download_a_nifti_label_map(data_dir: Path) -> None:
    client = _client(data_dir)
    sid = _open(client)["session_id"]
    assert client.post(f"/api/sessions/{sid}/save").status_code == 400  # nothing yet
    client.post(f"/api/sessions/{sid}/prompts", json={"point": [15, 17, 12]})
    response = client.post(f"/api/sessions/{sid}/save", json={})
    assert response.status_code == 200, response.text
    saved = response.json()
    assert saved["format"] == "nifti" and saved["file"] == "patient1_pet_seg.nii.gz"
    assert Path(saved["path"]).is_file()
    download = client.get(saved["download"])
    assert download.status_code == 200
    np.testing.assert_array_equal(nifti_array(download.content), _labels(client, sid))
    response = client.post(f"/api/sessions/{sid}/save", json={"format": "dicom-seg"})
    assert response.status_code == 400 and "DICOM input" in response.json()["detail"]
    assert client.get(f"/api/sessions/{sid}/saved/..%2F..%2Fjournals").status_code == 404


def test_dicom_upload_saves_a_dicom_seg(tmp_path: Path) -> None:
    series = shared_path("data", "sts_crops_dicom_gml", "STS_001", "image")
    data = tmp_path / "data"
    data.mkdir()
    client = _client(data)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        for file in sorted(series.rglob("*")):
            if file.is_file():
                zf.write(file, f"series/{file.name}")
    response = client.post(
        "/api/sessions/upload", params={"filename": "sts001.zip"}, content=archive.getvalue()
    )
    assert response.status_code == 200, response.text
    info = response.json()
    assert info["dicom"]
    sid = info["session_id"]
    shape = info["shape"]
    array = nifti_array(client.get(f"/api/sessions/{sid}/image").content)
    hottest = np.unravel_index(np.argmax(array), array.shape)
    client.post(f"/api/sessions/{sid}/prompts", json={"point": [float(v) for v in hottest]})
    saved = client.post(f"/api/sessions/{sid}/save").json()
    assert saved["format"] == "dicom-seg" and saved["file"] == "sts001_seg.dcm"
    import pydicom

    seg = pydicom.dcmread(io.BytesIO(client.get(saved["download"]).content))
    assert seg.Modality == "SEG" and seg.SegmentSequence[0].SegmentLabel == "object 1"
    assert list(shape) == list(array.shape)


# ---- the journal ---------------------------------------------------------------------------


def test_reopening_replays_the_journal(data_dir: Path) -> None:
    client = _client(data_dir)
    sid = _open(client)["session_id"]
    client.post(f"/api/sessions/{sid}/prompts", json={"point": [5, 5, 5], "positive": False})
    client.post(f"/api/sessions/{sid}/prompts", json={"point": [15, 17, 12]})
    client.post(f"/api/sessions/{sid}/prompts", json={"point": [11, 13, 9], "positive": False})
    client.post(f"/api/sessions/{sid}/objects", json={"name": "second"})
    client.post(f"/api/sessions/{sid}/prompts", json={"box": [8, 10, 6, 22, 24, 18]})
    client.post(f"/api/sessions/{sid}/undo")
    client.post(f"/api/sessions/{sid}/prompts", json={"point": [12, 14, 10]})
    before = client.get(f"/api/sessions/{sid}").json()
    labels = _labels(client, sid)
    assert before["objects"][0]["voxels"] > 0 and (labels == 2).any()

    journal = default_work_dir(data_dir.resolve()) / "journals" / f"{sid}.jsonl"
    lines = journal.read_text().splitlines()
    assert json.loads(lines[0])["op"] == "open" and len(lines) == 8
    with open(journal, "ab") as handle:  # a crash in the middle of an append
        handle.write(b'{"op":"point","voxel":[1,')

    again = _client(data_dir)  # a new server process on the same work folder
    after = _open(again)
    assert after["replayed"] == 7
    for key in ("objects", "current", "can_undo"):
        assert after[key] == before[key]
    np.testing.assert_array_equal(_labels(again, sid), labels)
    assert journal.read_bytes().endswith(b"\n"), "the torn line is cut off"
    again.post(f"/api/sessions/{sid}/undo")
    assert len(journal.read_text().splitlines()) == 9


def test_a_changed_image_sets_the_old_journal_aside(data_dir: Path) -> None:
    client = _client(data_dir)
    sid = _open(client)["session_id"]
    client.post(f"/api/sessions/{sid}/prompts", json={"point": [15, 17, 12]})
    bigger = np.ones((40, 30, 24), np.float32)
    bigger[10:20, 10:20, 8:16] = 6.0
    nib.save(nib.Nifti1Image(bigger, AFFINE), data_dir / "patient1" / "pet.nii.gz")
    info = _open(_client(data_dir))
    assert info["replayed"] == 0 and info["objects"][0]["prompts"] == 0
    kept = list((default_work_dir(data_dir.resolve()) / "journals").glob(f"{sid}.stale-*.jsonl"))
    assert len(kept) == 1 and '"op":"prompt"' in kept[0].read_text()


def test_journal_and_rle_round_trip(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.jsonl")
    assert journal.read() == (None, [])
    journal.start({"study": "x"})
    journal.append({"op": "undo"})
    header, ops = journal.read()
    assert header["study"] == "x" and [op["op"] for op in ops] == ["undo"]
    labels = np.zeros((5, 4, 3), np.uint16)
    labels[1:3, 2, 1] = 2
    labels[4, 3, 2] = 1
    payload = label_map_rle(labels)
    assert sum(payload["runs"][1::2]) == labels.size
    np.testing.assert_array_equal(decode_labels(payload["runs"], payload["shape"]), labels)


# ---- the viewer page -----------------------------------------------------------------------


def test_viewer_page_and_vendored_niivue_are_served_with_the_token(data_dir: Path) -> None:
    import hashlib

    app = create_app(data_dir, server_double(), TOKEN)
    bare = TestClient(app)
    assert bare.get("/static/app.js").status_code == 401
    assert bare.get("/static/niivue/index.js").status_code == 401
    page = bare.get("/", params={"token": TOKEN})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert f"/static/niivue/index.js?token={TOKEN}" in page.text
    assert f"/static/app.js?token={TOKEN}" in page.text
    assert "__TOKEN" not in page.text
    assert "http://" not in page.text and "https://" not in page.text, "no CDN"
    script = bare.get("/static/app.js", params={"token": TOKEN})
    assert script.status_code == 200 and script.headers["content-type"].startswith(
        "text/javascript"
    )
    assert "https://" not in script.text
    bundle = bare.get("/static/niivue/index.js", params={"token": TOKEN})
    assert bundle.headers["content-type"].startswith("text/javascript")
    provenance = json.loads((STATIC / "niivue" / "niivue.json").read_text())
    assert hashlib.sha256(bundle.content).hexdigest() == provenance["sha256"]
    assert "BSD 2-Clause" in (STATIC / "niivue" / "LICENSE").read_text()
    for path in ["/static/../app.py", "/static/%2e%2e/app.py", "/static/niivue/LICENSE"]:
        assert bare.get(path, params={"token": TOKEN}).status_code == 404, path


# ---- the study list, the header, references and the liver VOI (issue #12, the viewer) ------


def _write_nifti(path: Path, array: np.ndarray, affine: np.ndarray = AFFINE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(nib.Nifti1Image(array, affine).to_bytes()))


def _hot_mask() -> np.ndarray:
    mask = np.zeros((32, 30, 24), np.uint8)
    mask[HOT] = 1
    return mask


def test_the_study_list_shows_images_with_their_masks_attached(
    data_dir: Path, tmp_path: Path
) -> None:
    """Label maps (integer data, mostly 0, few labels, even stored as floats) are attached to
    the image on their grid beside them, never listed as studies nor opened as images."""
    _write_nifti(data_dir / "patient1" / "pet_mask.nii.gz", _hot_mask())
    _write_nifti(data_dir / "patient1" / "gtv.nii.gz", _hot_mask().astype(np.float32))
    elsewhere = np.zeros((8, 8, 8), np.uint8)
    elsewhere[2:4, 2:4, 2:4] = 1  # a mask on a grid no image has
    _write_nifti(data_dir / "patient1" / "elsewhere_mask.nii.gz", elsewhere)
    # a flat folder: each mask goes to the image whose name it shares
    _write_nifti(data_dir / "flat" / "caseA_pet.nii.gz", _image_array())
    _write_nifti(data_dir / "flat" / "caseB_pet.nii.gz", _image_array() * 2)
    _write_nifti(data_dir / "flat" / "caseA_seg.nii.gz", _hot_mask() * 3)
    # image/ and labels/ folders side by side
    _write_nifti(data_dir / "split" / "image" / "pet.nii.gz", _image_array())
    _write_nifti(data_dir / "split" / "labels" / "lesions.nii.gz", _hot_mask())
    client = _client(data_dir, work_dir=tmp_path / "work")
    listed = {study["path"]: study for study in client.get("/api/studies").json()}
    assert set(listed) == {
        "patient1/pet.nii.gz",
        "flat/caseA_pet.nii.gz",
        "flat/caseB_pet.nii.gz",
        "split/image/pet.nii.gz",
    }
    assert {study["kind"] for study in listed.values()} == {"nifti"}
    attached = {path: [a["path"] for a in s["attachments"]] for path, s in listed.items()}
    assert attached == {
        "patient1/pet.nii.gz": ["patient1/gtv.nii.gz", "patient1/pet_mask.nii.gz"],
        "flat/caseA_pet.nii.gz": ["flat/caseA_seg.nii.gz"],
        "flat/caseB_pet.nii.gz": [],
        "split/image/pet.nii.gz": ["split/labels/lesions.nii.gz"],
    }
    assert {a["kind"] for s in listed.values() for a in s["attachments"]} == {"labels"}

    for mask in ("patient1/pet_mask.nii.gz", "patient1/gtv.nii.gz", "flat/caseA_seg.nii.gz"):
        response = client.post("/api/sessions", json={"study": mask})
        assert response.status_code == 400, response.text
        assert response.json()["detail"] == (
            f"{mask!r} is a label map (a mask), not a PET image; open the image it belongs to, "
            "where it is listed as a reference"
        )
    response = client.post(
        "/api/sessions/upload",
        params={"filename": "mask.nii.gz"},
        content=(data_dir / "patient1" / "pet_mask.nii.gz").read_bytes(),
    )
    assert response.status_code == 400 and "label map" in response.json()["detail"]
    assert client.get("/api/health").json()["open_sessions"] == 0


def test_dicom_masks_attach_to_their_series_and_load_as_references(tmp_path: Path) -> None:
    """An RTSTRUCT and a SEG beside a PET series are listed under it (not as studies), load onto
    its grid as references, and the answer gives the Dice with the current object; the study
    header shows what the DICOM headers record."""
    import pydicom

    from seganypet.io import load_image
    from seganypet.io.masks import load_mask, save_mask

    case = shared_path("data", "sts_crops_dicom_gml", "STS_001")
    data = tmp_path / "data"
    shutil.copytree(case / "image", data / "STS_001" / "image")
    shutil.copytree(case / "mask", data / "STS_001" / "mask")
    image = load_image(case / "image")
    truth, names = load_mask(case / "mask" / "RS.dcm", image)
    save_mask(truth, names, image, data / "STS_001" / "seg" / "gtv_seg.dcm", format="dicom-seg")
    client = _client(data, work_dir=tmp_path / "work")
    (study,) = client.get("/api/studies").json()
    assert study["path"] == "STS_001/image" and study["kind"] == "dicom"
    assert study["attachments"] == [
        {"path": "STS_001/mask/RS.dcm", "kind": "rtstruct"},
        {"path": "STS_001/seg/gtv_seg.dcm", "kind": "seg"},
    ]
    for mask in ("STS_001/mask/RS.dcm", "STS_001/seg/gtv_seg.dcm"):
        response = client.post("/api/sessions", json={"study": mask})
        assert response.status_code == 400 and "not a PET image" in response.json()["detail"]

    info = _open(client, "STS_001/image")
    sid = info["session_id"]
    first = pydicom.dcmread(sorted((case / "image").iterdir())[0], stop_before_pixels=True)
    drug = first.RadiopharmaceuticalInformationSequence[0]
    header = info["header"]
    assert header["format"] == "dicom"
    assert header["patient_id"] == first.PatientID
    assert header["patient_name"] == str(first.PatientName)
    assert (
        header["study_date"]
        == f"{first.StudyDate[:4]}-{first.StudyDate[4:6]}-{first.StudyDate[6:]}"
    )
    assert header["tracer"] == drug.Radiopharmaceutical
    assert header["radionuclide"] == drug.RadionuclideCodeSequence[0].CodeMeaning
    assert header["weight_kg"] == pytest.approx(float(first.PatientWeight))
    assert header["height_m"] == pytest.approx(float(first.PatientSize))
    assert header["injected_dose_mbq"] == pytest.approx(float(drug.RadionuclideTotalDose) / 1e6)
    assert header["suv_type"] == "SUVbw" and header["source_units"] == first.Units == "GML"
    assert header["suv_factor"] == 1.0

    array = nifti_array(client.get(f"/api/sessions/{sid}/image").content)
    inner = array[8:-8, 8:-8, 8:-8]
    hottest = np.add(np.unravel_index(np.argmax(inner), inner.shape), 8)
    client.post(f"/api/sessions/{sid}/prompts", json={"point": hottest.tolist()})
    clicked = _labels(client, sid) == 1
    for path, kind in (("STS_001/mask/RS.dcm", "rtstruct"), ("STS_001/seg/gtv_seg.dcm", "seg")):
        response = client.post(f"/api/sessions/{sid}/reference", json={"path": path})
        assert response.status_code == 200, response.text
        reference = response.json()["reference"]
        assert reference["source"] == path and reference["kind"] == kind
        (row,) = reference["labels"]
        assert row["name"] == names[1] and row["voxels"] == int(truth.astype(bool).sum())
        expected = 2 * (clicked & (truth > 0)).sum() / (clicked.sum() + (truth > 0).sum())
        assert row["dice"] == pytest.approx(expected) and reference["dice_all"] == row["dice"]
        payload = client.get(f"/api/sessions/{sid}/reference").json()
        np.testing.assert_array_equal(decode_labels(payload["runs"], payload["shape"]), truth)
        assert payload["names"] == {"1": names[1]}

    # the liver VOI is in SUL: the headers record weight, height and sex
    from seganypet.quant import liver_reference

    corner = [4, 4, 4]  # a VOI away from the tumour; the values only have to agree
    liver = client.post(f"/api/sessions/{sid}/liver", json={"voxel": corner}).json()["liver"]
    expected = liver_reference(image, corner)
    assert liver["units"] == expected.units == "SUL" and liver["sul_per_unit"] < 1
    assert liver["mean"] == pytest.approx(expected.mean) and liver["sd"] == pytest.approx(
        expected.sd
    )


def test_a_reference_label_map_gives_the_dice_of_the_current_object(
    data_dir: Path, tmp_path: Path
) -> None:
    _write_nifti(data_dir / "patient1" / "pet_mask.nii.gz", _hot_mask())
    work = tmp_path / "work"
    client = _client(data_dir, work_dir=work)
    sid = _open(client)["session_id"]
    assert _open(client)["reference"] is None
    info = client.post(
        f"/api/sessions/{sid}/reference", json={"path": "patient1/pet_mask.nii.gz"}
    ).json()
    (row,) = info["reference"]["labels"]
    assert row == {"label": 1, "name": "label_1", "voxels": 800, "dice": 0.0}  # nothing yet
    assert info["reference"]["object"] == 0

    info = client.post(f"/api/sessions/{sid}/prompts", json={"point": [15, 17, 12]}).json()
    labels = _labels(client, sid)
    hot = _hot_mask().astype(bool)
    expected = 2 * ((labels == 1) & hot).sum() / ((labels == 1).sum() + hot.sum())
    assert info["reference"]["labels"][0]["dice"] == pytest.approx(expected)
    info = client.post(f"/api/sessions/{sid}/objects", json={"name": "empty"}).json()
    assert info["reference"]["object"] == 1 and info["reference"]["dice_all"] == 0.0

    # the reference is kept with the session: a new server replays it from the journal
    again = _client(data_dir, work_dir=work)
    info = _open(again)
    assert info["reference"]["source"] == "patient1/pet_mask.nii.gz"
    assert info["reference"]["dice_all"] == 0.0  # the current object is still the empty one

    # one uploaded instead, then none
    upload = f"/api/sessions/{sid}/reference/upload"
    response = again.post(
        upload,
        params={"filename": "drawn.nii.gz"},
        content=(data_dir / "patient1" / "pet_mask.nii.gz").read_bytes(),
    )
    assert response.status_code == 200, response.text
    assert response.json()["reference"]["source"] == "drawn.nii.gz"
    assert again.delete(f"/api/sessions/{sid}/reference").json()["reference"] is None
    assert again.get(f"/api/sessions/{sid}/reference").status_code == 404

    # refusals, each one line with a 4xx status
    refused = [
        again.post(f"/api/sessions/{sid}/reference", json={"path": "patient1/pet.nii.gz"}),
        again.post(f"/api/sessions/{sid}/reference", json={"path": "../secret.nii.gz"}),
        again.post(upload, params={"filename": "x.txt"}, content=b"hello"),
        again.post(upload, params={"filename": "x.dcm"}, content=b"not DICOM at all"),
    ]
    for response in refused:
        assert response.status_code == 400, response.text
        assert "\n" not in response.json()["detail"]
    assert refused[0].json()["detail"] == (
        "'patient1/pet.nii.gz' is not a label map, an RTSTRUCT or a DICOM SEG, so it cannot be a "
        "reference"
    )
    assert "not a DICOM file" in refused[3].json()["detail"]


def test_the_liver_reference_and_the_percist_baseline_are_kept_with_the_session(
    data_dir: Path, tmp_path: Path
) -> None:
    from seganypet.io import load_image
    from seganypet.quant import lesions_above, liver_reference, quantify

    work = tmp_path / "work"
    client = _client(data_dir, work_dir=work)
    info = _open(client)
    sid = info["session_id"]
    assert info["header"] == {
        "format": "nifti",
        "patient_id": None,
        "patient_name": None,
        "study_date": None,
        "tracer": None,
        "radionuclide": None,
        "weight_kg": None,
        "height_m": None,
        "sex": None,
        "injected_dose_mbq": None,
        "suv_type": "SUVbw",
        "suv_factor": None,
        "source_units": None,
    }
    response = client.post(f"/api/sessions/{sid}/percist")
    assert response.status_code == 400 and "liver reference first" in response.json()["detail"]
    assert client.post(f"/api/sessions/{sid}/liver", json={"voxel": [40, 1, 1]}).status_code == 400

    image = load_image(data_dir / "patient1" / "pet.nii.gz")
    expected = liver_reference(image, (26, 5, 18))  # beside the hot cube
    info = client.post(f"/api/sessions/{sid}/liver", json={"voxel": [26, 5, 18]}).json()
    assert info["liver"] == pytest.approx(expected.to_dict())
    assert info["liver"]["units"] == "SUVbw" and info["percist"] is None

    info = client.post(f"/api/sessions/{sid}/percist").json()
    assert info["percist"] == {
        "threshold": pytest.approx(expected.percist_threshold),
        "units": "SUVbw",
        "lesions_above": [],
    }
    info = client.post(f"/api/sessions/{sid}/prompts", json={"point": [15, 17, 12]}).json()
    report = quantify(image, _labels(client, sid))
    above = lesions_above(report.lesions, expected.percist_threshold)
    assert above and info["percist"]["lesions_above"] == [[1, 1]]

    again = _client(data_dir, work_dir=work)  # replayed from the journal
    info = _open(again)
    assert info["liver"] == pytest.approx(expected.to_dict())
    assert info["percist"]["lesions_above"] == [[1, 1]]
    assert again.delete(f"/api/sessions/{sid}/percist").json()["percist"] is None
