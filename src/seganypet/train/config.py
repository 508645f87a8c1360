"""Every training hyper-parameter in one flat, typed record, read from YAML/JSON and the CLI.

Resolution order (later wins): the defaults below, the run's stored ``config.json`` when
resuming, a ``--config FILE`` (YAML or JSON, flat ``key: value``), then command-line flags. The
resolved record is written to ``RUN/config.json`` (JSON is YAML too, so it can be given back to
``--config``).
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from seganypet.datasets import LESION_KEYWORDS, MIN_OBJECT_ML
from seganypet.errors import InputError

PRECISIONS = ("bf16", "fp32")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters (one flat namespace, the keys of a ``--config`` file)."""

    # ---------------------------------------------------------------------- run and data
    data: tuple[str, ...] = ()  # nnU-Net v2 raw folders and/or manifests (.json/.csv)
    out: str = ""  # the run folder: checkpoints, logs, resolved config
    preset: str | None = None  # network preset for a fresh network (default "small")
    init: str | None = None  # checkpoint to fine-tune from (load_model path)
    cache_dir: str | None = None  # default: $SEGANYPET_CACHE or ~/.cache/seganypet/train
    low_quality_data: tuple[str, ...] = ()  # --data entries whose labels are noisy (CPCL)
    oversample: tuple[str, ...] = ()  # "DATASET=N": its training targets are drawn N times
    seed: int = 0
    device: str = "auto"  # auto: cuda when available, else cpu
    num_threads: int | None = None  # torch threads per process (default: CPUs / processes)
    precision: str = "bf16"  # bf16: autocast to bfloat16 (CPU and CUDA); fp32: none
    box_embeddings: bool = True  # learn box-corner tokens (added when --init lacks them)

    # ---------------------------------------------------------------------- optimisation
    steps: int = 2000  # total optimizer steps (the schedule's length)
    stop_at_step: int | None = None  # stop early with a checkpoint; --resume goes on
    batch_size: int = 2  # crops per process and step
    learning_rate: float = 2e-4
    weight_decay: float = 0.05
    warmup_steps: int = 100
    min_lr_ratio: float = 0.02  # the cosine ends at learning_rate * min_lr_ratio
    grad_clip_norm: float = 1.0
    iou_loss_weight: float = 0.1  # MSE of the IoU head against the round's true IoU

    # ---------------------------------------------------------------------- click simulation
    click_rounds: int = 6  # decoder rounds per sample (first prompt + corrective clicks)
    box_probability: float = 0.25  # share of steps whose first prompt is a box
    box_jitter: float = 0.1  # box corners move by up to this share of the box extent
    first_click_hottest_probability: float = 0.0  # the target's hottest voxel, as a reader clicks
    first_click_interior_probability: float = 0.5  # of the rest; else a random target voxel
    error_hottest_probability: float = 0.0  # corrective click at the error's hottest voxel
    error_centre_probability: float = 0.5  # of the rest; else a random error voxel (SAM-Med3D)
    monotone_loss_weight: float = 0.0  # penalises a round whose soft Dice falls below the last
    click_loss_weight: float = 0.0  # cross-entropy at the clicked voxels, labelled as the clicks
    scribble_probability: float = 0.0  # a first or corrective prompt is a scribble (its clicks)

    # ---------------------------------------------------------------------- targets and crops
    min_target_voxels: int = 10  # at the preset spacing (training only)
    min_target_ml: float = MIN_OBJECT_ML  # on the native grid (the shared object rule)
    max_target_ml: float | None = None  # a small-object model trains on targets up to this
    lesion_keywords: tuple[str, ...] = LESION_KEYWORDS  # seganypet.datasets
    crop_offset_fraction: float = 0.25  # anchor moves up to this share of the crop off centre

    # ---------------------------------------------------------------------- augmentation
    flip_probability: float = 0.5  # per axis
    geometric_probability: float = 0.5  # share of crops rotated and zoomed
    rotation_degrees: float = 10.0
    zoom_range: tuple[float, float] = (0.9, 1.1)
    intensity_scale_range: tuple[float, float] = (0.9, 1.1)  # on the normalised crop
    intensity_shift: float = 0.1  # on the normalised crop

    # ---------------------------------------------------------------------- validation and logs
    val_fraction: float = 0.1  # share of cases held out (at least one when there are two)
    val_every: int = 200  # steps; 0 turns validation off
    val_samples: int = 32
    val_clicks: int = 5  # Dice is logged after 1 and after val_clicks clicks
    checkpoint_minutes: float = 15.0
    progress: bool = True

    # ---------------------------------------------------------------------- CPCL
    cpcl: bool = False
    cpcl_passes: int = 3  # K no-grad passes, each from its own random click set
    cpcl_max_clicks: int = 3  # each pass uses 1..cpcl_max_clicks positive clicks
    cpcl_variance_threshold: float = 0.01  # variance below this is "confident"
    cpcl_weight: float = 0.5  # loss weight of a low-quality sample
    cpcl_start_step: int = 0  # before it, low-quality samples learn from their label

    # ------------------------------------------------------------------------------ checks

    def __post_init__(self) -> None:
        _check(self.steps >= 1, "steps must be at least 1")
        _check(self.batch_size >= 1, "batch_size must be at least 1")
        _check(self.click_rounds >= 1, "click_rounds must be at least 1")
        _check(self.learning_rate > 0, "learning_rate must be positive")
        _check(self.warmup_steps >= 0, "warmup_steps must be >= 0")
        _check(0 <= self.min_lr_ratio <= 1, "min_lr_ratio must be in [0, 1]")
        _check(self.grad_clip_norm > 0, "grad_clip_norm must be positive")
        _check(self.monotone_loss_weight >= 0, "monotone_loss_weight must be >= 0")
        _check(self.click_loss_weight >= 0, "click_loss_weight must be >= 0")
        for name in (
            "box_probability",
            "first_click_hottest_probability",
            "first_click_interior_probability",
            "error_hottest_probability",
            "error_centre_probability",
            "scribble_probability",
            "flip_probability",
            "geometric_probability",
            "crop_offset_fraction",
        ):
            value = getattr(self, name)
            _check(0 <= value <= 1, f"{name} must be in [0, 1], got {value}")
        _check(0 <= self.crop_offset_fraction < 0.5, "crop_offset_fraction must be below 0.5")
        _check(0 <= self.val_fraction < 1, "val_fraction must be in [0, 1)")
        _check(self.val_every >= 0, "val_every must be >= 0 (0: no validation)")
        _check(self.val_clicks >= 1, "val_clicks must be at least 1")
        _check(self.checkpoint_minutes > 0, "checkpoint_minutes must be positive")
        _check(self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}")
        _check(self.device in DEVICES, f"device must be one of {', '.join(DEVICES)}")
        _check(self.cpcl_passes >= 2, "cpcl_passes must be at least 2 (a variance needs two)")
        _check(self.cpcl_max_clicks >= 1, "cpcl_max_clicks must be at least 1")
        _check(0 < self.cpcl_variance_threshold <= 0.25, "cpcl_variance_threshold in (0, 0.25]")
        _check(self.cpcl_weight >= 0, "cpcl_weight must be >= 0")
        _check(self.min_target_voxels >= 1, "min_target_voxels must be at least 1")
        _check(self.min_target_ml >= 0, "min_target_ml must be >= 0")
        _check(
            self.max_target_ml is None or self.max_target_ml > self.min_target_ml,
            "max_target_ml must be above min_target_ml",
        )
        for name in ("zoom_range", "intensity_scale_range"):
            lo, hi = getattr(self, name)
            _check(0 < lo <= hi, f"{name} must be two positive numbers, low first")
        oversample_factors(self.oversample)
        if self.stop_at_step is not None:
            _check(self.stop_at_step >= 1, "stop_at_step must be at least 1")
        if self.num_threads is not None:
            _check(self.num_threads >= 1, "num_threads must be at least 1")

    # ------------------------------------------------------------------------------ I/O

    def replace(self, **changes: Any) -> TrainConfig:
        return from_dict({**self.to_dict(), **changes})

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise InputError(f"training config: {message}")


