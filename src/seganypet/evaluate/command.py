"""The ``seganypet evaluate`` subcommand: arguments, and a short table of the results."""

from __future__ import annotations

import argparse
import shlex
import sys
import textwrap
from pathlib import Path
from typing import Any

from seganypet.cli_options import add_model_option, add_threads_option, whole_number_at_least
from seganypet.datasets import LESION_KEYWORDS, MIN_OBJECT_ML
from seganypet.errors import InputError
from seganypet.evaluate.protocols import FIRST_CLICKS, PROTOCOLS

DESCRIPTION = """\
Evaluate promptable segmentation with a simulated user, and/or the classical baselines.

Every label of every case is an object, and every 26-connected component of a lesion label
(lesion, tumour, GTV, ...); objects under 0.1 ml are skipped (the rule training uses). For each
object a fresh session
gets the PET image and the simulated user's prompts only: its crops are placed from the
clicks, never from the ground truth. After each step the mask is scored: Dice, NSD at 2 mm,
HD95 (mm), and the autoPET false-positive and false-negative volumes (ml).

Protocols (seganypet.evaluate.protocols describes each rule in full):
{protocols}

Data (--data, repeatable): an nnU-Net raw folder (dataset.json, imagesTr/, labelsTr/), a
folder of case folders with PET_image.nii.gz and PET_mask.nii.gz (IBSI crops), or a manifest
(.json, .csv, or a folder holding manifest.json/.csv); JSON: [{"case": "A", "image": PATH,
"mask": PATH, "roi": ["GTV_Mass"], "labels": {"1": "GTV"}, "liver_centre": [i, j, k]}] (mask:
NIfTI label map, DICOM SEG or RTSTRUCT). See seganypet.datasets, shared with training.

A model that records its training cases (every model seganypet train writes) is never scored
on them unawares: a case whose image it was trained on is refused, or, with
--include-training-cases, scored and listed as a training case in summary.json.
""".replace(
    "{protocols}",
    "\n".join(
        textwrap.fill(
            protocol.summary + (" (--first-click applies)" if protocol.takes_first_click else ""),
            width=92,
            initial_indent=f"  {name:14s} ",
            subsequent_indent=" " * 17,
        )
        for name, protocol in PROTOCOLS.items()
    ),
)

EPILOG = """\
Writes to REPORT_DIR: per_step.csv (case, object, label, method, step, prompt_type, dice,
nsd, hd95, fp_ml, fn_ml, seconds, prompt), summary.json and dice_vs_clicks.png. Running the
same command again resumes: objects already in per_step.csv are skipped.

examples:
  seganypet evaluate --data ../shared/data/ibsi_sts_crops --protocol clicks --baselines -o report
  seganypet evaluate --data synth --model default --protocol autopet --clicks 10 \\
      --labels lesion --cases 'case_00*' -o report_autopet
"""


def add_evaluate_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``evaluate`` on the ``seganypet`` command's subparsers."""
    parser = subparsers.add_parser(
        "evaluate",
        help="Evaluate a model and/or the classical baselines with a simulated user: "
        "Dice, NSD, HD95 and autoPET volumes per click.",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--data",
        action="append",
        required=True,
        metavar="DIR",
        help="nnU-Net raw folder, folder of IBSI-style case folders, or manifest .json/.csv "
        "(repeat for several)",
    )
    add_model_option(
        parser, default=None, more="; leave out with --baselines to run the baselines only"
    )
    add_threads_option(parser)
    parser.add_argument(
        "--protocol",
        choices=list(PROTOCOLS),
        default="clicks",
        help="how the simulated user prompts (default: clicks; see above)",
    )
    parser.add_argument(
        "--clicks",
        type=whole_number_at_least(1),
        default=5,
        metavar="N",
        help="interaction steps per object: clicks, box + clicks, or click pairs for autopet "
        "(default: 5; autoPET IV uses 10)",
    )
    parser.add_argument(
        "--flips",
        action="store_true",
        help="test-time flips: average the model over the crop and its mirror images along "
        "each axis (4x the work per crop and per click)",
    )
    parser.add_argument(
        "--first-click",
        choices=FIRST_CLICKS,
        default="interior",
        help="where clicks and box-clicks click first, and the baselines grow from: the "
        "object's most interior voxel (default), its hottest voxel (SUVmax, where a reader "
        "clicks), or a random voxel of it (--seed)",
    )
    parser.add_argument(
        "--baselines",
        action="store_true",
        help="add the region-growing baselines suv2.5, suv4.0, pct41, pct50 (and percist where "
        "a liver label or liver_centre exists), grown from the protocol's first click",
    )
    parser.add_argument(
        "--baseline-seed",
        choices=["first-click", "suv-max"],
        default="first-click",
        help="where the baselines grow from: the protocol's first click (default) or the "
        "object's hottest voxel, where a reader would seed a threshold tool",
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        metavar="REPORT_DIR",
        help="report folder (created; an existing one with the same settings is resumed)",
    )
    parser.add_argument(
        "--cases",
        metavar="NAMES",
        help="only these cases: names or shell globs, comma-separated (e.g. STS_016,STS_017 "
        "or 'STS_01*')",
    )
    parser.add_argument(
        "--labels",
        metavar="NAMES",
        help="only objects of these labels: names or values, comma-separated (e.g. lesion)",
    )
    parser.add_argument(
        "--lesion-labels",
        metavar="NAMES",
        help="the labels split into connected components, comma-separated (default: labels "
        f"whose name contains {', '.join(LESION_KEYWORDS[:-1])} or {LESION_KEYWORDS[-1]})",
    )
    parser.add_argument(
        "--seed",
        type=whole_number_at_least(0),
        default=0,
        help="seed of clicks-random, the random first click and the autopet draws (default: 0)",
    )
    parser.add_argument(
        "--min-object-ml",
        type=float,
        default=MIN_OBJECT_ML,
        metavar="ML",
        help=f"skip objects smaller than this (default: {MIN_OBJECT_ML:g} ml, as in training)",
    )
    parser.add_argument(
        "--nsd-tolerance-mm",
        type=float,
        default=2.0,
        metavar="MM",
        help="tolerance of the normalised surface Dice (default: 2 mm)",
    )
    parser.add_argument(
        "--include-training-cases",
        action="store_true",
        help="score cases the model was trained on (refused otherwise), marked in the summary",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_evaluate_command)
    return parser


