"""Evaluation metrics: the paper's (3D FID, MMD, MS-SSIM, WGAN-GP Wasserstein) and model-free checks.

Modules, one job each: ``features`` (MedicalNet 3D ResNet-50 + weight loading + built-in default),
``fid``, ``mmd``, ``msssim``, ``critic``, ``histogram`` (HU Wasserstein-1), ``anatomy`` (set summary
of ``prdit.data.anatomy``), ``folders`` (listing, size checks, loading, cache), ``pipeline``
(``evaluate_folders``), ``report`` (table + JSON). See docs/metrics.md for exact definitions.

Importing this package is cheap; the heavy pieces are imported from their modules.
"""

from __future__ import annotations

__all__ = ["ALL_METRICS", "EvalSettings", "evaluate_folders"]


def __getattr__(name: str):
    if name in __all__:
        from prdit.metrics import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'prdit.metrics' has no attribute {name!r}")