def oversample_factors(entries: tuple[str, ...] | list[str]) -> dict[str, int]:
    """``("ibsi=20",)`` as ``{"ibsi": 20}``: how often each data set's training targets are drawn."""
    factors: dict[str, int] = {}
    for entry in entries:
        name, _, count = str(entry).partition("=")
        _check(
            bool(name.strip()) and count.strip().isdigit() and int(count) >= 1,
            f"oversample entries are DATASET=N with a whole N >= 1, got {entry!r}",
        )
        factors[name.strip()] = int(count)
    return factors


_HINTS: dict[str, Any] | None = None


def _hints() -> dict[str, Any]:
    global _HINTS
    if _HINTS is None:
        _HINTS = get_type_hints(TrainConfig)
    return _HINTS


def known_keys() -> list[str]:
    return [f.name for f in fields(TrainConfig)]


def _coerce(key: str, value: Any) -> Any:
    """``value`` as the field's type; a clear error otherwise."""
    hint = _hints()[key]
    optional = type(None) in get_args(hint)
    if value is None:
        if optional:
            return None
        raise InputError(f"training config: {key} may not be empty")
    if optional:
        hint = next(a for a in get_args(hint) if a is not type(None))
    origin = get_origin(hint)
    try:
        if origin is tuple:
            items = [value] if isinstance(value, (str, int, float)) else list(value)
            args = get_args(hint)
            kind = args[0]
            if isinstance(value, str) and kind is str:
                items = [v for v in value.split(",") if v]
            converted = tuple(_scalar(kind, v) for v in items)
            if len(args) == 2 and args[1] is not Ellipsis and len(converted) != len(args):
                raise ValueError(f"expected {len(args)} values")
            return converted
        return _scalar(hint, value)
    except (TypeError, ValueError) as exc:
        raise InputError(f"training config: {key}={value!r} is not valid ({exc})") from None


