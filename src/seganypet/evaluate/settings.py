"""What an evaluation run is asked to do (:class:`EvaluationSettings`) and what happened during it
(:class:`RunRecord`): read by the runner that does it and by the report that describes it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seganypet.datasets import MIN_OBJECT_ML
from seganypet.errors import InputError
from seganypet.evaluate.metrics import NSD_TOLERANCE_MM
from seganypet.evaluate.protocols import check_first_click, check_protocol

DEFAULT_CLICKS = 5
RUN_FORMAT = 3  # 2: first_click; 3: flips
BASELINE_SEEDS = ("first-click", "suv-max")


@dataclass(frozen=True)
class EvaluationSettings:
    """What to evaluate and how; ``model`` None with ``baselines`` runs the baselines only."""

    data: tuple[str, ...]
    report_dir: Path
    protocol: str = "clicks"
    clicks: int = DEFAULT_CLICKS
    first_click: str = "interior"
    model: str | None = None
    flips: bool = False
    baselines: bool = False
    baseline_seed: str = "first-click"
    seed: int = 0
    cases: tuple[str, ...] | None = None
    labels: tuple[str, ...] | None = None
    lesion_labels: tuple[str, ...] | None = None
    min_object_ml: float = MIN_OBJECT_ML
    nsd_tolerance_mm: float = NSD_TOLERANCE_MM
    include_training_cases: bool = False
    progress: bool = True
    command: str | None = None

    def check(self) -> None:
        check_protocol(self.protocol)
        if self.clicks < 1:
            raise InputError(f"--clicks must be at least 1, got {self.clicks}")
        check_first_click(self.first_click, self.protocol)
        if self.model is None and not self.baselines:
            raise InputError(
                "nothing to evaluate: give --model (default or a checkpoint) and/or --baselines"
            )
        if self.baseline_seed not in BASELINE_SEEDS:
            raise InputError(
                f"unknown baseline seed {self.baseline_seed!r}; choose one of "
                + ", ".join(BASELINE_SEEDS)
            )
        if self.seed < 0:
            raise InputError(f"--seed must be a non-negative whole number, got {self.seed}")
        if self.min_object_ml < 0 or self.nsd_tolerance_mm < 0:
            raise InputError("--min-object-ml and --nsd-tolerance-mm cannot be negative")

    def meaning(self) -> dict[str, Any]:
        """The settings that decide what a row of per_step.csv means (checked on resuming)."""
        return {
            "format": RUN_FORMAT,
            "protocol": self.protocol,
            "clicks": self.clicks,
            "first_click": self.first_click,
            "flips": self.flips,
            "seed": self.seed,
            "baseline_seed": self.baseline_seed,
            "min_object_ml": self.min_object_ml,
            "nsd_tolerance_mm": self.nsd_tolerance_mm,
            "lesion_labels": list(self.lesion_labels) if self.lesion_labels else None,
        }


@dataclass
class RunRecord:
    """What happened during this run, for the summary."""

    started: str
    cases: list[str] = field(default_factory=list)
    objects_by_case: dict[str, list[str]] = field(default_factory=dict)
    skipped_small_objects: int = 0
    objects_resumed: int = 0
    training_cases_scored: dict[str, str] = field(default_factory=dict)
    training_cases_known: bool = False
    percist_without_liver: list[str] = field(default_factory=list)
    model_load_seconds: float | None = None
    dropped_incomplete_rows: int = 0
    wall_seconds: float = 0.0
