"""Export a volume as NIfTI, keeping its provenance next to it.

The writing itself is :func:`prdit.data.io.write_nifti` (atomic, qform = sform = the volume's RAS
affine). This adds what an *export* needs: no silent overwrite, and the provenance written as the
``<stem>.json`` sidecar in the same keys ``prdit sample`` uses, so a later ``prdit export-dicom``
of that file still records model, checkpoint hash and seed.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from prdit.export.provenance import Provenance
from prdit.volume import Volume


def sidecar_path(path: str | Path) -> Path:
    """``scan.nii.gz`` -> ``scan.json`` (the convention of ``prdit sample`` and ``prdit.data.io``)."""
    path = Path(path)
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return path.with_name(name[: -len(suffix)] + ".json")
    return path.with_suffix(".json")


def export_nifti(
    volume: Volume,
    path: str | Path,
    *,
    provenance: Provenance | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``volume`` (HU) to ``path`` (``.nii`` / ``.nii.gz``) plus a provenance sidecar if given.

    Raises ``FileExistsError`` when ``path`` (or its sidecar) exists and ``overwrite`` is false,
    ``ValueError`` for a name that is not NIfTI.
    """
    from prdit.data.io import write_nifti

    path = Path(path)
    if not path.name.lower().endswith((".nii", ".nii.gz")):
        raise ValueError(f"{path}: a NIfTI file name must end in .nii or .nii.gz")
    sidecar = sidecar_path(path)
    if not overwrite:
        for target in (path, sidecar if provenance is not None else None):
            if target is not None and target.exists():
                raise FileExistsError(f"{target} exists; refusing to overwrite it (pass overwrite=True)")
    if provenance is None and isinstance(volume.metadata.get("provenance"), Provenance):
        provenance = volume.metadata["provenance"]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_nifti(volume, path)
    if provenance is not None and not provenance.is_empty:
        tmp = sidecar.with_name(f".{sidecar.name}.tmp-{uuid.uuid4().hex}")
        try:
            tmp.write_text(json.dumps(provenance.to_dict(), indent=2) + "\n", encoding="utf-8")
            os.replace(tmp, sidecar)
        finally:
            tmp.unlink(missing_ok=True)
    return path
