"""Which Dask cluster a scan runs on: `--cluster` and the `hootwatch.cluster` keys of Dask's own configuration
(~/.config/dask/*.yaml or DASK_HOOTWATCH__CLUSTER__* environment variables, beside dask-jobqueue's settings).

    local:N             a LocalCluster of N worker processes on this machine (one Dask thread each)
    tcp://HOST:PORT     join a running scheduler (dask-jobqueue, `dask scheduler`, a cloud cluster)
    PATH.json           join the scheduler that wrote this scheduler file (`dask scheduler --scheduler-file`)

    # ~/.config/dask/hootwatch.yaml
    hootwatch:
      cluster:
        address: tcp://10.0.0.5:8786   # used when --cluster is given without a value
        threads: null                  # model threads per worker (null: the worker's cores / its Dask threads)
        chunk-s: 3600                  # files longer than 1.5 chunks are cut into chunks of this many seconds
        allowed-failures: 3            # worker deaths on one unit forgiven; one more fails its file (local:N)
        dashboard-address: ":8787"     # local:N dashboard
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hootwatch.edge.core.errors import DOCS, ConfigError, MissingExtraError
from .worker import usable_cpus

log = logging.getLogger(__name__)

DEFAULT_CHUNK_S = 3600.0
CONNECT_TIMEOUT_S = 30


def import_distributed():
    try:
        import dask  # noqa: F401
        import distributed
    except ImportError:
        raise MissingExtraError("cluster", "dask distributed") from None
    return distributed


def quiet_dask(level: int) -> dict[str, int]:
    """Set Dask's loggers (its children carry levels of their own) to at least `level`, unless this run logs at
    DEBUG; returns their levels before, for `loud_dask`."""
    if logging.getLogger().isEnabledFor(logging.DEBUG):
        return {}
    names = ["distributed", "bokeh", "tornado"] + [n for n in logging.root.manager.loggerDict
                                                   if n.startswith(("distributed.", "tornado."))]
    before = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(max(level, logging.getLogger(n).level))
    return before


def loud_dask(before: dict[str, int]) -> None:
    for n, level in before.items():
        logging.getLogger(n).setLevel(level)


@dataclass(frozen=True)
class ClusterSettings:
    address: str                        # local:N | tcp://HOST:PORT | a scheduler file
    threads: int | None = None          # model threads per worker (None: cores / Dask threads of the worker)
    chunk_s: float = DEFAULT_CHUNK_S    # files over 1.5 chunks are cut into chunks of this length
    allowed_failures: int = 3           # worker deaths forgiven per unit; one more fails its file (local:N)
    dashboard_address: str = ":8787"    # local:N only; ":0" picks a free port

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"cluster threads {self.threads} must be at least 1", "pass e.g. --threads 2")
        if not self.chunk_s >= 60:
            raise ConfigError(f"cluster chunk-s {self.chunk_s:g} must be at least 60 seconds",
                              "set hootwatch.cluster.chunk-s to e.g. 3600 in your Dask config")
        if self.allowed_failures < 1:
            raise ConfigError(f"cluster allowed-failures {self.allowed_failures} must be at least 1",
                              "set hootwatch.cluster.allowed-failures to e.g. 3")

    @classmethod
    def from_config(cls, address: str | None = None, threads: int | None = None) -> "ClusterSettings":
        """`address` and `threads` as given on the command line, the rest from Dask's configuration."""
        import_distributed()
        import dask

        def key(name, default=None):
            return dask.config.get(f"hootwatch.cluster.{name}", default=default)

        address = address or key("address") or key("scheduler-file")
        if not address:
            raise ConfigError("--cluster was given without an address and no hootwatch.cluster.address is set",
                              "pass --cluster local:4 (workers on this machine) or --cluster tcp://HOST:8786")
        try:
            return cls(str(address), threads or key("threads"), float(key("chunk-s", DEFAULT_CHUNK_S)),
                       int(key("allowed-failures", 3)), str(key("dashboard-address", ":8787")))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"hootwatch.cluster in the Dask config: {exc}",
                              f"see `hootwatch scan --help` and {DOCS}/cluster.md") from None


@dataclass(frozen=True)
class Connection:
    client: object                      # distributed.Client
    threads: int | None                 # model threads per worker to ask for (None: each worker decides)
    description: str
    dashboard: str | None


def local_workers(address: str) -> int | None:
    if not address.startswith("local:"):
        return None
    try:
        n = int(address.removeprefix("local:"))
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigError(f"--cluster {address}: the number of workers must be a whole number of at least 1",
                          "pass e.g. --cluster local:4")
    return n


@contextmanager
def connect(cs: ClusterSettings):
    """A Client on the cluster `cs` names (a LocalCluster is started and stopped around the block)."""
    distributed = import_distributed()
    import dask

    quiet_dask(logging.WARNING)  # Dask narrates every worker start at INFO
    n_local = local_workers(cs.address)
    cluster = None
    if n_local is not None:
        # one task per worker at a time: a worker that dies takes only the unit it ran with it (blame is exact)
        with dask.config.set({"distributed.scheduler.allowed-failures": cs.allowed_failures,
                              "distributed.scheduler.worker-saturation": 1.0}):
            cluster = distributed.LocalCluster(n_workers=n_local, threads_per_worker=1, processes=True,
                                               dashboard_address=cs.dashboard_address)
        client = distributed.Client(cluster)
        threads = cs.threads or max(1, usable_cpus() // n_local)
        description = f"LocalCluster of {n_local} worker processes, {threads} model threads each"
    else:
        target = {"address": cs.address} if "://" in cs.address else {"scheduler_file": cs.address}
        if "scheduler_file" in target and not Path(cs.address).is_file():
            raise ConfigError(f"--cluster {cs.address}: neither local:N, a scheduler address (tcp://HOST:PORT) "
                              "nor an existing scheduler file", "pass e.g. --cluster local:4 or tcp://HOST:8786")
        try:
            client = distributed.Client(**target, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError, ValueError) as exc:
            raise ConfigError(f"cannot reach the Dask scheduler at {cs.address} ({exc})",
                              "start it first (dask-jobqueue, or `dask scheduler`), check the address and that "
                              "this machine can reach it") from None
        threads = cs.threads
        description = f"scheduler {client.scheduler.address}"
    try:
        yield Connection(client, threads, description, getattr(client, "dashboard_link", None))
    finally:
        before = quiet_dask(logging.CRITICAL)  # closing narrates too
        try:
            client.close()
            if cluster is not None:
                cluster.close()
        finally:
            loud_dask(before)
