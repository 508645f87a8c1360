"""``seganypet bench``: how fast things run here, measured rather than claimed.

Tests assert behaviour only, never a wall-clock budget; this module is where speed is measured,
and it prints numbers (JSON) without judging them. Each mode is a function that returns (and
prints) its measurements, plus the machine they were taken on (:func:`machine_info`):

- :func:`run_benchmark` (the network, the default mode) times the image embedding (once per
  crop) and one prompt round (prompt encoder + mask decoder, once per click, feeding back the
  previous logits as the session does), and reports the peak resident memory. With ``bf16`` it
  also times the bfloat16 embedding and how far it is from float32. With ``compare_reference``
  it also times the reference implementation's way of doing windowed attention (pad the token
  grid to whole windows, attend over every padded token, drop the padded outputs), so the
  speed-up of the exact collapsed attention is measured on this machine.
- :func:`run_session_benchmark`: clicks of :class:`seganypet.Session` on the real whole-body
  STS_001 scan (DICOM load, first click with its embedding, later clicks).
- :func:`run_server_benchmark`: a click's HTTP round trip on a real ``seganypet serve``
  (the click, then the mask and statistics requests the viewer makes after it).
- :func:`run_startup_benchmark`: the wall time of ``python -m seganypet --help`` and of
  ``import torch`` alone (the command line reports it every time).
- :func:`run_quant_benchmark` and :func:`run_rtstruct_benchmark`: SUV statistics of a large ROI
  on a whole-body-sized image, and STS_001's ``GTV_Mass`` rasterised by both contour rules.
- :func:`run_batch_benchmark`: ``seganypet batch`` on the real IBSI crops, studies per minute
  of the local engine and of a dask cluster on loopback, with 1 and 2 workers.

Importing this module does not import torch (``seganypet --help`` must not): torch is imported
inside the functions that need it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seganypet.cli_options import add_threads_option, whole_number_at_least
from seganypet.errors import InputError

if TYPE_CHECKING:
    import torch

    from seganypet.model.network import PromptableNetwork, SamMed3D

NETWORK_DEFAULT_MODEL = "vit_b_ori"
SESSION_DEFAULT_MODEL = "default"
STS001 = "sts001_wholebody_ge"


def _timed(fn) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _summary(times: list[float], unit: str = "s", scale: float = 1.0) -> dict[str, float]:
    """Median and min of ``times`` (seconds), scaled (1000 for milliseconds)."""
    return {
        f"{unit}_median": statistics.median(times) * scale,
        f"{unit}_min": min(times) * scale,
    }


def _cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what the platform says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on: CPU model, torch's widest vector ISA, threads, versions."""
    import torch

    try:
        isa = torch.backends.cpu.get_cpu_capability()
    except AttributeError:  # older torch
        isa = "unknown"
    return {
        "cpu": _cpu_model(),
        "vector_isa": isa,
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _print(result: dict[str, Any]) -> None:
    print(json.dumps(result, indent=2), flush=True)


def _synthetic_crop(size: tuple[int, int, int], seed: int) -> torch.Tensor:
    """A normalised crop with a bright blob and noise (its content does not change the timing)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    axes = [torch.linspace(-1, 1, n) for n in size]
    d, h, w = torch.meshgrid(*axes, indexing="ij")
    blob = 3.0 * torch.exp(-((d - 0.1) ** 2 + (h + 0.1) ** 2 + w**2) / 0.05)
    return (blob + 0.3 * torch.randn(size, generator=gen))[None, None].float()


def _tensors(embedding) -> list[torch.Tensor]:
    return list(embedding) if isinstance(embedding, (tuple, list)) else [embedding]


def _max_abs(embedding) -> float:
    return max(float(t.abs().max()) for t in _tensors(embedding))


def _max_abs_diff(a, b) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(_tensors(a), _tensors(b), strict=True))


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # kilobytes on Linux, bytes on macOS
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _build(model: str | Path | PromptableNetwork, seed: int) -> PromptableNetwork:
    """A network: a preset name gets random weights, anything else goes to ``load_model``."""
    import torch

    from seganypet.model.checkpoint import load_model
    from seganypet.model.network import PromptableNetwork
    from seganypet.model.presets import preset_names
    from seganypet.model.registry import build_network

    if isinstance(model, PromptableNetwork) and not isinstance(model, (str, Path)):
        return model
    if isinstance(model, str) and model in preset_names():
        torch.manual_seed(seed)  # random weights: the timing does not depend on them
        return build_network(model)
    return load_model(model)


def _check_counts(repeats: int, clicks: int = 1) -> None:
    if repeats < 1 or clicks < 1:
        raise InputError("--repeats and --clicks must be at least 1")


# ============================================================================ the network


def run_benchmark(
    model: str | Path | SamMed3D | PromptableNetwork = NETWORK_DEFAULT_MODEL,
    repeats: int = 5,
    bf16: bool = False,
    *,
    clicks: int = 5,
    compare_reference: bool = False,
    reference_repeats: int = 1,
    threads: int | None = None,
    seed: int = 0,
    print_json: bool = True,
) -> dict[str, Any]:
    """Time embed and decode; return (and print as JSON) the medians and the peak RSS.

    ``model``: a preset name (random weights), a checkpoint path / bundled name, or a network.
    Times are seconds; ``decode_s_per_click_median`` is the median over ``repeats`` sessions of
    ``clicks`` clicks each (every click re-encodes all points so far and the previous logits).
    ``peak_rss_mb`` is the process's peak resident memory before the reference comparison (which
    reports its own, higher peak: it materialises the padded attention).
    """
    import torch

    from seganypet.model.runtime import configure_threads

    _check_counts(repeats, clicks)
    num_threads = configure_threads(threads)
    net = _build(model, seed)
    net.precision = "fp32"
    if compare_reference and not net.has_reference_order:
        raise InputError("--compare-reference times the ViT's windowed attention: SAM-Med3D only")
    reference_order = net.reference_order
    net.reference_order = False
    size = net.config.input_size
    x = _synthetic_crop(size, seed)
    gen = torch.Generator().manual_seed(seed + 1)

    # Warm-up (first calls allocate and pick kernels).
    emb = net.embed(x)
    net.decode(emb, [[[s // 2 for s in size]]], [[1]])

    embed_times = []
    for _ in range(repeats):
        t, emb = _timed(lambda: net.embed(x))
        embed_times.append(t)

    decode_times = []
    for _ in range(repeats):
        points: list[list[float]] = []
        labels: list[int] = []
        logits = None
        for click in range(clicks):
            points.append([float(torch.randint(0, s, (1,), generator=gen)) for s in size])
            labels.append(1 if click % 3 != 1 else 0)
            t, (logits, _iou) = _timed(
                lambda: net.decode(emb, [points], [labels], mask_logits=logits)  # noqa: B023
            )
            decode_times.append(t)

    machine = machine_info()
    result: dict[str, Any] = {
        "preset": net.config.preset,
        "family": net.config.family,
        "parameters_m": round(sum(p.numel() for p in net.parameters()) / 1e6, 2),
        "input_size": list(size),
        "threads": num_threads,
        "torch": torch.__version__,
        "cpu": machine["cpu"],
        "machine": machine,
        "repeats": repeats,
        "clicks": clicks,
        "embed_s_median": statistics.median(embed_times),
        "embed_s_min": min(embed_times),
        "decode_s_per_click_median": statistics.median(decode_times),
        "decode_s_per_click_min": min(decode_times),
    }

    if bf16:
        net.precision = "bf16"
        emb16 = net.embed(x)  # warm-up
        times16 = []
        for _ in range(repeats):
            t, emb16 = _timed(lambda: net.embed(x))
            times16.append(t)
        net.precision = "fp32"
        result["bf16"] = {
            "embed_s_median": statistics.median(times16),
            "embed_s_min": min(times16),
            "max_abs_diff_vs_fp32": _max_abs_diff(emb16, emb),
            "embedding_abs_max": _max_abs(emb),
        }

    result["peak_rss_mb"] = round(_peak_rss_mb(), 1)

    if compare_reference:
        net.reference_order = True
        try:
            ref_times = []
            for _ in range(max(1, reference_repeats)):
                t, emb_ref = _timed(lambda: net.embed(x))
                ref_times.append(t)
        finally:
            net.reference_order = False
        ref_median = statistics.median(ref_times)
        result["reference"] = {
            "what": "reference-style windowed attention: grid padded to whole windows, all padded tokens attended",
            "embed_s_median": ref_median,
            "speedup": ref_median / result["embed_s_median"],
            "max_abs_diff_vs_fast": float((emb_ref - emb).abs().max()),
            "peak_rss_mb": round(_peak_rss_mb(), 1),
        }

    net.reference_order = reference_order
    if print_json:
        _print(result)
    return result


# ============================================================================ start-up


def _wall_times(command: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return times


HELP_IMPORTS_TORCH = (
    "import sys\n"
    "from seganypet.cli import main\n"
    "try:\n"
    "    main(['--help'])\n"
    "except SystemExit:\n"
    "    pass\n"
    "sys.stderr.write(str('torch' in sys.modules))\n"
)


def run_startup_benchmark(runs: int = 3, *, print_json: bool = True) -> dict[str, Any]:
    """Median wall time of ``python -m seganypet --help`` and of ``python -c 'import torch'``.

    Each is a fresh interpreter (``runs`` times); ``cli_help_imports_torch`` says whether the
    help screen loaded torch, so the difference between the two is the command line's own cost.
    """
    if runs < 1:
        raise InputError("--startup-runs must be at least 1")
    cli = _wall_times([sys.executable, "-m", "seganypet", "--help"], runs)
    torch_import = _wall_times([sys.executable, "-c", "import torch"], runs)
    check = subprocess.run(
        [sys.executable, "-c", HELP_IMPORTS_TORCH],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    result = {
        "runs": runs,
        "cli_startup_s": statistics.median(cli),
        "cli_startup_s_min": min(cli),
        "torch_import_s": statistics.median(torch_import),
        "torch_import_s_min": min(torch_import),
        "cli_help_imports_torch": check.stderr.strip().endswith("True"),
        "machine": machine_info(),
    }
    if print_json:
        _print(result)
    return result


# ============================================================================ the session


def _sts001_folder(shared_data: str | os.PathLike | None, what: str) -> Path:
    from seganypet.datasets import shared_data_dir

    data = Path(shared_data) if shared_data is not None else shared_data_dir()
    folder = None if data is None else data / STS001
    if folder is None or not (folder / "image").is_dir() or not (folder / "mask").is_dir():
        where = folder or f"../shared/data/{STS001}"
        raise InputError(
            f"{what} needs the real STS_001 whole-body scan, not found at {where}: put the "
            "project's shared/ folder beside the checkout or set SEGANYPET_SHARED to it"
        )
    return folder


def _dice(a, b) -> float:
    total = int(a.sum()) + int(b.sum())
    return 2.0 * int((a & b).sum()) / total if total else 1.0


def run_session_benchmark(
    model: str | Path | PromptableNetwork = SESSION_DEFAULT_MODEL,
    repeats: int = 5,
    *,
    clicks: int = 5,
    threads: int | None = None,
    shared_data: str | os.PathLike | None = None,
    seed: int = 0,
    print_json: bool = True,
) -> dict[str, Any]:
    """Clicks of :class:`seganypet.Session` on the real whole-body STS_001 scan (DICOM, SUVbw).

    The DICOM series is loaded (timed), the RTSTRUCT's ``GTV_Mass`` gives the sarcoma. Each of
    ``repeats`` rounds makes a fresh session: ``set_image``, the first click at the sarcoma's
    SUVmax voxel (it includes the crop's embedding), then ``clicks - 1`` clicks of the
    simulated user (at the centre of the largest error, positive or negative). Seconds; the
    first round also pays the process's first-call costs (``first_click_s`` lists every round).
    """
    import numpy as np

    from seganypet.io import load_image
    from seganypet.io.masks import load_mask
    from seganypet.model.runtime import configure_threads
    from seganypet.prompts import next_click_at_error_centre
    from seganypet.session import Session

    _check_counts(repeats, clicks)
    folder = _sts001_folder(shared_data, "seganypet bench --session")
    num_threads = configure_threads(threads)
    load_times = []
    for _ in range(repeats):
        t, image = _timed(lambda: load_image(folder / "image"))
        load_times.append(t)
    labels, _ = load_mask(folder / "mask" / "1-1.dcm", image, roi_names=["GTV_Mass"])
    truth = labels > 0
    hottest = np.where(truth, image.array, -np.inf)
    voxel = tuple(int(i) for i in np.unravel_index(int(np.argmax(hottest)), hottest.shape))
    model_load_s, net = _timed(lambda: _build(model, seed))

    set_image_times, first_times, later_times = [], [], []
    dice: list[float] = []
    for _ in range(repeats):
        session = Session(net)
        t, _ = _timed(lambda: session.set_image(image))  # noqa: B023
        set_image_times.append(t)
        t, mask = _timed(lambda: session.add_point(voxel))  # noqa: B023
        first_times.append(t)
        dice = [_dice(mask, truth)]
        for _ in range(clicks - 1):
            click = next_click_at_error_centre(mask, truth, image.spacing)
            if click is None:
                break
            t, mask = _timed(
                lambda: session.add_point(click.voxel, positive=click.positive)  # noqa: B023
            )
            later_times.append(t)
            dice.append(_dice(mask, truth))

    result: dict[str, Any] = {
        "image": f"{STS001}/image",
        "shape": list(image.shape),
        "spacing_mm": [round(float(s), 4) for s in image.spacing],
        "target": "GTV_Mass",
        "target_voxels": int(truth.sum()),
        "first_click_voxel": list(voxel),
        "model": str(model) if isinstance(model, (str, Path)) else net.config.preset,
        "preset": net.config.preset,
        "family": net.config.family,
        "threads": num_threads,
        "repeats": repeats,
        "clicks": clicks,
        "load_dicom_s_median": statistics.median(load_times),
        "model_load_s": model_load_s,
        "set_image_s_median": statistics.median(set_image_times),
        "first_click_s_median": statistics.median(first_times),
        "first_click_s": first_times,
        "later_click_s_median": statistics.median(later_times) if later_times else None,
        "later_click_s_min": min(later_times) if later_times else None,
        "later_clicks_timed": len(later_times),
        "dice_after_each_click": [round(d, 4) for d in dice],
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "machine": machine_info(),
    }
    if print_json:
        _print(result)
    return result


# ============================================================================ the server


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _model_file(model: str | Path, folder: Path, seed: int) -> str:
    """What ``seganypet serve --model`` takes: a preset gets random weights saved to a file."""
    from seganypet.model.presets import preset_names

    if isinstance(model, str) and model in preset_names():
        from seganypet.model.checkpoint import save_model

        return str(save_model(_build(model, seed), folder / f"{model}.safetensors"))
    return str(model)


class _ServeProcess:
    """``seganypet serve`` in a subprocess; its output is collected by a thread (never blocks)."""

    def __init__(self, command: list[str], env: dict[str, str]):
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self._url_seen = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)
            if "?token=" in line:
                self._url_seen.set()
        self._url_seen.set()  # the output ended: the process is gone

    def output(self) -> str:
        return "".join(self.lines)

    def wait_until_serving(self, client) -> None:
        """Until the URL is printed and /api/health answers; an error if the process ends first."""
        from seganypet.server.client import ServerError

        self._url_seen.wait()
        while self.process.poll() is None:
            try:
                client.health()
                return
            except (OSError, ServerError):
                time.sleep(0.05)
        raise InputError(f"seganypet serve stopped before serving:\n{self.output()}")

    def stop(self) -> dict[str, Any]:
        """SIGTERM, on which uvicorn shuts down gracefully, then raises the signal again (exit
        code -15); SIGKILL only if it has not ended a minute later (a hang guard)."""
        killed = False
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                killed = True
        self._reader.join()
        self.process.stdout.close()
        code = self.process.returncode
        clean = not killed and code in (0, -signal.SIGTERM)
        return {"exit_code": code, "clean": clean}


def run_server_benchmark(
    model: str | Path = SESSION_DEFAULT_MODEL,
    repeats: int = 5,
    *,
    clicks: int = 5,
    threads: int | None = None,
    shared_data: str | os.PathLike | None = None,
    seed: int = 0,
    print_json: bool = True,
) -> dict[str, Any]:
    """A click's HTTP round trip on a real ``seganypet serve`` (uvicorn, loopback, a token),
    on the real whole-body STS_001 scan.

    The DICOM series is converted to an SUV NIfTI in a temporary study folder, which the server
    serves; the RTSTRUCT's ``GTV_Mass`` gives the sarcoma. A round trip is what the viewer does
    for one click: one ``POST .../prompts``, whose answer carries the changed object's run
    lengths and the statistics. Each of ``repeats`` objects segments the sarcoma anew: its
    first click at the sarcoma's SUVmax voxel, where a reader clicks, then ``clicks - 1``
    clicks of the simulated user (at the centre of the largest error). Milliseconds, measured
    by this client (the viewer adds its drawing on top).
    """

    from seganypet.io import load_image
    from seganypet.io.masks import load_mask
    from seganypet.io.nifti import write_nifti
    from seganypet.model.runtime import configure_threads
    from seganypet.prompts import hottest_voxel, next_click_at_error_centre
    from seganypet.server.client import Client

    _check_counts(repeats, clicks)
    sts001 = _sts001_folder(shared_data, "seganypet bench --server")
    num_threads = configure_threads(threads)  # what serve would pick; given to it explicitly
    image = load_image(sts001 / "image")
    labels, _ = load_mask(sts001 / "mask" / "1-1.dcm", image, roi_names=["GTV_Mass"])
    truth = labels > 0
    hottest = tuple(float(v) for v in hottest_voxel(image.array, truth))
    with tempfile.TemporaryDirectory(prefix="seganypet-bench-") as tmp:
        folder = Path(tmp)
        data = folder / "data"
        data.mkdir()
        write_nifti(image.array, image.affine, data / "sts001.nii.gz", image)
        token = secrets.token_hex(16)
        port = _free_port()
        command = [sys.executable, "-m", "seganypet", "serve", "--data", str(data)]
        command += ["--model", _model_file(model, folder, seed), "--port", str(port)]
        command += ["--token", token, "--work", str(folder / "work")]
        command += ["--threads", str(num_threads)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "XDG_STATE_HOME": str(folder / "state")}
        started = time.perf_counter()
        server = _ServeProcess(command, env)
        try:
            client = Client(f"http://127.0.0.1:{port}", token)
            server.wait_until_serving(client)
            start_s = time.perf_counter() - started
            open_s, _ = _timed(lambda: client.open("sts001.nii.gz"))
            first, later = [], []
            dice: list[list[float]] = []
            for index in range(repeats):
                if index:
                    client.new_object(f"sarcoma {index + 1}")
                click = (hottest, True)
                scores: list[float] = []
                for step in range(clicks):
                    t0 = time.perf_counter()
                    info = client.add_point(click[0], positive=click[1])
                    (first if step == 0 else later).append(time.perf_counter() - t0)
                    mask = client.labels == info["current"] + 1
                    scores.append(round(_dice(mask, truth), 4))
                    if step + 1 < clicks:
                        point = next_click_at_error_centre(mask, truth, image.spacing)
                        if point is None:
                            break
                        click = (point.voxel, point.positive)
                dice.append(scores)
        finally:
            shutdown = server.stop()
    every = first + later
    result: dict[str, Any] = {
        "study": f"{STS001}/image (GTV_Mass from its RTSTRUCT)",
        "shape": list(image.shape),
        "first_click_voxel": [int(v) for v in hottest],
        "model": str(model),
        "threads": num_threads,
        "objects": repeats,
        "clicks": clicks,
        "requests_per_round_trip": ["POST /api/sessions/{id}/prompts"],
        "round_trips": len(every),
        "server_start_s": start_s,
        "open_study_s": open_s,
        "round_trip_ms_median": statistics.median(every) * 1000,
        "round_trip_ms_min": min(every) * 1000,
        "first_click_round_trip_ms_median": statistics.median(first) * 1000,
        "later_click_round_trip_ms_median": statistics.median(later) * 1000 if later else None,
        "dice_after_each_click": dice,
        "server_shutdown": shutdown,
        "machine": machine_info(),
    }
    if print_json:
        _print(result)
    return result


# ============================================================================ quantification


def run_quant_benchmark(
    repeats: int = 5, *, seed: int = 2, print_json: bool = True
) -> dict[str, Any]:
    """SUV statistics of a large ROI (about 2.3 million voxels) on a whole-body-sized image.

    The image is 128 x 128 x 267 (STS_001's grid) of gamma noise; label 1 is a large box and
    label 2 a small one. One untimed warm-up, then ``repeats`` timed :func:`quantify` calls.
    """
    import numpy as np

    from seganypet.image import PetImage
    from seganypet.quant import quantify

    _check_counts(repeats)
    rng = np.random.default_rng(seed)
    array = rng.gamma(2.0, 1.0, size=(128, 128, 267)).astype(np.float32)
    labels = np.zeros(array.shape, dtype=np.uint8)
    labels[10:118, 20:110, 15:250] = 1
    labels[60:70, 60:70, 100:110] = 2
    image = PetImage(array, np.diag([4.6875, 4.6875, 3.27, 1.0]))
    quantify(image, labels)  # warm-up
    times = []
    for _ in range(repeats):
        t, report = _timed(lambda: quantify(image, labels))
        times.append(t)
    result = {
        "shape": list(array.shape),
        "roi_voxels": {str(region.label): region.voxels for region in report.labels},
        "lesion_count": report.lesion_count,
        "repeats": repeats,
        "quantify_s_median": statistics.median(times),
        "quantify_s_min": min(times),
        "machine": machine_info(),
    }
    if print_json:
        _print(result)
    return result


# ============================================================================ RTSTRUCT


def run_rtstruct_benchmark(
    repeats: int = 5,
    *,
    shared_data: str | os.PathLike | None = None,
    print_json: bool = True,
) -> dict[str, Any]:
    """Rasterise STS_001's ``GTV_Mass`` onto its whole-body PET grid by each contour rule."""
    from seganypet.io import load_image
    from seganypet.io.rtstruct import CONTOUR_RULES, rasterise_rtstruct

    _check_counts(repeats)
    folder = _sts001_folder(shared_data, "seganypet bench --rtstruct")
    image = load_image(folder / "image")
    path = folder / "mask" / "1-1.dcm"
    rules = {}
    for rule in CONTOUR_RULES:
        rasterise_rtstruct(path, image, ["GTV_Mass"], rule=rule)  # warm-up
        times = []
        for _ in range(repeats):
            t, masks = _timed(
                lambda: rasterise_rtstruct(path, image, ["GTV_Mass"], rule=rule)  # noqa: B023
            )
            times.append(t)
        voxels = int(masks["GTV_Mass"].sum())
        rules[rule] = {
            "voxels": voxels,
            "volume_ml": round(voxels * image.voxel_volume_ml, 2),
            "rasterise_s_median": statistics.median(times),
            "rasterise_s_min": min(times),
        }
    result = {
        "rtstruct": f"{STS001}/mask/1-1.dcm",
        "roi": "GTV_Mass",
        "shape": list(image.shape),
        "repeats": repeats,
        "rules": rules,
        "machine": machine_info(),
    }
    if print_json:
        _print(result)
    return result


# ============================================================================ batch

IBSI_CROPS = "ibsi_sts_crops"
BATCH_ENGINES = ("local", "dask")
BATCH_WORKER_COUNTS = (1, 2)


class _TimedEngine:
    """An engine whose start (workers up, model loaded) and results are timed."""

    def __init__(self, engine: Any):
        self.engine = engine
        self.name = engine.name
        self.start_s = 0.0
        self.entered = 0.0
        self.last_result = 0.0

    @property
    def workers(self) -> int:
        return self.engine.workers

    def __enter__(self) -> _TimedEngine:
        started = time.perf_counter()
        self.engine.__enter__()
        self.entered = time.perf_counter()
        self.start_s = self.entered - started
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.engine.__exit__(*exc_info)

    def run(self, jobs):
        for outcome in self.engine.run(jobs):
            self.last_result = time.perf_counter()
            yield outcome


def _crops_manifest(crops: Path, studies: int | None, path: Path) -> int:
    """A manifest of the IBSI crops, each with one click at its tumour's most interior voxel."""
    import csv

    import nibabel as nib
    import numpy as np

    from seganypet.prompts import most_interior_voxel

    cases = sorted(p for p in crops.iterdir() if (p / "PET_image.nii.gz").is_file())[:studies]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "study", "prompts"])
        for case in cases:
            mask = nib.load(str(case / "PET_mask.nii.gz"))
            click = most_interior_voxel(np.asarray(mask.dataobj) > 0, mask.header.get_zooms()[:3])
            prompts = {"objects": [{"name": "GTV", "prompts": [{"point": list(click)}]}]}
            writer.writerow([case.name, str(case / "PET_image.nii.gz"), json.dumps(prompts)])
    return len(cases)


