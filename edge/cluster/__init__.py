"""Archive-scale scans on a Dask cluster, with the guarantees of a local scan: one store, nothing lost or
doubled, a rerun continues where the last run stopped, the same rows as a local scan of the same files.

    summary, exports, dashboard = scan_on_cluster(paths, "bundle", "results", ScanSettings(tz=...),
                                                  ClusterSettings("local:4"))

connect.py   which cluster (`--cluster local:N | tcp://HOST:PORT | scheduler.json`, Dask config keys)
units.py     units of work: a whole file (with the head of the next contiguous file), or fixed-length chunks of
             a long file whose window scores the driver merges back into the file's events (pure functions)
worker.py    the worker side: a plugin loading the bundle once per worker, the task computing one unit
driver.py    the one writer: sends what the ledger says is not committed, commits per file as a local scan does

Needs the `[cluster]` extra (dask distributed); workers need the bundle and the recordings at the same paths
as the driver (a shared filesystem); only the driver opens the store.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from .connect import ClusterSettings, Connection, connect
from .driver import BundleModel, ClusterDriver

__all__ = ["ClusterReport", "ClusterSettings", "scan_on_cluster"]


@dataclass(frozen=True)
class ClusterReport:
    description: str                    # which cluster, how many workers and model threads
    dashboard: str | None               # the Dask dashboard's address
    units: int                          # units of work sent (whole files and chunks)
    chunked_files: int                  # long files cut into chunks
    manifest: object                    # the bundle's manifest (the detection rule in force)


def scan_on_cluster(paths: Iterable[str | os.PathLike], bundle_dir: str | os.PathLike, out_dir: str | os.PathLike,
                    settings, cluster: ClusterSettings, progress=None, providers: list[str] | None = None,
                    on_connect=None, client=None, exhaustive: bool = False):
    """Scan into OUTDIR's store on the cluster and rewrite its exports (also when interrupted).

    Returns (summary, export paths, ClusterReport). `on_connect(connection)` is called once the workers have the
    model (the CLI prints the dashboard address). `client`: an existing distributed.Client to run on instead of
    connecting to `cluster.address` (a notebook, a test). `exhaustive`: skip the bundle's cascade first stage."""
    from hootwatch.edge.contract.bundle import load_bundle
    from hootwatch.edge.core.errors import ConfigError
    from hootwatch.edge.store.exports import write_exports
    from hootwatch.edge.scan.engine import Scanner
    from hootwatch.edge.store.database import STORE_NAME, DetectionStore
    from .worker import ScannerPlugin

    bundle = load_bundle(bundle_dir)
    bundle_path = Path(bundle_dir).resolve()
    out = Path(out_dir)
    with DetectionStore(out / STORE_NAME) as store:
        scanner = Scanner(BundleModel(bundle, first_stage_on=bool(bundle.manifest.first_stage) and not exhaustive),
                          store, settings, out)
        planned = scanner.plan(paths)
        joined = nullcontext(Connection(client, cluster.threads, "the given Dask client",
                                        getattr(client, "dashboard_link", None))) if client is not None else None
        with joined or connect(cluster) as conn:
            try:
                conn.client.register_plugin(ScannerPlugin(str(bundle_path), settings, conn.threads, providers,
                                                          exhaustive))
            except Exception as exc:
                raise ConfigError(f"the Dask workers cannot load the bundle {bundle_path} ({exc})",
                                  "workers need the bundle and the recordings at the same paths as this machine "
                                  "(a shared filesystem) and hootwatch[edge] installed") from None
            if on_connect is not None:
                on_connect(conn)
            driver = ClusterDriver(conn.client, scanner, cluster.chunk_s, progress, exhaustive)
            try:
                summary = driver.run(planned)
            finally:
                exports = write_exports(store, scanner.run.run_key, out, bundle.manifest.sample_rate / 2)
    return summary, exports, ClusterReport(conn.description, conn.dashboard, driver.units_sent,
                                           driver.chunked_files, bundle.manifest)
