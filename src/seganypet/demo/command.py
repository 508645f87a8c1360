"""``seganypet demo``: the bundled model on a phantom (and the real STS_001 when present)."""

from __future__ import annotations

import argparse
from pathlib import Path

from seganypet.cli_options import add_command, add_model_option


def add_demo_parser(subparsers) -> None:
    """Register ``demo`` on the ``seganypet`` subparsers."""
    p = add_command(
        subparsers,
        "demo",
        cmd_demo,
        "Segment a lesion and an organ of a synthetic whole-body phantom with simulated clicks "
        "and the bundled model (and the sarcoma of the real STS_001 scan when ../shared/data is "
        "present); writes images, masks, SUV statistics and coronal MIP figures.",
    )
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("seganypet-demo"),
        help="output folder (default ./seganypet-demo)",
    )
    add_model_option(p)
    p.add_argument("--seed", type=int, default=0, help="phantom seed (default 0)")
    p.add_argument("--clicks", type=int, default=3, help="simulated clicks per object (default 3)")
    p.add_argument("--no-real", action="store_true", help="skip the real STS_001 case")


def cmd_demo(args: argparse.Namespace) -> None:
    from seganypet.demo.run import run_demo

    run_demo(args.output, args.model, args.seed, args.clicks, real=not args.no_real)
