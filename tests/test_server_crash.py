"""No lost work: ``seganypet serve`` is killed (SIGKILL) after some clicks, started again, and the
reopened study has the same objects and the identical mask. Also checks the start-up message."""

from __future__ import annotations

import gzip
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from seganypet.model import SamMed3D, save_model  # noqa: E402
from seganypet.server.client import Client, ServerError  # noqa: E402


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(data: Path, model: Path, port: int) -> tuple[subprocess.Popen, str]:
    """Start the server with an automatic token; return the process and the printed token."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("SEGANYPET_TOKEN", None)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "seganypet",
            "serve",
            "--port",
            str(port),
            "--data",
            str(data),
            "--model",
            str(model),
            "--threads",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    # No clock decides: the server prints its URL once the model is loaded, then uvicorn binds
    # the port; a process that exits first fails the test with what it printed.
    seen = []
    for line in process.stdout:
        seen.append(line)
        match = re.search(rf"http://127\.0\.0\.1:{port}/\?token=([0-9a-f]+)", line)
        if match:
            token = match.group(1)
            client = Client(f"http://127.0.0.1:{port}", token, timeout=60)
            while process.poll() is None:
                try:
                    client.health()
                    return process, token
                except (OSError, ServerError):
                    time.sleep(0.2)
            break
    process.kill()
    process.wait()
    pytest.fail("the server did not start:\n" + "".join(seen) + (process.stdout.read() or ""))


def test_killed_server_loses_no_work(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = save_model(SamMed3D("small"), tmp_path / "small.safetensors")
    data = tmp_path / "data"
    data.mkdir()
    array = np.ones((48, 40, 32), np.float32)
    array[18:30, 14:26, 10:20] = 9.0
    (data / "pet.nii.gz").write_bytes(
        gzip.compress(nib.Nifti1Image(array, np.diag([3.0, 3.0, 3.0, 1.0])).to_bytes())
    )

    port = _free_port()
    process, token = _start(data, model, port)
    try:
        client = Client(f"http://127.0.0.1:{port}", token)
        with pytest.raises(ServerError) as refused:
            Client(f"http://127.0.0.1:{port}", "not-the-token").studies()
        assert refused.value.status == 401
        info = client.open("pet.nii.gz")
        client.add_point((24, 20, 15))
        client.add_point((19, 15, 11), positive=False)
        client.new_object("second")
        client.add_point((40, 30, 25))
        before = client.info()
        labels = client.mask()
        assert (labels > 0).any(), "the clicks made a mask to lose"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        process.stdout.close()

    process, new_token = _start(data, model, port)
    try:
        assert new_token != token, "--token auto makes a new token at every start"
        client = Client(f"http://127.0.0.1:{port}", new_token)
        after = client.open("pet.nii.gz")
        assert after["session_id"] == info["session_id"]
        assert after["replayed"] == 4
        assert after["objects"] == before["objects"] and after["current"] == before["current"]
        np.testing.assert_array_equal(client.mask(), labels)
    finally:
        process.kill()
        process.wait(timeout=30)
        process.stdout.close()
