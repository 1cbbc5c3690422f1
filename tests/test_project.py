"""The project's promises to a new user: set-up commands, CI, and the engine/app boundary."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```bash\n(.+?)\n```", text)[:2]


def test_readme_starts_with_install_and_test_commands():
    install, test = _readme_commands()
    assert "pip install torch==2.13.0" in install and "prdit-studio" in install
    assert "pytest" in test


def test_ci_runs_the_readme_test_command():
    _, test = _readme_commands()
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert test in ci.splitlines()


def test_engine_does_not_import_qt_or_vtk():
    code = (
        "import sys, prdit, prdit.volume, prdit.cli, prdit.models, prdit.diffusion\n"
        "bad=[m for m in ('PySide6','pyqtgraph','vtk') if m in sys.modules]\n"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr


def test_engine_sources_never_mention_qt():
    offenders = []
    for path in (ROOT / "prdit").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if re.search(r"^\s*(import|from)\s+(PySide6|pyqtgraph|vtk)\b", text, re.M):
            offenders.append(str(path))
    assert offenders == []


def test_wheel_data_files_cover_every_shipped_resource():
    """A non-editable install gets resources/ only through pyproject's data-files globs."""
    import fnmatch

    import tomllib

    data_files = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"][
        "data-files"
    ]
    patterns = [p for globs in data_files.values() for p in globs]
    shipped = [
        str(f.relative_to(ROOT)) for f in (ROOT / "resources").rglob("*") if f.is_file() and f.suffix != ".py"
    ]
    missing = [f for f in shipped if not any(fnmatch.fnmatch(f, p) for p in patterns)]
    assert missing == []
    for target, globs in data_files.items():
        for pattern in globs:  # each target folder mirrors the source folder
            assert target.removeprefix("share/prdit-studio/") == pattern.rsplit("/", 1)[0]


def test_resources_dir_prefers_env_then_checkout(monkeypatch, tmp_path):
    from prdit import paths

    monkeypatch.setenv("PRDIT_RESOURCES", str(tmp_path))
    assert paths.resources_dir() == tmp_path
    monkeypatch.delenv("PRDIT_RESOURCES")
    assert paths.resources_dir() == ROOT / "resources"
    assert all(str(c).endswith("share/prdit-studio/resources") for c in paths._installed_candidates())
