"""Reading released checkpoints safely, and our own format.

Released checkpoints (SegAnyPET ``seganypet_v1.pth`` …, SAM-Med3D-turbo) are torch pickles whose
top-level dict holds the weights under ``model_state_dict``; training checkpoints also pickle an
argparse ``Namespace``, optimizer and scheduler state and more. A bare state dict is accepted too.
Unpickling can run arbitrary code, so they are read with ``torch.load(weights_only=True)`` and only
the few plain-data classes such checkpoints contain allowlisted (:data:`SAFE_GLOBALS`); anything
else is refused with an :class:`~seganypet.errors.InputError` before any of it runs.

Our own format
--------------
One ``.safetensors`` file: the state dict (float32, the reference key names and order) with the
:class:`~seganypet.model.config.ModelConfig` as JSON in the file's metadata::

    {"format": "seganypet.model", "format_version": "1", "config": "{...ModelConfig JSON...}"}

One file cannot drift from its config, and safetensors cannot carry code. Write it with
:func:`save_model`, or :func:`convert_checkpoint` from a released ``.pth``.

Loading is strict: the keys and shapes must be exactly those of a preset, else the error lists
the missing, unexpected and mis-shaped keys. Learned box-corner embeddings
(``prompt_encoder.point_embeddings.2/3.weight``) are the one optional part: their presence is
recorded as ``has_box_embeddings`` in the config (official checkpoints lack them and load strictly
without them).
"""

from __future__ import annotations

import argparse
import collections
import functools
import os
import pickle
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

from seganypet.atomic import atomic_path
from seganypet.errors import InputError
from seganypet.model.config import ModelConfig
from seganypet.model.files import WEIGHTS_DIR, companion_checkpoint, resolve_checkpoint
from seganypet.model.network import PromptableNetwork, SamMed3D
from seganypet.model.presets import PRESETS, default_config
from seganypet.model.registry import build_network

FORMAT_NAME = "seganypet.model"
FORMAT_VERSION = "1"
BOX_KEYS = ("prompt_encoder.point_embeddings.2.weight", "prompt_encoder.point_embeddings.3.weight")

#: Classes a released or training checkpoint may contain besides tensors and builtin containers:
#: the training script's argparse Namespace and the MultiStepLR scheduler's Counter of milestones.
SAFE_GLOBALS: list = [argparse.Namespace, collections.Counter, collections.OrderedDict]


