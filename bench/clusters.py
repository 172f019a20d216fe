"""Throwaway PostgreSQL clusters for the benchmarks: stock durability settings or the test suite's."""

from __future__ import annotations

import os
import shutil

from tests.pg import PostgresCluster


class StockCluster(PostgresCluster):
    """The test suite's throwaway cluster on PostgreSQL's default durability (fsync and synchronous_commit on).

    Room for 200 connections, like the test cluster: a `hub serve` and two `hub worker`
    processes may each open their whole pool (30) at once.
    """

    def start(self) -> None:
        if self.as_root:
            shutil.chown(self.root, "postgres")
            os.chmod(self.root, 0o755)
        self._run("initdb", "-D", str(self.datadir), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200"
        self._run("pg_ctl", "-D", str(self.datadir), "-o", options, "-l", str(self.root / "log"), "-w", "start")


CLUSTERS: dict[str, tuple[type[PostgresCluster], str]] = {
    "stock": (StockCluster, "PostgreSQL defaults (fsync on, synchronous_commit on)"),
    "test": (PostgresCluster, "the test cluster (fsync off, synchronous_commit off, full_page_writes off)"),
}
