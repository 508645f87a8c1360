"""``summary.json`` and ``dice_vs_clicks.png`` from the rows of ``per_step.csv``.

The summary covers the objects of the run's case and label selection, every method with rows
for them (rows resumed from earlier runs included). Per method and step: the mean and median
Dice, NSD and autoPET volumes, the median HD95 (``null`` when most are infinite) with the mean of
its finite values and the count of infinite ones; per object class (label name) the Dice per
step; and, for methods with several steps, each object's normalised area under its Dice, NSD,
false-positive and false-negative volume curves (:func:`~seganypet.evaluate.metrics.normalised_auc`),
averaged over the objects. Numbers that are not finite are written as ``null``.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from seganypet.baselines import BASELINES
from seganypet.datasets import LESION_KEYWORDS
from seganypet.evaluate.metrics import normalised_auc
from seganypet.evaluate.protocols import FIRST_CLICK_PROTOCOLS, FIRST_CLICKS, PROTOCOLS
from seganypet.evaluate.table import StepRow

if TYPE_CHECKING:
    from seganypet.evaluate.settings import EvaluationSettings, RunRecord

BASELINE_SEED_RULES = {
    "first-click": "the protocol's first click (for box-clicks, the first-click voxel)",
    "suv-max": "the object's hottest voxel (SUVmax)",
}

DICE_CHANGE_TOLERANCE = 1e-6

X_LABELS = {
    "clicks": "clicks",
    "clicks-random": "clicks (random error voxel)",
    "box-clicks": "interaction step (1 = box, then clicks)",
    "autopet": "click pairs (tumour + background)",
}


def build_summary(
    rows: Sequence[StepRow],
    settings: EvaluationSettings,
    record: RunRecord,
    model_method: str | None,
    baseline_names: Sequence[str],
    network: Any,
) -> dict[str, Any]:
    """The summary of a run (see the module)."""
    from seganypet import __version__

    selected = {(case, name) for case, names in record.objects_by_case.items() for name in names}
    rows = [row for row in rows if (row.case, row.object) in selected]
    by_method: dict[str, list[StepRow]] = defaultdict(list)
    for row in rows:
        by_method[row.method].append(row)
    order = _method_order(by_method, model_method)
    objects_by_class = Counter(
        row.label for row in {(r.case, r.object, r.label): r for r in rows}.values()
    )
    total_objects = len(selected)
    skipped_baselines = {}
    if "percist" in baseline_names and record.percist_without_liver:
        skipped_baselines["percist"] = (
            f"skipped in {len(record.percist_without_liver)} of {len(record.cases)} cases: no "
            "liver reference (no label named 'liver' and no liver_centre in a manifest)"
        )
    summary = {
        "tool": "seganypet evaluate",
        "version": __version__,
        "command": settings.command,
        "settings": settings_dict(settings),
        "protocol": settings.protocol,
        "protocol_rule": PROTOCOLS[settings.protocol].rule,
        "clicks": settings.clicks,
        "first_click": settings.first_click,
        "first_click_rule": FIRST_CLICKS[settings.first_click]
        if settings.protocol in FIRST_CLICK_PROTOCOLS
        else "set by the protocol",
        "seed": settings.seed,
        "model": _model_description(settings.model, model_method, network),
        "training_cases": _training_case_note(record, model_method),
        "baselines": {
            "methods": [name for name in baseline_names if name in by_method],
            "seeded_at": BASELINE_SEED_RULES[settings.baseline_seed],
            "skipped": skipped_baselines,
        },
        "counts": {
            "cases": len(record.cases),
            "objects": total_objects,
            "objects_by_class": dict(sorted(objects_by_class.items())),
            "objects_skipped_below_min_volume": record.skipped_small_objects,
            "objects_resumed_from_earlier_runs": record.objects_resumed,
            "incomplete_rows_dropped_and_redone": record.dropped_incomplete_rows,
            "rows": len(rows),
        },
        "methods": {method: _method_summary(by_method[method]) for method in order},
        "definitions": _definitions(settings),
        "timing": {
            "started": record.started,
            "wall_seconds_this_run": round(record.wall_seconds, 3),
            "model_load_seconds": _round(record.model_load_seconds),
            "note": "per-method seconds are the prompt-to-mask time of the session (model) or "
            "the region growing (baselines), summed over the rows, resumed rows included; "
            "scoring and the simulated user are not timed",
        },
    }
    return _json_safe(summary)


def settings_dict(settings: EvaluationSettings) -> dict[str, Any]:
    """The run's settings as plain JSON values (the command line is recorded apart)."""
    out = asdict(settings)
    out["report_dir"] = str(settings.report_dir)
    out["data"] = [str(d) for d in settings.data]
    out.pop("command")
    return out


