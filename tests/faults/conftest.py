"""The fault suite: bad inputs and faults a careless or hostile user causes, each run as a user runs
it (a ``python -m prdit`` child process), and classified: a clean error (exit status 2 and a message
naming the file or setting), a traceback, or a loss (partial output left behind, a checkpoint that no
longer resumes). The summary prints at the end of the test run; the suite passes only with zero
tracebacks and zero losses."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESULTS: list[tuple[str, str]] = []  # (case, outcome) for the summary


@dataclass
class Outcome:
    rc: int
    stdout: str
    stderr: str

    @property
    def traceback(self) -> bool:
        return "Traceback (most recent call last)" in self.stderr


def run_prdit(*argv: str, cwd: Path, timeout: float = 180, env: dict | None = None) -> Outcome:
    environment = dict(os.environ, PRDIT_THREADS="1", PRDIT_PRECISION="fp32", **(env or {}))
    proc = subprocess.run(
        [sys.executable, "-m", "prdit", *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
    )
    return Outcome(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def record():
    def _record(case: str, outcome: str) -> None:
        RESULTS.append((case, outcome))

    return _record


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # noqa: ARG001 - pytest hook
    if not RESULTS:
        return
    counts = {
        kind: sum(1 for _, o in RESULTS if o == kind)
        for kind in ("clean error", "recovered", "traceback", "loss")
    }
    terminalreporter.write_sep("=", "fault suite")
    for case, outcome in RESULTS:
        terminalreporter.write_line(f"  {outcome:12s} {case}")
    terminalreporter.write_line(
        f"  {len(RESULTS)} cases: {counts['clean error']} clean errors, {counts['recovered']} recovered, "
        f"{counts['traceback']} tracebacks, {counts['loss']} losses"
    )
