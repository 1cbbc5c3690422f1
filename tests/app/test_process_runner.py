"""ProcessRunner: line splitting (tqdm's carriage returns, ANSI codes), exit outcomes and the
error text a panel shows; LogView: progress redraws replace one line instead of scrolling."""

from __future__ import annotations

import sys

import pytest

from prdit_app.process_runner import STDERR, STDOUT, LogView, ProcessRunner, format_command, prdit_command

pytestmark = pytest.mark.gui


def _run(qtbot, runner: ProcessRunner, argv: list[str]):
    lines, outcomes = [], []
    runner.line.connect(lambda t, s, r: lines.append((t, s, r)))
    runner.finished.connect(outcomes.append)
    with qtbot.waitSignal(runner.finished, timeout=30000):
        runner.start(argv)
    assert len(outcomes) == 1 and not runner.running
    return lines, outcomes[0]


def test_lines_split_on_newlines_and_carriage_returns(qtbot):
    r = ProcessRunner()
    got = []
    r.line.connect(lambda t, s, redraw: got.append((t, s, redraw)))
    r._feed(STDERR, "bar 1/3\rbar 2")
    r._feed(STDERR, "/3\r\x1b[Abar 3/3\nwin\r\nlast")
    assert got == [
        ("bar 1/3", STDERR, True),
        ("bar 2/3", STDERR, True),
        ("bar 3/3", STDERR, False),
        ("win", STDERR, False),  # \r\n is one line end
    ]
    r._flush_buffers()
    assert got[-1] == ("last", STDERR, False)
    assert r.stderr_tail() == ["bar 3/3", "win", "last"]  # redraws are not kept for error text


def test_success_streams_both_outputs(qtbot):
    code = "import sys; print('hello'); print('warn', file=sys.stderr); print('done')"
    lines, outcome = _run(qtbot, ProcessRunner(), [sys.executable, "-c", code])
    assert outcome.ok and outcome.exit_code == 0 and outcome.error == ""
    assert [t for t, s, _ in lines if s == STDOUT] == ["hello", "done"]
    assert [t for t, s, _ in lines if s == STDERR] == ["warn"]


def test_failure_explains_itself_with_the_stderr_tail(qtbot):
    code = "import sys; print('loading'); sys.stderr.write('prdit x: error: bad folder /nope\\n'); exit(2)"
    _, outcome = _run(qtbot, ProcessRunner(), [sys.executable, "-c", code])
    assert not outcome.ok and outcome.exit_code == 2 and not outcome.crashed
    assert "failed with exit code 2" in outcome.error
    assert outcome.error.endswith("prdit x: error: bad folder /nope")


def test_missing_program_and_terminate(qtbot, tmp_path):
    _, outcome = _run(qtbot, ProcessRunner(), [str(tmp_path / "no-such-program")])
    assert not outcome.ok and outcome.crashed and "could not start" in outcome.error
    runner = ProcessRunner()
    outcomes = []
    runner.finished.connect(outcomes.append)
    runner.start([sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"])
    with qtbot.waitSignal(runner.line, timeout=30000):
        pass
    with qtbot.waitSignal(runner.finished, timeout=30000):
        runner.terminate()
    assert outcomes[0].stopped and outcomes[0].crashed  # no handler: SIGTERM ends it
    assert "was stopped" in outcomes[0].error
    with pytest.raises(ValueError):
        runner.start([])


def test_log_view_replaces_redraw_lines(qtbot):
    view = LogView(max_lines=100)
    qtbot.addWidget(view)
    view.append_message("$ prdit train")
    for i in range(5):
        view.append_line(f"train: {i}/5", STDERR, redraw=True)
    view.append_line("train: 5/5", STDERR, redraw=False)
    view.append_line("finished")
    assert view.plain_text().splitlines() == ["$ prdit train", "train: 5/5", "finished"]


def test_commands():
    argv = prdit_command("eval", "a b", "c")
    assert argv == [sys.executable, "-m", "prdit", "eval", "a b", "c"]
    assert format_command(argv) == "python -m prdit eval 'a b' c"


def test_frozen_bundle_shows_the_prdit_command(monkeypatch):
    """In a PyInstaller bundle sys.executable is the studio binary: show ``prdit train ...``."""
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    argv = prdit_command("train", "phantom-tiny", "--out", "runs/a b")
    assert argv[:3] == [sys.executable, "-m", "prdit"]  # the launch itself is unchanged
    assert format_command(argv) == "prdit train phantom-tiny --out 'runs/a b'"
    assert format_command([sys.executable, "-c", "pass"]) == "python -c pass"
