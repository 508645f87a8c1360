"""How many CPU threads torch should use here, and what the CPU computes natively.

Importing it does not import torch (a batch's coordinator counts CPUs without it).
"""

from __future__ import annotations

import os

ENV_VAR = "SEGANYPET_NUM_THREADS"


def available_cpus() -> int:
    """CPUs this process may run on: its affinity, capped by a cgroup CPU quota if there is one."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        count = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            count = min(count, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, count)


def configure_threads(num_threads: int | None = None) -> int:
    """Set torch's intra-op threads and return the number used.

    ``num_threads`` wins; else ``$SEGANYPET_NUM_THREADS``; else the CPUs available to this
    process (one thread per CPU: the matrix products that dominate gain nothing from more).
    """
    if num_threads is None:
        env = os.environ.get(ENV_VAR, "").strip()
        num_threads = int(env) if env.isdigit() and int(env) > 0 else available_cpus()
    import torch

    num_threads = max(1, int(num_threads))
    if torch.get_num_threads() != num_threads:
        torch.set_num_threads(num_threads)
    return num_threads


#: CPU flags (Linux /proc/cpuinfo) of native bfloat16 arithmetic; without them torch emulates it.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool | None:
    """Whether this CPU computes bfloat16 natively (None where it cannot be told)."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            return None
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[-1].split())
            return any(flag in flags for flag in NATIVE_BF16_FLAGS)
    return None