def _timed_batch(
    engine_name: str, workers: int, manifest: Path, folder: Path, model: str, threads: int
) -> dict[str, Any]:
    import contextlib

    from seganypet.batch.engines import make_engine
    from seganypet.batch.run import WorkerSetup, run_batch

    setup = WorkerSetup(model, threads)
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        address = None
        if engine_name == "dask":
            from seganypet.batch.dask_engine import LoopbackDaskCluster

            cluster = stack.enter_context(LoopbackDaskCluster(workers, folder / "cluster"))
            address = cluster.address
        cluster_s = time.perf_counter() - started
        engine = _TimedEngine(make_engine(engine_name, setup, workers=workers, address=address))
        summary = run_batch(manifest, folder / "out", engine, setup, progress=False)
    run_s = engine.last_result - engine.entered
    start_s = cluster_s + engine.start_s
    done = len(summary.segmented)
    return {
        "engine": engine_name,
        "workers": workers,
        "segmented": done,
        "failed": len(summary.failures),
        "start_s": start_s,
        "run_s": run_s,
        "studies_per_min": 60.0 * done / run_s if run_s > 0 else None,
        "studies_per_min_with_start": 60.0 * done / (start_s + run_s),
    }


def run_batch_benchmark(
    studies: int | None = None,
    *,
    engines: tuple[str, ...] = BATCH_ENGINES,
    worker_counts: tuple[int, ...] = BATCH_WORKER_COUNTS,
    model: str = SESSION_DEFAULT_MODEL,
    threads: int | None = None,
    shared_data: str | os.PathLike | None = None,
    print_json: bool = True,
) -> dict[str, Any]:
    """``seganypet batch`` on the real IBSI sarcoma crops (``studies`` of them, default all 51),
    one click each, with each engine and worker count: the local engine's processes, and a dask
    cluster started on loopback (a scheduler and one worker process per worker).

    ``start_s`` is the time until the workers are up with the model loaded (for dask, the
    cluster's start included); ``studies_per_min`` counts from then to the last result, and
    ``studies_per_min_with_start`` from the start. ``threads``: torch threads per worker
    (default 1).
    """
    from seganypet.datasets import shared_data_dir

    data = Path(shared_data) if shared_data is not None else shared_data_dir()
    crops = None if data is None else data / IBSI_CROPS
    if crops is None or not crops.is_dir():
        raise InputError(
            f"seganypet bench --batch needs the real IBSI sarcoma crops, not found at "
            f"{crops or '../shared/data/' + IBSI_CROPS}: put the project's shared/ folder beside "
            "the checkout or set SEGANYPET_SHARED to it"
        )
    if studies is not None:
        _check_counts(studies)
    threads = threads or 1
    runs = []
    with tempfile.TemporaryDirectory(prefix="seganypet-bench-batch-") as tmp:
        manifest = Path(tmp) / "manifest.csv"
        count = _crops_manifest(crops, studies, manifest)
        for engine_name in engines:
            for workers in worker_counts:
                folder = Path(tmp) / f"{engine_name}-{workers}"
                runs.append(_timed_batch(engine_name, workers, manifest, folder, model, threads))
    result = {
        "studies": count,
        "data": IBSI_CROPS,
        "model": model,
        "threads_per_worker": threads,
        "runs": runs,
        "machine": machine_info(),
    }
    if print_json:
        _print(result)
    return result


