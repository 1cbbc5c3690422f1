"""Time and size of a synthetic CT DICOM export, and of reading it back with SimpleITK.

Run: ``python benchmarks/bench_export_dicom.py [SIZE ...]`` (default 64 128 256). Results are
recorded in docs/dicom-export.md. Not a test: timings depend on the machine and its disk.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from prdit.export.dicom import write_ct_series
from prdit.export.provenance import Provenance
from prdit.volume import Volume


def bench(size: int) -> None:
    import SimpleITK as sitk

    rng = np.random.default_rng(0)
    hu = rng.normal(-300.0, 500.0, size=(size, size, size)).astype(np.float32)
    volume = Volume(hu, spacing=(0.8, 0.8, 1.5), origin=(-100.0, -120.0, 50.0))
    provenance = Provenance(
        model_name="PRDiT-B/12/4", checkpoint_sha256="0" * 64, seed=1, sampler="hot", steps=50
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "series"
        start = time.perf_counter()
        write_ct_series(volume, out, provenance=provenance)
        write_s = time.perf_counter() - start
        size_mb = sum(p.stat().st_size for p in out.iterdir()) / 1e6
        reader = sitk.ImageSeriesReader()
        start = time.perf_counter()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(out)))
        image = reader.Execute()
        read_s = time.perf_counter() - start
        assert image.GetSize() == (size, size, size)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{size}^3: write {write_s:.2f} s ({size / write_s:.0f} slices/s), {size_mb:.1f} MB on disk, "
        f"SimpleITK read {read_s:.2f} s, peak RSS so far {rss_mb:.0f} MB"
    )


if __name__ == "__main__":
    for arg in sys.argv[1:] or ["64", "128", "256"]:
        bench(int(arg))