def _method_order(by_method: dict[str, list[StepRow]], model_method: str | None) -> list[str]:
    baselines = [name for name in BASELINES if name in by_method]
    models = sorted(name for name in by_method if name not in BASELINES and name != model_method)
    first = [model_method] if model_method in by_method else []
    return first + models + baselines


def _model_description(model: str | None, method: str | None, network: Any) -> dict | None:
    if method is None:
        return None
    config = getattr(network, "config", None)
    description: dict[str, Any] = {"name": model or "default", "method": method}
    if config is not None:
        description.update(
            preset=config.preset,
            input_size=list(config.input_size),
            spacing_mm=list(config.spacing_mm),
            description=getattr(config, "description", ""),
        )
    return description


def _method_summary(rows: list[StepRow]) -> dict[str, Any]:
    by_step: dict[int, list[StepRow]] = defaultdict(list)
    by_object: dict[tuple[str, str], list[StepRow]] = defaultdict(list)
    for row in rows:
        by_step[row.step].append(row)
        by_object[(row.case, row.object)].append(row)
    steps = sorted(by_step)
    by_class: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        by_class[row.label][row.step].append(row.dice)
    seconds = [row.seconds for row in rows]
    prompted = [row.seconds for row in rows if row.prompt_type != "none"]
    summary: dict[str, Any] = {
        "objects": len(by_object),
        "steps": [_step_summary(step, by_step[step]) for step in steps],
        "by_class": {
            label: {
                "objects": len(per_step[steps[0]]) if steps[0] in per_step else 0,
                "steps": [
                    {
                        "step": step,
                        "dice_mean": _mean(per_step[step]),
                        "dice_median": _median(per_step[step]),
                    }
                    for step in sorted(per_step)
                ],
            }
            for label, per_step in sorted(by_class.items())
        },
        "auc": _auc(by_object.values()) if len(steps) > 1 else None,
        "clicks_lowering_dice": _lowering(by_object.values()) if len(steps) > 1 else None,
        "prompts_not_obeyed": _not_obeyed(rows),
        "prompt_types": dict(sorted(Counter(row.prompt_type for row in rows).items())),
        "seconds": {
            "total": round(sum(seconds), 3),
            "per_object_mean": _round(sum(seconds) / len(by_object)) if by_object else None,
            "per_prompted_step_mean": _round(float(np.mean(prompted))) if prompted else None,
        },
    }
    return summary


def _step_summary(step: int, rows: list[StepRow]) -> dict[str, Any]:
    hd95 = np.array([row.hd95 for row in rows])
    finite = hd95[np.isfinite(hd95)]
    return {
        "step": step,
        "objects": len(rows),
        "dice_mean": _mean([row.dice for row in rows]),
        "dice_median": _median([row.dice for row in rows]),
        "nsd_mean": _mean([row.nsd for row in rows]),
        "nsd_median": _median([row.nsd for row in rows]),
        "hd95_median": _median(hd95.tolist()),
        "hd95_mean_finite": _mean(finite.tolist()) if len(finite) else None,
        "hd95_infinite": int((~np.isfinite(hd95)).sum()),
        "fp_ml_mean": _mean([row.fp_ml for row in rows]),
        "fn_ml_mean": _mean([row.fn_ml for row in rows]),
    }


def _training_case_note(record: RunRecord, model_method: str | None) -> dict[str, Any] | None:
    if model_method is None:
        return None
    return {
        "recorded_in_model": record.training_cases_known,
        "scored": dict(sorted(record.training_cases_scored.items())),
        "note": "cases whose image the model was trained on; evaluate refuses them unless "
        "--include-training-cases is given, and lists here those it scored"
        if record.training_cases_known
        else "the model does not record its training cases; no case could be checked",
    }


def _lowering(objects: Iterable[list[StepRow]]) -> dict[str, Any]:
    """How many prompted steps after the first lowered the object's Dice, and by how much."""
    changes = []
    for rows in objects:
        ordered = sorted(rows, key=lambda r: r.step)
        changes += [
            after.dice - before.dice
            for before, after in zip(ordered, ordered[1:], strict=False)
            if after.prompt_type != "none"
        ]
    drops = [-change for change in changes if change < -DICE_CHANGE_TOLERANCE]
    return {
        "steps": len(changes),
        "lowering": len(drops),
        "fraction": len(drops) / len(changes) if changes else None,
        "mean_drop": _mean(drops),
        "largest_drop": max(drops) if drops else None,
    }


def _not_obeyed(rows: Iterable[StepRow]) -> dict[str, Any] | None:
    """How many prompts left one of their own clicks' voxels on the wrong side of the mask (a
    negative click whose voxel stays in, a positive one whose voxel stays out)."""
    shares = [row.obeyed for row in rows if row.obeyed is not None]
    if not shares:
        return None
    missed = sum(share < 1.0 for share in shares)
    return {"prompts": len(shares), "not_obeyed": missed, "fraction": missed / len(shares)}


