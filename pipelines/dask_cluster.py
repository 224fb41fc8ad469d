"""The Dask side of `zhkd build --runner DaskRunner`: a local cluster when none is named.

Beam's DaskRunner would start `dask.distributed.Client()` itself, i.e. a cluster sized and threaded by
Dask's defaults; zhkd starts one worker *process* per requested worker with one thread each (the
teacher and the tokenizer pin their own threads; Python threads would share one interpreter lock),
hands its address to Beam, and stops it when the build ends.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from zhkd.pipelines.errors import PipelineError


def require_dask() -> None:
    try:
        import dask.bag  # noqa: F401
        import distributed  # noqa: F401
    except ImportError as err:
        raise PipelineError("--runner DaskRunner needs Dask: pip install 'zhkd[dask]' "
                            "(apache-beam[dask] with the pinned Beam)") from err


@contextmanager
def local_cluster(workers: int) -> Iterator[str]:
    """A local cluster of `workers` single-threaded worker processes; yields its scheduler address."""
    import dask
    from distributed import LocalCluster

    # No dashboard, so no one reads the workers' statistical profiles: sampling each task thread's stack
    # every 10 ms costs the task thread its interpreter lock for nothing.
    with dask.config.set({"distributed.worker.profile.enabled": False}):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=logging.CRITICAL)
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


def close_client(result) -> None:
    """Close the client Beam's DaskRunner opened (its result holds it) before its cluster goes away;
    otherwise it keeps trying to reconnect for 30 s and logs an error."""
    client = getattr(result, "client", None)
    if client is not None:
        client.close()
