"""3D ResNet-50 feature extractor with the MedicalNet architecture (2048-d pooled features).

The paper's FID and MMD are computed on features of Tencent MedicalNet's 3D ResNet-50
(Chen et al., "Med3D", 2019). This module rebuilds that network so that a user-supplied
MedicalNet checkpoint loads without the original code:

* conv1 7x7x7 stride 2 (64 channels), BN, ReLU, max-pool 3 stride 2;
* Bottleneck layers [3, 4, 6, 3] with widths 64/128/256/512 (x4 expansion); layer2 has stride 2,
  layer3 and layer4 keep stride 1 and use dilation 2 and 4 (MedicalNet's segmentation-friendly
  variant); projection shortcuts ("type B": 1x1x1 conv + BN);
* global average pooling of layer4's 2048 channels -> one 2048-d vector per volume.

Parameter names match MedicalNet's ``models/resnet.py`` exactly (``conv1``, ``bn1``,
``layer{1..4}.{n}.conv{1,2,3}``, ``.downsample.{0,1}``), so checkpoints load by name.

Without weights, :func:`build_default_extractor` gives a *fixed-seed randomly initialised* copy of
the same network. Its numbers are self-consistent (same seed -> same weights -> same features) but
have nothing to do with MedicalNet's: reports label them "not comparable with published numbers".
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

FEATURE_DIM = 2048
DEFAULT_SEED = 0
DEFAULT_HU_CLIP = (-1000.0, 1000.0)
NOT_COMPARABLE = "not comparable with published numbers"
# Bumped whenever the built-in default's construction changes, so stale caches are never reused.
_DEFAULT_VERSION = 1


# --------------------------------------------------------------------------- architecture
class Bottleneck(nn.Module):
    """MedicalNet's 3D bottleneck block: 1x1x1 -> 3x3x3 (dilated) -> 1x1x1, x4 expansion."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        dilation: int = 1,
        downsample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(
            planes, planes, kernel_size=3, stride=stride, dilation=dilation, padding=dilation, bias=False
        )
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, planes * 4, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm3d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + residual)


class MedicalNetResNet(nn.Module):
    """MedicalNet 3D ResNet trunk (no segmentation head); ``forward`` returns pooled features."""

    def __init__(self, layers: tuple[int, int, int, int] = (3, 4, 6, 3), in_channels: int = 1) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv3d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], dilation=2)
        self.layer4 = self._make_layer(512, layers[3], dilation=4)
        # MedicalNet's initialisation: Kaiming-normal (fan_out) convs, BN weight 1 / bias 0.
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(
                nn.Conv3d(
                    self.inplanes, planes * Bottleneck.expansion, kernel_size=1, stride=stride, bias=False
                ),
                nn.BatchNorm3d(planes * Bottleneck.expansion),
            )
        layers = [Bottleneck(self.inplanes, planes, stride=stride, dilation=dilation, downsample=downsample)]
        self.inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self.inplanes, planes, dilation=dilation) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """layer4 output ``[B, 2048, d, h, w]`` (MedicalNet's trunk output, before ``conv_seg``)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Global-average-pooled features ``[B, 2048]``."""
        return self.feature_map(x).mean(dim=(2, 3, 4))


def resnet50() -> MedicalNetResNet:
    """The MedicalNet ResNet-50 trunk (layers [3, 4, 6, 3], one input channel)."""
    return MedicalNetResNet((3, 4, 6, 3), in_channels=1)


# --------------------------------------------------------------------------- weights
class WeightsError(ValueError):
    """A weights file that is not a MedicalNet ResNet-50 checkpoint (message says what was expected)."""


_IGNORED_PREFIXES = ("conv_seg.", "fc.")


def _extract_state_dict(obj: object, path: Path) -> Mapping[str, torch.Tensor]:
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(k, str) for k in obj):
        raise WeightsError(
            f"{path}: not a MedicalNet checkpoint: expected a dict {{'state_dict': {{name: tensor}}}} "
            f"(resnet_50.pth / resnet_50_23dataset.pth) or a plain state dict, got {type(obj).__name__}"
        )
    return obj


