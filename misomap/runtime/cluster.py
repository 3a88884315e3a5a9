"""The dask client every chunked job runs on: a dask-gateway cluster when configured, else local
worker processes, or worker threads in this process. Everything local listens on 127.0.0.1 only."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from misomap.core.config_base import GatewayConfig
from misomap.core.errors import ConfigError, ServiceError, one_line


@contextlib.contextmanager
def dask_client(workers: int, gateway: GatewayConfig | None = None, threads: bool = False) -> Iterator[Any]:
    """A distributed client: on a dask-gateway cluster if an address is given, else `workers` local
    processes, or with `threads` one in-process worker of `workers` threads (tasks that keep
    assets open across chunks, or share memory)."""
    from distributed import Client, LocalCluster

    if gateway is not None and gateway.address:
        from dask_gateway import Gateway
        from dask_gateway.auth import BasicAuth

        password = gateway.password()
        if password is None:
            raise ConfigError(f"gateway password missing: set ${gateway.password_env}")
        gw = Gateway(gateway.address, auth=BasicAuth(gateway.username, password))
        try:
            cluster = gw.new_cluster()
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
    if threads:
        with LocalCluster(n_workers=1, threads_per_worker=workers, processes=False,
                          dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
            yield client
        return
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
        yield client
