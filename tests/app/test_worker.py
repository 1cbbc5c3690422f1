"""The sampling worker: streams every step, lets the views skip frames, cancels within one step,
keeps the event loop responsive and turns errors into (title, message) for a dialog."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _fakes import CountingModel, fake_source  # noqa: E402

from prdit.data.normalize import HUWindow  # noqa: E402
from prdit.model_info import ModelInfo  # noqa: E402
from prdit_app.latest import LatestSlot  # noqa: E402
from prdit_app.sampling_types import SampleRequest  # noqa: E402
from prdit_app.stall_meter import StallMeter  # noqa: E402
from prdit_app.step_source import describe_error, resolve_device  # noqa: E402
from prdit_app.worker import SamplingController  # noqa: E402

FAKE_INFO = ModelInfo("PRDiT-XS/4/0", 8, HUWindow(-1000, 1000), (1.5, 1.5, 2.0), "ab" * 32)


def _request(steps: int, batch: int = 1) -> SampleRequest:
    model = object()  # the fake source ignores it; validate() only needs one to be present
    return SampleRequest(
        steps=steps, num_samples=batch, seed=5, model=model, model_info=FAKE_INFO, torch_threads=2
    )


def _run(qtbot, controller, request, source, timeout=20000):
    results, failures = [], []
    controller.finished.connect(results.append)
    controller.failed.connect(lambda t, m: failures.append((t, m)))
    worker = controller.start(request, source)
    qtbot.waitUntil(lambda: bool(results or failures), timeout=timeout)
    assert not controller.running
    return worker, results, failures


def test_latest_slot_keeps_only_the_newest():
    slot = LatestSlot()
    assert slot.take() is None
    assert slot.put(1) is True  # empty -> wake the consumer
    assert slot.put(2) is False  # a wake-up is pending already
    assert slot.put(3) is False
    assert slot.take() == 3 and slot.dropped == 2
    assert slot.take() is None


def test_streams_every_step_and_ends_on_the_final_volume(qtbot):
    model = CountingModel(size=8)
    controller = SamplingController()
    shown = []
    controller.stepReady.connect(shown.append)
    worker, results, failures = _run(
        qtbot, controller, _request(12, batch=2), fake_source(model, 12, 2, FAKE_INFO)
    )
    assert failures == []
    assert worker.steps_emitted == 12 and model.calls == 12
    assert 1 <= len(shown) <= 12
    last = shown[-1]
    assert last.final and last.index == 11 and last.total == 12
    assert last.x0_hu.shape == (2, 8, 8, 8) and last.x0_hu.dtype == np.float32
    assert last.xt_hu is not None
    result = results[0]
    assert result.status == "done" and result.steps_done == 12 and len(result.volumes) == 2
    vol = result.volumes[1]
    expected = FAKE_INFO.hu_window.to_hu(model.x0_at(last.t)[0, 0].numpy())
    np.testing.assert_allclose(vol.array, expected, atol=1e-3)
    assert vol.spacing == (1.5, 1.5, 2.0)
    np.testing.assert_allclose(vol.center_lps(), 0.0, atol=1e-9)  # centred on the origin
    assert vol.metadata["seed"] == 6 and vol.metadata["checkpoint_sha256"] == "ab" * 32


def test_slow_views_skip_frames_but_never_queue(qtbot):
    model = CountingModel(size=8)
    controller = SamplingController()
    shown = []

    def slow_view(update):
        shown.append(update.index)
        time.sleep(0.03)  # a view slower than the sampler

    controller.stepReady.connect(slow_view)
    worker, results, _ = _run(qtbot, controller, _request(60), fake_source(model, 60, 1, FAKE_INFO))
    assert worker.steps_emitted == 60
    assert shown[-1] == 59 and shown == sorted(shown)
    assert len(shown) < 60 and worker.slot.dropped == 60 - len(shown)


def test_cancel_stops_within_one_step(qtbot):
    model = CountingModel(size=8, delay_s=0.05)
    controller = SamplingController()
    calls_at_cancel = []

    def maybe_cancel(update):
        if update.index >= 2 and not calls_at_cancel:
            calls_at_cancel.append(model.calls)
            controller.cancel()

    controller.stepReady.connect(maybe_cancel)
    worker, results, failures = _run(qtbot, controller, _request(200), fake_source(model, 200, 1, FAKE_INFO))
    assert failures == []
    result = results[0]
    assert result.status == "cancelled"
    assert model.calls - calls_at_cancel[0] <= 1, "the worker ran more than one step after cancel"
    assert result.steps_done < 10 and result.volumes[0].metadata["status"] == "cancelled"


def test_exception_in_model_becomes_a_dialog_message(qtbot):
    model = CountingModel(size=8, fail_at=4)
    controller = SamplingController()
    _, results, failures = _run(qtbot, controller, _request(10), fake_source(model, 10, 1, FAKE_INFO))
    assert results == []
    title, message = failures[0]
    assert title == "Generation failed" and "model exploded at call 4" in message


def test_bad_checkpoint_file_is_reported_as_load_error(qtbot, tmp_path):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"this is not a checkpoint")
    controller = SamplingController()
    _, results, failures = _run(qtbot, controller, SampleRequest(checkpoint=bad, steps=3, device="cpu"), None)
    assert results == []
    title, message = failures[0]
    assert title == "Cannot load the model" and "broken.safetensors" in message


def test_missing_checkpoint_and_bad_settings(qtbot, tmp_path):
    controller = SamplingController()
    _, _, failures = _run(qtbot, controller, SampleRequest(checkpoint=tmp_path / "nope.pt", steps=3), None)
    assert failures[0][0] == "Cannot load the model" and "not found" in failures[0][1]
    _, _, failures = _run(qtbot, controller, SampleRequest(checkpoint=tmp_path / "x.pt", steps=0), None)
    assert failures[0] == ("Invalid generation settings", "steps must be at least 1, got 0")


def test_out_of_memory_message_suggests_fewer_samples():
    title, message = describe_error(
        MemoryError("out of memory"), SampleRequest(num_samples=8, checkpoint=Path("m"))
    )
    assert title == "Out of memory" and "fewer samples (now 8)" in message


class _MatmulModel(CountingModel):
    """A fake whose every call does >= 25 ms of real torch work (GIL released inside kernels).

    Timed, not counted: a fixed number of matmuls took ~40 ms on a busy machine but ~5 ms on a
    quiet one with AMX, too short a run for the stall meter to sample (CI saw 10 ticks)."""

    def __init__(self):
        super().__init__(size=16)
        self.a = torch.randn(384, 384)

    def __call__(self, x_t, t):
        b = self.a
        end = time.perf_counter() + 0.025
        while time.perf_counter() < end:
            b = torch.tanh(b @ self.a)
        return super().__call__(x_t, t)


def test_event_loop_stall_stays_under_100ms(qtbot):
    # The gap measures scheduling: on a machine already running far more threads than it has cores
    # (load > 1.5 x cores: other jobs), a 10 ms timer is late whatever this code does.
    cores = os.cpu_count() or 1
    load = os.getloadavg()[0]
    if load > 1.5 * cores:
        pytest.skip(f"machine overloaded (load {load:.1f} on {cores} cores): event-loop timing meaningless")
    model = _MatmulModel()
    controller = SamplingController()
    meter = StallMeter(10)
    meter.start()
    worker, results, _ = _run(qtbot, controller, _request(20), fake_source(model, 20, 1, FAKE_INFO))
    meter.stop()
    assert results and worker.steps_emitted == 20
    assert len(meter.gaps_ms) > 10
    assert meter.worst_gap_ms < 100.0, f"GUI stalled {meter.worst_gap_ms:.0f} ms"


def test_model_info_labels_and_device():
    info = ModelInfo.from_meta(
        {
            "model_name": "PRDiT-B/12/4",
            "input_size": 128,
            "hu_window": {"low": -1000, "high": 500},
            "spacing": 1.0,
        }
    )
    assert info.size_label == "B" and info.variant_label == "stage 2: local denoiser + 4 DiT blocks"
    assert info.hu_window.high == 500 and info.spacing == (1.0, 1.0, 1.0)
    assert ModelInfo("PRDiT-XS/4/0", 16).variant_label.startswith("stage 1")
    with pytest.raises(ValueError, match="model_name"):
        ModelInfo.from_meta({"input_size": 16}, "m.safetensors")
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")


# --------------------------------------------------------------------------- with the real engine
def _tiny_checkpoint(path: Path) -> Path:
    """An untrained PRDiT-XS/4/0 at 16^3 saved as a single-file model with PRDiT metadata."""
    pytest.importorskip("prdit.checkpoint")
    from safetensors.torch import save_file

    from prdit.models import build_model

    torch.manual_seed(0)
    model = build_model("PRDiT-XS/4/0", input_size=16)
    meta = {"model_name": "PRDiT-XS/4/0", "input_size": 16, "spacing": [2.0, 2.0, 2.5], "weights": "model"}
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={"prdit": json.dumps(meta)})
    return path


@pytest.mark.parametrize("sampler", ["hot", "v2m-sde"])
def test_real_sampler_streams_each_step_from_a_checkpoint(qtbot, tmp_path, sampler):
    pytest.importorskip("prdit.diffusion")
    ckpt = _tiny_checkpoint(tmp_path / "tiny.safetensors")
    controller = SamplingController()
    shown = []
    controller.stepReady.connect(shown.append)
    request = SampleRequest(
        checkpoint=ckpt, sampler=sampler, steps=6, k=2, seed=3, num_samples=2, device="cpu"
    )
    worker, results, failures = _run(qtbot, controller, request, None, timeout=60000)
    assert failures == []
    result = results[0]
    assert worker.steps_emitted == 6 and shown[-1].final and shown[-1].index == 5
    assert shown[-1].xt_hu is not None and shown[-1].x0_hu.shape == (2, 16, 16, 16)
    assert result.info.model_name == "PRDiT-XS/4/0" and len(result.info.sha256) == 64
    vol = result.volumes[0]
    assert vol.spacing == (2.0, 2.0, 2.5) and vol.metadata["checkpoint"] == "tiny.safetensors"
    assert -1000.0 <= vol.array.min() and vol.array.max() <= 1000.0

    # the same seed through the CLI's code path gives the same volume (sample 1 == seed 4)
    from prdit import diffusion
    from prdit.checkpoint import load_for_inference

    model, info = load_for_inference(ckpt, "cpu")
    gens = [torch.Generator().manual_seed(4)]
    final = diffusion.run_to_end(diffusion.sample(model, (1, 1, 16, 16, 16), sampler, 6, 2, generator=gens))
    np.testing.assert_allclose(result.volumes[1].array, info.hu_window.to_hu(final[0, 0].numpy()), atol=1e-3)


def test_real_sampler_cancel_within_one_model_call(qtbot):
    pytest.importorskip("prdit.diffusion")
    from prdit.models import build_model

    model = build_model("PRDiT-XS/4/0", input_size=16)
    calls = []
    model.register_forward_hook(lambda *a: calls.append(1))
    info = ModelInfo("PRDiT-XS/4/0", 16)
    controller = SamplingController()
    at_cancel = []

    def on_step(update):
        if update.index >= 1 and not at_cancel:
            at_cancel.append(len(calls))
            controller.cancel()

    controller.stepReady.connect(on_step)
    request = SampleRequest(model=model, model_info=info, steps=400, device="cpu", torch_threads=2)
    _, results, _ = _run(qtbot, controller, request, None, timeout=60000)
    assert results[0].status == "cancelled"
    assert len(calls) - at_cancel[0] <= 1
