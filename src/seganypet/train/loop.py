"""The training loop: data, network, optimiser, schedule, checkpoints, logs, validation.

``seganypet train --data DIR[,DIR] --out RUN [--preset small] [--steps N] [--resume] [--init
CHECKPOINT] [--config FILE] [--cpcl]``; in several processes with ``torchrun --nproc-per-node N
-m seganypet.cli train ...``.

The run folder
--------------
- ``config.json``: the resolved :class:`~seganypet.train.config.TrainConfig` (give it back to
  ``--config`` to repeat the run);
- ``split.json``: the training and held-out cases, and how many targets each split has;
- ``last.pt``: everything to continue exactly (below), every ``checkpoint_minutes`` and at the
  end; ``model.safetensors``: the network for inference (``load_model``), written with it;
- ``log.csv``: per step ``step, loss, lr, seconds`` (wall time of the run, resumes included),
  ``samples_per_s``, ``train_dice`` (last round), ``points``, ``rounds_lowering_dice`` (the
  share of crops whose soft Dice fell after a corrective round) and the CPCL
  statistics;
- ``val.csv``: every ``val_every`` steps and at the end, the mean Dice on held-out crops after 1
  and after ``val_clicks`` simulated clicks (first click at the target's most interior voxel,
  then at the centre of the largest error: deterministic), through the network's inference
  calls ``embed``/``decode``;
- ``ranks.json`` (several processes): a hash of each rank's weights at the end; they must agree.

Exact resume
------------
``last.pt`` (``torch.save``, read back with ``weights_only=True``: tensors and plain data only)
holds the network, AdamW and LR-schedule states, the step, the data position and the Python,
NumPy and torch RNG states. Every random choice of a step (which targets, crop placement,
augmentation, prompts, clicks) comes from generators seeded by ``(seed, step or sample slot)``,
not from global state, so ``--resume`` continues exactly: N steps straight and N/2 + N/2 give the
same weights on the CPU. ``stop_at_step`` (``--stop-at``) ends a run early with a checkpoint
without changing the schedule, which is set by ``steps``.

Optimisation: AdamW (no weight decay on biases, norms and other 1-D parameters), a linear warmup
over ``warmup_steps`` then a cosine decay to ``min_lr_ratio`` x the rate at ``steps``, gradient
clipping at ``grad_clip_norm``, bf16 autocast on CPU and CUDA (``precision``).

Only the network's ``embed``/``decode`` (through
:func:`~seganypet.train.objective.trainable_calls`), ``config``, ``parameters()`` and state
dict are used, so any :class:`~seganypet.model.network.PromptableNetwork` family trains here;
:func:`build_network` (through :func:`seganypet.model.registry.build_network`) is the one place
that builds a network from a preset or config.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import random
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from seganypet.atomic import atomic_path, write_text_atomic
from seganypet.errors import InputError
from seganypet.model.checkpoint import load_model, save_model
from seganypet.model.config import ModelConfig
from seganypet.model.presets import GROWN_FROM, default_config
from seganypet.model.registry import build_network as build_model_network
from seganypet.model.runtime import available_cpus, configure_threads, cpu_has_native_bf16
from seganypet.train.augment import Augmentation
from seganypet.train.clicks import (
    click_at_error_centre,
    click_rounds,
    dice_scores,
    first_prompts,
)
from seganypet.train.config import TrainConfig, from_dict, oversample_factors
from seganypet.train.data import (
    CachedCase,
    Sample,
    TargetCrops,
    TargetSampler,
    default_cache_dir,
    find_cases,
    prepare_cache,
    split_cases,
)
from seganypet.train.distributed import Processes, start_processes, stop_processes
from seganypet.train.objective import InteractiveObjective, StepPlan

CONFIG_FILE = "config.json"
CHECKPOINT_FILE = "last.pt"
MODEL_FILE = "model.safetensors"
LOG_FILE = "log.csv"
VAL_FILE = "val.csv"
SPLIT_FILE = "split.json"
RANKS_FILE = "ranks.json"
CHECKPOINT_FORMAT = "seganypet.train.checkpoint"
CHECKPOINT_VERSION = 1
LOG_COLUMNS = (
    "step",
    "loss",
    "lr",
    "seconds",
    "samples_per_s",
    "train_dice",
    "points",
    "rounds_lowering_dice",
    "cpcl_confident_fraction",
    "cpcl_changed_fraction",
)

# Stream tags of the per-step generators (np.random.default_rng([seed, TAG, ...])).
_SAMPLE_STREAM = 11
_BATCH_STREAM = 13
_VAL_CHOICE_STREAM = 17
_VAL_CROP_STREAM = 19


# ====================================================================================== helpers


def lr_factor(step: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """Multiplier of the learning rate at ``step`` (0-based): linear warmup, then cosine."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def weights_digest(network: nn.Module) -> str:
    """SHA-256 of every parameter and buffer, in state-dict order."""
    digest = hashlib.sha256()
    for key, value in network.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def build_network(config: TrainConfig) -> nn.Module:
    """A fresh ``preset`` network, or the ``init`` checkpoint's (box embeddings added if asked).

    ``box_embeddings`` concerns SAM-Med3D only: a ``prompt_unet`` always takes boxes.
    """
    torch.manual_seed(config.seed)
    if config.init is None:
        network = build_model_network(default_config(config.preset or "small"))
    else:
        network = load_model(config.init)
        if GROWN_FROM.get(config.preset or "") == network.config.preset:
            return network.grown_to(config.preset)
        if config.preset is not None and config.preset != network.config.preset:
            raise InputError(
                f"--init {config.init} is a {network.config.preset!r} network but --preset is "
                f"{config.preset!r}; leave --preset out when fine-tuning (it may only name a "
                f"preset that grows from it: "
                f"{', '.join(f'{a} from {b}' for a, b in GROWN_FROM.items())})"
            )
    return network.with_box_embeddings() if config.box_embeddings else network


