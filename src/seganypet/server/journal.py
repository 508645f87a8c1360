"""A per-study journal of interactions: JSON lines, each flushed and fsynced before it is applied.

The first line describes the study (its key and the image's shape and affine); every later line is
one operation (``prompt``, ``undo``, ``reset``, ``new_object``, ``select``, ``rename``); a
``prompt`` holds the prompt in its one JSON form (:meth:`seganypet.prompts.Prompt.to_dict`).
Replaying the operations in order on a fresh session gives back the same objects and masks:
the network is deterministic, and an operation the session refused (an :class:`InputError`) is
refused again on replay and changes nothing.

A crash can leave at most one half-written last line (the operation whose append was cut off, and
so was never applied); :meth:`Journal.read` drops it and the next append starts on a clean line.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

JOURNAL_VERSION = 2


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class Journal:
    """An append-only JSON-lines file with a header line."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def exists(self) -> bool:
        return self.path.exists() and self.path.stat().st_size > 0

    def read(self) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """The header and the operations; a trailing half-written line is dropped (and cut off)."""
        if not self.exists():
            return None, []
        data = self.path.read_bytes()
        complete = data[: data.rfind(b"\n") + 1]
        if len(complete) != len(data):
            with open(self.path, "r+b") as handle:  # cut the torn line so appends start cleanly
                handle.truncate(len(complete))
                handle.flush()
                os.fsync(handle.fileno())
        records = []
        for line in complete.decode("utf-8").splitlines():
            if line.strip():
                records.append(json.loads(line))
        if not records or records[0].get("op") != "open":
            return None, records
        return records[0], [_upgraded(record) for record in records[1:]]

    def start(self, header: dict[str, Any]) -> None:
        """Begin a new journal with ``header`` (an existing one must have been set aside)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = {"op": "open", "version": JOURNAL_VERSION, "time": time.time(), **header}
        with open(self.path, "xb") as handle:
            handle.write(_line(record))
            handle.flush()
            os.fsync(handle.fileno())
        _fsync_dir(self.path.parent)

    def append(self, record: dict[str, Any]) -> None:
        """Write one operation durably: it is on disk when this returns."""
        with open(self.path, "ab") as handle:
            handle.write(_line({**record, "time": time.time()}))
            handle.flush()
            os.fsync(handle.fileno())

    def set_aside(self, reason: str) -> Path:
        """Rename the journal out of the way (never delete work); returns the new path."""
        target = self.path.with_name(
            f"{self.path.stem}.{reason}-{time.strftime('%Y%m%dT%H%M%S')}.jsonl"
        )
        counter = 1
        while target.exists():
            target = target.with_name(f"{target.stem}-{counter}.jsonl")
            counter += 1
        os.replace(self.path, target)
        _fsync_dir(self.path.parent)
        return target


def _line(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, separators=(",", ":")) + "\n").encode("utf-8")


def _upgraded(record: dict[str, Any]) -> dict[str, Any]:
    """A version-1 ``point`` or ``box`` operation as the ``prompt`` operation it now is."""
    if record.get("op") == "point" and "voxel" in record:
        prompt = {"point": record["voxel"], "positive": record.get("positive", True)}
        return {"op": "prompt", "prompt": prompt}
    if record.get("op") == "box" and "lo" in record and "hi" in record:
        return {"op": "prompt", "prompt": {"box": [*record["lo"], *record["hi"]]}}
    return record