def normalise_medicalnet_state_dict(
    state: Mapping[str, torch.Tensor], path: Path | str = "<weights>"
) -> dict:
    """Map a MedicalNet checkpoint's names onto :class:`MedicalNetResNet` and check every tensor.

    Accepts keys with or without the ``module.`` prefix that ``nn.DataParallel`` adds (both
    published files have it), drops the segmentation head (``conv_seg.*``) and ``num_batches_tracked``
    counters, and raises :class:`WeightsError` listing what is missing, unexpected or mis-shaped.
    """
    path = Path(path)
    cleaned: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = key[len("module.") :] if key.startswith("module.") else key
        if name.startswith(_IGNORED_PREFIXES) or name.endswith("num_batches_tracked"):
            continue
        if not isinstance(value, torch.Tensor):
            raise WeightsError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor")
        cleaned[name] = value
    expected = {
        k: v.shape for k, v in resnet50().state_dict().items() if not k.endswith("num_batches_tracked")
    }
    missing = sorted(set(expected) - set(cleaned))
    unexpected = sorted(set(cleaned) - set(expected))
    wrong = sorted(k for k in set(expected) & set(cleaned) if tuple(cleaned[k].shape) != tuple(expected[k]))
    if missing or unexpected or wrong:

        def _few(names: list[str]) -> str:
            return ", ".join(names[:6]) + (f" ... ({len(names)} in all)" if len(names) > 6 else "")

        problems = []
        if missing:
            problems.append(f"missing {_few(missing)}")
        if unexpected:
            problems.append(f"unexpected {_few(unexpected)}")
        if wrong:
            problems.append(
                "wrong shape "
                + _few([f"{k} {tuple(cleaned[k].shape)} (expected {tuple(expected[k])})" for k in wrong])
            )
        raise WeightsError(
            f"{path}: not a MedicalNet ResNet-50 checkpoint ({'; '.join(problems)}). Expected the "
            f"{len(expected)} tensors of MedicalNet's resnet_50 "
            f"(conv1.weight {tuple(expected['conv1.weight'])}, "
            "layer1..layer4 Bottlenecks [3, 4, 6, 3], optional 'module.' prefix, optional conv_seg head), "
            "as in resnet_50.pth or resnet_50_23dataset.pth from Tencent/MedicalNet."
        )
    return cleaned


def load_medicalnet_weights(path: str | Path) -> tuple[MedicalNetResNet, str]:
    """Build the ResNet-50 and load a MedicalNet checkpoint; returns ``(model, sha256 of the file)``.

    Loads with ``torch.load(weights_only=True)``: a checkpoint cannot run code.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"MedicalNet weights file {path} does not exist")
    digest = _sha256_file(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, zip errors, unsupported globals...
        raise WeightsError(
            f"{path}: cannot be read as a PyTorch checkpoint with weights_only=True: {exc}"
        ) from exc
    state = normalise_medicalnet_state_dict(_extract_state_dict(obj, path), path)
    model = resnet50()
    model.load_state_dict(state, strict=False)  # strict on the names we checked; counters may be absent
    return model.eval(), digest


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _sha256_state(model: nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def build_default_network(seed: int = DEFAULT_SEED) -> MedicalNetResNet:
    """The built-in default: MedicalNet's ResNet-50 with its own initialisation from ``seed``.

    The global RNG is left untouched (``fork_rng``). BatchNorm keeps its initial statistics
    (running mean 0, variance 1, weight 1, bias 0), so in eval mode every BN is the identity up to
    ``1/sqrt(1 + eps)``: the features are a fixed random non-linear projection of the volume.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = resnet50()
    return model.eval()