def _parameter_groups(network: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for _, parameter in network.named_parameters():
        if not parameter.requires_grad:
            continue
        (decay if parameter.ndim >= 2 else no_decay).append(parameter)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _rng_states() -> dict:
    numpy_state = np.random.get_state(legacy=False)  # noqa: NPY002 (the global state, saved)
    numpy_state["state"]["key"] = [int(v) for v in numpy_state["state"]["key"]]
    python_state = random.getstate()
    return {
        "python": [python_state[0], list(python_state[1]), python_state[2]],
        "numpy": numpy_state,
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _restore_rng_states(states: dict) -> None:
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = dict(states["numpy"])
    numpy_state["state"] = dict(numpy_state["state"])
    numpy_state["state"]["key"] = np.asarray(numpy_state["state"]["key"], dtype=np.uint32)
    np.random.set_state(numpy_state)  # noqa: NPY002 (the global state, restored)
    torch.set_rng_state(states["torch"])
    if states.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def read_checkpoint(path: Path) -> dict:
    """A training checkpoint, read without unpickling code (``weights_only=True``)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise InputError(f"{path}: not a readable training checkpoint ({exc})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{path}: not a seganypet training checkpoint")
    if int(state.get("version", 0)) > CHECKPOINT_VERSION:
        raise InputError(f"{path} was written by a newer seganypet; upgrade seganypet")
    return state


#: Config keys that belong to one invocation, not to the run: a resume does not inherit them.
PER_INVOCATION_KEYS = ("stop_at_step",)


def stored_config(run_dir: Path) -> dict:
    """The resolved config of an earlier run in ``run_dir``, less :data:`PER_INVOCATION_KEYS`
    (what ``--resume`` starts from)."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file() or not (Path(run_dir) / CHECKPOINT_FILE).is_file():
        raise InputError(
            f"{run_dir}: nothing to resume (no {CONFIG_FILE} and {CHECKPOINT_FILE}); "
            "start the run without --resume"
        )
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read it ({exc})") from None
    if not isinstance(stored, dict):
        raise InputError(f"{path}: not a training config")
    return {k: v for k, v in stored.items() if k not in PER_INVOCATION_KEYS}


class CsvLog:
    """A CSV file with a fixed header, appended to row by row (rank 0 only)."""

    def __init__(self, path: Path, columns: tuple[str, ...]) -> None:
        self.path = path
        self.columns = columns

    def start(self, keep_until_step: int) -> None:
        """Create the file, or keep only the rows up to ``keep_until_step`` (a resumed run)."""
        rows = []
        if self.path.is_file() and keep_until_step > 0:
            with open(self.path, newline="", encoding="utf-8") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= keep_until_step]
        with atomic_path(self.path) as tmp:
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, self.columns, extrasaction="ignore")
                writer.writeheader()
                writer.writerows(rows)

    def append(self, row: dict) -> None:
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            csv.DictWriter(f, self.columns, extrasaction="ignore").writerow(
                {k: _format(row.get(k)) for k in self.columns}
            )