# ============================================================================ command line

DESCRIPTION = """\
Measure how fast seganypet runs on this machine and print the numbers as JSON (nothing is
asserted: tests check behaviour, this command measures speed). Every run reports the machine
(CPU model, the widest vector ISA torch uses, threads, torch version) and the start-up cost:
cli_startup_s (python -m seganypet --help) and torch_import_s (python -c 'import torch').

Modes (several may be given; with none, the network is timed):
  --network   the network's image embedding and per-click decode on a synthetic crop
              (--bf16 and --compare-reference add to it)
  --session   Session clicks on the real whole-body STS_001 scan (../shared/data)
  --server    a click's HTTP round trip (one request) on a real `seganypet serve`, on the
              real whole-body STS_001 scan (../shared/data)
  --quant     SUV statistics of a 2.3-million-voxel ROI on a whole-body-sized image
  --rtstruct  STS_001's GTV_Mass rasterised by both contour rules
  --batch     `seganypet batch` on the 51 real IBSI sarcoma crops (../shared/data): studies per
              minute of the local engine and of a dask cluster on loopback, 1 and 2 workers
              (--studies N: the first N crops; --threads: torch threads per worker, default 1)

--model: for --network a preset gets random weights (the timing does not depend on them) and
defaults to vit_b_ori, the released SegAnyPET network; for --session and --server it defaults
to the bundled model 'default', the one `seganypet serve` and `segment` use (a preset there
also gets random weights, so its masks mean nothing).
"""

