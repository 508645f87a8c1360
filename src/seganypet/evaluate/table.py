"""``per_step.csv``: the append-only table of every evaluated step, and resuming from it.

One row per object, method and step. Rows of one object are written together and flushed to
disk (``fsync``) before the next object starts, so an interrupted run loses at most the object it
was working on. On reopening, a torn last line and any incomplete (object, method) group are
dropped (the file is rewritten atomically without them) and evaluated again.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from seganypet.atomic import write_text_atomic
from seganypet.errors import InputError

COLUMNS = (
    "case",
    "object",
    "label",
    "method",
    "step",
    "prompt_type",
    "dice",
    "nsd",
    "hd95",
    "fp_ml",
    "fn_ml",
    "seconds",
    "prompt",
    "obeyed",
)
METRIC_COLUMNS = ("dice", "nsd", "hd95", "fp_ml", "fn_ml")

GroupKey = tuple[str, str, str]  # case, object, method


@dataclass(frozen=True)
class StepRow:
    """One row of the table."""

    case: str
    object: str
    label: str
    method: str
    step: int
    prompt_type: str
    dice: float
    nsd: float
    hd95: float
    fp_ml: float
    fn_ml: float
    seconds: float
    prompt: str = ""
    #: The share of the step's clicks whose own voxel the mask then labels as the click said
    #: (inside for a positive click, outside for a negative one); None without clicks.
    obeyed: float | None = None

    @property
    def group(self) -> GroupKey:
        return (self.case, self.object, self.method)

    def to_record(self) -> dict[str, str]:
        return {
            "case": self.case,
            "object": self.object,
            "label": self.label,
            "method": self.method,
            "step": str(self.step),
            "prompt_type": self.prompt_type,
            **{name: _number(getattr(self, name)) for name in METRIC_COLUMNS},
            "seconds": f"{self.seconds:.4f}",
            "prompt": self.prompt,
            "obeyed": "" if self.obeyed is None else f"{self.obeyed:.4g}",
        }

    @classmethod
    def from_record(cls, record: Mapping[str, str]) -> StepRow:
        return cls(
            case=record["case"],
            object=record["object"],
            label=record["label"],
            method=record["method"],
            step=int(record["step"]),
            prompt_type=record["prompt_type"],
            **{name: float(record[name]) for name in METRIC_COLUMNS},
            seconds=float(record["seconds"]),
            prompt=record.get("prompt", ""),
            obeyed=float(record["obeyed"]) if record.get("obeyed") else None,
        )


def _number(value: float) -> str:
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.6g}"


class StepTable:
    """The rows of ``per_step.csv``, read on opening, appended object by object."""

    def __init__(self, path: str | os.PathLike, expected_steps: Callable[[str], int]):
        """``expected_steps(method)`` is how many rows a finished group of that method has."""
        self.path = Path(path)
        self.expected_steps = expected_steps
        self.rows: list[StepRow] = []
        self.dropped_rows = 0
        if self.path.exists():
            self._load()
        else:
            write_text_atomic(self.path, _csv_text([], header=True))

    def _load(self) -> None:
        text = self.path.read_text(encoding="utf-8")
        torn = bool(text) and not text.endswith("\n")
        if torn:
            text = text[: text.rfind("\n") + 1]
        reader = csv.DictReader(io.StringIO(text))
        if reader.fieldnames is None:
            write_text_atomic(self.path, _csv_text([], header=True))
            return
        if tuple(reader.fieldnames) != COLUMNS:
            raise InputError(
                f"{self.path}: its columns ({', '.join(reader.fieldnames)}) are not those of this "
                "version's per_step.csv; write the report to another folder"
            )
        try:
            rows = [StepRow.from_record(record) for record in reader]
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(
                f"{self.path}: a row cannot be read ({exc}); fix or remove the file"
            ) from None
        complete = {
            key for key, steps in _steps_by_group(rows).items() if self._complete(key, steps)
        }
        kept = [row for row in rows if row.group in complete]
        self.dropped_rows = len(rows) - len(kept)
        self.rows = kept
        if torn or self.dropped_rows:
            write_text_atomic(self.path, _csv_text(kept, header=True))

    def _complete(self, key: GroupKey, steps: list[int]) -> bool:
        return sorted(steps) == list(range(1, self.expected_steps(key[2]) + 1))

    def done(self) -> set[GroupKey]:
        """The (case, object, method) groups already evaluated."""
        return {row.group for row in self.rows}

    def append(self, rows: Iterable[StepRow]) -> None:
        """Append one object's rows and flush them to disk."""
        rows = list(rows)
        if not rows:
            return
        with open(self.path, "a", encoding="utf-8", newline="") as handle:
            handle.write(_csv_text(rows, header=False))
            handle.flush()
            os.fsync(handle.fileno())
        # Keep what the file holds (numbers as written), so a resumed run summarises the same.
        self.rows.extend(StepRow.from_record(row.to_record()) for row in rows)


def _steps_by_group(rows: Iterable[StepRow]) -> dict[GroupKey, list[int]]:
    steps: dict[GroupKey, list[int]] = {}
    for row in rows:
        steps.setdefault(row.group, []).append(row.step)
    return steps


def _csv_text(rows: Iterable[StepRow], header: bool) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    if header:
        writer.writeheader()
    for row in rows:
        writer.writerow(row.to_record())
    return buffer.getvalue()