def _format(value: object) -> object:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else value


@dataclass
class TrainSummary:
    run_dir: Path
    step: int
    loss: float | None
    validation: dict[str, float] | None
    samples_per_second: float | None


# ====================================================================================== trainer


class Trainer:
    """One process's part of a training run (see the module docstring)."""

    def __init__(
        self, config: TrainConfig, *, resume: bool = False, processes: Processes | None = None
    ) -> None:
        if not config.out:
            raise InputError("no run folder given; pass --out RUN")
        self.config = config
        self.run_dir = Path(config.out)
        self.processes = processes or start_processes(config.device)
        self.device = self.processes.device
        configure_threads(
            config.num_threads
            or max(1, available_cpus() // max(1, self.processes.local_world_size))
        )
        self._check_run_dir(resume)
        if (
            config.precision == "bf16"
            and self.device.type == "cpu"
            and cpu_has_native_bf16() is False
            and self.processes.is_main
        ):
            warnings.warn(
                "precision bf16: this CPU has no native bfloat16 (AVX-512 BF16 or AMX), so "
                "autocast emulates it, several times slower than fp32; --set precision=fp32",
                stacklevel=2,
            )
        checkpoint = read_checkpoint(self.run_dir / CHECKPOINT_FILE) if resume else None

        if checkpoint is not None:
            torch.manual_seed(config.seed)
            self.network = build_model_network(ModelConfig.from_json(checkpoint["model_config"]))
            self.network.load_state_dict(checkpoint["model"])
        else:
            self.network = build_network(config)
        self.network.to(self.device).train()
        self.model_config: ModelConfig = self.network.config
        # Cases an --init checkpoint (or this run before a resume) was trained on stay recorded.
        self.inherited_cases = self.network.config.training_cases

        self._prepare_data()

        self.objective = InteractiveObjective(self.network, config).to(self.device)
        self.model: nn.Module = self.objective
        if self.processes.distributed:
            self.model = DistributedDataParallel(
                self.objective,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True,
            )
        self.optimizer = torch.optim.AdamW(
            _parameter_groups(self.network, config.weight_decay), lr=config.learning_rate
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_lambda())

        self.step = 0
        self.elapsed_before = 0.0
        if checkpoint is not None:
            self._restore(checkpoint)
        self.log = CsvLog(self.run_dir / LOG_FILE, LOG_COLUMNS)
        self.val_columns = ("step", "dice_1_click", f"dice_{config.val_clicks}_clicks")
        self.val_log = CsvLog(self.run_dir / VAL_FILE, self.val_columns)
        self._val_samples: list[Sample] | None = None
        if self.processes.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.run_dir / CONFIG_FILE, config.to_json() + "\n")
            self._write_split()
            self.log.start(keep_until_step=self.step)
            self.val_log.start(keep_until_step=self.step)

    # ------------------------------------------------------------------------------ setup

    def _check_run_dir(self, resume: bool) -> None:
        # Every rank checks before the cache barrier; rank 0 writes into RUN only after it.
        exists = (self.run_dir / CHECKPOINT_FILE).exists() or (self.run_dir / CONFIG_FILE).exists()
        if resume and not (self.run_dir / CHECKPOINT_FILE).is_file():
            raise InputError(f"{self.run_dir}: no {CHECKPOINT_FILE} to resume from")
        if exists and not resume:
            raise InputError(
                f"{self.run_dir} already holds a training run; pass --resume to continue it, "
                "or choose another --out"
            )
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise InputError(f"{self.run_dir} exists and is not a folder")

    def _lr_lambda(self):
        config = self.config

        def factor(step: int) -> float:
            return lr_factor(step, config.warmup_steps, config.steps, config.min_lr_ratio)

        return factor

    def _prepare_data(self) -> None:
        config = self.config
        sources = find_cases(config.data, config.low_quality_data)
        unknown = set(oversample_factors(config.oversample)) - {s.dataset for s in sources}
        if unknown:
            raise InputError(
                f"oversample names no data set {', '.join(sorted(unknown))}; the data sets are "
                f"{', '.join(sorted({s.dataset for s in sources}))}"
            )
        if config.cpcl and not any(s.low_quality for s in sources):
            if self.processes.is_main:
                warnings.warn(
                    "--cpcl: no data set is marked low quality (label_quality: low, or "
                    "low_quality_data); rectifying every crop's label",
                    stacklevel=2,
                )
            sources = [replace(s, low_quality=True) for s in sources]
        cache_dir = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
        cases = prepare_cache(
            sources,
            self.model_config.spacing_mm,
            config.lesion_keywords,
            cache_dir,
            rank=self.processes.rank,
            world_size=self.processes.world_size,
            barrier=self.processes.barrier,
            progress=self.processes.is_main and config.progress,
        )
        self.train_cases, self.val_cases = split_cases(cases, config.val_fraction, config.seed)
        crops = {
            "min_target_voxels": config.min_target_voxels,
            "min_target_ml": config.min_target_ml,
            "max_target_ml": config.max_target_ml,
            "crop_offset_fraction": config.crop_offset_fraction,
        }
        self.train_set = TargetCrops(
            self.train_cases,
            self.model_config,
            augmentation=Augmentation.from_config(config),
            oversample=oversample_factors(config.oversample),
            **crops,
        )
        self.val_set = TargetCrops(self.val_cases, self.model_config, **crops)
        self.sampler = TargetSampler(
            len(self.train_set),
            config.batch_size,
            config.seed,
            self.processes.rank,
            self.processes.world_size,
        )

    def _write_split(self) -> None:
        def describe(cases: list[CachedCase], crops: TargetCrops) -> dict:
            return {
                "cases": [c.source.key for c in cases],
                "targets": len(crops),
                "skipped_targets": crops.skipped,  # tiny, or above max_target_ml
            }

        split = {
            "train": describe(self.train_cases, self.train_set),
            "validation": describe(self.val_cases, self.val_set),
            "fingerprint": self.train_set.fingerprint(),
        }
        write_text_atomic(self.run_dir / SPLIT_FILE, json.dumps(split, indent=1) + "\n")

    # ------------------------------------------------------------------------------ checkpoints

    def _restore(self, checkpoint: dict) -> None:
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        _restore_rng_states(checkpoint["rng"])
        self.step = int(checkpoint["step"])
        self.elapsed_before = float(checkpoint.get("elapsed_seconds", 0.0))
        data = checkpoint.get("data", {})
        if self.processes.is_main:
            if data.get("fingerprint") != self.train_set.fingerprint():
                warnings.warn(
                    "the training data differ from the checkpoint's; the run goes on, "
                    "but not as the uninterrupted run would have",
                    stacklevel=2,
                )
            if int(data.get("world_size", 1)) != self.processes.world_size:
                warnings.warn(
                    f"resumed with {self.processes.world_size} processes instead of "
                    f"{data.get('world_size')}; the sample order changes",
                    stacklevel=2,
                )

    def _training_cases(self) -> tuple[tuple[str, str], ...]:
        """Every image the weights have learned from: inherited ones first, one entry each."""
        names = {digest: name for name, digest in self.inherited_cases}
        for case in self.train_cases:
            names.setdefault(case.image_sha256, case.source.key)
        return tuple((name, digest) for digest, name in names.items())

    def save_checkpoint(self, elapsed: float) -> None:
        """``last.pt`` and ``model.safetensors`` (rank 0 only)."""
        if not self.processes.is_main:
            return
        names = sorted({c.source.dataset for c in self.train_cases})
        self.network.config = self.network.config.replace(
            description=f"seganypet train on {', '.join(names)}, step {self.step}",
            training_cases=self._training_cases(),
        )
        state = {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "step": self.step,
            "elapsed_seconds": elapsed,
            "model_config": self.network.config.to_json(),
            "model": {k: v.detach().cpu() for k, v in self.network.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": _rng_states(),
            "data": {
                "samples_seen": self.sampler.samples_seen(self.step),
                "epoch": self.sampler.samples_seen(self.step) // max(1, len(self.train_set)),
                "targets": len(self.train_set),
                "fingerprint": self.train_set.fingerprint(),
                "world_size": self.processes.world_size,
                "batch_size": self.config.batch_size,
            },
            "train_config": self.config.to_dict(),
        }
        with atomic_path(self.run_dir / CHECKPOINT_FILE) as tmp:
            torch.save(state, tmp)
        save_model(self.network, self.run_dir / MODEL_FILE)

    def check_ranks_agree(self) -> list[str]:
        """Every rank's weight digest (collective); rank 0 records them; they must be equal."""
        digests = [str(d) for d in self.processes.gather(weights_digest(self.network))]
        if self.processes.is_main and self.processes.distributed:
            record = {"step": self.step, "world_size": len(digests), "weight_sha256": digests}
            write_text_atomic(self.run_dir / RANKS_FILE, json.dumps(record, indent=1) + "\n")
        if len(set(digests)) != 1:
            raise RuntimeError(f"the ranks' weights differ at step {self.step}: {digests}")
        return digests

    # ------------------------------------------------------------------------------ steps

    def step_plan(self, step: int) -> tuple[list[Sample], StepPlan]:
        """The crops and random choices of ``step`` on this rank (pure function of the step)."""
        config = self.config
        samples, rngs = [], []
        for slot in self.sampler.slots(step):
            rng = np.random.default_rng([config.seed, _SAMPLE_STREAM, slot])
            samples.append(self.train_set.sample(self.sampler.index(slot), rng, augment=True))
            rngs.append(rng)
        batch_rng = np.random.default_rng([config.seed, _BATCH_STREAM, step, self.processes.rank])
        plan = StepPlan(
            rngs=rngs,
            use_box=bool(batch_rng.random() < config.box_probability),
            rectify=config.cpcl and step >= config.cpcl_start_step,
        )
        return samples, plan

    def _tensors(self, samples: list[Sample]):
        images = torch.stack([s.image for s in samples]).to(self.device)
        targets = torch.stack([s.target for s in samples]).to(self.device)
        low_quality = torch.tensor([s.low_quality for s in samples], device=self.device)
        return images, targets, low_quality

    def train_step(self) -> dict[str, float]:
        """One optimiser step; returns the (all-rank mean) loss and statistics."""
        samples, plan = self.step_plan(self.step)
        images, targets, low_quality = self._tensors(samples)
        self.optimizer.zero_grad(set_to_none=True)
        loss, stats = self.model(images, targets, low_quality, plan)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.network.parameters(), self.config.grad_clip_norm)
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return {"loss": self.processes.mean(float(loss.detach())), "lr": lr, **stats}

    # ------------------------------------------------------------------------------ validation

    def validation_samples(self) -> list[Sample]:
        """Fixed held-out crops (the same at every validation)."""
        if self._val_samples is None:
            count = min(self.config.val_samples, len(self.val_set))
            choice = np.random.default_rng([self.config.seed, _VAL_CHOICE_STREAM])
            indices = sorted(choice.permutation(len(self.val_set))[:count].tolist())
            self._val_samples = [
                self.val_set.sample(
                    index,
                    np.random.default_rng([self.config.seed, _VAL_CROP_STREAM, index]),
                    augment=False,
                )
                for index in indices
            ]
        return self._val_samples

    @torch.no_grad()
    def validate(self) -> dict[str, float] | None:
        """Mean Dice after 1 and ``val_clicks`` clicks on the held-out crops (inference calls)."""
        samples = self.validation_samples()
        if not samples:
            return None
        clicks = self.config.val_clicks
        network = self.network
        network.eval()
        after_one, after_all = [], []
        try:
            for first in range(0, len(samples), self.config.batch_size):
                chunk = samples[first : first + self.config.batch_size]
                images, targets, _ = self._tensors(chunk)
                masks = targets[:, 0].cpu().numpy() > 0.5
                prompts = first_prompts(
                    masks,
                    [np.random.default_rng(0)] * len(chunk),
                    use_box=False,
                    interior_probability=1.0,
                    box_jitter=0.0,
                )
                embedding = network.embed(images)
                for round_ in click_rounds(
                    network.decode,
                    embedding,
                    prompts,
                    masks,
                    clicks,
                    lambda prediction, target, _: click_at_error_centre(prediction, target),
                    input_size=self.model_config.input_size,
                    device=self.device,
                ):
                    if round_.index in (0, clicks - 1):
                        prediction = round_.logits.cpu().numpy()[:, 0] > 0
                        scores = dice_scores(prediction, masks).tolist()
                        if round_.index == 0:
                            after_one.extend(scores)
                        if round_.index == clicks - 1:
                            after_all.extend(scores)
        finally:
            network.train()
        return {
            self.val_columns[1]: float(np.mean(after_one)),
            self.val_columns[2]: float(np.mean(after_all)),
        }

    # ------------------------------------------------------------------------------ run

    def run(self) -> TrainSummary:
        config = self.config
        main = self.processes.is_main
        end = min(config.steps, config.stop_at_step or config.steps)
        started = time.monotonic()
        last_checkpoint = started
        last: dict[str, float] | None = None
        validation = None
        rates: list[float] = []
        bar = tqdm(
            total=end,
            initial=min(self.step, end),
            unit="step",
            desc="training",
            disable=not (main and config.progress),
            dynamic_ncols=True,
        )
        try:
            while self.step < end:
                tick = time.monotonic()
                last = self.train_step()
                seconds = time.monotonic() - tick
                rate = config.batch_size * self.processes.world_size / max(seconds, 1e-9)
                rates.append(rate)
                elapsed = self.elapsed_before + time.monotonic() - started
                if main:
                    self.log.append(
                        {"step": self.step, "seconds": elapsed, "samples_per_s": rate, **last}
                    )
                    bar.set_postfix(loss=f"{last['loss']:.4f}", lr=f"{last['lr']:.2e}")
                    bar.update(1)
                    if config.val_every and self.step % config.val_every == 0:
                        validation = self._log_validation()
                    if time.monotonic() - last_checkpoint >= config.checkpoint_minutes * 60:
                        self.save_checkpoint(elapsed)
                        last_checkpoint = time.monotonic()
        except KeyboardInterrupt:
            if main and last is not None:
                self.save_checkpoint(self.elapsed_before + time.monotonic() - started)
            raise
        finally:
            bar.close()
        elapsed = self.elapsed_before + time.monotonic() - started
        if main:
            if config.val_every and (validation is None or self.step % config.val_every):
                validation = self._log_validation()
            self.save_checkpoint(elapsed)
        self.check_ranks_agree()
        steady = rates[1:] or rates
        return TrainSummary(
            run_dir=self.run_dir,
            step=self.step,
            loss=None if last is None else last["loss"],
            validation=validation,
            samples_per_second=float(np.median(steady)) if steady else None,
        )

    def _log_validation(self) -> dict[str, float] | None:
        result = self.validate()
        if result is not None:
            self.val_log.append({"step": self.step, **result})
        return result

    def close(self) -> None:
        stop_processes(self.processes)


def train(config: TrainConfig, *, resume: bool = False) -> TrainSummary:
    """Run (or continue) a training run; in every process of a torchrun launch."""
    processes = start_processes(config.device)
    try:
        trainer = Trainer(config, resume=resume, processes=processes)
        return trainer.run()
    finally:
        stop_processes(processes)


def resolved_config_for(run_dir: str | Path) -> TrainConfig:
    """The config a run folder was trained with."""
    return from_dict(stored_config(Path(run_dir)))


__all__ = [
    "CHECKPOINT_FILE",
    "CONFIG_FILE",
    "LOG_FILE",
    "MODEL_FILE",
    "RANKS_FILE",
    "VAL_FILE",
    "TrainSummary",
    "Trainer",
    "build_network",
    "lr_factor",
    "read_checkpoint",
    "resolved_config_for",
    "stored_config",
    "train",
    "weights_digest",
]
