"""The PRDiT network: local denoiser (stage 1) + global residual transformer (stage 2), one output.

``out = unpatchify(coarse(tokens, t) + fine(tokens, t))`` with ``tokens`` the overlapping raw
patches of the noisy volume. Output channels are ``[noise, image]`` (``out_channels = 2``, C = 1).

State-dict names and shapes equal the reference implementation's
(``tests/data/reference-state-dict.txt``), so published weights load with strict checking and no
converter. :func:`load_weights` gives errors that say exactly which keys do not fit.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

import torch
from torch import nn

from .attention import Attention, _check_name
from .embedding import TimestepEmbedder
from .global_refiner import GlobalRefiner
from .local_denoiser import LocalDenoiser, extract_patches, unpatchify
from .registry import InputSizeError, PRDiTConfig

# Prefixes that wrappers add to every key: DistributedDataParallel and torch.compile.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_COARSE_PREFIXES = ("coarse.", "t_embedder.mlp.", "t_embedder.coarse_head.")


class WeightsMismatchError(ValueError):
    """A state dict whose keys or shapes do not fit the model it is loaded into."""


class PRDiT(nn.Module):
    """PRDiT for volumes ``[B, C, D, H, W]`` in [-1, 1] and timesteps ``t`` ``[B]``.

    Any spatial size works whose every edge the patch grid tiles (``config.tiles``); the configured
    ``input_size`` only fixes the cached positional-encoding grid.
    """

    def __init__(self, config: PRDiTConfig) -> None:
        super().__init__()
        config.check_size(config.input_size)
        self.config = config
        d = config.token_dim
        g = config.grid
        self.t_embedder = TimestepEmbedder(config.hidden, d, config.hidden if config.depth > 0 else None)
        self.coarse = LocalDenoiser(d, config.out_dim)
        self.fine = (
            GlobalRefiner(
                d, config.hidden, config.heads, config.depth, config.out_dim, (g, g, g), config.attention
            )
            if config.depth > 0
            else None
        )
        self._coarse_frozen = False
        self.initialize_weights()

    # ------------------------------------------------------------------ set-up
    def initialize_weights(self) -> None:
        """DiT's scheme: xavier-uniform Linears with zero bias, N(0, 0.02) timestep layers, then zero
        the adaLN projections and both read-outs so the untrained network outputs exactly 0."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        te = self.t_embedder
        for lin in (te.mlp[0], te.coarse_head, te.fine_head):
            if lin is not None:
                nn.init.normal_(lin.weight, std=0.02)
        self.coarse.zero_init()
        if self.fine is not None:
            self.fine.zero_init()

    def extra_repr(self) -> str:
        c = self.config
        params = self.num_parameters()
        return f"name={c.name}, input_size={c.input_size}, tokens={c.num_tokens}, params={params:,}"

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    # ------------------------------------------------------------------ attention
    def set_attention_backend(self, name: str | None) -> None:
        """Per-model attention backend (``auto``/``xformers``/``sdpa``/``math``; None = process default)."""
        if name is not None:
            name = _check_name(name, f"{self.config.name} attention backend")
        for m in self.modules():
            if isinstance(m, Attention):
                m.backend = name
        self.config = self.config.with_(attention=name)

    # ------------------------------------------------------------------ stage 2: freezing
    def coarse_modules(self) -> list[nn.Module]:
        """The coarse path: local denoiser, shared timestep trunk and the coarse head."""
        return [self.coarse, self.t_embedder.mlp, self.t_embedder.coarse_head]

    def coarse_parameters(self) -> Iterator[nn.Parameter]:
        for m in self.coarse_modules():
            yield from m.parameters()

    @property
    def coarse_frozen(self) -> bool:
        return self._coarse_frozen

    def freeze_coarse(self) -> None:
        """Stage 2: no gradients for the coarse path; it then runs under ``torch.no_grad()``."""
        for p in self.coarse_parameters():
            p.requires_grad_(False)
        self._coarse_frozen = True
        self.train(self.training)

    def unfreeze_coarse(self) -> None:
        for p in self.coarse_parameters():
            p.requires_grad_(True)
        self._coarse_frozen = False

    def train(self, mode: bool = True) -> PRDiT:
        super().train(mode)
        if self._coarse_frozen:  # frozen parts stay in eval mode (no dropout/BN today; future-proof)
            for m in self.coarse_modules():
                m.eval()
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        """What an optimiser should see (everything except a frozen coarse path)."""
        return [p for p in self.parameters() if p.requires_grad]

    def load_stage1_state_dict(self, state_dict: Mapping[str, torch.Tensor], freeze: bool = True) -> None:
        """Load the coarse path from a stage-1 (depth 0) state dict and, by default, freeze it.

        Keys of the global branch (``fine.*``, ``t_embedder.fine_head.*``) in ``state_dict`` are
        ignored, so a stage-2 checkpoint also works as a source. Missing or mis-shaped coarse keys,
        or keys that belong to no part of PRDiT, raise :class:`WeightsMismatchError`.
        """
        sd = _strip_wrappers(state_dict)
        own = {k: v for k, v in self.state_dict().items() if k.startswith(_COARSE_PREFIXES)}
        fine_keys = [k for k in sd if k.startswith(("fine.", "t_embedder.fine_head."))]
        foreign = [k for k in sd if k not in own and k not in fine_keys]
        coarse_sd = {k: v for k, v in sd.items() if k in own}
        problems = _mismatch_report(own, coarse_sd, unexpected=foreign)
        if problems:
            raise WeightsMismatchError(
                f"stage-1 state dict does not fit the coarse path of {self.config.name} "
                f"(input {self.config.input_size}^3, in {self.config.in_channels}, out "
                f"{self.config.out_channels}):\n{problems}"
            )
        missing, unexpected = self.load_state_dict(coarse_sd, strict=False)
        assert not unexpected and all(not k.startswith(_COARSE_PREFIXES) for k in missing)
        if freeze:
            self.freeze_coarse()

    # ------------------------------------------------------------------ forward
    def check_input(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Validate ``x`` and ``t``; returns ``t`` as a ``[B]`` tensor on ``x``'s device."""
        c = self.config
        if not isinstance(x, torch.Tensor) or x.ndim != 5:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(
                f"{c.name}: expected a volume batch [B, {c.in_channels}, D, H, W] (5 dimensions), got {shape}"
            )
        if x.shape[1] != c.in_channels:
            raise ValueError(
                f"{c.name}: expected {c.in_channels} input channel(s) [B, {c.in_channels}, D, H, W], "
                f"got {x.shape[1]} in shape {tuple(x.shape)}"
            )
        for axis, size in zip("DHW", x.shape[2:], strict=True):
            try:
                c.check_size(int(size), what=f"edge {axis}={size} of input {tuple(x.shape)}")
            except InputSizeError as err:
                raise InputSizeError(str(err)) from None
        if not isinstance(t, torch.Tensor):
            t = torch.as_tensor(t)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        if t.ndim != 1 or t.shape[0] != x.shape[0]:
            raise ValueError(
                f"{c.name}: expected timesteps t of shape [B] = [{x.shape[0]}] (one per volume), "
                f"got {tuple(t.shape)}"
            )
        return t.to(x.device)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``x`` ``[B, C, D, H, W]`` (noisy, [-1, 1] scale), ``t`` ``[B]`` -> ``[B, out_channels*... ]``.

        Returns ``[B, out_channels, D, H, W]``; for the default ``out_channels = 2`` channel 0 is
        the predicted noise and channel 1 the predicted clean image.
        """
        t = self.check_input(x, t)
        c = self.config
        tokens, grid = extract_patches(x, c.patch, c.stride, c.pad)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self._coarse_frozen):
            emb = self.t_embedder.trunk(t)
            out = self.coarse(tokens, self.t_embedder.coarse_head(emb))
        if self.fine is not None:
            out = out + self.fine(tokens, self.t_embedder.fine_head(emb), grid)
        return unpatchify(out, grid, c.stride, c.out_channels)


# ---------------------------------------------------------------------- loading
def _strip_wrappers(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if not isinstance(state_dict, Mapping):
        raise WeightsMismatchError(
            f"expected a state dict (mapping of name -> tensor), got {type(state_dict).__name__}"
        )
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        name = str(key)
        stripped = True
        while stripped:
            stripped = False
            for prefix in _WRAPPER_PREFIXES:
                if name.startswith(prefix):
                    name, stripped = name[len(prefix) :], True
        if not isinstance(value, torch.Tensor):
            raise WeightsMismatchError(f"state dict entry {key!r} is a {type(value).__name__}, not a tensor")
        out[name] = value
    return out


def _shape(s: Iterable[int]) -> str:
    s = tuple(s)
    return "x".join(str(v) for v in s) if s else "scalar"


def _listing(title: str, items: list[str], limit: int = 12) -> str:
    shown = items[:limit]
    more = f"\n    ... and {len(items) - limit} more" if len(items) > limit else ""
    return f"  {len(items)} {title}:\n" + "\n".join(f"    {s}" for s in shown) + more


def _mismatch_report(
    expected: Mapping[str, torch.Tensor],
    given: Mapping[str, torch.Tensor],
    unexpected: list[str] | None = None,
) -> str:
    missing = [k for k in expected if k not in given]
    if unexpected is None:
        unexpected = [k for k in given if k not in expected]
    shaped = [
        f"{k}: expected {_shape(v.shape)}, given {_shape(given[k].shape)}"
        for k, v in expected.items()
        if k in given and tuple(given[k].shape) != tuple(v.shape)
    ]
    parts = []
    if missing:
        parts.append(_listing("missing key(s)", missing))
    if unexpected:
        parts.append(
            _listing(
                "unexpected key(s)",
                [f"{k} ({_shape(given[k].shape)})" if k in given else k for k in unexpected],
            )
        )
    if shaped:
        parts.append(_listing("mis-shaped key(s)", shaped))
    return "\n".join(parts)


def _hints(model: nn.Module, expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor]) -> str:
    """Guess the usual causes: wrong depth (stage 1 vs 2), wrong patch size, wrong channel count."""
    hints = []
    exp_blocks = {k.split(".")[2] for k in expected if k.startswith("fine.blocks.")}
    got_blocks = {k.split(".")[2] for k in given if k.startswith("fine.blocks.")}
    if exp_blocks != got_blocks:
        hints.append(
            f"the weights have {len(got_blocks)} transformer block(s), the model {len(exp_blocks)} "
            "(depth differs; a stage-1 state dict goes through load_stage1_state_dict)"
        )
    key = "t_embedder.coarse_head.weight"
    if key in expected and key in given and given[key].shape != expected[key].shape:
        hints.append(
            f"token width {given[key].shape[0]} vs {expected[key].shape[0]} (patch size or channels differ)"
        )
    key = "coarse.mlp_denoise.linear_final.weight"
    if key in expected and key in given and given[key].shape[0] != expected[key].shape[0]:
        hints.append(
            f"read-out width {given[key].shape[0]} vs {expected[key].shape[0]} "
            "(stride or out_channels differ)"
        )
    return "".join(f"\n  hint: {h}" for h in hints)


def load_weights(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    """Strictly load ``state_dict`` into ``model``; returns the model.

    ``module.`` (DDP) and ``_orig_mod.`` (torch.compile) prefixes are stripped. Any missing,
    unexpected or mis-shaped key raises :class:`WeightsMismatchError` listing all of them with
    expected and given shapes, and naming the model variant and size.
    """
    sd = _strip_wrappers(state_dict)
    expected = model.state_dict()
    report = _mismatch_report(expected, sd)
    if report:
        cfg = getattr(model, "config", None)
        what = (
            f"{cfg.name} (input {cfg.input_size}^3, in {cfg.in_channels}, out {cfg.out_channels})"
            if cfg is not None
            else type(model).__name__
        )
        raise WeightsMismatchError(f"state dict does not fit {what}:\n{report}{_hints(model, expected, sd)}")
    model.load_state_dict(sd, strict=True)
    return model