def _auc(objects: Iterable[list[StepRow]]) -> dict[str, Any]:
    curves: dict[str, list[float]] = defaultdict(list)
    count = 0
    for rows in objects:
        ordered = sorted(rows, key=lambda r: r.step)
        count += 1
        for name in ("dice", "nsd", "fp_ml", "fn_ml"):
            curves[name].append(normalised_auc([getattr(r, name) for r in ordered]))
    return {
        "objects": count,
        **{f"{name}_mean": _mean(values) for name, values in curves.items()},
        **{f"{name}_median": _median(values) for name, values in curves.items()},
    }


def _definitions(settings: EvaluationSettings) -> dict[str, str]:
    return {
        "object": "each label value is one object; each 26-connected component of a lesion label "
        f"(name containing {', '.join(LESION_KEYWORDS)}, or as named by --lesion-labels) is "
        f"one object; objects under {settings.min_object_ml:g} ml are skipped",
        "dice": "2|P∩G|/(|P|+|G|) on the image grid",
        "nsd": f"normalised surface Dice at {settings.nsd_tolerance_mm:g} mm: fraction of surface "
        "voxels (6-neighbourhood boundary) of both masks within the tolerance of the other "
        "surface; distances in mm between voxel centres (anisotropic spacing)",
        "hd95": "max of the two directed 95th percentiles of the surface distances, mm; inf when "
        "the prediction is empty (counted as hd95_infinite, never averaged)",
        "fp_ml": "autoPET: volume of the 18-connected predicted components that do not overlap "
        "the object",
        "fn_ml": "autoPET: volume of the 18-connected components of the object that the "
        "prediction does not overlap",
        "auc": "per object, trapezoid area under the metric over steps 1..N divided by N-1 (a "
        "constant curve gives its value), then averaged over objects",
        "seconds": "time from giving the step's prompts to reading the mask",
        "clicks_lowering_dice": "prompted steps after the first whose Dice is more than "
        f"{DICE_CHANGE_TOLERANCE:g} below the step before, of all prompted steps after the first "
        "(steps where the user had nothing left to correct are not counted)",
    }


# ------------------------------------------------------------------------------ the plot


def plot_dice_vs_step(summary: dict[str, Any], path: str | Path) -> Path:
    """Mean Dice per step, one line per method; single-step baselines as dashed levels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from seganypet.atomic import atomic_path

    methods: dict[str, Any] = summary["methods"]
    last_step = max([summary["clicks"]] + [s["step"] for m in methods.values() for s in m["steps"]])
    figure, axes = plt.subplots(figsize=(10.5, 5.0), dpi=120)
    colours = plt.get_cmap("tab10").colors
    for index, (method, data) in enumerate(methods.items()):
        steps = [s["step"] for s in data["steps"]]
        dice = [s["dice_mean"] if s["dice_mean"] is not None else math.nan for s in data["steps"]]
        colour = colours[index % len(colours)]
        n = data["objects"]
        if len(steps) > 1:
            label = f"{method} (n={n}): {dice[0]:.3f} → {dice[-1]:.3f}"
            axes.plot(steps, dice, marker="o", linewidth=2.2, color=colour, label=label)
        else:
            label = f"{method}, one step (n={n}): {dice[0]:.3f}"
            axes.plot(
                [1, max(last_step, 1)],
                [dice[0], dice[0]],
                linestyle="--",
                linewidth=1.5,
                marker="s",
                markevery=[0],
                color=colour,
                label=label,
            )
    axes.set_xlim(0.7, max(last_step, 1) + 0.3)
    axes.set_xticks(range(1, max(last_step, 1) + 1))
    axes.set_ylim(0.0, 1.0)
    axes.set_xlabel(X_LABELS.get(summary["protocol"], "step"))
    axes.set_ylabel("mean Dice")
    counts = summary["counts"]
    axes.set_title(
        f"Dice vs interaction: protocol '{summary['protocol']}', "
        f"{_plural(counts['objects'], 'object')} in {_plural(counts['cases'], 'case')}"
    )
    axes.grid(True, alpha=0.3)
    if methods:
        axes.legend(
            loc="upper left",
            bbox_to_anchor=(1.02, 1.0),
            fontsize=8,
            title="method",
            borderaxespad=0,
        )
    else:
        axes.text(0.5, 0.5, "no results", ha="center", va="center", transform=axes.transAxes)
    figure.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    plt.close(figure)
    return path


# ------------------------------------------------------------------------------ numbers


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def _median(values: Sequence[float]) -> float | None:
    return float(np.median(values)) if len(values) else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return round(value, 6) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Path):
        return str(value)
    return value
