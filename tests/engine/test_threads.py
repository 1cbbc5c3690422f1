"""The thread policy: explicit > PRDIT_THREADS > the free cores, and it follows the load."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch

from prdit import threads as th


def test_an_explicit_count_wins_then_the_environment_then_the_free_cores():
    assert th.choose_threads(3, env={"PRDIT_THREADS": "1"}).threads == 3
    env = th.choose_threads(None, env={"PRDIT_THREADS": "1"}, cores=8, others=0.0)
    assert (env.threads, env.source) == (1, "PRDIT_THREADS")
    quiet = th.choose_threads(None, env={}, cores=2, others=0.1)
    busy = th.choose_threads(None, env={"PRDIT_THREADS": "auto"}, cores=2, others=2.0)
    assert (quiet.threads, busy.threads, busy.source) == (2, 1, "auto")  # never 0
    assert "other programs keep 2.0 busy" in busy.describe()
    assert th.choose_threads(None, env={}, cores=64, others=0.0, max_threads=8).threads == 8
    assert th.auto_threads(4, 1.4) == 3 and th.auto_threads(4, 1.6) == 2 and th.auto_threads(4, None) == 4


@pytest.mark.parametrize("bad", ["two", "-1", "1.5"])
def test_a_bad_setting_names_the_variable(bad):
    with pytest.raises(th.ThreadSettingError, match=r"PRDIT_THREADS: expected a positive number .*'auto'"):
        th.choose_threads(None, env={"PRDIT_THREADS": bad})


def test_busy_cores_of_other_processes_are_measured_without_our_own():
    if th.cpu_sample() is None:
        pytest.skip("no /proc on this system")
    spin = "import time\nt = time.time() + 3\nwhile time.time() < t: pass"
    hog = subprocess.Popen([sys.executable, "-c", spin])
    try:
        time.sleep(0.3)
        before = th.cpu_sample()
        t0 = time.monotonic()
        while time.monotonic() - t0 < 0.5:  # and keep ourselves busy too: that must not count
            sum(range(10000))
        after = th.cpu_sample()
    finally:
        hog.kill()
        hog.wait()
    others = th.others_busy_cores(before, after)
    assert after.own - before.own > 0.05  # we did run (less when the machine is busy)
    assert 0.5 < others < th.usable_cores() + 0.5, others  # the hog's core, give or take the rest


def test_the_governor_follows_the_free_cores_and_leaves_explicit_counts_alone(monkeypatch):
    # 10 s in which others used 20 CPU-seconds (both cores), then 10 s in which they used none
    readings = [(0.0, 0.0), (10.0, 20.0), (20.0, 20.0)]
    samples = iter([th.CpuSample(wall, busy, 0.0) for wall, busy in readings])
    monkeypatch.setattr(th, "cpu_sample", lambda: next(samples))
    monkeypatch.setattr(th.time, "monotonic", lambda: 100.0)
    before = torch.get_num_threads()
    try:
        gov = th.ThreadGovernor(th.ThreadChoice(2, "auto", "test"), period=1.0, cores=2)
        assert gov.tick() == 1 and torch.get_num_threads() == 1  # 2 cores busy elsewhere
        assert gov.tick() == 2 and torch.get_num_threads() == 2  # they went away
        fixed = th.ThreadGovernor(th.ThreadChoice(2, "--threads", "set"), period=0.0, cores=2)
        assert fixed.tick() == 2 and [n for _, n in gov.changes] == [1, 2]
    finally:
        torch.set_num_threads(before)
