"""core.device: the device choice, and deterministic kernels for the GPU's trainers."""

from __future__ import annotations

import os

import pytest
import torch

from xrayfactory.core.device import deterministic_kernels, pick_device


@pytest.fixture
def restore_torch_flags(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
    )
    yield
    torch.use_deterministic_algorithms(before[0], warn_only=before[1])
    torch.backends.cudnn.benchmark = before[2]


def test_deterministic_kernels_set_torch_and_cublas_and_keep_a_users_workspace(
    restore_torch_flags, monkeypatch
):
    torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.benchmark = True
    deterministic_kernels()
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.is_deterministic_algorithms_warn_only_enabled()
    assert not torch.backends.cudnn.benchmark
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    deterministic_kernels()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_a_reproducible_cpu_device_leaves_torch_as_it_is(restore_torch_flags):
    torch.use_deterministic_algorithms(False)
    assert pick_device("cpu", reproducible=True) == torch.device("cpu")
    assert not torch.are_deterministic_algorithms_enabled()
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert pick_device("auto").type == expected
