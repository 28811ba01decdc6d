"""Shared fixtures: the PyTorch oracle (when installed) and a fixed seed per test."""
from __future__ import annotations

import numpy as np
import pytest

import gradc


@pytest.fixture
def torch():
    """PyTorch as a reference implementation; tests using it skip when it is absent."""
    return pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def _seed():
    gradc.manual_seed(0)
    np.random.seed(0)
