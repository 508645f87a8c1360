"""The command answers at once: ``--help`` and the I/O commands never import torch.

Each command runs as a user runs it, in its own process, with ``python -X importtime``, which
lists every module the process imports; torch (a second or more to import) must not be among
them. ``seganypet bench`` reports how long the start-up takes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import shared_path


def imported_modules(*args: str, cwd: Path | None = None) -> set[str]:
    """Every module a ``seganypet`` command imports; the command must succeed."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "seganypet", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    modules = set()
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            modules.add(line.rsplit("|", 1)[1].strip())
    assert "seganypet.cli" in modules, "-X importtime listed the modules"
    return modules


def assert_no_torch(modules: set[str]) -> None:
    heavy = sorted(m for m in modules if m == "torch" or m.startswith("torch."))
    assert not heavy, f"imported {heavy[:5]}"


@pytest.fixture(scope="module")
def nifti_study(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("study")
    affine = np.diag([4.0, 4.0, 3.0, 1.0])
    array = np.full((20, 18, 16), 1.5, np.float32)
    array[8:12, 7:11, 6:10] = 9.0
    labels = np.zeros(array.shape, np.uint8)
    labels[8:12, 7:11, 6:10] = 1
    nib.save(nib.Nifti1Image(array, affine), str(folder / "pet.nii.gz"))
    nib.save(nib.Nifti1Image(labels, affine), str(folder / "mask.nii.gz"))
    return folder / "pet.nii.gz", folder / "mask.nii.gz"


@pytest.mark.parametrize(
    "args", [["--help"], ["info", "--help"], ["segment", "--help"], ["batch", "--help"]]
)
def test_help_does_not_import_torch(args):
    assert_no_torch(imported_modules(*args))


def test_info_on_a_nifti_never_imports_torch(nifti_study):
    pet, _mask = nifti_study
    modules = imported_modules("info", str(pet))
    assert "nibabel" in modules, "the file was read"
    assert_no_torch(modules)


def test_convert_and_quantify_never_import_torch(nifti_study, tmp_path):
    pet, mask = nifti_study
    assert_no_torch(imported_modules("convert", str(pet), "-o", str(tmp_path / "suv.nii.gz")))
    assert (tmp_path / "suv.nii.gz").is_file()
    assert_no_torch(imported_modules("quantify", str(pet), str(mask), "--json"))


def test_dicom_info_convert_and_rtstruct_quantify_never_import_torch(tmp_path):
    series = shared_path("data", "sts001_wholebody_ge", "image")
    rtstruct = shared_path("data", "sts001_wholebody_ge", "mask", "1-1.dcm")
    assert_no_torch(imported_modules("info", str(series)))
    assert_no_torch(imported_modules("convert", str(series), "-o", str(tmp_path / "suv.nii.gz")))
    modules = imported_modules("quantify", str(series), str(rtstruct), "--roi", "GTV_Mass")
    assert "pydicom" in modules
    assert_no_torch(modules)
