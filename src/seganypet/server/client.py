"""A small Python client for ``seganypet serve``, over ``urllib`` (no extra dependency).

>>> client = Client("http://127.0.0.1:8000", token="...")
>>> study = client.open("patient1/pet.nii.gz")          # a path under the server's --data
>>> answer = client.add({"point": [60, 72, 101]})         # voxel indices of the input array
>>> labels = client.labels                                # uint16 label map on the input grid
>>> answer["stats"]["labels"][0]["suv_max"]               # one request per prompt
"""

from __future__ import annotations

import gzip
import io
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


class ServerError(Exception):
    """The server refused a request; ``status`` is the HTTP status, the message its reason."""

    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class Client:
    """One session on a seganypet server. :meth:`open` or :meth:`upload` picks the study."""

    def __init__(self, url: str, token: str, timeout: float = 600.0):
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.session_id: str | None = None
        #: the study's label map, kept up to date from each answer's change (no extra request)
        self.labels: np.ndarray | None = None

    # ------------------------------------------------------------------ transport
    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, Any] | None = None,
        raw: bytes | None = None,
    ) -> bytes:
        url = self.url + path
        if params:
            url += "?" + urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        headers = {"Authorization": f"Bearer {self.token}"}
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        elif raw is not None:
            headers["Content-Type"] = "application/octet-stream"
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            text = exc.read().decode("utf-8", "replace")
            try:
                text = json.loads(text).get("detail", text)
            except (ValueError, AttributeError):
                pass
            raise ServerError(exc.code, str(text)) from None

    def _json(self, method: str, path: str, body: Any = None, **kwargs) -> Any:
        return json.loads(self.request(method, path, body, **kwargs))

    def _session(self, suffix: str = "") -> str:
        if self.session_id is None:
            raise RuntimeError("open a study first (Client.open or Client.upload)")
        return f"/api/sessions/{self.session_id}{suffix}"

    # ------------------------------------------------------------------ studies
    def health(self) -> dict[str, Any]:
        return self._json("GET", "/api/health")

    def studies(self) -> list[dict[str, Any]]:
        """The PET studies under the server's data folder, each with the masks beside it
        (``attachments``: label maps, RTSTRUCTs, SEGs, usable as references)."""
        return self._json("GET", "/api/studies")

    def open(self, study: str) -> dict[str, Any]:
        """Open a study under the server's data folder (replaying its journal)."""
        info = self._json("POST", "/api/sessions", {"study": study})
        self.session_id = info["session_id"]
        self.labels = self.mask()
        return info

    def upload(self, path: str | os.PathLike) -> dict[str, Any]:
        """Upload a NIfTI file, or a DICOM folder (zipped here) or .zip, and open it."""
        path = Path(path)
        if path.is_dir():
            import zipfile

            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
                for file in sorted(p for p in path.rglob("*") if p.is_file()):
                    zf.write(file, file.relative_to(path).as_posix())
            data, filename = buffer.getvalue(), path.name + ".zip"
        else:
            data, filename = path.read_bytes(), path.name
        info = json.loads(
            self.request("POST", "/api/sessions/upload", params={"filename": filename}, raw=data)
        )
        self.session_id = info["session_id"]
        self.labels = self.mask()
        return info

    def info(self) -> dict[str, Any]:
        return self._json("GET", self._session())

    # ------------------------------------------------------------------ prompts
    def add(self, prompt: dict[str, Any]) -> dict[str, Any]:
        """Send one prompt in its JSON form (see :class:`seganypet.prompts.Prompt`); the answer
        updates :attr:`labels` where the label map changed."""
        return self._changed(self._json("POST", self._session("/prompts"), prompt))

    def add_point(self, voxel: Sequence[float], positive: bool = True) -> dict[str, Any]:
        return self.add({"point": [float(v) for v in voxel], "positive": bool(positive)})

    def add_box(self, lo: Sequence[float], hi: Sequence[float]) -> dict[str, Any]:
        return self.add({"box": [float(v) for v in (*lo, *hi)]})

    def undo(self) -> dict[str, Any]:
        return self._changed(self._json("POST", self._session("/undo")))

    def reset(self) -> dict[str, Any]:
        return self._changed(self._json("POST", self._session("/reset")))

    def new_object(self, name: str | None = None) -> dict[str, Any]:
        return self._changed(self._json("POST", self._session("/objects"), {"name": name}))

    def select_object(self, index: int) -> dict[str, Any]:
        return self._changed(self._json("POST", self._session(f"/objects/{int(index)}/select")))

    def rename_object(self, index: int, name: str) -> dict[str, Any]:
        return self._changed(
            self._json("PATCH", self._session(f"/objects/{int(index)}"), {"name": name})
        )

    def _changed(self, info: dict[str, Any]) -> dict[str, Any]:
        """Apply a response's label-map change to :attr:`labels`."""
        change = info.get("change")
        if change is not None and self.labels is not None:
            box = tuple(slice(a, b + 1) for a, b in zip(change["lo"], change["hi"], strict=True))
            shape = [b - a + 1 for a, b in zip(change["lo"], change["hi"], strict=True)]
            self.labels[box] = decode_labels(change["runs"], shape)
        return info

    # ------------------------------------------------------------------ results
    def mask(self, object: int | None = None) -> np.ndarray:
        """The label map (or one object's 0/1 mask) on the input grid, from the run-length JSON."""
        payload = self._json(
            "GET", self._session("/mask"), params={"format": "rle", "object": object}
        )
        return decode_labels(payload["runs"], payload["shape"])

    def mask_nifti(self, object: int | None = None) -> bytes:
        """The label map as gzipped NIfTI bytes."""
        return self.request(
            "GET", self._session("/mask"), params={"format": "nifti", "object": object}
        )

    def image_nifti(self) -> bytes:
        return self.request("GET", self._session("/image"))

    def stats(self) -> dict[str, Any]:
        return self._json("GET", self._session("/stats"))

    def save(self, format: str | None = None) -> dict[str, Any]:
        return self._json("POST", self._session("/save"), {"format": format})

    def download(self, saved: dict[str, Any], destination: str | os.PathLike) -> Path:
        """Fetch a file :meth:`save` wrote into ``destination`` (a file path)."""
        data = self.request("GET", saved["download"])
        destination = Path(destination)
        destination.write_bytes(data)
        return destination


def decode_labels(runs: list[int], shape: Sequence[int]) -> np.ndarray:
    """Labels from run-length JSON (value, count, ...) in Fortran order."""
    runs = np.asarray(runs, np.int64)
    return np.repeat(runs[0::2], runs[1::2]).astype(np.uint16).reshape(shape, order="F")


def nifti_array(data: bytes) -> np.ndarray:
    """The array of gzipped NIfTI bytes (as the server sends masks and images)."""
    import nibabel as nib

    raw = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    return np.asanyarray(nib.Nifti1Image.from_bytes(raw).dataobj)
