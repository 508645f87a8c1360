"""``seganypet convert-checkpoint``: a released ``.pth`` to seganypet's ``.safetensors``."""

from __future__ import annotations

import argparse
from pathlib import Path

from seganypet.cli_options import add_command


def add_convert_checkpoint_parser(subparsers) -> None:
    """Register ``convert-checkpoint`` on the ``seganypet`` subparsers."""
    p = add_command(
        subparsers,
        "convert-checkpoint",
        cmd_convert_checkpoint,
        "Convert a released SegAnyPET/SAM-Med3D .pth checkpoint to seganypet's .safetensors "
        "(never executes pickled code).",
    )
    p.add_argument(
        "input",
        type=Path,
        help="a .pth checkpoint (top-level model_state_dict or a bare state dict)",
    )
    p.add_argument("output", type=Path, help="output .safetensors (weights plus the JSON config)")
    p.add_argument(
        "--description", help="free text stored in the config (provenance of the weights)"
    )


def cmd_convert_checkpoint(args: argparse.Namespace) -> None:
    from seganypet.model import convert_checkpoint

    config = convert_checkpoint(args.input, args.output, description=args.description)
    print(
        f"wrote {args.output}: preset {config.preset}, {config.input_size[0]}³ crops at {config.spacing_mm[0]} mm"
    )