def _numpy_globals() -> list:
    """numpy scalars and arrays (e.g. a best-Dice float64) in training checkpoints: plain data."""
    import numpy as np

    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    dtype_classes = [type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32", "bool")]
    return [np.dtype, np.ndarray, multiarray.scalar, multiarray._reconstruct, *dtype_classes]


SAFE_GLOBALS += _numpy_globals()

_MAX_LISTED = 12


# ------------------------------------------------------------------------------ public API


def load_model(
    path_or_name: str | os.PathLike = "default",
    *,
    config: ModelConfig | None = None,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
) -> SamMed3D | PromptableNetwork:
    """Load a network (of any family) from a checkpoint path or a bundled model name.

    - a ``.safetensors`` written by :func:`save_model` (its config is inside);
    - a released / training torch checkpoint (``.pth``): the preset is recognised from the keys
      and shapes, the config is the preset's default (released-weight conventions: for
      ``vit_b_ori`` 128³ crops at 1.5 mm, z-score over voxels > 0) unless ``config`` is given;
    - a name such as ``"default"``: a model bundled in ``seganypet/model/weights/<name>.safetensors``.
    """
    path = resolve_checkpoint(path_or_name)
    state_dict, stored_config = _read_checkpoint(path)
    config = config or stored_config or _infer_config(state_dict, path)
    _check_keys(state_dict, config, path)
    model = build_network(config)
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:  # dtype/shape problems not caught above
        raise InputError(
            f"{path}: the weights do not fit the {config.preset!r} network: {exc}"
        ) from None
    model.precision = precision
    return model.to(device).eval()


def load_small_object_model(
    path_or_name: str | os.PathLike = "default",
    *,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
) -> PromptableNetwork | None:
    """The small-object companion of a model (see :class:`~seganypet.session.Session`), or None.

    It is the ``<stem>_small.safetensors`` beside a checkpoint (for the bundled ``default``:
    ``default_small``), a network trained at a fine spacing for objects of a few millilitres.
    """
    companion = companion_checkpoint(resolve_checkpoint(path_or_name))
    if companion is None:
        return None
    return load_model(companion, device=device, precision=precision)


def save_model(model: SamMed3D | PromptableNetwork, path: str | os.PathLike) -> Path:
    """Write ``model`` in our format: safetensors with the config in the metadata."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise InputError(f"a seganypet model file must end in .safetensors, got {path.name}")
    tensors = {
        k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()
    }
    metadata = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_json(),
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def convert_checkpoint(
    in_path: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    config: ModelConfig | None = None,
    description: str | None = None,
) -> ModelConfig:
    """Convert a released ``.pth`` (or any loadable checkpoint) to our ``.safetensors``."""
    model = load_model(in_path, config=config)
    if description is not None:
        model.config = model.config.replace(description=description)
    save_model(model, out_path)
    return model.config


def read_config(path: str | os.PathLike) -> ModelConfig:
    """The config of a checkpoint without building the network."""
    path = resolve_checkpoint(path)
    state_dict, stored = _read_checkpoint(path)
    return stored or _infer_config(state_dict, path)


# ------------------------------------------------------------------------------ reading


def _read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], ModelConfig | None]:
    with open(path, "rb") as f:
        head = f.read(8)
    if zipfile.is_zipfile(path):
        return _read_torch(path, mmap=True), None  # weights paged in as they are copied
    if head[:1] == b"\x80":  # the legacy (pre-zip) torch format
        return _read_torch(path, mmap=False), None
    return _read_safetensors(path)


def _read_torch(path: Path, mmap: bool) -> dict[str, torch.Tensor]:
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS), warnings.catch_warnings():
            # e.g. "Detected pickle protocol 4": the load is refused below anyway if it matters
            warnings.simplefilter("ignore", UserWarning)
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reason = next(
            (line for line in lines if "GLOBAL" in line or "Unsupported" in line),
            lines[0] if lines else "unknown content",
        )
        raise InputError(
            f"refusing to load {path}: it pickles Python objects that are not plain data "
            f"({reason[:200]}); unpickling them could run code from the file. Only "
            "checkpoints holding tensors, numbers, strings, lists/dicts and argparse Namespaces "
            "are read. If you trust the file, re-save just its state dict."
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        raise InputError(f"{path} is not a readable PyTorch checkpoint: {exc}") from None
    return _extract_state_dict(obj, path)


def _extract_state_dict(obj, path: Path) -> dict[str, torch.Tensor]:
    if not isinstance(obj, Mapping):
        raise InputError(f"{path}: expected a dict in the checkpoint, found {type(obj).__name__}")
    state = None
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state = obj
    else:
        for key in ("model_state_dict", "state_dict", "model"):
            candidate = obj.get(key)
            if (
                isinstance(candidate, Mapping)
                and candidate
                and all(isinstance(v, torch.Tensor) for v in candidate.values())
            ):
                state = candidate
                break
    if state is None:
        keys = ", ".join(map(str, list(obj)[:_MAX_LISTED]))
        raise InputError(
            f"{path}: no weights found; expected a state dict or a dict with 'model_state_dict' "
            f"(top-level keys: {keys})"
        )
    state = {str(k): v for k, v in state.items()}
    if all(k.startswith("module.") for k in state):  # saved from DistributedDataParallel
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], ModelConfig | None]:
    try:
        from safetensors import safe_open

        tensors = {}
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            for key in f.keys():
                tensors[key] = f.get_tensor(key)
    except Exception as exc:  # safetensors raises its own error types
        raise InputError(
            f"{path} is neither a PyTorch checkpoint nor a readable safetensors file: {exc}"
        ) from None
    config = None
    if "config" in metadata:
        if metadata.get("format") not in (None, FORMAT_NAME):
            raise InputError(f"{path}: unknown model file format {metadata.get('format')!r}")
        if int(metadata.get("format_version", FORMAT_VERSION)) > int(FORMAT_VERSION):
            raise InputError(f"{path} was written by a newer seganypet; upgrade seganypet")
        config = ModelConfig.from_json(metadata["config"])
    return tensors, config


# ------------------------------------------------------------------------------ key checks


@functools.lru_cache(maxsize=16)
def _expected_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = build_network(config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _mismatch(state_dict: Mapping[str, torch.Tensor], expected: dict[str, tuple[int, ...]]):
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [
        (k, tuple(state_dict[k].shape), shape)
        for k, shape in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != shape
    ]
    return missing, unexpected, wrong


def _listing(title: str, items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    more = f" … and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
    return f"{title} ({len(items)}): {shown}{more}"


def _check_keys(state_dict: Mapping[str, torch.Tensor], config: ModelConfig, path: Path) -> None:
    missing, unexpected, wrong = _mismatch(state_dict, _expected_shapes(config))
    if not (missing or unexpected or wrong):
        return
    parts = [f"{path}: the weights do not match the {config.preset!r} network"]
    if missing:
        parts.append(_listing("missing keys", missing))
    if unexpected:
        parts.append(_listing("unexpected keys", unexpected))
    if wrong:
        parts.append(_listing("wrong shapes", [f"{k} {got} != {want}" for k, got, want in wrong]))
    raise InputError("; ".join(parts))


def _infer_config(state_dict: Mapping[str, torch.Tensor], path: Path) -> ModelConfig:
    has_boxes = all(k in state_dict for k in BOX_KEYS)
    pos = state_dict.get("image_encoder.pos_embed")
    grid = tuple(pos.shape[1:4]) if pos is not None and pos.ndim == 5 else None

    def likely(preset: str) -> bool:  # cheap first guess from the token grid and width
        arch = PRESETS[preset]
        return grid == (arch.grid_size,) * 3 and pos.shape[-1] == arch.encoder_dim

    best = None
    for preset in sorted(PRESETS, key=lambda p: not likely(p)):
        config = default_config(preset, has_box_embeddings=has_boxes)
        missing, unexpected, wrong = _mismatch(state_dict, _expected_shapes(config))
        score = len(missing) + len(unexpected) + len(wrong)
        if score == 0:
            return config
        if best is None or score < best[0]:
            best = (score, config)
    _check_keys(state_dict, best[1], path)  # raises with the closest preset's differences
    raise AssertionError("unreachable")


def describe(model: SamMed3D | PromptableNetwork) -> str:
    """One line about a loaded model (for logs and the CLI)."""
    c = model.config
    params = sum(p.numel() for p in model.parameters())
    return (
        f"{c.preset} ({params / 1e6:.1f}M parameters), crop {'x'.join(map(str, c.input_size))} at "
        f"{'x'.join(f'{s:g}' for s in c.spacing_mm)} mm, {c.normalisation}, boxes "
        f"{'learned' if c.has_box_embeddings else 'mapped to points'}"
        + (f": {c.description}" if c.description else "")
    )


__all__ = [
    "SAFE_GLOBALS",
    "WEIGHTS_DIR",
    "convert_checkpoint",
    "describe",
    "load_model",
    "read_config",
    "save_model",
]
