"""Shared fixtures: the PyTorch oracle (when installed), a fixed seed and an isolated compiler per test."""
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


@pytest.fixture(autouse=True)
def _compiler_isolated(tmp_path, monkeypatch):
    """Each test compiles into its own cache, with the toolchain variables unset and the
    compiler's in-memory state and counters cleared; mode="check" writes its reproducers
    there too, not into the working directory."""
    monkeypatch.setenv("GRADC_CACHE_DIR", str(tmp_path / "gradc-cache"))
    monkeypatch.setenv("GRADC_CHECK_DIR", str(tmp_path / "gradc-check"))
    for name in ("CC", "GRADC_CFLAGS", "GRADC_EAGER", "GRADC_DUMP_DIR", "GRADC_DUMP_BACKEND", "GRADC_LOG"):
        monkeypatch.delenv(name, raising=False)
    gradc.compiler.reset()
