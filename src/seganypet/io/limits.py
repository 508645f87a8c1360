"""Refusing, before allocating, a volume that cannot fit in this machine's memory.

A damaged or hostile header can claim any size (30000³ voxels is 108 TB); reading it would end in
a ``MemoryError`` or in the kernel killing the process. The readers check the claimed size first.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from seganypet.errors import InputError

FLOAT32_BYTES = 4


def available_memory_bytes() -> int:
    """Memory this process may still use: the smallest of the kernel's MemAvailable and a
    cgroup limit (containers), or the physical memory where neither can be read."""
    limits = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                limits.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        text = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if text.isdigit():
            used = Path("/sys/fs/cgroup/memory.current").read_text().strip()
            limits.append(int(text) - (int(used) if used.isdigit() else 0))
    except (OSError, ValueError):
        pass
    if not limits:
        try:
            limits.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
        except (ValueError, OSError, AttributeError):
            return 1 << 62  # unknown: do not refuse on memory grounds
    return max(0, min(limits))


def format_bytes(count: float) -> str:
    for unit in ("bytes", "kB", "MB", "GB", "TB", "PB"):
        if abs(count) < 1000 or unit == "PB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")


def format_shape(shape: Sequence[int]) -> str:
    return "×".join(str(int(n)) for n in shape)


def check_fits_in_memory(source: str, shape: Sequence[int], bytes_per_voxel: int) -> None:
    """Refuse a volume of ``shape`` whose reading needs more memory than is available."""
    voxels = 1
    for n in shape:
        voxels *= int(n)
    needed = voxels * bytes_per_voxel
    available = available_memory_bytes()
    if needed > available:
        raise InputError(
            f"{source}: the header claims {format_shape(shape)} voxels, which need "
            f"{format_bytes(needed)} of memory to read, and this machine has "
            f"{format_bytes(available)} available; a PET volume is far smaller, so the header is "
            "damaged or this is not a PET image"
        )
