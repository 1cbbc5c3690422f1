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


@pytest.fixture
def load_benchmark():
    """``load_benchmark("reuse_cost")``: a script of ``benchmarks/`` imported as a module, the way it
    runs (its folder on ``sys.path``, so it can import the sibling benchmarks it shares helpers with)."""
    import importlib.util
    import sys
    from pathlib import Path

    folder = Path(__file__).resolve().parent.parent / "benchmarks"

    def load(name: str):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
        spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module

    return load
