"""Export generated volumes as synthetic CT DICOM series (one classic CT series per volume).

IN is a NIfTI file, a .npy/.npz (with its <stem>.json geometry sidecar), .mha/.nrrd, or a folder
of such files, e.g. the output folder of `prdit sample`. For a sample `sample_00000.nii.gz` the
provenance (model, checkpoint SHA-256, seed, sampler, steps) is read from `sample_00000.json`.
One volume: OUT is the series folder. Several: OUT/<file stem>/ per volume, each its own study
unless --same-study. Every file is marked synthetic (Synthetic Data = YES, fake patient,
"SYNTHETIC" series description). Files are written to a temporary folder and renamed when
complete; a non-empty OUT is refused unless --overwrite (then replaced only after success).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from prdit.cli import CliError

VOLUME_SUFFIXES = (".nii.gz", ".nii", ".npy", ".npz", ".mha", ".mhd", ".nrrd", ".nhdr")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="IN", help="volume file(s) or folder(s) of volumes")
    parser.add_argument("output", metavar="OUT", help="series folder (one volume) or parent folder (several)")
    parser.add_argument(
        "--series-description",
        default=None,
        metavar="TEXT",
        help='SeriesDescription; "SYNTHETIC " is prefixed when missing '
        "(default: SYNTHETIC CT (PRDiT) seed N)",
    )
    parser.add_argument("--series-number", type=int, default=1, metavar="N", help="SeriesNumber (default 1)")
    parser.add_argument(
        "--patient-name", default=None, metavar="NAME", help="fake patient name (default SYNTHETIC^PRDIT)"
    )
    parser.add_argument(
        "--patient-id", default=None, metavar="ID", help="fake patient ID (default SYNTHETIC-<random>)"
    )
    parser.add_argument("--study-description", default=None, metavar="TEXT", help="StudyDescription")
    parser.add_argument(
        "--same-study",
        action="store_true",
        help="put all volumes in one study (series numbered from --series-number); default: a study each",
    )
    parser.add_argument(
        "--spacing",
        type=float,
        nargs=3,
        metavar=("SX", "SY", "SZ"),
        default=None,
        help="voxel spacing in mm (i, j, k order) for a .npy/.npz that has no geometry sidecar",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a previous export in OUT")
    parser.add_argument(
        "--uid-root",
        default=None,
        metavar="ROOT",
        help="your organisation's registered UID root (default: 2.25.<UUID> UIDs, which need none)",
    )


@dataclass
class _Item:
    path: Path
    name: str


def volume_stem(path: Path) -> str:
    """File name without its volume suffix (``sample_00000.nii.gz`` -> ``sample_00000``)."""
    name = path.name
    for suffix in VOLUME_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _is_volume_file(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(VOLUME_SUFFIXES) and not path.name.startswith(".")


def collect_inputs(inputs: list[str]) -> list[_Item]:
    """Expand IN arguments into volume files; folders contribute their volume files (sorted)."""
    items: list[_Item] = []
    for raw in inputs:
        path = Path(raw)
        if not path.exists():
            raise CliError(f"{path}: no such file or folder")
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if _is_volume_file(p))
            if not files:
                if any(p.suffix.lower() == ".dcm" for p in path.iterdir()):
                    raise CliError(
                        f"{path} is a DICOM folder; export-dicom marks generated volumes as synthetic and "
                        "will not relabel an existing DICOM series"
                    )
                raise CliError(f"{path}: no volume files ({', '.join(VOLUME_SUFFIXES)}) in this folder")
            items.extend(_Item(p, volume_stem(p)) for p in files)
        elif path.name.lower().endswith(VOLUME_SUFFIXES):
            items.append(_Item(path, volume_stem(path)))
        else:
            raise CliError(f"{path}: not a volume file (expected one of {', '.join(VOLUME_SUFFIXES)})")
    seen: set[Path] = set()
    unique = []
    for item in items:
        key = item.path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(item)
    return unique


def read_provenance(path: Path):
    """Provenance from the ``prdit sample`` sidecar next to ``path``; ``None`` when there is none."""
    from prdit.export.provenance import Provenance

    sidecar = path.with_name(volume_stem(path) + ".json")
    if not sidecar.is_file():
        return None
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CliError(f"{sidecar}: cannot read the sidecar JSON ({exc})") from None
    if not Provenance.is_sample_sidecar(data):
        return None  # a geometry sidecar of a .npy, not a sample record
    try:
        return Provenance.from_sidecar(data, source=str(sidecar))
    except ValueError as exc:
        raise CliError(str(exc)) from None


def _output_dirs(items: list[_Item], output: Path) -> list[Path]:
    if len(items) == 1:
        return [output]
    used: dict[str, int] = {}
    dirs = []
    for item in items:
        count = used.get(item.name, 0)
        used[item.name] = count + 1
        dirs.append(output / (item.name if count == 0 else f"{item.name}_{count + 1}"))
        if count:  # said, not silent: two inputs share a name (e.g. a/ct.nii.gz and b/ct.nii.gz)
            print(
                f"prdit export-dicom: note: {item.path} has the same name as an earlier input; "
                f"its series goes to {dirs[-1]}",
                file=sys.stderr,
            )
    return dirs


def run(args: argparse.Namespace) -> int:
    from prdit.data.io import read_volume
    from prdit.export.dicom import StudyContext, check_output_folder, write_ct_series
    from prdit.export.provenance import series_description
    from prdit.export.uids import normalize_uid_root

    items = collect_inputs(args.inputs)
    from prdit.cli.paths import output_folder

    output = output_folder(args.output, "OUTPUT")
    try:
        uid_root = normalize_uid_root(args.uid_root)
    except ValueError as exc:
        raise CliError(f"--uid-root: {exc}") from None
    out_dirs = _output_dirs(items, output)
    for out_dir in out_dirs:  # fail before writing anything
        try:
            check_output_folder(out_dir, overwrite=args.overwrite)
        except FileExistsError as exc:
            raise CliError(str(exc)) from None

    study = None
    if args.same_study:
        try:
            study = StudyContext.new(
                patient_name=args.patient_name,
                patient_id=args.patient_id,
                study_description=args.study_description,
                uid_root=uid_root,
            )
        except ValueError as exc:
            raise CliError(str(exc)) from None

    for index, (item, out_dir) in enumerate(zip(items, out_dirs, strict=True)):
        start = time.perf_counter()
        provenance = read_provenance(item.path)
        volume = read_volume(item.path, spacing=tuple(args.spacing) if args.spacing else None)
        if not volume.metadata.get("spacing_known", True):
            raise CliError(
                f"{item.path}: the voxel spacing is unknown (no geometry sidecar {item.name}.json); "
                "pass --spacing SX SY SZ in mm: a DICOM series with invented spacing would mislead"
            )
        description = args.series_description
        if description is None:
            description = series_description(provenance)
        try:
            written = write_ct_series(
                volume,
                out_dir,
                provenance=provenance,
                series_description=description,
                series_number=args.series_number + index if study is not None else args.series_number,
                patient_name=None if study is not None else args.patient_name,
                patient_id=None if study is not None else args.patient_id,
                study=study,
                study_description=args.study_description,
                uid_root=uid_root,
                overwrite=args.overwrite,
            )
        except FileExistsError as exc:
            raise CliError(str(exc)) from None
        except ValueError as exc:
            raise CliError(f"{item.path}: {exc}") from None
        size_mb = sum(p.stat().st_size for p in written.iterdir()) / 1e6
        d, h, w = volume.shape
        print(
            f"{item.path} -> {written}/ ({d} slices of {h}x{w}, {size_mb:.1f} MB, "
            f"{time.perf_counter() - start:.2f} s)"
            + ("" if provenance is not None else " [no sample sidecar: provenance unknown]")
        )
    return 0
