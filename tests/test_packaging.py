"""Desktop packaging: the metadata validates, icons exist, the app-bundle recipe names real paths.

The full PyInstaller build (``bash packaging/build_app.sh``, ~10 minutes on 2 cores) is a separate CI
step; these tests check everything about packaging that can be checked in seconds:

* the desktop entry and AppStream metadata pass ``desktop-file-validate`` and
  ``appstreamcli validate --no-net`` (skipped when those tools are missing) and agree with the
  project (same id, launchable, license, version, program name);
* the icon is there as SVG and in every PNG size, each PNG really of its size;
* the user-level installer puts everything where desktops look, with an absolute ``Exec``;
* the PyInstaller spec, executed with stand-ins for PyInstaller's classes, bundles existing files,
  all of ``resources/`` and every module of ours, and excludes nothing our code imports;
* the frozen entry point dispatches ``-m prdit`` (how the studio starts training runs) to the CLI.
"""

from __future__ import annotations

import ast
import configparser
import importlib.util
import os
import shutil
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest depends on tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging"
APP_ID = "io.github.prdit.Studio"
DESKTOP = PACKAGING / "linux" / f"{APP_ID}.desktop"
METAINFO = PACKAGING / "linux" / f"{APP_ID}.metainfo.xml"
MIME = PACKAGING / "linux" / f"{APP_ID}.mime.xml"
SPEC = PACKAGING / "pyinstaller" / "prdit-studio.spec"
LAUNCHER = PACKAGING / "pyinstaller" / "launcher.py"
ICONS = ROOT / "resources" / "icons"
ICON_SIZES = (16, 24, 32, 48, 64, 128, 256)
# Imported by our code only inside try/except, as optional extras the CPU bundle leaves out on
# purpose: xformers (CUDA-only attention), TensorBoard logging (training falls back to JSONL).
OPTIONAL_IMPORTS = ("xformers", "torch.utils.tensorboard")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", timeout=60, **kw)


# --------------------------------------------------------------------------- desktop entry
def _desktop_entry(path: Path = DESKTOP) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",))
    parser.optionxform = str  # keys are case-sensitive in desktop entries
    parser.read(path, encoding="utf-8")
    return parser["Desktop Entry"]


def test_desktop_entry_validates():
    tool = shutil.which("desktop-file-validate")
    if tool is None:
        pytest.skip("desktop-file-validate not installed (apt-get install desktop-file-utils)")
    out = _run([tool, str(DESKTOP)])
    assert out.returncode == 0 and "error" not in out.stdout + out.stderr, out.stdout + out.stderr


def test_desktop_entry_matches_the_project():
    entry = _desktop_entry()
    gui_scripts = _pyproject()["project"]["gui-scripts"]
    program = entry["Exec"].split()[0]
    assert program in gui_scripts, f"Exec runs {program!r}, not a gui-script of pyproject.toml"
    assert entry["TryExec"] == program
    assert entry["Icon"] == APP_ID  # the installer names the icons after the id
    assert entry["Type"] == "Application" and entry["Terminal"] == "false"
    assert entry["Exec"].endswith("%f"), "a file opened from a file manager must reach the studio"
    assert "application/dicom" in entry["MimeType"].split(";")


# --------------------------------------------------------------------------- AppStream
def test_metainfo_validates_offline():
    tool = shutil.which("appstreamcli")
    if tool is None:
        pytest.skip("appstreamcli not installed (apt-get install appstream)")
    out = _run([tool, "validate", "--no-net", "--no-color", str(METAINFO)])
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Validation was successful" in out.stdout


def test_metainfo_agrees_with_desktop_entry_and_pyproject():
    from prdit import __version__

    root = ET.parse(METAINFO).getroot()
    assert root.tag == "component" and root.get("type") == "desktop-application"
    assert root.findtext("id") == APP_ID
    launchable = root.find("launchable")
    assert launchable is not None and launchable.get("type") == "desktop-id"
    assert launchable.text == DESKTOP.name
    assert root.findtext("project_license") == _pyproject()["project"]["license"]["text"] == "Apache-2.0"
    assert root.findtext("metadata_license")
    assert root.find("content_rating") is not None
    assert root.findtext("name") == _desktop_entry()["Name"]
    versions = [r.get("version") for r in root.iter("release")]
    assert versions and versions[0] == __version__, "newest <release> must be the package version"
    binaries = {b.text for b in root.iter("binary")}
    assert set(_pyproject()["project"]["gui-scripts"]) <= binaries
    for image in root.iter("image"):
        assert image.text.startswith("https://") and image.text.endswith(".png")
    mediatypes = {m.text for m in root.iter("mediatype")}
    assert mediatypes == {m for m in _desktop_entry()["MimeType"].split(";") if m}


