"""Dry-run estimates: traced memory against what torch's allocator really hands out, and refusals
of runs that would not fit, before anything is written."""

from __future__ import annotations

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from prdit.cli import main
from prdit.diffusion import IaNDiffusion, sample
from prdit.estimate import estimate_sampling, estimate_training, valid_size_for
from prdit.models import build_model


def measured_peak(fn) -> int:
    """Peak bytes of live CPU tensors while ``fn`` runs, from the profiler's allocator events."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    live = peak = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        live += e.nbytes()
        peak = max(peak, live)
    return peak


SIZES = [("PRDiT-XS/4/0", 16, 3), ("PRDiT-XS/10/2", 32, 1), ("PRDiT-XS/10/2", 48, 2)]


@pytest.mark.parametrize(("name", "size", "batch"), SIZES)
def test_sampling_memory_is_within_a_quarter_of_the_measured_peak(name, size, batch):
    model = build_model(name, input_size=size).eval()
    diffusion = IaNDiffusion()
    est = estimate_sampling(model, size, batch, 8, diffusion=diffusion, probe=False, available=None)

    def run():
        with torch.inference_mode():
            for _ in sample(model, (batch, 1, size, size, size), "hot", 8, 2, diffusion=diffusion):
                pass

    real = measured_peak(run)
    assert real > batch * size**3 * 4  # at least the state itself: the measurement is not empty
    assert abs(est.work_bytes - real) <= 0.25 * real, (est.work_bytes, real)
    weights = sum(p.numel() * 4 for p in model.parameters())
    assert est.resident_bytes >= weights and est.peak_bytes == est.resident_bytes + est.work_bytes


@pytest.mark.parametrize(("name", "size", "batch"), SIZES)
def test_training_memory_is_within_a_quarter_of_the_measured_peak(name, size, batch):
    model = build_model(name, input_size=size).train()
    trainable = list(model.parameters())
    diffusion = IaNDiffusion()
    est = estimate_training(
        model,
        trainable,
        micro_batch=batch,
        size=size,
        grad_accum=1,
        diffusion=diffusion,
        amp_dtype=None,
        device="cpu",
        probe=False,
        available=None,
    )
    x = torch.rand(batch, 1, size, size, size)

    def step():
        diffusion.training_losses(model, x)["loss"].backward()

    real = measured_peak(step)
    assert abs(est.work_bytes - real) <= 0.25 * real, (est.work_bytes, real)
    # the resident part is what AdamW and the EMA really keep
    opt = torch.optim.AdamW(trainable)
    opt.step()
    moments = sum(
        v.numel() * v.element_size() for s in opt.state.values() for k, v in s.items() if k != "step"
    )
    assert est.breakdown["AdamW moments"] == moments


def test_the_advice_names_the_largest_batch_and_size_that_fit():
    model = build_model("PRDiT-XS/10/2", input_size=32).eval()
    one = estimate_sampling(model, 32, 1, 4, probe=False, available=None).work_bytes
    four = estimate_sampling(model, 32, 4, 4, probe=False, available=None).work_bytes
    room = (one + four) // 2  # room for two or three volumes, not four
    est = estimate_sampling(model, 32, 4, 4, probe=False, available=room, valid_size=valid_size_for(model))
    assert not est.fits
    assert est.largest_batch in (2, 3)
    small = estimate_sampling(model, 24, 1, 4, probe=False, available=None).work_bytes
    assert small <= room and est.largest_size == 24
    assert "largest number of volumes at once (--batch-size) that fits is" in " ".join(est.lines())


def test_estimated_time_is_the_probe_times_the_network_evaluations():
    model = build_model("PRDiT-XS/4/0", input_size=16).eval()
    est = estimate_sampling(model, 16, 2, 10, probe=True, available=None)
    assert est.seconds > 0 and "per network evaluation" in est.probe
    assert "10 steps = 9 network evaluations" in est.what  # the last step (t = 0) costs none


def test_sample_dry_run_prints_and_writes_nothing(tmp_path, capsys):
    assert (
        main(["sample", "fast-32", "--dry-run", "--count", "2", "--batch-size", "2", "--threads", "1"]) == 0
    )
    out = capsys.readouterr().out
    assert "sampling 2 x 32^3" in out and "peak memory" in out and "per volume" in out
    # one that cannot fit on any machine: refused with the advice, exit status 1, no probe run
    assert main(["sample", "fast-32", "--dry-run", "--count", "3000000", "--batch-size", "3000000"]) == 1
    assert "DOES NOT FIT" in capsys.readouterr().out
    assert main(["sample", "fast-32", "--out", str(tmp_path / "s"), "--count", "3000000",
                 "--batch-size", "3000000"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "--batch-size) that fits is" in err and not (tmp_path / "s").exists()


def test_train_refuses_a_batch_that_cannot_fit_before_writing_anything(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "phantom-tiny", "--out", str(run), "--set", "train.batch_size=20000000"]) == 2
    err = capsys.readouterr().err
    assert "train.batch_size 20000000" in err and "largest train.batch_size that fits is" in err
    assert not run.exists()
    assert main(["train", "phantom-tiny", "--dry-run", "--set", "train.batch_size=4"]) == 0
    out = capsys.readouterr().out
    assert "AdamW moments" in out and "per optimiser step" in out and not run.exists()
