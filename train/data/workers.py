"""Where the data build's per-song jobs run: in this process, a local process pool, or a Dask
cluster (``kdtrain data --cluster``), behind one function, :func:`map_songs`.

The work unit is a song (the render's :func:`train.data.collection.render_song`, the notes
store's :func:`train.data.notes.song_windows`) or a stem (the cut). Results come back to the
one writer, in this process, **in the order of the jobs**, whichever path ran them: a store's
bytes never depend on which worker finished first, so a cluster builds the process pool's
store byte for byte, and a build stopped anywhere resumes from what was written.

The cluster is `Dask distributed <https://distributed.dask.org>`_, the engine that runs on
Slurm (dask-jobqueue), Kubernetes (dask-kubernetes) and cloud VMs; it is the optional extra
``kdlive[cluster]``, imported only when a cluster is asked for. Its workers must see the same
paths as this process (a shared file system): jobs name files, and the render writes its song
folders itself. A worker that dies mid-song loses only that song: the scheduler runs it again
elsewhere, up to ``distributed.scheduler.allowed-failures`` times (3 by default); a song that
kills that many workers is handed to the caller's ``lost``, which records it as skipped.
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from train.errors import DataError

if TYPE_CHECKING:
    from distributed import Client

R = TypeVar("R")
EXTRA_HINT = "--cluster needs the Dask engine: pip install 'kdlive[cluster]'"
LOCAL = re.compile(r"local:(\d+)")
#: Jobs handed to the cluster ahead of the one being written, per worker thread (at least
#: MIN_AHEAD): enough to keep every worker busy, few enough that finished results waiting
#: their turn stay small (they wait in the workers' memory, not here).
AHEAD_PER_THREAD, MIN_AHEAD = 4, 64
#: How often (seconds) the number of worker threads is asked again: a cluster grows and
#: shrinks (Slurm jobs start late, adaptive clusters scale).
RECOUNT_S = 10.0


def cluster_problem(cluster: str | None) -> str | None:
    """What is wrong with ``cluster`` as a ``--cluster`` value, or None: it is None,
    ``local:N`` (N >= 1) or a scheduler's address (``tcp://host:8786``, ``host:8786``)."""
    if cluster is None:
        return None
    local = LOCAL.fullmatch(cluster)
    if (local is not None and int(local[1]) >= 1) or (
        local is None and not cluster.startswith("local") and ":" in cluster
    ):
        return None
    return (
        f"--cluster {cluster!r}: give local:N (N worker processes on this machine) or a Dask "
        "scheduler's address, e.g. tcp://host:8786"
    )


@contextmanager
def connect(cluster: str | None) -> Iterator[Client | None]:
    """A Dask client for ``cluster`` (see :func:`cluster_problem`) while the block runs, or None
    without one. ``local:N`` starts a scheduler and N single-threaded worker processes here,
    over TCP on the loopback, and stops them at the end; an address is a running scheduler."""
    if cluster is None:
        yield None
        return
    if problem := cluster_problem(cluster):
        raise DataError(problem)
    try:
        import dask
        import distributed
    except ImportError:
        raise DataError(EXTRA_HINT) from None
    local = LOCAL.fullmatch(cluster)
    if local is not None:
        # Dask caps each worker's BLAS at one thread; the pool's processes are not capped, and
        # the log-mel's float rounding follows the thread count: uncapped, the local cluster
        # cuts the pool's bytes.
        uncapped = {"MALLOC_TRIM_THRESHOLD_": 65536}
        with (
            dask.config.set({"distributed.nanny.pre-spawn-environ": uncapped}),
            distributed.LocalCluster(
                n_workers=int(local[1]),
                processes=True,
                threads_per_worker=1,
                host="127.0.0.1",
                dashboard_address=None,
            ) as here,
            distributed.Client(here) as client,
        ):
            yield client
        return
    try:
        client = distributed.Client(cluster)
    except OSError as exc:
        raise DataError(f"no Dask scheduler answers at {cluster} ({exc})") from None
    with client:
        yield client


def map_songs(
    fn: Callable[..., R],
    jobs: Sequence[tuple],
    *,
    workers: int = 1,
    client: Client | None = None,
    lost: Callable[[tuple, str], R] | None = None,
) -> Iterator[R]:
    """``fn(*job)`` for every job, yielded in the order of ``jobs``: on ``client``'s cluster
    when given, else in ``workers`` processes (here when 1). ``fn`` records a song's expected
    failures itself (as skip records); an exception it raises is a bug and ends the build.
    ``lost(job, reason)`` stands for the result of a job that killed every worker it ran on
    (cluster only; without ``lost`` that ends the build too)."""
    if client is not None:
        yield from _on_cluster(client, fn, jobs, lost)
    elif workers <= 1:
        for job in jobs:
            yield fn(*job)
    elif jobs:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            # map() hands results back in order, and drops each once it is handed over.
            yield from pool.map(fn, *zip(*jobs, strict=True))


def _on_cluster(
    client: Client, fn: Callable[..., R], jobs: Sequence[tuple], lost: Callable | None
) -> Iterator[R]:
    from distributed import KilledWorker

    pending: deque[tuple[tuple, Any]] = deque()
    todo = iter(jobs)
    ahead, counted = MIN_AHEAD, 0.0
    try:
        while True:
            if time.monotonic() - counted > RECOUNT_S:
                ahead = max(MIN_AHEAD, AHEAD_PER_THREAD * sum(client.nthreads().values()))
                counted = time.monotonic()
            while len(pending) < ahead and (job := next(todo, None)) is not None:
                # pure=False: a fresh key per job, so two builds on one scheduler never share
                pending.append((job, client.submit(fn, *job, pure=False)))
            if not pending:
                return
            job, future = pending.popleft()
            try:
                result = future.result()
            except KilledWorker as exc:
                if lost is None:
                    raise
                reason = f"killed each of the {exc.allowed_failures + 1} workers it ran on"
                result = lost(job, reason)
            future.release()
            yield result
    finally:
        client.cancel([f for _, f in pending])