def test_nifti_mime_type_is_defined_for_the_desktop_entry(tmp_path):
    root = ET.parse(MIME).getroot()
    ns = "{http://www.freedesktop.org/standards/shared-mime-info}"
    types = {
        t.get("type"): [g.get("pattern") for g in t.iter(f"{ns}glob")] for t in root.iter(f"{ns}mime-type")
    }
    assert types == {"image/x-nifti": ["*.nii", "*.nii.gz"]}
    assert "image/x-nifti" in _desktop_entry()["MimeType"].split(";")
    tool = shutil.which("update-mime-database")
    if tool is None:
        pytest.skip("update-mime-database not installed (apt-get install shared-mime-info)")
    (tmp_path / "packages").mkdir()
    shutil.copy(MIME, tmp_path / "packages")
    out = _run([tool, str(tmp_path)], env={**os.environ, "XDG_DATA_DIRS": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert "image/x-nifti:*.nii.gz" in (tmp_path / "globs2").read_text(encoding="utf-8")


# --------------------------------------------------------------------------- icons
def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def test_icon_svg_and_every_png_size_exist():
    svg = ICONS / "prdit-studio.svg"
    assert svg.is_file()
    assert ET.parse(svg).getroot().tag.endswith("svg")
    for n in ICON_SIZES:
        png = ICONS / f"prdit-studio-{n}.png"
        assert png.is_file(), f"missing {png}"
        assert _png_size(png) == (n, n), f"{png} is {_png_size(png)}, not {n}x{n}"


# --------------------------------------------------------------------------- installer
def test_install_desktop_entry_user_level_and_uninstall(tmp_path):
    fake = tmp_path / "my apps" / "prdit-studio"  # a space in the path must be quoted in Exec
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    fake.chmod(0o755)
    prefix = tmp_path / "share"
    script = PACKAGING / "install-desktop-entry.sh"
    out = _run(["bash", str(script), "--exec", str(fake), "--prefix", str(prefix), "--no-cache"])
    assert out.returncode == 0, out.stdout + out.stderr
    installed = prefix / "applications" / f"{APP_ID}.desktop"
    entry = _desktop_entry(installed)
    assert entry["Exec"] == f'"{fake}" %f' and entry["TryExec"] == str(fake)
    assert entry["Icon"] == APP_ID
    if shutil.which("desktop-file-validate"):
        assert _run(["desktop-file-validate", str(installed)]).returncode == 0
    assert (prefix / "metainfo" / f"{APP_ID}.metainfo.xml").read_bytes() == METAINFO.read_bytes()
    assert (prefix / "mime" / "packages" / f"{APP_ID}.mime.xml").is_file()
    assert (prefix / "icons/hicolor/scalable/apps" / f"{APP_ID}.svg").is_file()
    for n in ICON_SIZES:
        assert _png_size(prefix / f"icons/hicolor/{n}x{n}/apps/{APP_ID}.png") == (n, n)
    assert not [p for p in prefix.rglob(".*") if p.is_file()], "temporary files left behind"

    out = _run(["bash", str(script), "--prefix", str(prefix), "--uninstall", "--no-cache"])
    assert out.returncode == 0, out.stderr
    assert not [p for p in prefix.rglob(f"{APP_ID}*")]


def test_install_desktop_entry_refuses_a_missing_program(tmp_path):
    script = PACKAGING / "install-desktop-entry.sh"
    out = _run(["bash", str(script), "--exec", str(tmp_path / "nope"), "--prefix", str(tmp_path)])
    assert out.returncode == 2
    assert "nope: no such file" in out.stderr
    assert not (tmp_path / "applications").exists()


def test_shell_scripts_parse():
    for script in ("build_app.sh", "install-desktop-entry.sh"):
        out = _run(["bash", "-n", str(PACKAGING / script)])
        assert out.returncode == 0, f"{script}: {out.stderr}"
    out = _run(["bash", str(PACKAGING / "build_app.sh"), "--bogus"])
    assert out.returncode == 2 and "unknown option '--bogus'" in out.stderr


# --------------------------------------------------------------------------- PyInstaller spec
class _Recorder:
    """Stands in for one of PyInstaller's spec classes and records how the spec called it."""

    calls: dict[str, dict] = {}

    def __init__(self, *args, **kwargs):
        type(self).calls[type(self).__name__] = {"args": args, "kwargs": kwargs}
        self.pure, self.scripts, self.binaries, self.datas = [], [], [], []


def _exec_spec(distpath: Path) -> tuple[dict[str, dict], dict]:
    """Run the spec with recorders for PyInstaller's classes: (calls by class name, spec globals)."""
    _Recorder.calls = {}
    names = {name: type(name, (_Recorder,), {}) for name in ("Analysis", "PYZ", "EXE", "COLLECT")}
    namespace = {**names, "SPECPATH": str(SPEC.parent), "DISTPATH": str(distpath), "__file__": str(SPEC)}
    exec(compile(SPEC.read_text(encoding="utf-8"), str(SPEC), "exec"), namespace)  # noqa: S102 - our own recipe
    return dict(_Recorder.calls), namespace


def _run_spec(distpath: Path) -> dict[str, dict]:
    return _exec_spec(distpath)[0]


def _our_modules() -> set[str]:
    names = set()
    for package in ("prdit", "prdit_app"):
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            names.add(".".join(parts))
    return names


def _top_level_imports() -> set[str]:
    found = set()
    for package in ("prdit", "prdit_app"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
                if isinstance(node, ast.Import):
                    found.update(alias.name for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found.add(node.module)
    return found


def test_spec_names_existing_paths_and_bundles_resources(tmp_path):
    calls, spec = _exec_spec(tmp_path)
    assert set(calls) == {"Analysis", "PYZ", "EXE", "COLLECT"}
    analysis = calls["Analysis"]
    scripts = analysis["args"][0]
    assert [Path(s) for s in scripts] == [LAUNCHER] and LAUNCHER.is_file()
    assert Path(analysis["kwargs"]["pathex"][0]) == ROOT
    exe = calls["EXE"]["kwargs"]
    assert exe["name"] == "prdit-studio" and spec["ICON"].is_file()
    assert exe["icon"] in (None, str(spec["ICON"]))  # PyInstaller embeds icons on Windows/macOS only
    assert calls["COLLECT"]["kwargs"]["name"] == "prdit-studio"  # -> dist/prdit-studio/

    datas = analysis["kwargs"]["datas"]
    for src, dest in datas:
        assert Path(src).is_file(), src
        assert Path(dest).parts[0] == "resources" and Path(src).parent == ROOT / dest
    bundled = {Path(src).relative_to(ROOT).as_posix() for src, _ in datas}
    expected = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "resources").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert bundled == expected, "every file of resources/ (presets, configs, icons, models) is bundled"
    assert "resources/presets/window_level.json" in bundled


def test_spec_hidden_imports_cover_every_module_and_excludes_nothing_we_import(tmp_path):
    analysis = _run_spec(tmp_path)["Analysis"]["kwargs"]
    hidden = set(analysis["hiddenimports"])
    ours = {m for m in _our_modules() if not m.endswith("__main__")}
    assert ours <= hidden, f"not bundled: {sorted(ours - hidden)}"
    # the CLI loads its subcommands with importlib, which static analysis cannot follow
    cli_dir = ROOT / "prdit" / "cli"
    cli_modules = {f"prdit.cli.{p.stem}" for p in cli_dir.glob("*.py") if p.stem != "__init__"}
    assert cli_modules <= hidden

    excludes = set(analysis["excludes"])
    imported = _top_level_imports()
    clashes = {m for m in imported for ex in excludes if m == ex or m.startswith(ex + ".")} - {
        m for m in imported if any(m == o or m.startswith(o + ".") for o in OPTIONAL_IMPORTS)
    }
    assert not clashes, f"the spec excludes modules our code imports: {sorted(clashes)}"
    for needed in ("torch", "PySide6", "pyqtgraph", "vtkmodules", "SimpleITK", "nibabel", "pydicom", "scipy"):
        assert needed not in excludes


def test_spec_drops_only_test_programs(tmp_path):
    keep = _exec_spec(tmp_path)[1]["keep"]
    dropped = ["torch/test/Dict_test", "torch/bin/test_jit", "torch/bin/TCPStoreTest", "torch/bin/protoc",
               "torch/lib/libtorchbind_test.so", "torch/lib/libjitbackend_test.so"]  # fmt: skip
    kept = ["torch/lib/libtorch_cpu.so", "torch/lib/libshm.so", "torch/bin/torch_shm_manager",
            "torch/testing/__init__.py", "vtkmodules/libvtkCommonCore.so",
            "resources/models/default.safetensors",
            "PySide6/Qt/plugins/platforms/libqoffscreen.so"]  # fmt: skip
    assert [p for p in dropped if keep((p, p, "BINARY"))] == []
    assert [p for p in kept if not keep((p, p, "BINARY"))] == []


def test_spec_links_the_cli_beside_the_binary(tmp_path):
    app = tmp_path / "prdit-studio"
    app.mkdir()
    (app / "prdit-studio").write_text("", encoding="utf-8")
    _run_spec(tmp_path)
    link = app / "prdit"
    assert link.is_symlink() and os.readlink(link) == "prdit-studio"
    _run_spec(tmp_path)  # a rebuild replaces the link instead of failing
    assert link.is_symlink()


# --------------------------------------------------------------------------- frozen entry point
@pytest.fixture
def launcher(monkeypatch):
    spec = importlib.util.spec_from_file_location("prdit_frozen_launcher", LAUNCHER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    seen: list[tuple[str, list[str]]] = []
    import prdit.cli
    import prdit_app.main

    monkeypatch.setattr(prdit.cli, "main", lambda argv: seen.append(("cli", list(argv))) or 0)
    monkeypatch.setattr(prdit_app.main, "main", lambda argv: seen.append(("studio", list(argv))) or 0)
    module.seen = seen
    return module


def test_launcher_runs_the_cli_for_dash_m_prdit(launcher, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/opt/prdit-studio/prdit-studio"])
    assert launcher.main(["-m", "prdit", "train", "cfg.yaml"]) == 0
    assert launcher.main(["-mprdit", "--version"]) == 0
    assert launcher.seen == [("cli", ["train", "cfg.yaml"]), ("cli", ["--version"])]


def test_launcher_runs_the_cli_under_the_prdit_name(launcher, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/opt/prdit-studio/prdit", "info", "x.nii"])
    assert launcher.main() == 0
    assert launcher.seen == [("cli", ["info", "x.nii"])]


def test_launcher_runs_the_studio_otherwise(launcher, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/opt/prdit-studio/prdit-studio", "--phantom", "1"])
    assert launcher.main() == 0
    assert launcher.main(["scan.nii.gz"]) == 0
    assert launcher.seen == [("studio", ["--phantom", "1"]), ("studio", ["scan.nii.gz"])]


def test_launcher_refuses_other_modules(launcher, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["/opt/prdit-studio/prdit-studio"])
    assert launcher.main(["-m", "pip", "install", "x"]) == 2
    assert "only '-m prdit'" in capsys.readouterr().err
    assert launcher.seen == []


def test_launcher_honours_pythonunbuffered(launcher, monkeypatch):
    """The frozen interpreter ignores PYTHON* variables; the studio needs child output line by line."""
    import io

    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="utf-8")  # block-buffered, like a pipe
    monkeypatch.setattr(sys, "stdout", stream)
    monkeypatch.setenv("PYTHONUNBUFFERED", "1")
    launcher._honour_unbuffered()
    stream.write("step 1/600 loss 0.41\r")
    assert raw.getvalue() == b"step 1/600 loss 0.41\r", "output must reach the pipe without a newline"


def test_launcher_leaves_buffering_alone_by_default(launcher, monkeypatch):
    import io

    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="utf-8")
    monkeypatch.setattr(sys, "stdout", stream)
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)
    launcher._honour_unbuffered()
    stream.write("buffered")
    assert raw.getvalue() == b""
