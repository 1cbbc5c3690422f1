"""Shared test set-up: no display, few threads (CI has 2 cores), deterministic torch."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("OMP_NUM_THREADS", "2")
# the thread policy's automatic choice follows the load; tests compare runs bit for bit
os.environ.setdefault("PRDIT_THREADS", "2")
# ... and so does the measured precision choice (bf16 only where a probe finds it faster)
os.environ.setdefault("PRDIT_PRECISION", "fp32")

import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _torch_threads():
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    torch.set_num_threads(2)
    yield
