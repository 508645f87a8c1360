"""``seganypet batch MANIFEST -o OUT``: segment a cohort, one manifest row per study.

Importing this module imports nothing heavy (``seganypet --help`` builds every parser).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from seganypet.batch.engines import ENGINES
from seganypet.cli_options import (
    add_command,
    add_dicom_options,
    add_dicomweb_options,
    add_log_level_option,
    add_model_option,
    add_threads_option,
    dicom_options,
    dicomweb_settings,
    whole_number_at_least,
)

MANIFEST_HELP = (
    "CSV or JSON, one row per study. Columns: study (a NIfTI file in SUV or a DICOM folder, "
    "relative to the manifest), prompts (inline JSON or a prompts file: "
    '{"coordinates": "voxel"|"mm", "objects": [{"name": ..., "prompts": [{"point": [x, y, z], '
    '"positive": true}, {"box": [x0, y0, z0, x1, y1, z1]}]}]}, a list of prompts, or an autoPET '
    'IV click file {"tumor": [[x, y, z], ...], "background": [...]}); optional: id, coordinates '
    "(voxel or mm), and SUV overrides of a DICOM study: series, suv, lbm_formula, weight_kg, "
    "height_cm, sex, dose_mbq, injection_time; or, instead of study, dicomweb_study_uid (and "
    "dicomweb_series_uid) of a PET series on the --dicomweb server. Coordinates are voxel "
    "indices in the order of the input image's array axes (for DICOM: column, row, slice) "
    "unless mm is said (world millimetres, RAS+)"
)


def add_batch_parser(subparsers) -> None:
    """Register ``batch`` on the ``seganypet`` subparsers."""
    p = add_command(
        subparsers,
        "batch",
        cmd_batch,
        "Segment a cohort from a manifest of studies and their prompts: a label map per study, "
        "one statistics table (CSV and Parquet) and a failures table; a rerun skips studies "
        "already done. Coordinates are voxel indices in the input array's axis order unless "
        "mm is said.",
    )
    p.add_argument("manifest", type=Path, metavar="MANIFEST", help=MANIFEST_HELP)
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        metavar="OUT",
        help="output folder: masks/, records/ (what is done), statistics.csv, "
        "statistics.parquet, failures.csv",
    )
    add_model_option(p)
    p.add_argument(
        "--format",
        choices=["nifti", "dicom-seg"],
        default="nifti",
        help="label maps of DICOM studies: NIfTI, or DICOM SEG referencing the PT series "
        "(NIfTI studies always get NIfTI; default: nifti)",
    )
    p.add_argument(
        "--engine",
        choices=ENGINES,
        default="local",
        help="local: worker processes on this machine; dask: the workers of a running "
        "dask.distributed cluster at --address (default: local)",
    )
    p.add_argument(
        "--workers",
        type=whole_number_at_least(1),
        metavar="N",
        help="local: worker processes (default: one per CPU); dask: wait for N workers "
        "before starting (default: those connected)",
    )
    p.add_argument(
        "--address",
        metavar="tcp://HOST:PORT",
        help="the dask scheduler's address (--engine dask)",
    )
    add_threads_option(
        p,
        more=" per worker (local default: CPUs / workers; dask default: 1, one worker "
        "thread per core)",
    )
    p.add_argument(
        "--reference-order",
        action="store_true",
        help="SAM-Med3D models: attention in the reference implementation's order (slower)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_log_level_option(p)
    add_dicom_options(p)
    add_dicomweb_options(
        p,
        "rows naming dicomweb_study_uid are fetched from it (WADO-RS) and their DICOM SEG "
        "stored back (STOW-RS)",
    )


def cmd_batch(args: argparse.Namespace) -> None:
    from seganypet.batch.engines import make_engine
    from seganypet.batch.run import FAILURES_CSV, STATISTICS_CSV, WorkerSetup, run_batch

    setup = WorkerSetup(args.model, args.threads, args.reference_order)
    dicomweb = dicomweb_settings(args)
    engine = make_engine(args.engine, setup, workers=args.workers, address=args.address)
    summary = run_batch(
        args.manifest,
        args.output,
        engine,
        setup,
        load_options=dicom_options(args),
        mask_format=args.format,
        progress=not args.no_progress,
        dicomweb=dicomweb,
    )
    total = len(summary.segmented) + len(summary.skipped) + len(summary.failures)
    print(
        f"{total} studies: {len(summary.segmented)} segmented, {len(summary.skipped)} already "
        f"done (skipped), {len(summary.failures)} failed"
        + (
            f"; {summary.studies_per_minute:.1f} studies/min on {summary.workers} "
            f"{summary.engine} workers"
            if summary.segmented
            else ""
        )
    )
    print(f"wrote {summary.out / STATISTICS_CSV} (and .parquet), {summary.out / FAILURES_CSV}")
    for failure in summary.failures:
        print(f"failed: {failure.reason}")
