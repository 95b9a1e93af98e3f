"""Shared fixtures: seeds, per-dtype tolerances, paths to small real meshes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).parent / "fixtures"

# Relative tolerances of the exact transforms, per dtype.
TRANSFORM_RTOL = {"float32": 1e-5, "float64": 1e-10}


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(params=["float32", "float64"])
def dtype_name(request: pytest.FixtureRequest) -> str:
    return request.param
