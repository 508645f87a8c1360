"""The viewer page in a real browser: the system's chromium driven by Playwright, against the real
server (uvicorn on a loopback port, with a token) and the bundled model, on a synthetic phantom.

Clicks and a 3D box go through real mouse events on NiiVue's canvas; what the page shows (the
statistics) and what the server holds (the mask) must equal the same prompts run through
``seganypet.Session``. A negative click removes a leak, undo restores the mask, save writes a
NIfTI label map on the image's grid, and the page records one round-trip timing per click (its
values are printed, never compared with a budget: ``seganypet bench --server`` measures speed).
For a PET reader: the SUV under the pointer equals the image array at the voxel shown, a
reference beside the study is outlined with its Dice, lesion rows move the crosshair, the liver
VOI equals ``seganypet.quant.liver_reference``, a failed open keeps the study shown, and every key
on the cheat sheet does what it says.
Screenshots go to ``$SEGANYPET_ARTIFACTS`` (default: ``test-artifacts/browser/`` in the
checkout, kept after the run) for a person to look at.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from seganypet.errors import InputError
from seganypet.io import load_image
from seganypet.io.nifti import write_nifti
from seganypet.prompts import Prompt, most_interior_voxel
from seganypet.synth.phantom import Phantom, generate_phantom

TOKEN = "browser-test-token-5f1c2a"
SEED = 1  # a whole-body phantom with 11 lesions, one of them in the liver
AXIAL, CORONAL = 0, 1  # NiiVue's slice types
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 800}
STUDY = "phantom.nii.gz"
FLIPPED = "flipped/phantom.nii.gz"
IN_CI = os.environ.get("CI", "").lower() == "true"
# Playwright's waits end in an error after this long: a guard against a hang only, far above
# anything a working page needs even on a slow, busy machine (never a speed requirement).
HANG_GUARD_MS = 300_000


def _missing(reason: str) -> None:
    """Outside CI a missing tool skips the test; in CI it fails it (as ``shared_path`` does)."""
    if IN_CI:
        pytest.fail(f"CI must have it: {reason}")
    pytest.skip(reason)


# ---- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[test]')")
    chromium = shutil.which("chromium")
    if chromium is None:
        _missing("chromium is not installed (apt-get install chromium; scripts/setup.sh --dev)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


def wait_until_serving(process: subprocess.Popen, url: str, log) -> threading.Thread:
    """Wait, without a clock, until ``seganypet serve`` answers ``/api/health``.

    Its output is copied to ``log`` line by line until the line with its URL (printed once the
    model is loaded, just before uvicorn binds the port); then health is polled while the
    process lives. A process that exits first fails the test with what it printed. The rest of
    its output goes to ``log`` from the thread returned, so the pipe never fills.
    """
    for line in process.stdout:
        log.write(line)
        log.flush()
        if f"?token={TOKEN}" in line:
            break
    else:
        process.wait()
        log.seek(0)
        pytest.fail(f"seganypet serve stopped before printing its URL:\n{log.read()}")

    def copy_rest() -> None:
        for rest in process.stdout:
            log.write(rest)
            log.flush()

    copier = threading.Thread(target=copy_rest, daemon=True)
    copier.start()
    while process.poll() is None:
        try:
            # a timeout per request only guards against a hang; the loop ends with the process
            urllib.request.urlopen(f"{url}/api/health?token={TOKEN}", timeout=30).close()
            return copier
        except OSError:
            time.sleep(0.2)
    copier.join()
    log.seek(0)
    pytest.fail(f"seganypet serve stopped before serving:\n{log.read()}")


@dataclass
class Server:
    url: str
    data: Path
    phantom: Phantom


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``seganypet serve --model default`` on a free loopback port, over a folder with a phantom."""
    import torch

    from seganypet.model import configure_threads, load_model

    try:
        load_model("default")
    except InputError as exc:
        _missing(f"the bundled model is not installed: {exc}")
    phantom = generate_phantom(SEED)
    data = tmp_path_factory.mktemp("data")
    write_nifti(phantom.image.array, phantom.image.affine, data / STUDY, phantom.image)
    # the same body stored the other way round along x and y (as DICOM's LPS order would be)
    (data / FLIPPED).parent.mkdir()
    write_nifti(
        flip_xy(phantom.image.array), flipped_affine(phantom), data / FLIPPED, phantom.image
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    work = tmp_path_factory.mktemp("work")
    log = open(work / "serve.log", "w+")  # closed below
    # One torch thread: on a small machine shared with other work (a training run), threads wait
    # on each other. The reference sessions in this process use the same setting.
    command = [sys.executable, "-m", "seganypet", "serve", "--data", str(data)]
    command += ["--model", "default", "--port", str(port), "--token", TOKEN, "--work", str(work)]
    command += ["--threads", "1"]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    threads = torch.get_num_threads()
    copier = None
    try:
        copier = wait_until_serving(process, url, log)
        configure_threads(1)
        yield Server(url, data, phantom)
    finally:
        torch.set_num_threads(threads)
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if copier is not None:
            copier.join()
        process.stdout.close()
        log.close()


@pytest.fixture()
def artifacts() -> Path:
    from conftest import REPO_ROOT

    default = REPO_ROOT / "test-artifacts" / "browser"
    folder = Path(os.environ.get("SEGANYPET_ARTIFACTS") or default)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# ---- driving the page ----------------------------------------------------------------------


class Viewer:
    """One page of the viewer, on one study, and the operations it sent (for the reference)."""

    def __init__(self, browser, server: Server, study: str | Path, artifacts: Path):
        """Open ``study``: a path under the data folder, or a file to upload."""
        from seganypet.server.client import Client

        self.server = server
        self.artifacts = artifacts
        self.page = browser.new_page(viewport=VIEWPORT)
        self.page.set_default_timeout(HANG_GUARD_MS)
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on(
            "console",
            lambda message: self.errors.append(message.text) if message.type == "error" else None,
        )
        self.page.goto(f"{server.url}/?token={TOKEN}")
        self.page.wait_for_selector("body[data-ready]")
        if isinstance(study, Path):
            self.page.set_input_files("#upload", str(study))
        else:
            self.page.select_option("#study", study)
            self.page.click("#open")
        self.page.wait_for_selector("body[data-opened]")
        self.idle()
        self.client = Client(server.url, TOKEN)
        self.client.session_id = self.info()["session_id"]
        self.ops: list[tuple] = []

    def info(self) -> dict:
        return self.page.evaluate("seganypet.info()")

    def idle(self) -> None:
        """Wait for the server calls, the statistics and the MIP to be done."""
        self.page.evaluate("seganypet.idle()")

    def timings(self) -> list[float]:
        return self.page.evaluate("seganypet.timings")

    def client_xy(self, voxel, view: int) -> tuple[float, float]:
        self.page.evaluate("voxel => seganypet.goTo(voxel)", [int(v) for v in voxel])
        xy = self.page.evaluate(
            "([voxel, view]) => seganypet.voxelToClient(voxel, view)",
            [[int(v) for v in voxel], view],
        )
        assert xy is not None, f"no slice view of type {view} on the page"
        return xy[0], xy[1]

    def click(self, voxel, positive: bool = True, view: int = AXIAL) -> tuple[int, ...]:
        """Click a voxel's place on a slice view; returns the voxel the page sent."""
        x, y = self.client_xy(voxel, view)
        before = len(self.timings())
        if not positive:
            self.page.keyboard.down("Shift")
        self.page.mouse.click(x, y)
        if not positive:
            self.page.keyboard.up("Shift")
        self.page.wait_for_function("n => seganypet.timings.length > n", arg=before)
        self.idle()
        info = self.info()
        prompt = info["objects"][info["current"]]["prompt_list"][-1]
        assert "point" in prompt and prompt["positive"] is positive
        sent = tuple(int(v) for v in prompt["point"])
        assert np.abs(np.subtract(sent, voxel)).max() <= 1, (sent, voxel)
        self.ops.append(("prompt", prompt))
        return sent

    def drag(self, start, end, view: int, screenshot: str | None = None) -> None:
        x0, y0 = self.client_xy(start, view)
        x1, y1 = self.client_xy(end, view)
        self.page.mouse.move(x0, y0)
        self.page.mouse.down()
        self.page.mouse.move(x1, y1, steps=6)
        if screenshot:
            self.screenshot(screenshot)
        self.page.mouse.up()

    def mask(self) -> np.ndarray:
        return self.client.mask()

    def assert_shown(self, labels: np.ndarray, count: int = 40, seed: int = 0) -> None:
        """NiiVue draws each label where it is (sampled inside and around every object)."""
        rng = np.random.default_rng(seed)
        inside = np.argwhere(labels > 0)
        around = np.argwhere(ndimage.binary_dilation(labels > 0, iterations=3) & (labels == 0))
        for group in (inside, around):
            for voxel in group[rng.choice(len(group), min(count, len(group)), replace=False)]:
                shown = self.page.evaluate("v => seganypet.labelShownAt(v)", voxel.tolist())
                assert shown == labels[tuple(voxel)], (voxel, shown)

    def screenshot(self, name: str) -> Path:
        path = self.artifacts / name
        self.page.screenshot(path=str(path))
        return path

    def close(self) -> None:
        self.page.close()
        assert not self.errors, f"the page reported errors: {self.errors}"


def reference_labels(path: Path, ops: list[tuple]):
    """The same operations through ``seganypet.Session``: the label map and its statistics."""
    from seganypet import Session, load_model
    from seganypet.quant import quantify

    image = load_image(path)
    session = Session(load_model("default"))
    session.set_image(image)
    for op in ops:
        if op[0] == "prompt":
            session.add(Prompt.from_dict(op[1]))
        elif op[0] == "undo":
            session.undo()
        elif op[0] == "new_object":
            session.new_object(op[1])
        else:
            raise AssertionError(op)
    labels, names = session.label_map()
    return labels, quantify(image, labels, label_names=names)


def shown_statistics(page) -> list[list[str]]:
    return page.eval_on_selector_all(
        "#objects tr.object", "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
    )


def assert_statistics_shown(page, report, names: list[str]) -> None:
    rows = shown_statistics(page)
    assert [row[0] for row in rows] == names
    for index, row in enumerate(rows):
        region = report.label(index + 1)
        expected = [region.suv_max, region.suv_peak, region.suv_mean, region.mtv_ml, region.tlg]
        shown = [float(text) for text in row[1:]]
        for value, wanted, name in zip(
            shown, expected, ["SUVmax", "SUVpeak", "SUVmean", "MTV", "TLG"], strict=True
        ):
            step = 0.1 if abs(wanted) >= 100 and name in ("MTV", "TLG") else 0.01
            assert abs(value - wanted) <= step / 2 + 1e-9, (names[index], name, value, wanted)


def flip_xy(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array[::-1, ::-1])


def flipped_affine(phantom: Phantom) -> np.ndarray:
    """The affine that keeps every voxel of ``flip_xy(array)`` where it was in the world."""
    affine = np.array(phantom.image.affine, float)
    for axis in (0, 1):
        affine[:3, 3] += affine[:3, axis] * (phantom.image.shape[axis] - 1)
        affine[:3, axis] *= -1
    return affine


def flipped_voxel(voxel, phantom: Phantom) -> tuple[int, int, int]:
    """Where a voxel of the phantom lies in ``flip_xy`` of it."""
    nx, ny, _ = phantom.image.shape
    return (nx - 1 - int(voxel[0]), ny - 1 - int(voxel[1]), int(voxel[2]))


def lesions_by_size(phantom: Phantom):
    return sorted(phantom.lesions, key=lambda lesion: -lesion.voxels)


def hottest_voxel(phantom: Phantom, instance: int) -> tuple[int, int, int]:
    values = np.where(phantom.lesion_instances == instance, phantom.image.array, -np.inf)
    return tuple(int(i) for i in np.unravel_index(np.argmax(values), values.shape))


def ball(shape, centre, radius: int) -> np.ndarray:
    grid = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= radius**2


# ---- tests ---------------------------------------------------------------------------------


def test_clicks_segment_as_the_session_does_and_each_is_timed_once(
    browser, server, artifacts
) -> None:
    study = STUDY
    viewer = Viewer(browser, server, study, artifacts)
    page = viewer.page
    keys = page.inner_text("#keys").lower()
    assert "click" in keys and "shift" in keys and "undo" in keys, "the keys are on screen"
    viewer.screenshot("01_opened.png")
    phantom = server.phantom
    first, second = lesions_by_size(phantom)[:2]

    # a click on the largest lesion: it leaks into its neighbourhood
    positive = viewer.click(hottest_voxel(phantom, first.instance))
    clicked = viewer.mask()
    assert clicked[positive], "the clicked voxel is in the object"
    truth = phantom.lesion_instances == first.instance
    assert (clicked & truth).sum() >= 0.5 * truth.sum(), "the lesion is found"
    viewer.screenshot("02_click.png")

    # a negative click in the leak (or, where there is none, away from the lesion) removes it
    outside = clicked & ~truth
    if outside.sum() < 10:
        outside = clicked & ~ball(clicked.shape, positive, 3)
    parts, count = ndimage.label(outside)
    largest = parts == 1 + int(np.argmax(ndimage.sum(outside, parts, range(1, count + 1))))
    target = most_interior_voxel(largest, phantom.image.spacing)
    negative = viewer.click(target, positive=False)
    corrected = viewer.mask()
    near = ball(clicked.shape, negative, 2)
    assert not corrected[negative], "the negative click's voxel left the object"
    assert corrected[near].sum() < clicked[near].sum(), "less object where the click was"
    assert (corrected & outside).sum() < (clicked & outside).sum(), "the leak shrank"
    viewer.screenshot("03_negative_click.png")

    # undo (Ctrl+Z) brings the mask back exactly, and the negative click again removes the leak
    page.keyboard.press("Control+z")
    viewer.idle()
    viewer.ops.append(("undo",))
    np.testing.assert_array_equal(viewer.mask(), clicked)
    viewer.click(target, positive=False)
    np.testing.assert_array_equal(viewer.mask(), corrected)

    # a second, named object on the next lesion, with two clicks
    page.fill("#newname", "lesion B")
    page.click("#new")
    viewer.idle()
    viewer.ops.append(("new_object", "lesion B"))
    hot = hottest_voxel(phantom, second.instance)
    viewer.click(hot)
    others = np.argwhere(
        (phantom.lesion_instances == second.instance) & ~ball(clicked.shape, hot, 2)
    )
    if len(others):
        viewer.click(tuple(others[len(others) // 2]))
    viewer.screenshot("04_two_objects.png")

    # the page and the server hold what the session computes from the same prompts
    labels, report = reference_labels(server.data / study, viewer.ops)
    np.testing.assert_array_equal(viewer.mask(), labels)
    assert set(np.unique(labels)) == {0, 1, 2}
    viewer.assert_shown(labels)
    assert_statistics_shown(page, report, ["object 1", "lesion B"])

    # the page's round-trip bookkeeping: one timing (and one breakdown) per click, each a
    # duration; printed for a person, never compared with a budget
    timings = viewer.timings()
    phases = page.evaluate("seganypet.phases")
    print(f"click round trips in the browser, ms: {[round(t) for t in timings]}")
    print(f"where they went, ms: {phases}")
    viewer.close()
    clicks = sum(1 for op in viewer.ops if op[0] == "prompt")
    assert len(timings) == len(phases) == clicks, (timings, viewer.ops)
    assert all(np.isfinite(t) and t > 0 for t in timings), timings
    for phase, total in zip(phases, timings, strict=True):
        assert set(phase) == {"before", "prompt", "mask", "draw", "frame"}, phase
        assert all(part >= 0 for part in phase.values()), phase
        assert sum(phase.values()) == pytest.approx(total, abs=1e-6), (phase, total)


def test_a_3d_box_then_save_a_nifti_label_map(browser, server, artifacts) -> None:
    study = FLIPPED  # its voxel order differs from NiiVue's (RAS): the page must map it
    viewer = Viewer(browser, server, study, artifacts)
    page = viewer.page
    phantom = server.phantom
    lesion = lesions_by_size(phantom)[2]
    truth = flip_xy(phantom.lesion_instances) == lesion.instance
    where = np.argwhere(truth)
    lo, hi = where.min(0) - 2, where.max(0) + 2
    centre = ((lo + hi) // 2).tolist()

    # the rectangle on the axial view through the lesion, then its depth on the coronal view
    page.keyboard.press("b")
    viewer.client_xy(centre, AXIAL)
    viewer.drag([lo[0], lo[1], centre[2]], [hi[0], hi[1], centre[2]], AXIAL)
    assert "depth" in page.inner_text("#hint")
    before = len(viewer.timings())
    viewer.drag(
        [centre[0], centre[1], lo[2]],
        [centre[0], centre[1], hi[2]],
        CORONAL,
        screenshot="05_box_depth.png",
    )
    page.wait_for_function("n => seganypet.timings.length > n", arg=before)
    viewer.idle()
    box = viewer.info()["objects"][0]["prompt_list"][-1]
    assert "box" in box
    assert np.abs(np.subtract(box["box"][:3], lo)).max() <= 1, (box, lo)
    assert np.abs(np.subtract(box["box"][3:], hi)).max() <= 1, (box, hi)
    viewer.ops.append(("prompt", box))
    mask = viewer.mask()
    assert (mask.astype(bool) & truth).sum() >= 0.5 * truth.sum(), "the box finds the lesion"
    viewer.screenshot("06_box.png")
    labels, report = reference_labels(server.data / study, viewer.ops)
    np.testing.assert_array_equal(mask, labels)
    viewer.assert_shown(labels)
    assert_statistics_shown(page, report, ["object 1"])

    # save: a download link to the NIfTI label map (no DICOM SEG: the input is NIfTI)
    page.click("#save")
    viewer.idle()
    links = page.locator("#downloads a")
    assert links.count() == 1 and links.first.get_attribute("data-format") == "nifti"
    with page.expect_download() as download:
        links.first.click()
    saved = artifacts / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.name.endswith(".nii.gz")
    written = nib.load(str(saved))
    assert written.shape == phantom.image.shape
    np.testing.assert_allclose(written.affine, flipped_affine(phantom), atol=1e-4)
    np.testing.assert_array_equal(np.asarray(written.dataobj), labels)
    viewer.screenshot("07_saved.png")
    viewer.close()


def test_a_scribble_and_a_lasso_drawn_on_a_slice(browser, server, artifacts) -> None:
    study = "strokes.nii.gz"  # a study of its own: no prompts from the tests before
    shutil.copyfile(server.data / STUDY, server.data / study)
    viewer = Viewer(browser, server, study, artifacts)
    page = viewer.page
    phantom = server.phantom
    first, second = lesions_by_size(phantom)[:2]

    def draw(mode_key: str, path: list, view: int = AXIAL) -> dict:
        page.keyboard.press(mode_key)
        before = len(viewer.timings())
        points = [viewer.client_xy(voxel, view) for voxel in path]
        page.mouse.move(*points[0])
        page.mouse.down()
        for xy in points[1:]:
            page.mouse.move(*xy, steps=4)
        page.mouse.up()
        page.wait_for_function("n => seganypet.timings.length > n", arg=before)
        viewer.idle()
        info = viewer.info()
        prompt = info["objects"][info["current"]]["prompt_list"][-1]
        viewer.ops.append(("prompt", prompt))
        return prompt

    # a scribble across the largest lesion, on the axial slice through its hottest voxel
    truth = phantom.lesion_instances == first.instance
    x, y, z = hottest_voxel(phantom, first.instance)
    across = np.argwhere(truth[:, y, z])[:, 0]
    scribble = draw("s", [[int(across.min()) + 1, y, z], [int(across.max()) - 1, y, z]])
    line = np.asarray(scribble["scribble"])
    assert scribble["positive"] and len(line) >= 2 and np.ptp(line[:, 2]) == 0, scribble
    mask = viewer.mask()
    assert (mask.astype(bool) & truth).sum() >= 0.5 * truth.sum(), "the scribble finds the lesion"
    viewer.screenshot("07_scribble.png")

    # a lasso around the second lesion, as a new object
    page.fill("#newname", "lassoed")
    page.click("#new")
    viewer.idle()
    viewer.ops.append(("new_object", "lassoed"))
    truth = phantom.lesion_instances == second.instance
    x, y, z = hottest_voxel(phantom, second.instance)
    where = np.argwhere(truth[:, :, z])
    (x0, y0), (x1, y1) = where.min(0) - 1, where.max(0) + 1
    lasso = draw("l", [[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z], [x0, y0 + 1, z]])
    assert len(lasso["lasso"]) >= 3 and lasso["positive"], lasso
    mask = viewer.mask()
    assert ((mask == 2) & truth).sum() >= 0.5 * truth.sum(), "the lasso finds the lesion"
    viewer.screenshot("08_lasso.png")

    labels, report = reference_labels(server.data / study, viewer.ops)
    np.testing.assert_array_equal(viewer.mask(), labels)
    viewer.assert_shown(labels)
    assert_statistics_shown(page, report, ["object 1", "lassoed"])
    viewer.close()


def test_a_dicom_series_uploaded_saves_a_label_map_and_a_dicom_seg(
    browser, server, artifacts, tmp_path
) -> None:
    import pydicom

    from conftest import shared_path

    series = shared_path("data", "sts_crops_dicom_gml", "STS_001", "image")
    archive = tmp_path / "sts001.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for file in sorted(series.iterdir()):
            zf.write(file, f"series/{file.name}")
    viewer = Viewer(browser, server, archive, artifacts)
    page = viewer.page
    info = viewer.info()
    assert info["dicom"] and "DICOM" in page.inner_text("#studyinfo")
    # the study header panel shows what the DICOM headers record
    first = pydicom.dcmread(sorted(series.iterdir())[0], stop_before_pixels=True)
    drug = first.RadiopharmaceuticalInformationSequence[0]
    header = dict(
        page.eval_on_selector_all(
            "#header tr", "rows => rows.map(r => [r.dataset.field, r.cells[1].textContent])"
        )
    )
    assert header["patient_id"] == first.PatientID
    assert header["patient_name"] == str(first.PatientName)
    assert header["study_date"].replace("-", "") == first.StudyDate
    assert header["tracer"].startswith(drug.Radiopharmaceutical)
    assert header["weight_kg"] == f"{float(first.PatientWeight):.1f} kg"
    assert header["injected_dose_mbq"] == f"{float(drug.RadionuclideTotalDose) / 1e6:.1f} MBq"
    assert header["suv_type"] == "SUVbw" and header["suv_factor"].startswith("1.00000 (from GML")
    image = load_image(series)
    assert info["shape"] == list(image.shape)
    inner = image.array[8:-8, 8:-8, 8:-8]  # the tumour, not the bladder at the crop's edge
    hottest = np.add(np.unravel_index(np.argmax(inner), inner.shape), 8)
    viewer.click(hottest, view=CORONAL)
    labels, report = reference_labels(series, viewer.ops)
    assert labels.any(), "the click found an object"
    np.testing.assert_array_equal(viewer.mask(), labels)
    viewer.assert_shown(labels)
    assert_statistics_shown(page, report, ["object 1"])
    viewer.screenshot("08_dicom.png")

    page.click("#save")
    viewer.idle()
    links = page.locator("#downloads a")
    assert [links.nth(i).get_attribute("data-format") for i in range(links.count())] == [
        "nifti",
        "dicom-seg",
    ]
    saved = {}
    for i in range(2):
        with page.expect_download() as download:
            links.nth(i).click()
        saved[i] = artifacts / download.value.suggested_filename
        download.value.save_as(saved[i])
    written = nib.load(str(saved[0]))
    np.testing.assert_allclose(written.affine, image.affine, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(written.dataobj), labels)
    seg = pydicom.dcmread(saved[1])
    assert seg.Modality == "SEG" and seg.SegmentSequence[0].SegmentLabel == "object 1"
    viewer.close()


def edge_and_interior(mask: np.ndarray, z: int) -> tuple[list[float], list[int]]:
    """On slice ``z`` of a mask: the middle of a face between a voxel inside and the next one
    along the first axis outside (fractional voxel indices), and a voxel at least two voxels from
    every face."""
    plane = mask[:, :, z]
    inside = np.argwhere(plane[:-1] & ~plane[1:])
    x, y = inside[len(inside) // 2]
    deep = np.argwhere(ndimage.binary_erosion(plane, iterations=2))
    assert len(deep), "the reference is too thin on this slice"
    centre = deep[np.argmin(np.linalg.norm(deep - deep.mean(0), axis=1))]
    return [x + 0.5, float(y), float(z)], [int(centre[0]), int(centre[1]), z]


def outline_drawn(page, voxelish, view: int = AXIAL, reach: int = 2) -> bool:
    """Whether the reference outline's colour is on the marks canvas near a voxel's place."""
    pixels = page.evaluate(
        "([v, view, reach]) => seganypet.marksPixels(v, view, reach)", [voxelish, view, reach]
    )
    return any(r > 200 and g > 200 and b < 140 and a > 200 for r, g, b, a in pixels)


def test_a_pet_reader_sees_suv_header_reference_lesions_and_the_liver_voi(
    browser, server, artifacts
) -> None:
    """The SUV under the pointer, the study header, a reference label map beside the study
    outlined with its Dice, one row per lesion that takes the crosshair to its SUVmax, the
    PERCIST liver VOI and baseline, and a study that fails to open leaving the one open shown."""
    from seganypet.quant import lesions_above, liver_reference, quantify

    phantom = server.phantom
    study = "reader/flipped.nii.gz"  # stored against NiiVue's order: the page must map it
    array, affine = flip_xy(phantom.image.array), flipped_affine(phantom)
    write_nifti(array, affine, server.data / study, phantom.image)
    first, second = lesions_by_size(phantom)[:2]
    truth = flip_xy(phantom.lesion_instances) == first.instance
    write_nifti(truth.astype(np.uint8), affine, server.data / "reader" / "flipped_gtv.nii.gz")
    broken = (server.data / STUDY).read_bytes()
    (server.data / "reader" / "broken.nii.gz").write_bytes(broken[: len(broken) // 2])
    viewer = Viewer(browser, server, study, artifacts)
    page = viewer.page

    # the study list: images only, the label map listed under its image and not openable
    options = page.eval_on_selector_all(
        "#study option", "os => os.map(o => [o.value, o.disabled, o.textContent])"
    )
    values = [value for value, _, _ in options]
    assert values.index("attachment:reader/flipped_gtv.nii.gz") == values.index(study) + 1
    assert [disabled for value, disabled, _ in options if value.startswith("attachment:")] == [True]
    assert "reader/flipped_gtv.nii.gz" not in values

    # the header of a NIfTI study: what it records, and "not recorded" for the rest
    header = dict(
        page.eval_on_selector_all(
            "#header tr", "rows => rows.map(r => [r.dataset.field, r.cells[1].textContent])"
        )
    )
    assert set(header) == {
        "patient_id",
        "patient_name",
        "study_date",
        "tracer",
        "weight_kg",
        "injected_dose_mbq",
        "suv_type",
        "suv_factor",
    }
    assert all(text == "not recorded" for field, text in header.items() if field != "suv_type")
    assert header["suv_type"].startswith("SUVbw")

    # the SUV under the pointer, its voxel (the array's own order) and its place in mm
    hot = flipped_voxel(hottest_voxel(phantom, first.instance), phantom)
    for voxel, view in [(hot, AXIAL), ((20, 30, 200), CORONAL), ((70, 12, 310), AXIAL)]:
        page.mouse.move(*viewer.client_xy(voxel, view))
        shown = page.eval_on_selector("#cursor", "e => ({...e.dataset, text: e.textContent})")
        at = tuple(int(v) for v in shown["voxel"].split(","))
        assert np.abs(np.subtract(at, voxel)).max() <= 1, (at, voxel)
        assert float(shown["value"]) == pytest.approx(float(array[at]), abs=1e-6)
        mm = [float(v) for v in shown["mm"].split(",")]
        np.testing.assert_allclose(mm, affine[:3, :3] @ at + affine[:3, 3], atol=1e-4)
        assert (
            f"SUVbw {array[at]:.3f}" in shown["text"]
            and f"[{', '.join(map(str, at))}]" in (shown["text"])
        )

    # the reference beside the study: outlined on the slices, with its Dice
    page.select_option("#reference", "reader/flipped_gtv.nii.gz")
    viewer.idle()
    edge, interior = edge_and_interior(truth, hot[2])
    viewer.client_xy(hot, AXIAL)  # the slices through the lesion
    assert outline_drawn(page, edge), "the outline runs along the reference's edge"
    assert not outline_drawn(page, interior, reach=1), "and not inside it"
    viewer.screenshot("09_reference_outline.png")
    page.keyboard.press("o")
    assert not outline_drawn(page, edge), "O hides the outline"
    page.keyboard.press("o")
    assert outline_drawn(page, edge)
    dice_shown = page.eval_on_selector_all(
        "#dice tr[data-label]", "rs => rs.map(r => r.cells[2].textContent)"
    )
    assert dice_shown == ["0.000"], "an empty object overlaps nothing"

    viewer.click(hot)
    page.fill("#newname", "lesion B")
    page.click("#new")
    viewer.idle()
    viewer.ops.append(("new_object", "lesion B"))
    viewer.click(flipped_voxel(hottest_voxel(phantom, second.instance), phantom))
    labels = viewer.mask()
    page.click("#objects tr.object[data-index='0']")
    viewer.idle()
    clicked = labels == 1
    expected = 2 * (clicked & truth).sum() / (clicked.sum() + truth.sum())
    (dice,) = page.eval_on_selector_all(
        "#dice tr[data-label]", "rs => rs.map(r => r.cells[2].textContent)"
    )
    assert float(dice) == pytest.approx(expected, abs=0.0005 + 1e-9)
    assert "object 1" in page.inner_text("#dice")

    # one row per lesion (connected component), each taking the crosshair to its SUVmax
    report = quantify(load_image(server.data / study), labels)
    rows = page.eval_on_selector_all(
        "#lesions tr.lesion", "rs => rs.map(r => [r.dataset.voxel, r.cells[2].textContent])"
    )
    assert len(rows) == len(report.lesions) >= 2
    for (voxel, suv_max), lesion in zip(rows, report.lesions, strict=True):
        assert voxel == ",".join(map(str, lesion.suv_max_voxel))
        assert float(suv_max) == pytest.approx(lesion.suv_max, abs=0.005 + 1e-9)
    for index, lesion in reversed(list(enumerate(report.lesions))):
        page.click(f"#lesions tr.lesion >> nth={index}")
        assert tuple(page.evaluate("seganypet.crosshairVoxel()")) == lesion.suv_max_voxel
        assert page.eval_on_selector("#cursor", "e => e.dataset.voxel") == ",".join(
            map(str, lesion.suv_max_voxel)
        )

    # the PERCIST liver VOI: V, then a click on the liver; then the baseline threshold
    liver_label = next(k for k, v in phantom.label_names.items() if v == "liver")
    liver = (flip_xy(phantom.labels) == liver_label) & (flip_xy(phantom.lesion_instances) == 0)
    centre = most_interior_voxel(liver, phantom.image.spacing)
    page.keyboard.press("v")
    assert page.evaluate("seganypet.mode()") == "liver"
    x, y = viewer.client_xy(centre, AXIAL)
    page.mouse.click(x, y)
    viewer.idle()
    placed = viewer.info()["liver"]
    assert np.abs(np.subtract(placed["centre_voxel"], centre)).max() <= 1
    expected_liver = liver_reference(load_image(server.data / study), placed["centre_voxel"])
    assert page.evaluate("seganypet.mode()") == "point", "one click places it"
    text = page.inner_text("#liver-values")
    for value in (expected_liver.mean, expected_liver.sd, expected_liver.percist_threshold):
        assert f"{value:.2f}" in text, (value, text)
    viewer.screenshot("10_liver_voi.png")
    page.click("#percist")
    viewer.idle()
    reaching = lesions_above(report.lesions, expected_liver.percist_threshold)
    assert page.inner_text("#percist-result").startswith(
        f"PERCIST baseline {expected_liver.percist_threshold:.2f} SUVbw: {len(reaching)} of "
        f"{len(report.lesions)} lesion"
    )
    assert page.locator("#lesions td.above").count() == len(reaching)

    # a study that fails to open leaves the one open selected and shown
    opened = page.evaluate("document.body.dataset.opened")
    studyinfo = page.inner_text("#studyinfo")
    page.select_option("#study", "reader/broken.nii.gz")
    page.click("#open")
    viewer.idle()
    assert page.get_attribute("#status", "class") == "error"
    assert "reader/broken.nii.gz" in page.inner_text("#status")
    assert page.eval_on_selector("#study", "s => s.value") == study
    assert page.evaluate("document.body.dataset.opened") == opened
    assert viewer.info()["session_id"] == opened and page.inner_text("#studyinfo") == studyinfo
    viewer.assert_shown(labels)
    viewer.screenshot("11_failed_open.png")
    refused = "Failed to load resource: the server responded with a status of 400 (Bad Request)"
    assert viewer.errors == [refused], "the browser logs the refused request, and nothing else"
    viewer.errors.clear()
    viewer.close()


def test_every_key_on_the_cheat_sheet_is_handled(browser, server, artifacts) -> None:
    """The cheat sheet lists exactly the keys the page handles, and each does what it says."""
    study = "keys.nii.gz"
    shutil.copyfile(server.data / STUDY, server.data / study)
    viewer = Viewer(browser, server, study, artifacts)
    page = viewer.page
    listed = page.eval_on_selector_all("#keys kbd[data-key]", "ks => ks.map(k => k.dataset.key)")
    assert sorted(listed) == sorted(page.evaluate("seganypet.keys"))

    def mode() -> str:
        return page.evaluate("seganypet.mode()")

    def crosshair() -> list[int]:
        return page.evaluate("seganypet.crosshairVoxel()")

    def masks_on() -> bool:
        return page.evaluate("seganypet.nv.drawOpacity") > 0

    lesion = lesions_by_size(server.phantom)[0]
    middle = hottest_voxel(server.phantom, lesion.instance)

    def undo_takes_back_a_click() -> None:
        viewer.click(middle)
        before = viewer.info()["objects"][0]["prompts"]
        page.keyboard.press("Control+z")
        viewer.idle()
        assert viewer.info()["objects"][0]["prompts"] == before - 1

    def arrow(key: str, step: int) -> None:
        page.mouse.move(*viewer.client_xy(middle, AXIAL))  # the pointer over the axial view
        before = crosshair()
        page.keyboard.press(key)
        assert crosshair() == [before[0], before[1], before[2] + step]

    def toggles(key: str, read) -> None:
        before = read()
        page.keyboard.press(key)
        assert read() != before, key
        page.keyboard.press(key)
        assert read() == before, key

    def switches_mode(key: str, wanted: str) -> None:
        page.keyboard.press(key)
        assert mode() == wanted, key
        page.keyboard.press(key)
        assert mode() == "point", f"{key} again goes back to points"

    def escape() -> None:
        page.keyboard.press("b")
        viewer.drag(
            [middle[0] - 3, middle[1] - 3, middle[2]],
            [middle[0] + 3, middle[1] + 3, middle[2]],
            AXIAL,
        )
        page.keyboard.press("Escape")
        assert mode() == "point" and "depth" not in page.inner_text("#hint")

    def points() -> None:
        page.keyboard.press("l")
        page.keyboard.press("p")
        assert mode() == "point"

    effects = {
        "p": points,
        "b": lambda: switches_mode("b", "box"),
        "s": lambda: switches_mode("s", "scribble"),
        "l": lambda: switches_mode("l", "lasso"),
        "v": lambda: switches_mode("v", "liver"),
        "Escape": escape,
        "ctrl+z": undo_takes_back_a_click,
        "ArrowUp": lambda: arrow("ArrowUp", 1),
        "ArrowDown": lambda: arrow("ArrowDown", -1),
        "m": lambda: toggles("m", masks_on),
        "o": lambda: toggles("o", lambda: page.is_checked("#outline")),
    }
    assert sorted(listed) == sorted(effects), "every key listed has its check here"
    for key in listed:
        effects[key]()
    viewer.screenshot("12_keys.png")
    viewer.close()
