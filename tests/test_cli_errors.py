"""Every bad input gets one clear line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pydicom
import pytest

from conftest import shared_path
from seganypet.cli import EXIT_USER_ERROR, main


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_clear_line(code: int, err: str, *fragments: str) -> None:
    assert code == EXIT_USER_ERROR
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment.lower() in lines[0].lower(), lines[0]


def copy_ctac_series(tmp_path, name="series"):
    folder = tmp_path / name
    folder.mkdir()
    source = shared_path("data", "suv", "delia_nsclc_r01_005", "PET_BODY_CTAC")
    for path in sorted(source.glob("1-*.dcm")):
        shutil.copy(path, folder / path.name)
    return folder


def edit_series(folder, **changes):
    for path in folder.glob("*.dcm"):
        ds = pydicom.dcmread(path)
        for keyword, value in changes.items():
            if value is None:
                delattr(ds, keyword)
            else:
                setattr(ds, keyword, value)
        ds.save_as(path)


def test_truncated_nifti(tmp_path, capsys):
    nib.save(
        nib.Nifti1Image(np.ones((30, 30, 30), np.float32), np.eye(4)), str(tmp_path / "a.nii.gz")
    )
    data = (tmp_path / "a.nii.gz").read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(data[: len(data) // 3])
    code, _, err = run_cli(capsys, "info", tmp_path / "cut.nii.gz")
    assert_one_clear_line(code, err, "truncated")


def test_nan_voxels(tmp_path, capsys):
    values = np.ones((4, 4, 4), np.float32)
    values[0, 0, 0] = np.nan
    nib.save(nib.Nifti1Image(values, np.eye(4)), str(tmp_path / "nan.nii.gz"))
    code, _, err = run_cli(capsys, "convert", tmp_path / "nan.nii.gz", "-o", tmp_path / "o.nii.gz")
    assert_one_clear_line(code, err, "NaN")
    assert not (tmp_path / "o.nii.gz").exists()


def test_empty_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(capsys, "info", tmp_path / "empty")
    assert_one_clear_line(code, err, "no DICOM")


def test_missing_input(tmp_path, capsys):
    code, _, err = run_cli(capsys, "info", tmp_path / "nope.nii.gz")
    assert_one_clear_line(code, err, "no such file")


def test_mask_on_another_grid(tmp_path, capsys):
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    nib.save(nib.Nifti1Image(np.ones((8, 8, 8), np.float32), affine), str(tmp_path / "pet.nii.gz"))
    nib.save(nib.Nifti1Image(np.ones((8, 8, 7), np.uint8), affine), str(tmp_path / "shape.nii.gz"))
    code, _, err = run_cli(capsys, "quantify", tmp_path / "pet.nii.gz", tmp_path / "shape.nii.gz")
    assert_one_clear_line(code, err, "grid")
    shifted = affine.copy()
    shifted[0, 3] = 5.0
    nib.save(nib.Nifti1Image(np.ones((8, 8, 8), np.uint8), shifted), str(tmp_path / "moved.nii.gz"))
    code, _, err = run_cli(capsys, "quantify", tmp_path / "pet.nii.gz", tmp_path / "moved.nii.gz")
    assert_one_clear_line(code, err, "grid")


def test_ct_series_given_as_pet(tmp_path, capsys):
    folder = copy_ctac_series(tmp_path)
    edit_series(folder, Modality="CT")
    code, _, err = run_cli(capsys, "convert", folder, "-o", tmp_path / "o.nii.gz")
    assert_one_clear_line(code, err, "CT", "not PET")


def test_two_pt_series(tmp_path, capsys):
    folder = copy_ctac_series(tmp_path)
    second = copy_ctac_series(folder, "second")
    edit_series(second, SeriesInstanceUID=pydicom.uid.generate_uid())
    code, _, err = run_cli(capsys, "convert", folder, "-o", tmp_path / "o.nii.gz")
    assert_one_clear_line(code, err, "--series")
    code, out, _ = run_cli(capsys, "info", folder)
    assert code == 0 and out.count("PT ") == 2 and "--series" in out


def test_info_describes_a_series_that_has_no_suv(capsys):
    folder = shared_path("data", "suv", "delia_nsclc_r01_005", "PET_BODY_NOAC")
    code, out, _ = run_cli(capsys, "info", folder, "--json")
    assert code == 0
    info = json.loads(out)
    assert info["units"] == "PROPCNTS" and "not quantitative" in info["suv_refused"]
    assert info["shape"] == [128, 128, 10]


def test_missing_patient_weight_then_supplied(tmp_path, capsys):
    folder = copy_ctac_series(tmp_path)
    edit_series(folder, PatientWeight=None)
    code, _, err = run_cli(capsys, "convert", folder, "-o", tmp_path / "o.nii.gz")
    assert_one_clear_line(code, err, "PatientWeight", "--weight-kg")
    code, _, err = run_cli(
        capsys, "convert", folder, "-o", tmp_path / "o.nii.gz", "--weight-kg", "70"
    )
    assert code == 0, err
    assert (tmp_path / "o.nii.gz").exists()


def test_console_script_prints_no_traceback(tmp_path):
    (tmp_path / "empty").mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run(
        [sys.executable, "-m", "seganypet", "info", str(tmp_path / "empty")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == EXIT_USER_ERROR
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("seganypet info: error:")


def test_readme_test_command_is_what_ci_runs():
    from conftest import REPO_ROOT

    readme = (REPO_ROOT / "README.md").read_text().splitlines()
    commands = [line.strip() for line in readme[:12] if line.startswith("    ")]
    assert len(commands) == 2, "the README opens with two commands"
    assert commands[1] == "bash scripts/setup.sh --dev && python -m pytest -q"
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert "sed -n" in ci and "README.md" in ci


pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
