"""Every bad input gets one clear line and a non-zero exit (HTTP 4xx from the server): never a
traceback, a 500 or a silently wrong result.

Each case is tried where a user meets it: the reader, the command line and, for images, an
upload to the server.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from bad_inputs import AFFINE, DEGENERATE_GEOMETRY, huge, lesion_array, nifti_bytes
from conftest import shared_path
from seganypet.cli import EXIT_USER_ERROR, main
from seganypet.errors import InputError, plain
from seganypet.io import load_image
from seganypet.io.nifti import read_nifti_labels
from seganypet.segment import join_coordinate_arguments

HUGE = {
    f"nifti{version}{suffix}": (huge(version, gz=suffix == ".nii.gz"), suffix)
    for version in (1, 2)
    for suffix in (".nii", ".nii.gz")
}


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse refused the command line
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_clear_line(code: int, err: str, *fragments: str) -> str:
    assert code == EXIT_USER_ERROR, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err and "np.float" not in err and "np.int" not in err, err
    for fragment in fragments:
        assert fragment.lower() in lines[0].lower(), lines[0]
    return lines[0]


# ---- images that claim more than any machine holds -----------------------------------------


@pytest.mark.parametrize("name", sorted(HUGE))
def test_a_header_claiming_30000_cubed_voxels_is_refused_before_reading(name, tmp_path, capsys):
    data, suffix = HUGE[name]
    path = tmp_path / f"huge{suffix}"
    path.write_bytes(data)
    for read in (load_image, read_nifti_labels):
        with pytest.raises(InputError, match=r"30000×30000×30000 voxels, which need 216\.0 TB"):
            read(path)
    code, _, err = run_cli(capsys, "info", path)
    assert_one_clear_line(code, err, "30000×30000×30000", "TB of memory", "available")


def test_a_nifti_cut_short_says_it_is_truncated(tmp_path):
    data = nifti_bytes()
    (tmp_path / "cut.nii").write_bytes(data[: len(data) - 100])
    with pytest.raises(InputError, match="truncated: its 20×18×16 voxels of float32 need"):
        load_image(tmp_path / "cut.nii")
    (tmp_path / "header.nii").write_bytes(data[:200])
    with pytest.raises(InputError, match="cannot read this NIfTI header"):
        load_image(tmp_path / "header.nii")
    (tmp_path / "text.nii").write_text("not an image at all")
    with pytest.raises(InputError, match="not a NIfTI image"):
        load_image(tmp_path / "text.nii")


# ---- geometry that would make every volume wrong -------------------------------------------


@pytest.mark.parametrize("case", sorted(DEGENERATE_GEOMETRY))
def test_a_nifti_without_a_usable_voxel_size_or_affine_is_refused(case, tmp_path, capsys):
    path = tmp_path / "pet.nii"
    path.write_bytes(nifti_bytes(**DEGENERATE_GEOMETRY[case]))
    expected = "voxel size" if "pixdim" in case else "singular or not finite"
    with pytest.raises(InputError, match=expected):
        load_image(path)
    with pytest.raises(InputError, match=expected):
        read_nifti_labels(path)
    code, _, err = run_cli(capsys, "quantify", path, path)
    line = assert_one_clear_line(code, err, expected)
    if "pixdim" in case:
        assert re.search(r"\[[^\]]*(0|nan|inf)[^\]]*\] mm", line), line


def test_a_nifti_placed_by_its_voxel_size_alone_is_still_read(tmp_path):
    """No sform or qform but a good pixdim: nothing is wrong, the voxel size places it."""
    path = tmp_path / "pet.nii"
    path.write_bytes(nifti_bytes(forms=False))
    image = load_image(path)
    assert image.spacing == pytest.approx((4.0, 4.0, 3.0))
    np.testing.assert_array_equal(image.array, lesion_array())


# ---- an image with no uptake ---------------------------------------------------------------


@pytest.mark.parametrize("value", [0.0, 3.0])
def test_segment_refuses_an_image_without_uptake(value, tmp_path, capsys):
    path = tmp_path / "blank.nii.gz"
    path.write_bytes(nifti_bytes(np.full((20, 18, 16), value, np.float32), gz=True))
    out = tmp_path / "mask.nii.gz"
    code, _, err = run_cli(capsys, "segment", "-i", path, "-o", out, "--point", "10,9,8")
    assert_one_clear_line(code, err, "no uptake", f"every voxel is {plain(value)}")
    assert not out.exists()


# ---- prompts -------------------------------------------------------------------------------


def write_prompts(tmp_path: Path, prompts: list) -> Path:
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps({"objects": [{"name": "lesion", "prompts": prompts}]}))
    return path


@pytest.mark.parametrize(
    "bad, expected",
    [
        ({"point": [10, 9, 8], "positive": "false"}, 'got the string "false"'),
        ({"point": [10, 9, 8], "positive": 0}, "got the number 0"),
        ({"point": [10, 9, 8], "positive": None}, "got null"),
        ({"point": [10, 9, 8], "postive": False}, "unknown key 'postive'"),
        ({"point": ["10", 9, 8]}, "takes a list of 3 numbers"),
        ({"point": [10, 9]}, "takes a list of 3 numbers"),
        ({"box": [1, 2, 3, 4, 5]}, "takes a list of 6 numbers"),
        ({"point": [10, 9, 8], "box": [1, 2, 3, 4, 5, 6]}, "exactly one of"),
        ([10, 9, 8], "a prompt is"),
    ],
)
def test_a_prompt_file_is_checked_strictly_and_names_the_prompt(bad, expected, tmp_path, capsys):
    image = tmp_path / "pet.nii.gz"
    image.write_bytes(nifti_bytes(gz=True))
    prompts = write_prompts(tmp_path, [{"point": [10, 9, 8]}, bad])
    out = tmp_path / "mask.nii.gz"
    code, _, err = run_cli(capsys, "segment", "-i", image, "-o", out, "--prompts", prompts)
    assert_one_clear_line(code, err, "objects[0].prompts[1]", expected)
    assert not out.exists()


def test_a_negative_click_from_a_prompt_file_is_negative(tmp_path, capsys):
    from seganypet.prompts import Point, read_prompt_file

    click = {"point": [10, 9, 8]}
    prompts = write_prompts(tmp_path, [click, {"point": [12, 9, 8], "positive": False}])
    objects, mm = read_prompt_file(prompts)
    assert not mm and objects == [
        {"name": "lesion", "prompts": [Point((10.0, 9.0, 8.0)), Point((12.0, 9.0, 8.0), False)]}
    ]
    image = tmp_path / "pet.nii.gz"
    image.write_bytes(nifti_bytes(gz=True))
    out = tmp_path / "mask.nii.gz"
    code, _, err = run_cli(capsys, "segment", "-i", image, "-o", out, "--prompts", prompts)
    assert code == 0, err
    assert out.is_file()


@pytest.mark.parametrize(
    "argv, joined",
    [
        (["--point", "-44.5,-44.5,-789.7"], ["--point=-44.5,-44.5,-789.7"]),
        (["--point", "-44.5,", "-44.5,", "-789.7"], ["--point=-44.5,-44.5,-789.7"]),
        (["--point", "[-44.5,", "-44.5,", "-789.7]"], ["--point=[-44.5,-44.5,-789.7]"]),
        (["--point", "-4,5,6,neg", "--mm"], ["--point=-4,5,6,neg", "--mm"]),
        (["--box", "-1e2,-5,0,", "3,4,5"], ["--box=-1e2,-5,0,3,4,5"]),
        (["--point", "1,2,3", "--model", "x"], ["--point=1,2,3", "--model", "x"]),
        (["--point", "--mm"], ["--point", "--mm"]),
        (["--point", "-1,", "2,", "3,", "neg"], ["--point=-1,2,3,neg"]),
        (["--point", ".5,1,2"], ["--point=.5,1,2"]),
    ],
)
def test_coordinates_starting_with_a_minus_sign_stay_one_value(argv, joined):
    assert join_coordinate_arguments(["segment", *argv]) == ["segment", *joined]


def test_a_click_in_negative_millimetres_as_copied_from_quantify(tmp_path, capsys):
    """The SUVmax position that ``quantify --json`` prints, pasted after ``--point`` and
    ``--mm``, lands on that voxel."""
    affine = np.array(AFFINE)
    affine[:3, 3] = [-84.5, -80.5, -813.7]  # every world coordinate of the image is negative
    image = tmp_path / "pet.nii.gz"
    image.write_bytes(nifti_bytes(affine=affine, gz=True))
    mask = tmp_path / "truth.nii.gz"
    labels = (lesion_array() > 5).astype(np.uint8)
    mask.write_bytes(nifti_bytes(labels, affine, gz=True))
    code, out, err = run_cli(capsys, "quantify", image, mask, "--json")
    assert code == 0, err
    world = json.loads(out)["labels"][0]["suv_max_world_mm"]
    assert all(v < 0 for v in world)
    pasted = ", ".join(plain(v) for v in world).split(" ")  # as a shell splits '-44.5, -44.5, ...'
    segmented = tmp_path / "mask.nii.gz"
    argv = ["segment", "-i", image, "-o", segmented, "--mm", "--point", *pasted]
    code, _, err = run_cli(capsys, *argv)
    assert code == 0, err
    result, _ = read_nifti_labels(segmented)
    voxel = np.rint(np.linalg.solve(affine, [*world, 1.0])[:3]).astype(int)
    assert result[tuple(voxel)] == 1
    box = ",".join(plain(v) for v in (*np.subtract(world, 8), *np.add(world, 8)))
    code, _, err = run_cli(capsys, "segment", "-i", image, "-o", segmented, "--mm", "--box", box)
    assert code == 0, err


def test_error_texts_print_plain_numbers(tmp_path, capsys):
    image = tmp_path / "pet.nii.gz"
    image.write_bytes(nifti_bytes(gz=True))
    out = tmp_path / "mask.nii.gz"
    box = "4,4,4,4,9,9"
    code, _, err = run_cli(capsys, "segment", "-i", image, "-o", out, "--box", box)
    assert_one_clear_line(code, err, "the box (4, 4, 4)-(4, 9, 9) is empty")
    code, _, err = run_cli(capsys, "segment", "-i", image, "-o", out, "--point", "30,2,2")
    assert_one_clear_line(code, err, "(30, 2, 2) lies outside the image")
    assert plain(np.float64(10.0)) == "10" and plain([np.float32(0.5), np.nan]) == "[0.5, nan]"
    assert plain((np.int64(3), 2.25)) == "(3, 2.25)"


# ---- DICOM cut short -----------------------------------------------------------------------


@pytest.fixture()
def ctac_series(tmp_path) -> Path:
    folder = tmp_path / "series"
    folder.mkdir()
    source = shared_path("data", "suv", "delia_nsclc_r01_005", "PET_BODY_CTAC")
    for path in sorted(source.glob("1-*.dcm")):
        shutil.copy(path, folder / path.name)
    return folder


def test_a_dicom_slice_cut_inside_its_pixel_data_says_truncated(ctac_series, capsys):
    victim = sorted(ctac_series.glob("*.dcm"))[3]
    data = victim.read_bytes()
    assert pydicom.dcmread(victim).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    victim.write_bytes(data[:-1000])
    code, _, err = run_cli(capsys, "convert", ctac_series, "-o", ctac_series / "o.nii.gz")
    line = assert_one_clear_line(code, err, victim.name, "truncated", "31768 of the 32768 bytes")
    assert "pylibjpeg" not in line and "compress" not in line


def test_a_dicom_slice_cut_inside_its_header_says_truncated(ctac_series, capsys):
    victim = sorted(ctac_series.glob("*.dcm"))[0]
    pixel_bytes = len(pydicom.dcmread(victim).PixelData)
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) - pixel_bytes - 4])  # inside the pixel data's header
    code, _, err = run_cli(capsys, "info", ctac_series)
    assert_one_clear_line(code, err, victim.name, "truncated")


# ---- the server ----------------------------------------------------------------------------

TOKEN = "bad-inputs-token-0123"
SERVER_CASES = {
    **{f"huge-{name}": (data, suffix, "TB of memory") for name, (data, suffix) in HUGE.items()},
    **{
        case: (nifti_bytes(**settings), ".nii", "voxel size" if "pixdim" in case else "singular")
        for case, settings in DEGENERATE_GEOMETRY.items()
    },
    "no-uptake": (nifti_bytes(np.zeros((20, 18, 16), np.float32)), ".nii", "no uptake"),
    "truncated": (nifti_bytes()[:-300], ".nii", "truncated"),
}


@pytest.fixture()
def server(tmp_path):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from network_doubles import ThresholdNetwork
    from seganypet.server.app import create_app

    data, work = tmp_path / "data", tmp_path / "work"
    data.mkdir()
    network = ThresholdNetwork(threshold=3.0, input_size=32, spacing_mm=3.0)
    app = create_app(data, network, TOKEN, work_dir=work)
    client = TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"})
    return client, data, work


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def assert_private_paths_absent(text: str, *folders: Path) -> None:
    for folder in folders:
        assert str(folder) not in text and str(folder.resolve()) not in text, text
    assert "/uploads/" not in text and "/tmp" not in text, text


@pytest.mark.parametrize("case", sorted(SERVER_CASES))
def test_a_refused_upload_is_a_4xx_naming_the_upload_and_leaves_no_file(case, server):
    client, data, work = server
    content, suffix, expected = SERVER_CASES[case]
    response = client.post(
        "/api/sessions/upload", params={"filename": f"scan{suffix}"}, content=content
    )
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert expected in detail, detail
    if case != "no-uptake":  # the session's refusal, not the reader's, names no file
        assert detail.startswith(f"scan{suffix}: "), detail
    assert_private_paths_absent(response.text, data, work)
    assert files_under(work / "uploads") == []
    assert files_under(work / "journals") == []


def test_a_refused_zip_upload_names_its_member_and_leaves_no_file(server, ctac_series):
    import io
    import zipfile

    client, data, work = server
    victim = sorted(ctac_series.glob("*.dcm"))[2]
    victim.write_bytes(victim.read_bytes()[:-500])
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        for file in sorted(ctac_series.glob("*.dcm")):
            zf.write(file, f"study/{file.name}")
    response = client.post(
        "/api/sessions/upload", params={"filename": "study.zip"}, content=archive.getvalue()
    )
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert detail.startswith(f"study.zip/{victim.name}: truncated"), detail
    assert_private_paths_absent(response.text, data, work)
    assert files_under(work / "uploads") == []


def test_a_bad_study_in_the_data_folder_is_named_relative_to_it(server):
    client, data, work = server
    (data / "patient").mkdir()
    (data / "patient" / "pet.nii").write_bytes(huge())
    response = client.post("/api/sessions", json={"study": "patient/pet.nii"})
    assert response.status_code == 400, response.text
    assert response.json()["detail"].startswith("patient/pet.nii: the header claims")
    assert_private_paths_absent(response.text, data, work)


def test_a_point_sign_over_http_must_be_a_boolean(server):
    client, data, _work = server
    (data / "pet.nii").write_bytes(nifti_bytes())
    session = client.post("/api/sessions", json={"study": "pet.nii"}).json()["session_id"]
    url = f"/api/sessions/{session}/prompts"
    assert client.post(url, json={"point": [10, 9, 8]}).status_code == 200
    refused = client.post(url, json={"point": [12, 9, 8], "positive": "false"})
    assert refused.status_code == 400 and "positive" in refused.text
    info = client.post(url, json={"point": [12, 9, 8], "positive": False}).json()
    assert [p["positive"] for p in info["objects"][0]["prompt_list"]] == [True, False]


# ---- command-line options ------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["serve", "--port", "99999"], "a port is 1 to 65535"),
        (["serve", "--port", "http"], "expected a whole number"),
        (["segment", "-i", "x.nii", "-o", "y.nii", "--point", "1,2", "--threads", "1"], "--point"),
        (["segment", "-i", "x.nii", "-o", "y.nii", "--threads", "0"], "expected 1 or more"),
        (["bench", "--threads", "-2"], "expected 1 or more"),
        (["train", "--data", "d", "--out", "o", "--threads", "0"], "expected 1 or more"),
        (["no-such-command"], "invalid choice"),
    ],
)
def test_a_bad_option_is_one_line_not_the_whole_usage(argv, expected, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == EXIT_USER_ERROR
    assert_one_clear_line(EXIT_USER_ERROR, capsys.readouterr().err, expected, "--help")


def test_serve_on_a_port_in_use_is_one_line(tmp_path, capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = run_cli(capsys, "serve", "--data", tmp_path, "--port", port)
    assert_one_clear_line(code, err, f"cannot listen on 127.0.0.1 port {port}", "--port")