# --------------------------------------------------------------------------- extractor
@dataclass
class FeatureExtractor:
    """A network plus the input recipe; ``extract(volumes_hu)`` -> ``[B, 2048]`` float64 numpy.

    Input recipe (MedicalNet's): HU clipped to ``hu_clip``, then a per-volume z-score (zero mean,
    unit variance over all voxels). MedicalNet's training code z-scored the non-zero voxels and
    filled zero voxels with random noise; a deterministic z-score over the whole volume is used
    here so features are reproducible.
    """

    network: MedicalNetResNet
    identity: str  # "medicalnet:<sha256>" or "default:resnet50-seed<seed>-v<version>-<sha12>"
    comparable: bool  # True only for real MedicalNet weights
    description: str
    hu_clip: tuple[float, float] = DEFAULT_HU_CLIP
    device: torch.device = torch.device("cpu")
    #: the input recipe (:func:`prdit.metrics.protocol.scale_volumes`): "zscore" (ours, MedicalNet's
    #: normalisation), or the published evaluation's "lidc" ([-1, 1] min-max) / "rad" ([0, 1])
    intensity: str = "zscore"

    def to(self, device: str | torch.device) -> FeatureExtractor:
        self.device = torch.device(device)
        self.network.to(self.device)
        return self

    @property
    def cache_key(self) -> str:
        """Everything that changes the features: weights and input recipe."""
        return f"{self.identity}|clip={self.hu_clip[0]:g},{self.hu_clip[1]:g}|{self.intensity}"

    def preprocess(self, volumes_hu: torch.Tensor) -> torch.Tensor:
        """``[B, D, H, W]`` HU -> ``[B, 1, D, H, W]`` as the recipe says (default: clipped and
        z-scored per volume)."""
        from prdit.metrics.protocol import scale_volumes

        return scale_volumes(self.intensity, volumes_hu.to(self.device), self.hu_clip).unsqueeze(1)

    @torch.no_grad()
    def extract(self, volumes_hu: np.ndarray | torch.Tensor, prepared: bool = False) -> np.ndarray:
        """Features of a batch of HU volumes ``[B, D, H, W]`` (any D, H, W >= 16); ``prepared``:
        the batch is already the network's input (a published protocol's scaled, pooled volumes)."""
        x = torch.as_tensor(volumes_hu)
        if x.ndim == 3:
            x = x.unsqueeze(0)
        if x.ndim != 4:
            raise ValueError(f"feature extraction needs [B, D, H, W] volumes, got shape {tuple(x.shape)}")
        if min(x.shape[1:]) < 16:
            raise ValueError(
                f"volumes must be at least 16 voxels per axis for the ResNet, got {tuple(x.shape[1:])}"
            )
        self.network.eval()
        x_in = x.to(self.device, torch.float32).unsqueeze(1) if prepared else self.preprocess(x)
        feats = self.network(x_in)
        return feats.double().cpu().numpy()


def build_default_extractor(
    seed: int = DEFAULT_SEED, hu_clip: tuple[float, float] = DEFAULT_HU_CLIP
) -> FeatureExtractor:
    """Fixed-seed random ResNet-50: usable anywhere, comparable only with itself."""
    net = build_default_network(seed)
    digest = _sha256_state(net)[:12]
    return FeatureExtractor(
        network=net,
        identity=f"default:resnet50-seed{seed}-v{_DEFAULT_VERSION}-{digest}",
        comparable=False,
        description=(
            f"built-in default: MedicalNet ResNet-50 architecture, random initialisation with seed {seed}, "
            f"BatchNorm at initial statistics ({NOT_COMPARABLE})"
        ),
        hu_clip=hu_clip,
    )


def build_medicalnet_extractor(
    path: str | Path, hu_clip: tuple[float, float] = DEFAULT_HU_CLIP
) -> FeatureExtractor:
    """MedicalNet ResNet-50 with user-supplied weights: the paper's feature space."""
    net, digest = load_medicalnet_weights(path)
    return FeatureExtractor(
        network=net,
        identity=f"medicalnet:{digest}",
        comparable=True,
        description=f"MedicalNet ResNet-50 weights {Path(path).name} (sha256 {digest[:12]})",
        hu_clip=hu_clip,
    )


def build_extractor(
    spec: str, *, seed: int = DEFAULT_SEED, hu_clip: tuple[float, float] = DEFAULT_HU_CLIP
) -> FeatureExtractor:
    """Parse ``"default"`` or ``"medicalnet:PATH"`` (the ``--features`` option)."""
    spec = spec.strip()
    if spec == "default":
        return build_default_extractor(seed, hu_clip)
    if spec.startswith("medicalnet:"):
        path = spec[len("medicalnet:") :]
        if not path:
            raise WeightsError(
                "--features medicalnet:PATH needs the path of resnet_50.pth or resnet_50_23dataset.pth"
            )
        return build_medicalnet_extractor(path, hu_clip)
    raise WeightsError(f"unknown feature extractor {spec!r}: use 'default' or 'medicalnet:PATH'")