def _scalar(kind: type, value: Any) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ValueError("expected true or false")
    if kind is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError("expected a whole number")
        return int(value)
    if kind is float:
        if isinstance(value, bool):
            raise ValueError("expected a number")
        return float(value)
    if kind is str:
        if not isinstance(value, (str, os.PathLike)):
            raise ValueError("expected text")
        return str(value)
    return value


def from_dict(data: dict[str, Any]) -> TrainConfig:
    """A config from a flat mapping; unknown keys are refused with the closest known key."""
    if not isinstance(data, dict):
        raise InputError(f"a training config must be a mapping of keys to values, got {data!r}")
    known = known_keys()
    unknown = [k for k in data if k not in known]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, known, n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise InputError(
            f"training config: unknown keys {', '.join(hints)}; known keys: {', '.join(known)}"
        )
    return TrainConfig(**{k: _coerce(k, v) for k, v in data.items()})


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """A flat mapping from a YAML (``.yaml``/``.yml``, needs PyYAML) or JSON file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"config file not found: {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise InputError(
                f"{path}: reading YAML needs PyYAML (pip install pyyaml); or give JSON"
            ) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InputError(f"{path}: not valid YAML ({exc})") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: not valid JSON ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping of keys to values at the top level")
    _check_nothing_nested(data, path)
    return data


def _check_nothing_nested(data: dict[str, Any], path: Path) -> None:
    nested = [k for k, v in data.items() if isinstance(v, dict)]
    if nested:
        raise InputError(
            f"{path}: the training config is one flat list of keys; {', '.join(nested)} "
            "hold a nested mapping"
        )


def resolve_config(
    overrides: dict[str, Any],
    config_file: str | os.PathLike | None = None,
    stored: dict[str, Any] | None = None,
) -> TrainConfig:
    """Defaults < ``stored`` (a resumed run's config) < ``config_file`` < ``overrides``."""
    merged: dict[str, Any] = {}
    if stored:
        merged.update(stored)
    if config_file is not None:
        merged.update(read_config_file(config_file))
    merged.update({k: v for k, v in overrides.items() if v is not None})
    return from_dict(merged)


__all__ = [
    "TrainConfig",
    "from_dict",
    "known_keys",
    "read_config_file",
    "resolve_config",
]
