"""benchmarks/gpu_check.py keeps working: its CPU smoke mode runs every check on tiny sizes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_check_cpu_smoke_runs_every_check(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--cpu-smoke", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, check=False, cwd=ROOT,
    )  # fmt: skip
    report = json.loads((tmp_path / "gpu_check.json").read_text(encoding="utf-8"))
    failed = {k: v.get("error") for k, v in report["checks"].items() if not v["ok"]}
    assert proc.returncode == 0 and not failed, (failed, proc.stdout[-2000:], proc.stderr[-2000:])
    checks = report["checks"]
    assert set(checks) == {"environment", "model", "attention", "training", "sampling", "studio", "eval"}
    assert checks["attention"]["result"]["equal_within_1e-3"] is True
    assert checks["eval"]["result"]["feature_shape"][1] == 2048
    assert "| training | ok |" in (tmp_path / "gpu_check.md").read_text(encoding="utf-8")
