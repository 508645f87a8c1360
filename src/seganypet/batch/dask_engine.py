"""The ``dask`` engine: a batch's studies on the workers of an existing dask.distributed cluster.

Start the cluster with dask's own commands, on one machine or many (the workers need this
package installed and the studies and the output folder at the same paths, a shared file
system)::

    dask scheduler                                     # on one machine: tcp://HOST:8786
    dask worker tcp://HOST:8786 --nworkers 2 --nthreads 1   # on every machine

then ``seganypet batch MANIFEST -o OUT --engine dask --address tcp://HOST:8786``. Each worker
loads the model once, through :class:`ModelPlugin` (registered with the scheduler, so a worker
that joins later loads it too). A worker that dies mid-study loses nothing: the scheduler gives
its studies to another worker (a study that kills three workers is marked failed).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

from distributed import Client, WorkerPlugin, as_completed
from distributed.client import FutureCancelledError

from seganypet.batch.run import StudyJob, StudyOutcome, WorkerSetup, run_study, worker_session
from seganypet.errors import InputError

PLUGIN_NAME = "seganypet-model"
CONNECT_TIMEOUT_S = 30
#: How long ``--workers N`` waits for N workers to join (each imports torch, loads the model).
WORKERS_TIMEOUT_S = 120


class ModelPlugin(WorkerPlugin):
    """Loads the model into a worker when it starts (or joins), once."""

    def __init__(self, worker_setup: WorkerSetup):
        self.worker_setup = worker_setup

    def setup(self, worker) -> None:
        worker_session(self.worker_setup)


class DaskEngine:
    """Studies as dask tasks, one per study; results come back as they complete."""

    name = "dask"

    def __init__(self, setup: WorkerSetup, address: str, workers: int | None = None):
        self.address = address
        # one torch thread per task unless asked: start as many worker threads as cores
        self.setup = setup if setup.threads else replace(setup, threads=1)
        self.requested_workers = workers
        self.workers = 0
        self._client: Client | None = None

    def __enter__(self) -> DaskEngine:
        try:
            self._client = Client(self.address, timeout=f"{CONNECT_TIMEOUT_S}s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise InputError(
                f"cannot reach the dask scheduler at {self.address} ({exc}); start it with "
                "'dask scheduler' and give its address, such as tcp://10.0.0.5:8786"
            ) from None
        if self.requested_workers:
            try:
                self._client.wait_for_workers(self.requested_workers, timeout=WORKERS_TIMEOUT_S)
            except TimeoutError:
                joined = len(self._client.scheduler_info(n_workers=-1)["workers"])
                self.close()
                raise InputError(
                    f"only {joined} of the {self.requested_workers} workers asked for (--workers) "
                    f"joined the scheduler at {self.address} in {WORKERS_TIMEOUT_S} s; start more "
                    f"with 'dask worker {self.address} --nthreads 1', or ask for fewer"
                ) from None
        self.workers = len(self._client.scheduler_info(n_workers=-1)["workers"])
        if not self.workers:
            self.close()
            raise InputError(
                f"the dask scheduler at {self.address} has no worker; start some with "
                f"'dask worker {self.address} --nthreads 1'"
            )
        self._client.register_plugin(ModelPlugin(self.setup), name=PLUGIN_NAME)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def run(self, jobs: Sequence[StudyJob]) -> Iterator[StudyOutcome]:
        assert self._client is not None, "use the engine in a with block"
        jobs = [replace(job, setup=self.setup) for job in jobs]
        futures = self._client.map(
            run_study, jobs, key=[f"seganypet-{job.spec.name}-{job.key[:16]}" for job in jobs]
        )
        by_key = {future.key: job for future, job in zip(futures, jobs, strict=True)}
        try:
            for future in as_completed(futures):
                job = by_key[future.key]
                try:
                    yield future.result()
                except FutureCancelledError:
                    yield StudyOutcome.failure(job, "cancelled by the cluster before it ran")
                except Exception as exc:  # the task itself never raises: the cluster lost it
                    yield StudyOutcome.failure(
                        job, f"the cluster could not run it: {type(exc).__name__}: {exc}"
                    )
                future.release()
        finally:
            self._client.cancel(futures)


class LoopbackDaskCluster:
    """A real dask cluster on this machine's loopback: ``dask scheduler`` and ``workers``
    ``dask worker`` processes (one thread each), started as separate processes and stopped on
    leaving the ``with`` block. For tests and ``seganypet bench --batch``; a cohort's cluster is
    started with dask's own commands (see the module's docstring)."""

    def __init__(self, workers: int, folder: Path, start_timeout_s: float = 120.0):
        self.workers = workers
        self.folder = Path(folder)
        self.start_timeout_s = start_timeout_s
        self.scheduler_file = self.folder / "scheduler.json"
        self.address = ""
        self._processes: list[subprocess.Popen] = []
        self._logs: list = []

    def _start(self, role: str, *args: str) -> None:
        log = open(self.folder / f"{role}-{len(self._processes)}.log", "wb")
        self._logs.append(log)
        command = [sys.executable, "-m", "dask", role, "--no-dashboard", "--host", "127.0.0.1"]
        self._processes.append(
            subprocess.Popen([*command, *args], stdout=log, stderr=subprocess.STDOUT)
        )

    def __enter__(self) -> LoopbackDaskCluster:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.scheduler_file.unlink(missing_ok=True)
        try:
            self._start("scheduler", "--port", "0", "--scheduler-file", str(self.scheduler_file))
            self.address = self._wait_for_scheduler()
            for _ in range(self.workers):
                self._start(
                    "worker", "--scheduler-file", str(self.scheduler_file), "--nthreads", "1"
                )
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait_for_scheduler(self) -> str:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self._processes[0].poll() is not None:
                raise RuntimeError(f"dask scheduler exited; see {self.folder}")
            try:
                return json.loads(self.scheduler_file.read_text())["address"]
            except (OSError, ValueError, KeyError):
                time.sleep(0.1)
        raise RuntimeError(f"dask scheduler did not start in {self.start_timeout_s:.0f} s")

    def __exit__(self, *exc_info: object) -> None:
        for process in reversed(self._processes):  # workers first, then the scheduler
            process.terminate()
        for process in self._processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in self._logs:
            log.close()
        self._processes, self._logs = [], []
