"""The dask client every chunked job runs on: a dask-gateway cluster when configured, else local
worker processes (one per GPU with dask-cuda, for GPU jobs), or worker threads in this process.
Everything local listens on 127.0.0.1 only."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from collections.abc import Iterator
from typing import Any

from misomap.core.config_base import GatewayConfig
from misomap.core.errors import ConfigError, ServiceError, one_line

log = logging.getLogger(__name__)

GPU_PROFILE = "gpu"
"""The dask-gateway cluster option (`profile`) whose workers each hold one GPU (infra/dask-gateway-values.yaml)."""


def local_gpus() -> int:
    """GPUs dask-cuda can see on this machine; 0 without dask-cuda (the optional `gpu` extra) or a GPU."""
    if importlib.util.find_spec("dask_cuda") is None:
        return 0
    from dask_cuda.utils import get_n_gpus

    try:
        return int(get_n_gpus())
    except Exception:  # noqa: BLE001 - no driver / NVML: no GPU
        return 0


def worker_threads(overlap: bool) -> int:
    """Threads per worker process: one computes; with `overlap` a second reads the next chunk
    and writes the last while it does."""
    return 2 if overlap else 1


def task_resources(gpu: bool, overlap: bool, threads: bool = False) -> dict[str, float] | None:
    """What one chunk task asks of a worker: a share of its GPU such that a worker's threads (one
    computing, one reading/writing with `overlap`) all hold a chunk; nothing for CPU jobs."""
    if not gpu or threads:
        return None
    return {"GPU": 1 / worker_threads(overlap)}


def _gateway_options(gw: Any, gpu: bool) -> Any:
    """The cluster options for a new gateway cluster: the GPU profile for GPU jobs, when offered."""
    if not gpu:
        return None
    options = gw.cluster_options()
    if "profile" not in options:
        raise ConfigError(f"the dask-gateway server offers no `profile` cluster option for GPU workers: deploy "
                          f"infra/dask-gateway-values.yaml (profile '{GPU_PROFILE}') or set map.device: cpu")
    options.profile = GPU_PROFILE
    return options


@contextlib.contextmanager
def dask_client(workers: int, gateway: GatewayConfig | None = None, threads: bool = False, *,
                overlap: bool = False, gpu: bool = False) -> Iterator[Any]:
    """A distributed client: on a dask-gateway cluster if an address is given (its GPU profile for
    `gpu`), else `workers` local processes — one per GPU with dask-cuda's LocalCUDACluster for
    `gpu` where dask-cuda and a GPU are present — or with `threads` one in-process worker of
    `workers` threads (tasks that keep assets open across chunks, or share memory). `overlap`
    adds a thread per worker process for reading and writing while a chunk computes. GPU worker
    processes offer a `GPU` resource of 1; GPU tasks ask for `task_resources`."""
    from distributed import Client, LocalCluster

    per_worker = worker_threads(overlap)

    if gateway is not None and gateway.address:
        from dask_gateway import Gateway
        from dask_gateway.auth import BasicAuth

        password = gateway.password()
        if password is None:
            raise ConfigError(f"gateway password missing: set ${gateway.password_env}")
        gw = Gateway(gateway.address, auth=BasicAuth(gateway.username, password))
        try:
            cluster = gw.new_cluster(_gateway_options(gw, gpu))
        except ConfigError:
            gw.close()
            raise
        except Exception as err:  # noqa: BLE001 - aiohttp/HTTP errors of many kinds: one message
            gw.close()
            raise ServiceError(f"dask-gateway at {gateway.address} refused a new cluster "
                               f"({type(err).__name__}: {one_line(err)}): start the gateway, check "
                               f"gateway.address and ${gateway.password_env}, or unset gateway.address "
                               "to run locally") from None
        try:
            cluster.scale(workers)
            client = cluster.get_client()
            client.wait_for_workers(1, timeout=120)
            yield client
            client.close()
        finally:
            cluster.shutdown()
            gw.close()
        return
    if gpu and not threads:
        n_gpus = local_gpus()
        if n_gpus:
            from dask_cuda import LocalCUDACluster

            log.info("GPU job: one dask worker per GPU (%d), %d threads each", n_gpus, per_worker)
            with LocalCUDACluster(threads_per_worker=per_worker, host="127.0.0.1", dashboard_address="127.0.0.1:0",
                                  resources={"GPU": 1}) as cluster, Client(cluster) as client:
                yield client
            return
        log.warning("GPU job without dask-cuda or a visible GPU: %d local worker processes", workers)
    resources = {"GPU": 1} if gpu else None
    if threads:
        with LocalCluster(n_workers=1, threads_per_worker=workers * per_worker, processes=False,
                          dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
            yield client
        return
    with LocalCluster(n_workers=workers, threads_per_worker=per_worker, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0", resources=resources) as cluster, Client(cluster) as client:
        yield client
