"""Attention backends: one switch, equal results, and no N x N matrix on the fused path."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from prdit.models import attention as attn_mod
from prdit.models import build_model
from prdit.models.attention import (
    Attention,
    attend,
    get_attention_backend,
    resolve_backend,
    set_attention_backend,
    xformers_available,
)


@pytest.fixture(autouse=True)
def _restore_default():
    yield
    set_attention_backend(None)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().norm() / b.detach().norm())


def _qkv(b=2, n=96, h=4, d=16, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, n, h, d, generator=g).to(device) for _ in range(3)]


def test_sdpa_matches_math_and_float64_reference():
    q, k, v = _qkv()
    ref64 = attend(q.double(), k.double(), v.double(), "math")
    out_math = attend(q, k, v, "math")
    out_sdpa = attend(q, k, v, "sdpa")
    assert out_sdpa.shape == q.shape
    assert _rel(out_sdpa, out_math) < 1e-5
    torch.testing.assert_close(out_sdpa, out_math, rtol=1e-5, atol=1e-6)
    assert _rel(out_math, ref64.float()) < 1e-6 and _rel(out_sdpa, ref64.float()) < 1e-6
    # softmax rows sum to one: with v = ones the output is ones
    ones = torch.ones_like(v)
    torch.testing.assert_close(attend(q, k, ones, "sdpa"), ones, rtol=0, atol=1e-6)


def test_attention_module_and_whole_model_agree_across_backends():
    torch.manual_seed(0)
    layer = Attention(64, 4)
    x = torch.randn(2, 50, 64)
    layer.backend = "math"
    ref = layer(x)
    layer.backend = "sdpa"
    assert _rel(layer(x), ref) < 1e-5

    model = build_model("PRDiT-XS/10/2", input_size=16)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    x = torch.rand(2, 1, 16, 16, 16) * 2 - 1
    t = torch.tensor([10, 900])
    outs = {}
    for backend in ("math", "sdpa", "auto"):
        model.set_attention_backend(backend)
        with torch.no_grad():
            outs[backend] = model(x, t)
    assert outs["math"].abs().mean() > 1e-3  # the global branch really contributes
    assert _rel(outs["sdpa"], outs["math"]) < 1e-5
    assert torch.equal(outs["auto"], outs["sdpa"])  # auto on CPU is sdpa


@pytest.mark.skipif(not (torch.cuda.is_available() and xformers_available()), reason="xformers needs CUDA")
def test_xformers_matches_math_on_cuda():  # pragma: no cover - no GPU on CI
    q, k, v = _qkv(n=512, device="cuda")
    assert resolve_backend("auto", "cuda") == "xformers"
    assert _rel(attend(q, k, v, "xformers"), attend(q, k, v, "math")) < 1e-5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_sdpa_matches_math_on_cuda():  # pragma: no cover - no GPU on CI
    q, k, v = _qkv(n=512, device="cuda")
    torch.backends.cuda.matmul.allow_tf32 = False
    assert _rel(attend(q, k, v, "sdpa"), attend(q, k, v, "math")) < 1e-5


def test_backend_switch_resolution(monkeypatch):
    monkeypatch.delenv(attn_mod.ENV_VAR, raising=False)
    set_attention_backend(None)
    assert get_attention_backend() == "auto"
    assert resolve_backend(None, "cpu") == "sdpa"  # auto never picks xformers for CPU tensors
    assert resolve_backend("math", "cpu") == "math"
    monkeypatch.setenv(attn_mod.ENV_VAR, "MATH")
    assert get_attention_backend() == "math"
    set_attention_backend("sdpa")  # explicit default beats the environment
    assert resolve_backend(None, "cpu") == "sdpa"
    set_attention_backend(None)
    monkeypatch.setenv(attn_mod.ENV_VAR, "flash")
    with pytest.raises(
        ValueError, match=r"PRDIT_ATTENTION: unknown attention backend 'flash'; expected one of auto"
    ):
        resolve_backend(None, "cpu")
    with pytest.raises(ValueError, match="unknown attention backend 'fast'"):
        set_attention_backend("fast")
    with pytest.raises(ValueError, match="unknown attention backend"):
        build_model("PRDiT-XS/4/1", input_size=8, attention="fast")
    # xformers asked for explicitly where it cannot run is an error, never a silent fallback
    with pytest.raises(RuntimeError, match="xformers"):
        resolve_backend("xformers", "cpu")


def test_per_model_choice_beats_process_default(monkeypatch):
    calls = []
    real = attn_mod._math_attention
    monkeypatch.setattr(attn_mod, "_math_attention", lambda q, k, v: calls.append(q.shape) or real(q, k, v))
    set_attention_backend("math")
    x, t = torch.randn(1, 1, 8, 8, 8), torch.tensor([3])
    follows = build_model("PRDiT-XS/4/1", input_size=8)
    with torch.no_grad():
        follows(x, t)
    assert len(calls) == 1 and calls[0] == (1, 6, 64, 32)  # [B, heads, N, head_dim]
    own = build_model("PRDiT-XS/4/1", input_size=8, attention="sdpa")
    assert own.config.attention == "sdpa"
    with torch.no_grad():
        own(x, t)
    assert len(calls) == 1


_PEAK_SCRIPT = textwrap.dedent(
    """
    import json, sys, torch
    torch.set_num_threads(2)
    from prdit.models.attention import attend

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) * 1024
        raise RuntimeError(key)

    def reset_peak():
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        except OSError:
            pass

    def peak_delta(backend, n, heads, dim):
        q, k, v = (torch.randn(1, n, heads, dim) for _ in range(3))
        attend(q[:, :64], k[:, :64], v[:, :64], backend)  # warm-up: kernels, thread pools
        reset_peak()
        before = status("VmRSS")
        out = attend(q, k, v, backend)
        assert torch.isfinite(out).all()
        return status("VmHWM") - before

    backend, n, heads, dim = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    print(json.dumps({"delta": peak_delta(backend, n, heads, dim)}))
    """
)


def _peak_delta(backend: str, n: int, heads: int, dim: int) -> int:
    proc = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT, backend, str(n), str(heads), str(dim)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])["delta"]


def test_sdpa_at_32768_tokens_never_builds_the_score_matrix():
    """256^3 volumes give 32768 tokens: one float32 N x N matrix is 4 GiB. The fused kernel must stay
    far below it; the explicit backend at 8x fewer tokens shows the measurement does see such
    matrices (8192^2 x 4 B = 256 MiB)."""
    n_big = 32768
    sdpa_delta = _peak_delta("sdpa", n_big, 1, 8)
    math_delta = _peak_delta("math", 8192, 1, 8)
    score_matrix_big = n_big * n_big * 4
    assert math_delta > 0.9 * 8192 * 8192 * 4, math_delta
    assert sdpa_delta < 128 * 2**20, f"sdpa peak +{sdpa_delta / 2**20:.0f} MiB"
    assert sdpa_delta < score_matrix_big / 30