def run_evaluate_command(args: argparse.Namespace) -> None:
    """``seganypet evaluate``: run, then print the Dice per method and where the report is."""
    from seganypet.evaluate.runner import (
        PER_STEP_FILE,
        PLOT_FILE,
        SUMMARY_FILE,
        EvaluationSettings,
        run_evaluation,
    )

    settings = EvaluationSettings(
        data=tuple(str(d) for d in args.data),
        report_dir=args.output,
        protocol=args.protocol,
        clicks=args.clicks,
        first_click=args.first_click,
        model=args.model,
        flips=args.flips,
        baselines=args.baselines,
        baseline_seed=args.baseline_seed,
        seed=args.seed,
        cases=_names(args.cases, "--cases"),
        labels=_names(args.labels, "--labels"),
        lesion_labels=_names(args.lesion_labels, "--lesion-labels"),
        min_object_ml=args.min_object_ml,
        nsd_tolerance_mm=args.nsd_tolerance_mm,
        include_training_cases=args.include_training_cases,
        progress=not args.no_progress,
        command=command_line(args),
    )
    summary = run_evaluation(settings, threads=args.threads)
    print_results(summary)
    for name in (PER_STEP_FILE, SUMMARY_FILE, PLOT_FILE):
        print(f"wrote {args.output / name}")


def print_results(summary: dict[str, Any]) -> None:
    counts = summary["counts"]
    print(
        f"protocol {summary['protocol']}: {counts['objects']} objects in {counts['cases']} cases"
        + (
            f" ({counts['objects_resumed_from_earlier_runs']} resumed)"
            if counts["objects_resumed_from_earlier_runs"]
            else ""
        )
    )
    print(
        f"{'method':28s} {'objects':>7s} {'Dice@1':>7s} {'Dice@last':>9s} {'AUC Dice':>8s} "
        f"{'worse':>6s}"
    )
    for method, data in summary["methods"].items():
        steps = data["steps"]
        auc = data["auc"]["dice_mean"] if data["auc"] else None
        lowering = data.get("clicks_lowering_dice") or {}
        worse = lowering.get("fraction")
        print(
            f"{method:28s} {data['objects']:7d} {_fmt(steps[0]['dice_mean']):>7s} "
            f"{_fmt(steps[-1]['dice_mean']):>9s} {_fmt(auc):>8s} "
            f"{'-' if worse is None else f'{100 * worse:.0f} %':>6s}"
        )
    scored = (summary.get("training_cases") or {}).get("scored") or {}
    if scored:
        print(f"training cases scored (--include-training-cases): {', '.join(scored)}")
    for name, reason in summary["baselines"]["skipped"].items():
        print(f"{name}: {reason}")


def command_line(args: argparse.Namespace) -> str:
    """The command as typed when it can be told (sys.argv), else rebuilt from the arguments."""
    argv = sys.argv[1:]
    if "evaluate" in argv and Path(sys.argv[0]).name in ("seganypet", "__main__.py"):
        return shlex.join(["seganypet", *argv])
    parts = ["seganypet", "evaluate"]
    for data in args.data:
        parts += ["--data", str(data)]
    if args.model is not None:
        parts += ["--model", args.model]
    if args.flips:
        parts.append("--flips")
    parts += ["--protocol", args.protocol, "--clicks", str(args.clicks)]
    parts += ["--first-click", args.first_click]
    if args.baselines:
        parts += ["--baselines", "--baseline-seed", args.baseline_seed]
    for option, value in (
        ("--cases", args.cases),
        ("--labels", args.labels),
        ("--lesion-labels", args.lesion_labels),
    ):
        if value is not None:
            parts += [option, value]
    parts += ["--seed", str(args.seed)]
    parts += ["--min-object-ml", f"{args.min_object_ml:g}"]
    parts += ["--nsd-tolerance-mm", f"{args.nsd_tolerance_mm:g}"]
    if args.include_training_cases:
        parts.append("--include-training-cases")
    parts += ["-o", str(args.output)]
    return shlex.join(parts)


def _names(text: str | None, option: str) -> tuple[str, ...] | None:
    if text is None:
        return None
    names = tuple(p.strip() for p in text.split(",") if p.strip())
    if not names:
        raise InputError(f"{option} needs names separated by commas, got {text!r}")
    return names


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
