"""Data-test helpers: paths of real third-party files shipped by installed packages, and a small
DICOM series writer (SimpleITK) so tests do not depend on the project's own exporter."""

from __future__ import annotations

import locale
import os
from pathlib import Path

import numpy as np


def pydicom_file(*parts: str) -> Path:
    import pydicom

    path = Path(os.path.dirname(pydicom.__file__), "data", "test_files", *parts)
    if not path.exists():
        import pytest

        pytest.skip(f"pydicom test file {path} not installed")
    return path


def nibabel_file(name: str) -> Path:
    import nibabel

    path = Path(os.path.dirname(nibabel.__file__), "tests", "data", name)
    if not path.exists():
        import pytest

        pytest.skip(f"nibabel test file {path} not installed")
    return path


def write_sitk_dicom_series(volume, folder: Path, series_uid: str | None = None, shuffle_names: bool = True):
    """Write ``volume`` (int16 HU) as a CT series with SimpleITK's GDCM writer, one file per slice.

    File names are shuffled (``shuffle_names``) so readers must sort by position.
    Returns the list of written paths in slice order.
    """
    import SimpleITK as sitk

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    image = volume.with_array(np.rint(volume.array).astype(np.int16)).to_sitk()
    direction = image.GetDirection()
    uid = series_uid or "1.2.826.0.1.3680043.2.1125.1." + str(abs(hash(str(folder))) % 10**12)
    study = "1.2.826.0.1.3680043.2.1125.2." + str(abs(hash(str(folder) + "s")) % 10**12)
    frame = "1.2.826.0.1.3680043.2.1125.3." + str(abs(hash(str(folder) + "f")) % 10**12)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    n = image.GetDepth()
    order = np.random.default_rng(0).permutation(n) if shuffle_names else np.arange(n)
    paths = []
    for k in range(n):
        sl = image[:, :, k]
        pos = image.TransformIndexToPhysicalPoint((0, 0, k))
        tags = {
            "0008|0060": "CT",
            "0008|0016": "1.2.840.10008.5.1.4.1.1.2",
            "0020|000d": study,
            "0020|000e": uid,
            "0020|0052": frame,
            "0008|0018": f"{uid}.{k + 1}",
            "0020|0013": str(k + 1),
            "0020|0032": "\\".join(f"{v:.6f}" for v in pos),
            "0020|0037": "\\".join(
                f"{v:.6f}"
                for v in (direction[0], direction[3], direction[6], direction[1], direction[4], direction[7])
            ),
            "0018|0050": f"{volume.spacing[2]:.4f}",
            "0028|1052": "0",
            "0028|1053": "1",
            "0008|103e": "prdit test series",
        }
        for key, value in tags.items():
            sl.SetMetaData(key, value)
        path = folder / f"img_{order[k]:04d}.dcm"
        writer.SetFileName(str(path))
        saved_locale = locale.setlocale(locale.LC_ALL)
        try:
            writer.Execute(sl)
        finally:  # GDCM's DICOM writer switches the process to the C locale (ASCII) and leaves it
            locale.setlocale(locale.LC_ALL, saved_locale)
        paths.append(path)
    return paths
