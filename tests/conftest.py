"""Shared test settings.

Tests use one torch thread: the tiny models and batches here gain nothing from a second thread,
and on a loaded 2-core machine two threads per process made them many times slower.
"""
import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