EPILOG = """\
examples:
  seganypet bench --model vit_b_ori --compare-reference --repeats 3
  seganypet bench --session --repeats 3
  seganypet bench --server --threads 1
  seganypet bench --quant --rtstruct
  seganypet bench --batch --studies 24
"""


def add_bench_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``bench`` on the ``seganypet`` command's subparsers (imports no torch)."""
    parser = subparsers.add_parser(
        "bench",
        help="Time the network, a session click, a server round trip and start-up on this "
        "machine; prints the measurements as JSON.",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model",
        help="a preset (random weights: vit_b_ori, small, unet_small), 'default' or a checkpoint "
        "path (default: vit_b_ori for --network, default for --session and --server)",
    )
    parser.add_argument(
        "--repeats",
        type=whole_number_at_least(1),
        default=5,
        help="timed repetitions: network timings, sessions, server objects (default 5)",
    )
    parser.add_argument(
        "--clicks",
        type=whole_number_at_least(1),
        default=5,
        help="clicks per timed decode session, session or server object (default 5)",
    )
    parser.add_argument(
        "--bf16", action="store_true", help="also time the bf16 autocast image encoder"
    )
    parser.add_argument(
        "--compare-reference",
        action="store_true",
        help="also time the reference's padded windowed attention",
    )
    add_threads_option(parser)
    parser.add_argument(
        "--network", action="store_true", help="time the network (the default mode)"
    )
    parser.add_argument(
        "--session", action="store_true", help="time Session clicks on the real STS_001 scan"
    )
    parser.add_argument(
        "--server",
        action="store_true",
        help="time a click's round trip on seganypet serve, on the real STS_001 scan",
    )
    parser.add_argument(
        "--quant", action="store_true", help="time SUV statistics of a large whole-body ROI"
    )
    parser.add_argument(
        "--rtstruct",
        action="store_true",
        help="time rasterising STS_001's GTV_Mass by both contour rules",
    )
    parser.add_argument(
        "--batch",
        action="store_true",
        help="time seganypet batch on the real IBSI crops: local and dask engines, 1 and 2 workers",
    )
    parser.add_argument(
        "--studies",
        type=whole_number_at_least(1),
        help="--batch: the first N IBSI crops (default: all 51)",
    )
    parser.add_argument(
        "--startup-runs",
        type=whole_number_at_least(1),
        default=3,
        help="fresh interpreters timed for cli_startup_s and torch_import_s (default 3)",
    )
    parser.set_defaults(func=run_bench_command)
    return parser


