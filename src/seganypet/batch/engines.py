"""Where a batch's studies run.

- ``local``: worker processes on this machine (:class:`LocalEngine`, a ``ProcessPoolExecutor``);
  each loads the model once, in its initializer.
- ``dask``: the workers of an existing ``dask.distributed`` cluster (:mod:`.dask_engine`); each
  loads the model once, through a worker plugin, when it joins.

Every engine yields each study's :class:`~seganypet.batch.run.StudyOutcome` as it completes. A
worker that dies takes no result with it silently: its studies come back as failures with the
reason, or (dask) run again on another worker.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace

from seganypet.batch.run import (
    Engine,
    StudyJob,
    StudyOutcome,
    WorkerSetup,
    run_study,
    worker_session,
)
from seganypet.errors import InputError

ENGINES = ("local", "dask")


def make_engine(
    name: str, setup: WorkerSetup, *, workers: int | None = None, address: str | None = None
) -> Engine:
    """The engine called ``name``: ``local`` with ``workers`` processes (default: one per CPU),
    or ``dask`` on the scheduler at ``address``."""
    if name == "local":
        if address:
            raise InputError("--address is for --engine dask; the local engine uses this machine")
        return LocalEngine(setup, workers)
    if name == "dask":
        if not address:
            raise InputError(
                "--engine dask needs --address of a running scheduler, such as "
                "tcp://10.0.0.5:8786 (start one with: dask scheduler)"
            )
        try:
            from seganypet.batch.dask_engine import DaskEngine
        except ImportError as exc:
            raise InputError(
                f"--engine dask needs dask.distributed ({exc}); install it with "
                "pip install 'seganypet[cluster]'"
            ) from None
        return DaskEngine(setup, address, workers)
    raise InputError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")


#: A pool whose worker died is started afresh this many times, its unfinished studies resubmitted.
LOCAL_POOL_RESTARTS = 1


def _start_local_worker(setup: WorkerSetup) -> None:
    # Ctrl-C reaches the whole process group: the coordinator alone handles it, and a worker
    # finishes (and writes) the study it has begun.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        worker_session(setup)
    except InputError:
        pass  # a model that cannot be loaded: _model_loads says why, in the coordinator


def _model_loads(setup: WorkerSetup) -> None:
    worker_session(setup)


class LocalEngine:
    """Worker processes on this machine, each loading the model once (its initializer). A
    worker that dies (killed, out of memory) breaks the pool: it is started again once and the
    unfinished studies resubmitted; if it breaks again they are recorded as failed."""

    name = "local"

    def __init__(self, setup: WorkerSetup, workers: int | None = None):
        from seganypet.model.runtime import available_cpus

        cpus = available_cpus()
        self.workers = workers or cpus
        threads = setup.threads or max(1, cpus // self.workers)
        self.setup = WorkerSetup(setup.model, threads, setup.reference_order)
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> LocalEngine:
        self._start_pool()
        assert self._pool is not None
        try:
            self._pool.submit(_model_loads, self.setup).result()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _start_pool(self) -> None:
        self._pool = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),  # no forked torch or tqdm threads
            initializer=_start_local_worker,
            initargs=(self.setup,),
        )

    def __exit__(self, *exc_info: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def run(self, jobs: Sequence[StudyJob]) -> Iterator[StudyOutcome]:
        pending = [replace(job, setup=self.setup) for job in jobs]
        for restart in range(LOCAL_POOL_RESTARTS + 1):
            if restart:
                self.__exit__()
                self._start_pool()
            assert self._pool is not None, "use the engine in a with block"
            futures: dict[Future, StudyJob] = {
                self._pool.submit(run_study, job): job for job in pending
            }
            pending = []
            for future in as_completed(futures):
                try:
                    yield future.result()
                except BrokenProcessPool:
                    pending.append(futures[future])
            if not pending:
                return
        for job in pending:
            yield StudyOutcome.failure(
                job,
                "a worker process died (out of memory, or killed) while this study was "
                "unfinished, twice; run the batch again to retry it",
            )
