"""``seganypet bench``: how fast the network runs here, measured rather than claimed.

:func:`run_benchmark` times the image embedding (once per crop) and one prompt round (prompt
encoder + mask decoder, once per click, feeding back the previous logits as the session does),
and reports the peak resident memory. With ``bf16`` it also times the bfloat16 embedding and how
far it is from float32. With ``compare_reference`` it also times the reference implementation's
way of doing windowed attention (pad the token grid to whole windows, attend over every padded
token, drop the padded outputs), so the speed-up of the exact collapsed attention is measured on
this machine.
"""

from __future__ import annotations

import json
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from seganypet.errors import InputError
from seganypet.model.checkpoint import load_model
from seganypet.model.network import PromptableNetwork, SamMed3D, build_network
from seganypet.model.presets import preset_names
from seganypet.model.runtime import configure_threads


def _timed(fn) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _synthetic_crop(size: tuple[int, int, int], seed: int) -> torch.Tensor:
    """A normalised crop with a bright blob and noise (its content does not change the timing)."""
    gen = torch.Generator().manual_seed(seed)
    axes = [torch.linspace(-1, 1, n) for n in size]
    d, h, w = torch.meshgrid(*axes, indexing="ij")
    blob = 3.0 * torch.exp(-((d - 0.1) ** 2 + (h + 0.1) ** 2 + w**2) / 0.05)
    return (blob + 0.3 * torch.randn(size, generator=gen))[None, None].float()


def _tensors(embedding) -> list[torch.Tensor]:
    return list(embedding) if isinstance(embedding, (tuple, list)) else [embedding]


def _max_abs(embedding) -> float:
    return max(float(t.abs().max()) for t in _tensors(embedding))


def _max_abs_diff(a, b) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(_tensors(a), _tensors(b), strict=True))


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # kilobytes on Linux, bytes on macOS
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _build(model: str | Path | PromptableNetwork, seed: int) -> PromptableNetwork:
    if isinstance(model, PromptableNetwork) and not isinstance(model, (str, Path)):
        return model
    if isinstance(model, str) and model in preset_names():
        torch.manual_seed(seed)  # random weights: the timing does not depend on them
        return build_network(model)
    return load_model(model)


def run_benchmark(
    model: str | Path | SamMed3D | PromptableNetwork = "vit_b_ori",
    repeats: int = 5,
    bf16: bool = False,
    *,
    clicks: int = 5,
    compare_reference: bool = False,
    reference_repeats: int = 1,
    threads: int | None = None,
    seed: int = 0,
    print_json: bool = True,
) -> dict[str, Any]:
    """Time embed and decode; return (and print as JSON) the medians and the peak RSS.

    ``model``: a preset name (random weights), a checkpoint path / bundled name, or a network.
    Times are seconds; ``decode_s_per_click_median`` is the median over ``repeats`` sessions of
    ``clicks`` clicks each (every click re-encodes all points so far and the previous logits).
    ``peak_rss_mb`` is the process's peak resident memory before the reference comparison (which
    reports its own, higher peak: it materialises the padded attention).
    """
    if repeats < 1 or clicks < 1:
        raise ValueError("repeats and clicks must be at least 1")
    num_threads = configure_threads(threads)
    net = _build(model, seed)
    net.precision = "fp32"
    is_vit = isinstance(net, SamMed3D)
    if compare_reference and not is_vit:
        raise InputError("--compare-reference times the ViT's windowed attention: SAM-Med3D only")
    if is_vit:
        attention_mode = net.image_encoder.attention_mode
        net.image_encoder.attention_mode = "fast"
    size = net.config.input_size
    x = _synthetic_crop(size, seed)
    gen = torch.Generator().manual_seed(seed + 1)

    # Warm-up (first calls allocate and pick kernels).
    emb = net.embed(x)
    net.decode(emb, [[[s // 2 for s in size]]], [[1]])

    embed_times = []
    for _ in range(repeats):
        t, emb = _timed(lambda: net.embed(x))
        embed_times.append(t)

    decode_times = []
    for _ in range(repeats):
        points: list[list[float]] = []
        labels: list[int] = []
        logits = None
        for click in range(clicks):
            points.append([float(torch.randint(0, s, (1,), generator=gen)) for s in size])
            labels.append(1 if click % 3 != 1 else 0)
            t, (logits, _iou) = _timed(
                lambda: net.decode(emb, [points], [labels], mask_logits=logits)  # noqa: B023
            )
            decode_times.append(t)

    result: dict[str, Any] = {
        "preset": net.config.preset,
        "family": net.config.family,
        "parameters_m": round(sum(p.numel() for p in net.parameters()) / 1e6, 2),
        "input_size": list(size),
        "threads": num_threads,
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "repeats": repeats,
        "clicks": clicks,
        "embed_s_median": statistics.median(embed_times),
        "embed_s_min": min(embed_times),
        "decode_s_per_click_median": statistics.median(decode_times),
        "decode_s_per_click_min": min(decode_times),
    }

    if bf16:
        net.precision = "bf16"
        emb16 = net.embed(x)  # warm-up
        times16 = []
        for _ in range(repeats):
            t, emb16 = _timed(lambda: net.embed(x))
            times16.append(t)
        net.precision = "fp32"
        result["bf16"] = {
            "embed_s_median": statistics.median(times16),
            "embed_s_min": min(times16),
            "max_abs_diff_vs_fp32": _max_abs_diff(emb16, emb),
            "embedding_abs_max": _max_abs(emb),
        }

    result["peak_rss_mb"] = round(_peak_rss_mb(), 1)

    if compare_reference:
        net.image_encoder.attention_mode = "padded"
        try:
            ref_times = []
            for _ in range(max(1, reference_repeats)):
                t, emb_ref = _timed(lambda: net.embed(x))
                ref_times.append(t)
        finally:
            net.image_encoder.attention_mode = "fast"
        ref_median = statistics.median(ref_times)
        result["reference"] = {
            "what": "reference-style windowed attention: grid padded to whole windows, all padded tokens attended",
            "embed_s_median": ref_median,
            "speedup": ref_median / result["embed_s_median"],
            "max_abs_diff_vs_fast": float((emb_ref - emb).abs().max()),
            "peak_rss_mb": round(_peak_rss_mb(), 1),
        }

    if is_vit:
        net.image_encoder.attention_mode = attention_mode
    if print_json:
        print(json.dumps(result, indent=2))
    return result