def run_bench_command(args: argparse.Namespace) -> dict[str, Any]:
    """``seganypet bench``: run the chosen modes and print one JSON object with all of them."""
    others = args.session or args.server or args.quant or args.rtstruct or args.batch
    network = args.network or args.bf16 or args.compare_reference or not others
    result: dict[str, Any] = {
        "startup": run_startup_benchmark(args.startup_runs, print_json=False),
    }
    counts = {"repeats": args.repeats, "clicks": args.clicks, "threads": args.threads}
    if network:
        result["network"] = run_benchmark(
            args.model or NETWORK_DEFAULT_MODEL,
            bf16=args.bf16,
            compare_reference=args.compare_reference,
            print_json=False,
            **counts,
        )
    if args.session:
        result["session"] = run_session_benchmark(
            args.model or SESSION_DEFAULT_MODEL, print_json=False, **counts
        )
    if args.server:
        result["server"] = run_server_benchmark(
            args.model or SESSION_DEFAULT_MODEL, print_json=False, **counts
        )
    if args.quant:
        result["quant"] = run_quant_benchmark(args.repeats, print_json=False)
    if args.rtstruct:
        result["rtstruct"] = run_rtstruct_benchmark(args.repeats, print_json=False)
    if args.batch:
        result["batch"] = run_batch_benchmark(
            args.studies,
            model=args.model or SESSION_DEFAULT_MODEL,
            threads=args.threads,
            print_json=False,
        )
    machine = machine_info()
    for section in result.values():
        section.pop("machine", None)
    result = {"machine": machine, **result}
    _print(result)
    return result
