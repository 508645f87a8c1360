"""`seganypet bench`: every mode runs and reports what it measured (structure and sanity only;
speed is never judged here)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import shared_path
from seganypet.bench import (
    run_batch_benchmark,
    run_benchmark,
    run_rtstruct_benchmark,
    run_server_benchmark,
    run_session_benchmark,
)
from seganypet.cli import build_parser, main
from seganypet.errors import InputError

MACHINE_KEYS = {"cpu", "vector_isa", "cores", "threads", "torch", "python", "platform"}


def _positive(section: dict, *keys: str) -> None:
    for key in keys:
        assert section[key] > 0, (key, section[key])


def test_benchmark_reports_timings_memory_and_the_reference_comparison(capsys):
    result = run_benchmark("small", repeats=1, bf16=True, clicks=2, compare_reference=True)
    printed = json.loads(capsys.readouterr().out)
    assert printed == result
    assert result["preset"] == "small" and result["threads"] >= 1
    assert set(result["machine"]) == MACHINE_KEYS
    assert result["embed_s_median"] > 0 and result["decode_s_per_click_median"] > 0
    assert result["peak_rss_mb"] > 0
    assert result["bf16"]["embed_s_median"] > 0
    assert result["bf16"]["max_abs_diff_vs_fp32"] < 0.05 * result["bf16"]["embedding_abs_max"]
    # small's windows tile its grid exactly, so both attentions compute the same sums
    assert result["reference"]["max_abs_diff_vs_fast"] < 1e-4
    assert result["reference"]["speedup"] > 0


def test_importing_the_bench_module_does_not_import_torch():
    code = "import sys, seganypet.bench; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_the_bench_command_keeps_its_options_and_refuses_zero_repeats(capsys):
    parser = build_parser()
    args = parser.parse_args(
        ["bench", "--model", "small", "--repeats", "2", "--clicks", "3", "--bf16"]
        + ["--compare-reference", "--threads", "1", "--session", "--server", "--batch"]
        + ["--studies", "4"]
    )
    assert (args.model, args.repeats, args.clicks, args.threads) == ("small", 2, 3, 1)
    assert args.bf16 and args.compare_reference and args.session and args.server
    assert args.batch and args.studies == 4
    assert args.func.__name__ == "run_bench_command"
    assert parser.parse_args(["bench"]).model is None  # each mode picks its own default
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "--repeats", "0"])
    assert "expected 1 or more" in capsys.readouterr().err


def test_the_command_prints_machine_startup_and_quant_as_one_json_object(capsys):
    assert main(["bench", "--quant", "--repeats", "1", "--startup-runs", "1"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert list(printed) == ["machine", "startup", "quant"]  # --quant alone: no network
    machine = printed["machine"]
    assert set(machine) == MACHINE_KEYS and machine["threads"] >= 1 and machine["cpu"]
    startup = printed["startup"]
    _positive(startup, "cli_startup_s", "torch_import_s")
    assert startup["runs"] == 1 and isinstance(startup["cli_help_imports_torch"], bool)
    quant = printed["quant"]
    assert quant["shape"] == [128, 128, 267] and quant["lesion_count"] == 2
    assert quant["roi_voxels"] == {"1": 108 * 90 * 235 - 1000, "2": 1000}  # 2 lies inside 1
    _positive(quant, "quantify_s_median", "quantify_s_min")


def test_session_mode_clicks_the_real_sarcoma(capsys):
    data = shared_path("data")
    shared_path("data", "sts001_wholebody_ge")
    result = run_session_benchmark("default", repeats=1, clicks=2, threads=1, shared_data=data)
    assert json.loads(capsys.readouterr().out) == result
    assert result["shape"] == [128, 128, 267] and result["target_voxels"] == 5095
    assert result["family"] == "prompt_unet" and result["threads"] == 1
    _positive(result, "load_dicom_s_median", "model_load_s", "set_image_s_median")
    _positive(result, "first_click_s_median", "later_click_s_median", "peak_rss_mb")
    assert len(result["first_click_s"]) == 1 and result["later_clicks_timed"] == 1
    # the first click lands on the sarcoma: the bundled model finds part of it
    assert len(result["dice_after_each_click"]) == 2
    assert result["dice_after_each_click"][0] > 0.1


def test_session_and_rtstruct_modes_say_where_the_scan_should_be(tmp_path):
    with pytest.raises(InputError, match="STS_001"):
        run_session_benchmark("default", repeats=1, shared_data=tmp_path)
    with pytest.raises(InputError, match="SEGANYPET_SHARED"):
        run_rtstruct_benchmark(1, shared_data=tmp_path)


def test_rtstruct_mode_rasterises_gtv_mass_by_both_rules(capsys):
    result = run_rtstruct_benchmark(1, shared_data=shared_path("data"))
    assert json.loads(capsys.readouterr().out) == result
    centre, overlap = result["rules"]["centre"], result["rules"]["any-overlap"]
    assert centre["voxels"] == 5095 and overlap["voxels"] > centre["voxels"]
    _positive(centre, "rasterise_s_median")
    _positive(overlap, "rasterise_s_median")


def test_server_mode_times_a_click_round_trip_on_sts001_and_stops_the_server(capsys):
    pytest.importorskip("uvicorn")
    result = run_server_benchmark(
        "unet_small", repeats=1, clicks=2, threads=1, shared_data=shared_path("data")
    )
    assert json.loads(capsys.readouterr().out) == result
    assert result["round_trips"] >= 1 and result["threads"] == 1
    assert result["shape"] == [128, 128, 267] and result["study"].startswith("sts001")
    _positive(result, "server_start_s", "open_study_s", "round_trip_ms_median")
    _positive(result, "round_trip_ms_min")
    assert result["requests_per_round_trip"] == ["POST /api/sessions/{id}/prompts"]
    assert result["round_trip_ms_min"] <= result["round_trip_ms_median"]
    assert result["server_shutdown"]["clean"], result["server_shutdown"]
    assert set(result["machine"]) == MACHINE_KEYS


def test_batch_mode_reports_studies_per_minute_of_each_engine_on_the_real_crops(capsys):
    result = run_batch_benchmark(3, worker_counts=(1,), threads=1, shared_data=shared_path("data"))
    assert json.loads(capsys.readouterr().out) == result
    assert result["studies"] == 3 and result["data"] == "ibsi_sts_crops"
    assert [(run["engine"], run["workers"]) for run in result["runs"]] == [
        ("local", 1),
        ("dask", 1),
    ]
    for run in result["runs"]:
        assert run["segmented"] == 3 and run["failed"] == 0
        _positive(run, "start_s", "run_s", "studies_per_min", "studies_per_min_with_start")
    assert set(result["machine"]) == MACHINE_KEYS
