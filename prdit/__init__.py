"""PRDiT engine: model, IaN diffusion, data, training, sampling, metrics and export.

Headless by design: nothing in this package imports Qt, pyqtgraph or VTK, so it runs on a GPU
server with no display. The desktop studio lives in ``prdit_app`` and imports this package, never
the other way round.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
