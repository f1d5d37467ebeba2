"""A throwaway PostgreSQL cluster for tests, from the machine's own binaries.

``initdb`` and ``pg_ctl`` come from PATH or Debian's ``/usr/lib/postgresql/*/bin``
(``scripts/install.sh test`` installs the ``postgresql`` package when neither has them). As
root, initdb refuses to run, so the cluster is made and run as the ``postgres`` user (with
``runuser``) in a directory under /tmp that user can reach. Trust authentication on
127.0.0.1 only, fsync off: it lives for one test session.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.harness import free_port


def find_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return candidates[0] if candidates else None


def why_unavailable() -> str | None:
    if find_binary("initdb") is None or find_binary("pg_ctl") is None:
        return (
            "PostgreSQL's initdb/pg_ctl are not installed (scripts/install.sh test installs them)"
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root without a 'postgres' user to run PostgreSQL as"
        if shutil.which("runuser") is None:
            return "running as root without runuser"
    return None


@dataclass
class Cluster:
    directory: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://pampero@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        command = list(argv)
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)

    def initialise(self) -> None:
        done = self._run(
            find_binary("initdb") or "initdb",
            "-D",
            str(self.directory / "data"),
            "-U",
            "pampero",
            "-A",
            "trust",
            "--no-sync",
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{done.stdout}\n{done.stderr}")

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        done = self._run(
            find_binary("pg_ctl") or "pg_ctl",
            "-D",
            str(self.directory / "data"),
            "-o",
            options,
            "-l",
            str(self.directory / "server.log"),
            "-w",
            "start",
        )
        if done.returncode != 0:
            log = (self.directory / "server.log").read_text(errors="replace")
            raise RuntimeError(f"pg_ctl start failed:\n{done.stdout}\n{done.stderr}\n{log}")

    def stop(self) -> None:
        # "fast", not "immediate": with synchronous_commit off, an immediate stop can lose a
        # transaction committed in the last few hundred milliseconds (its WAL not yet written),
        # so a key created just before the stop was gone after the restart (401 in one CI run).
        # A fast stop ends every session at once too, and checkpoints first.
        self._run(
            find_binary("pg_ctl") or "pg_ctl",
            "-D",
            str(self.directory / "data"),
            "-m",
            "fast",
            "-w",
            "stop",
        )


def create_cluster() -> Cluster:
    directory = Path(tempfile.mkdtemp(prefix="pampero-pg-", dir="/tmp"))
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(directory, user.pw_uid, user.pw_gid)
    directory.chmod(0o700)
    cluster = Cluster(directory, free_port())
    cluster.initialise()
    cluster.start()
    return cluster


def remove_cluster(cluster: Cluster) -> None:
    cluster.stop()
    shutil.rmtree(cluster.directory, ignore_errors=True)
