"""Global self-attention behind one switch: ``auto``, ``xformers``, ``sdpa`` or ``math``.

Why a switch: at 256^3 the transformer attends over 32768 tokens, and an explicit N x N score
matrix would be 4 GB *per head* in float32. The fused kernels never build it:

* ``xformers`` — ``xformers.ops.memory_efficient_attention``; CUDA only (it has no CPU kernels).
* ``sdpa``     — ``torch.nn.functional.scaled_dot_product_attention``; flash / memory-efficient
  kernels on CUDA and a flash kernel on CPU (measured: O(N) memory on CPU too).
* ``math``     — the explicit ``softmax(q k^T / sqrt(d)) v``: the reference the others are tested
  against, O(N^2) memory; never chosen automatically.
* ``auto``     — xformers when it is importable *and* the tensors are on CUDA, else sdpa.

The choice is made per call from (1) the model's own backend if it set one, else (2) the process
default, set by :func:`set_attention_backend` or the ``PRDIT_ATTENTION`` environment variable.
"""

from __future__ import annotations

import functools
import math
import os

import torch
import torch.nn.functional as F
from torch import nn

BACKENDS = ("auto", "xformers", "sdpa", "math")
ENV_VAR = "PRDIT_ATTENTION"

_default_backend: str | None = None  # None: read ENV_VAR (or "auto") at first use


def _check_name(name: str, where: str) -> str:
    value = str(name).strip().lower()
    if value not in BACKENDS:
        raise ValueError(
            f"{where}: unknown attention backend {name!r}; expected one of {', '.join(BACKENDS)}"
        )
    return value


def set_attention_backend(name: str | None) -> None:
    """Set the process-wide default backend; ``None`` goes back to ``$PRDIT_ATTENTION`` / ``auto``."""
    global _default_backend
    _default_backend = None if name is None else _check_name(name, "set_attention_backend")


def get_attention_backend() -> str:
    """The process-wide default backend (``auto`` unless set or given by ``$PRDIT_ATTENTION``)."""
    if _default_backend is not None:
        return _default_backend
    env = os.environ.get(ENV_VAR)
    if env:
        return _check_name(env, f"environment variable {ENV_VAR}")
    return "auto"


@functools.lru_cache(maxsize=1)
def _xformers_ops():
    """Import xformers once; ``None`` when it is not installed or broken."""
    try:
        import xformers.ops as xops  # type: ignore[import-not-found]
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return None
    return xops


def xformers_available() -> bool:
    return _xformers_ops() is not None


def resolve_backend(name: str | None, device: torch.device | str) -> str:
    """The concrete backend (``xformers``, ``sdpa`` or ``math``) for tensors on ``device``.

    ``name`` ``None`` means the process default. Asking explicitly for xformers where it cannot run
    is an error, not a silent fallback, so benchmarks and tests measure what they claim to.
    """
    choice = get_attention_backend() if name is None else _check_name(name, "attention backend")
    on_cuda = torch.device(device).type == "cuda"
    if choice == "auto":
        return "xformers" if on_cuda and xformers_available() else "sdpa"
    if choice == "xformers":
        if not xformers_available():
            raise RuntimeError(
                "attention backend 'xformers' was requested but xformers is not importable; "
                "install the extra (pip install 'prdit-studio[xformers]') or use 'auto' or 'sdpa'"
            )
        if not on_cuda:
            raise RuntimeError(
                f"attention backend 'xformers' needs CUDA tensors (xformers has no CPU kernels); "
                f"got tensors on {device}; use 'auto' or 'sdpa'"
            )
    return choice


def _math_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Explicit attention on ``[B, H, N, Dh]``; half precision is computed in float32.

    The 1/sqrt(Dh) scale is applied to ``q`` (N x Dh values) rather than to the N x N scores: the
    same result up to rounding, one pass over a far smaller tensor.
    """
    dtype = q.dtype
    if dtype in (torch.float16, torch.bfloat16):
        q, k, v = q.float(), k.float(), v.float()
    scores = torch.matmul(q * (1.0 / math.sqrt(q.shape[-1])), k.transpose(-2, -1))
    weights = torch.softmax(scores, dim=-1)
    return torch.matmul(weights, v).to(dtype)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: str | None = None) -> torch.Tensor:
    """Softmax attention of ``q, k, v`` shaped ``[B, N, H, Dh]`` (token-major); returns the same shape.

    Token-major is what a fused ``qkv`` projection produces and what xformers takes, so no copies
    are made on that path; ``sdpa``/``math`` work on transposed views.
    """
    if q.ndim != 4 or k.shape != q.shape or v.shape != q.shape:
        raise ValueError(
            f"attend expects q, k, v of equal shape [B, N, heads, head_dim]; got {tuple(q.shape)}, "
            f"{tuple(k.shape)}, {tuple(v.shape)}"
        )
    which = resolve_backend(backend, q.device)
    if which == "xformers":
        return _xformers_ops().memory_efficient_attention(q, k, v)
    qh, kh, vh = (a.transpose(1, 2) for a in (q, k, v))
    if which == "sdpa":
        out = F.scaled_dot_product_attention(qh, kh, vh)
    else:
        out = _math_attention(qh, kh, vh)
    return out.transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` projection (timm/DiT layout).

    State-dict names ``qkv.{weight,bias}`` and ``proj.{weight,bias}`` match the reference layout.
    ``backend`` ``None`` follows the process default.
    """

    def __init__(self, dim: int, heads: int, backend: str | None = None) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.head_dim = dim // heads
        self.backend = None if backend is None else _check_name(backend, "Attention")
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        # [B, N, 3, H, Dh]: channel order (q|k|v, head, head_dim) as in timm / the reference.
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).unbind(2)
        out = attend(q, k, v, self.backend)
        return self.proj(out.reshape(b, n, c))
