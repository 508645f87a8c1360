"""The `seganypet` command.

Every subcommand parses its arguments, calls the library and prints. A user mistake raises
`InputError`, which becomes one line on stderr and exit status 2: never a traceback.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from seganypet.batch.command import add_batch_parser
from seganypet.bench import add_bench_parser
from seganypet.cli_options import OneLineParser, configure_logging
from seganypet.demo.command import add_demo_parser
from seganypet.errors import InputError
from seganypet.evaluate.command import add_evaluate_parser
from seganypet.io.command import add_io_parsers
from seganypet.model.command import add_convert_checkpoint_parser
from seganypet.segment import add_segment_parser, join_coordinate_arguments
from seganypet.server.command import add_serve_parser
from seganypet.synth.command import add_synth_parser
from seganypet.train.command import add_train_parser

EXIT_USER_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="seganypet",
        description="Promptable 3D segmentation of whole-body PET, with SUV metrics. "
        "Voxel coordinates are indices in the order of the input image's array axes "
        "(for DICOM: column, row, slice) unless --mm is given.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for add_parser in (
        add_io_parsers,
        add_segment_parser,
        add_convert_checkpoint_parser,
        add_synth_parser,
        add_demo_parser,
        add_train_parser,
        add_bench_parser,
        add_serve_parser,
        add_evaluate_parser,
        add_batch_parser,
    ):
        add_parser(sub)
    return parser


def _version() -> str:
    from seganypet import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(join_coordinate_arguments(sys.argv[1:] if argv is None else argv))

    def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"seganypet {args.command}: warning: {message}", file=sys.stderr)

    warnings.showwarning = show_warning
    if getattr(args, "log_level", None):
        configure_logging(args.log_level)
    try:
        args.func(args)
    except InputError as exc:
        print(f"seganypet {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"seganypet {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
