"""Weights move between PyTorch and gradc through safetensors files, both ways."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close

import gradc
from gradc import nn


def gradc_mlp():
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.LayerNorm(16), nn.Linear(16, 3))


def torch_mlp(torch):
    tnn = torch.nn
    return tnn.Sequential(tnn.Linear(6, 16), tnn.ReLU(), tnn.LayerNorm(16), tnn.Linear(16, 3))


def test_torch_safetensors_file_loads_into_gradc_twin(torch, tmp_path):
    st = pytest.importorskip("safetensors.torch")
    reference = torch_mlp(torch)
    st.save_file(reference.state_dict(), str(tmp_path / "model.safetensors"))

    model = gradc_mlp()
    result = model.load_state_dict(gradc.load(tmp_path / "model.safetensors"))
    assert result.missing_keys == [] and result.unexpected_keys == []

    x = np.random.default_rng(0).standard_normal((5, 6)).astype(np.float32)
    assert_close(model(gradc.from_numpy(x)), reference(torch.from_numpy(x)), atol=1e-6)


def test_gradc_file_loads_into_torch_twin(torch, tmp_path):
    st = pytest.importorskip("safetensors.torch")
    model = gradc_mlp()
    gradc.save(model.state_dict(), tmp_path / "model.safetensors")

    reference = torch_mlp(torch)
    reference.load_state_dict(st.load_file(str(tmp_path / "model.safetensors")))

    x = np.random.default_rng(1).standard_normal((4, 6)).astype(np.float32)
    assert_close(model(gradc.from_numpy(x)), reference(torch.from_numpy(x)), atol=1e-6)
