"""The machine-readable progress stream and the run-folder readers (prdit.run_log)."""

from __future__ import annotations

import json

from prdit.cli import main
from prdit.run_log import CurveData, JsonlTail, list_run_checkpoints, parse_progress_line, progress_line


def test_progress_lines_round_trip_and_other_lines_are_not_progress():
    event = parse_progress_line(progress_line("train", 3, 10, loss=0.25))
    assert (event.what, event.done, event.total, event.extra) == ("train", 3, 10, {"loss": 0.25})
    for other in (
        "train:  30%|###  | 3/10 [00:01<00:02]",
        '{"event": "metrics", "step": 3}',
        "{not json",
        "",
    ):
        assert parse_progress_line(other) is None


def test_prdit_train_streams_one_progress_line_per_step_and_the_folder_reads_back(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "phantom-tiny", "--out", str(run), "--max-steps", "4", "--progress", "jsonl",
            "--set", "model.input_size=16", "--set", "data.phantom_count=4", "--set", "log.every=1",
            "--set", "checkpoint.every=2", "--set", "log.val_every=0",
            "--set", "log.preview_every=0"]  # fmt: skip
    assert main(argv) == 0
    events = [e for e in map(parse_progress_line, capsys.readouterr().out.splitlines()) if e is not None]
    assert [(e.what, e.done, e.total) for e in events] == [("train", s, 4) for s in (1, 2, 3, 4)]
    assert all(isinstance(e.extra["loss"], float) for e in events)
    curves = CurveData()
    for record in JsonlTail(run / "metrics.jsonl").read_new():
        curves.add(record)
    assert curves.count("loss") == 4 and curves.event == "finished" and curves.last_step == 4
    assert [step for step, _ in list_run_checkpoints(run)][-1] == 4


def test_prdit_eval_streams_progress_too(tmp_path, capsys):
    for name in ("a", "b"):
        assert main(["phantom", "--count", "2", "--size", "32", "--seed-offset", "7" if name == "a" else "9",
                     "--out", str(tmp_path / name)]) == 0  # fmt: skip
    capsys.readouterr()
    report = tmp_path / "r.json"
    argv = ["eval", str(tmp_path / "a"), str(tmp_path / "b"), "--metrics", "histogram", "--no-cache",
            "--report", str(report), "--progress", "jsonl"]  # fmt: skip
    assert main(argv) == 0
    events = [e for e in map(parse_progress_line, capsys.readouterr().out.splitlines()) if e is not None]
    assert {e.what for e in events} >= {"real volumes", "generated volumes"}
    assert json.loads(report.read_text())["metrics"]
