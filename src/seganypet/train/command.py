"""The ``train`` subcommand: ``add_train_parser(subparsers)`` registers it on the CLI."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from seganypet.cli_options import add_threads_option
from seganypet.errors import InputError

TRAIN_HELP = "Train or fine-tune a promptable network from labelled PET with simulated clicks."

TRAIN_DESCRIPTION = (
    TRAIN_HELP
    + " Data: nnU-Net v2 raw folders (dataset.json, imagesTr, labelsTr), IBSI-style crops folders"
    " or manifests (.json/.csv), as for evaluate; cases are cached once at the network's spacing."
    " Every label and every lesion component of at least 0.1 ml is a prompt target, as in"
    " evaluate. Writes RUN/config.json, log.csv, val.csv, last.pt (for --resume) and"
    " model.safetensors (for segment --model). Several processes: torchrun --nproc-per-node N"
    " -m seganypet.cli train ... Every key of the training config can be set with --config FILE"
    " (YAML or JSON) or --set KEY=VALUE; flags win over the file."
)


def _parse_setting(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        parsed: object = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return key.strip().replace("-", "_"), parsed


def add_train_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``train`` on an ``argparse`` subparsers object; returns its parser."""
    p = subparsers.add_parser("train", help=TRAIN_HELP, description=TRAIN_DESCRIPTION)
    p.add_argument(
        "--data",
        action="append",
        metavar="DIR[,DIR]",
        help="training data: nnU-Net v2 raw folders, crops folders and/or manifests, "
        "comma-separated or repeated",
    )
    p.add_argument("--out", type=Path, required=True, metavar="RUN", help="the run folder")
    p.add_argument(
        "--preset", help="network preset for a fresh network (default: small); not with --init"
    )
    p.add_argument("--steps", type=int, metavar="N", help="total optimiser steps (default 2000)")
    p.add_argument(
        "--resume", action="store_true", help="continue the run in RUN exactly where it stopped"
    )
    p.add_argument(
        "--init",
        metavar="CHECKPOINT",
        help="fine-tune from a checkpoint: a released SegAnyPET/SAM-Med3D .pth or a .safetensors",
    )
    p.add_argument(
        "--config", type=Path, metavar="FILE", help="training config, YAML or JSON (flat keys)"
    )
    p.add_argument(
        "--cpcl",
        action="store_true",
        default=None,
        help="cross-prompting label rectification for low-quality labels (see the docs)",
    )
    p.add_argument("--batch-size", type=int, metavar="N", help="crops per process and step")
    p.add_argument("--lr", type=float, metavar="RATE", help="peak learning rate")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--cache", metavar="DIR", help="cache folder (default ~/.cache/seganypet/train)")
    p.add_argument("--stop-at", type=int, metavar="STEP", help="stop after STEP with a checkpoint")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default: auto")
    add_threads_option(p, more="; per process when training runs in several")
    p.add_argument("--no-progress", action="store_true", default=None, help="no progress bar")
    p.add_argument(
        "--set",
        dest="settings",
        action="append",
        type=_parse_setting,
        default=[],
        metavar="KEY=VALUE",
        help="any training config key, e.g. --set click_rounds=8 (repeatable)",
    )
    p.set_defaults(func=run_train_command)
    return p


def overrides_from_args(args: argparse.Namespace) -> dict[str, object]:
    """The config keys the command line sets: ``--set`` pairs, then the named flags."""
    flags = {
        "data": ",".join(args.data) if args.data else None,
        "out": str(args.out),
        "preset": args.preset,
        "steps": args.steps,
        "init": args.init,
        "cpcl": args.cpcl,
        "batch_size": args.batch_size,
        "learning_rate": args.lr,
        "seed": args.seed,
        "cache_dir": args.cache,
        "stop_at_step": args.stop_at,
        "device": args.device,
        "num_threads": args.threads,
        "progress": False if args.no_progress else None,
    }
    overrides: dict[str, object] = dict(args.settings or [])
    overrides.update({k: v for k, v in flags.items() if v is not None})
    return overrides


def run_train_command(args: argparse.Namespace) -> None:
    from seganypet.train.config import resolve_config
    from seganypet.train.loop import stored_config, train

    stored = stored_config(args.out) if args.resume else None
    config = resolve_config(overrides_from_args(args), args.config, stored)
    if not config.data:
        raise InputError("no training data given; pass --data DIR[,DIR]")
    summary = train(config, resume=args.resume)
    if os.environ.get("RANK", "0") not in ("", "0"):
        return
    parts = [f"step {summary.step}"]
    if summary.loss is not None:
        parts.append(f"loss {summary.loss:.4f}")
    if summary.samples_per_second is not None:
        parts.append(f"{summary.samples_per_second:.2f} samples/s")
    if summary.validation:
        parts.extend(f"{k} {v:.3f}" for k, v in summary.validation.items())
    print(f"{', '.join(parts)}; model: {summary.run_dir / 'model.safetensors'}")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m seganypet.train ...``: the same as ``seganypet train ...``."""
    parser = argparse.ArgumentParser(prog="seganypet")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_train_parser(sub)
    args = parser.parse_args(["train", *(sys.argv[1:] if argv is None else argv)])
    try:
        args.func(args)
    except InputError as exc:
        print(f"seganypet train: error: {exc}", file=sys.stderr)
        return 2
    return 0


__all__ = ["add_train_parser", "main", "overrides_from_args", "run_train_command"]
