"""`seganypet bench`: the benchmark runs and reports what it measured."""

from __future__ import annotations

import json

from seganypet.bench import run_benchmark


def test_benchmark_reports_timings_memory_and_the_reference_comparison(capsys):
    result = run_benchmark("small", repeats=1, bf16=True, clicks=2, compare_reference=True)
    printed = json.loads(capsys.readouterr().out)
    assert printed == result
    assert result["preset"] == "small" and result["threads"] >= 1
    assert result["embed_s_median"] > 0 and result["decode_s_per_click_median"] > 0
    assert result["peak_rss_mb"] > 0
    assert result["bf16"]["embed_s_median"] > 0
    assert result["bf16"]["max_abs_diff_vs_fp32"] < 0.05 * result["bf16"]["embedding_abs_max"]
    # small's windows tile its grid exactly, so both attentions compute the same sums
    assert result["reference"]["max_abs_diff_vs_fast"] < 1e-4
    assert result["reference"]["speedup"] > 0
