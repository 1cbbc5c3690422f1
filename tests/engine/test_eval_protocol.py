"""The published evaluation protocols: a fixed small network fed through the published recipe as
its description reads (written here with numpy) and through `prdit eval --protocol` gives the same
features (so the same FID), MS-SSIM is averaged over all pairs with data range 1, and
`comparable_with_published` is true only when every condition holds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prdit.data.io import write_nifti
from prdit.metrics.features import FeatureExtractor
from prdit.metrics.fid import fid
from prdit.metrics.msssim import ms_ssim, msssim_config
from prdit.metrics.pipeline import EvalSettings, evaluate_folders
from prdit.volume import Volume


class TinyNet(torch.nn.Module):
    """A fixed small 3D network: 4x4x4 strided convolution, ReLU, global average (8 features)."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(7)
        self.conv = torch.nn.Conv3d(1, 8, 4, stride=4)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=g))
            self.conv.bias.copy_(torch.randn(8, generator=g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x)).mean(dim=(2, 3, 4))


def _ct(seed: int, size: int) -> np.ndarray:
    """A CT-like HU volume: air, a body of soft tissue with noise, some dense bone."""
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[:size, :size, :size] / size - 0.5
    body = (x / 0.4) ** 2 + (y / 0.3) ** 2 < 1
    hu = np.where(
        body, 40.0 + 30 * rng.standard_normal((size,) * 3), -1000.0 + 5 * rng.standard_normal((size,) * 3)
    )
    hu[body & (np.abs(x) < 0.05 + 0.02 * seed)] = 700.0 + 200 * rng.random()
    return hu.astype(np.float32)


def _reference_lidc(hu: np.ndarray) -> np.ndarray:
    """The published LIDC recipe from its description: clip below -1000 HU and above the 0.999
    quantile, min-max to [0, 1], 2x - 1; then 256^3 -> 128^3 by 2x average pooling."""
    x = np.clip(hu.astype(np.float64), -1000.0, np.quantile(hu, 0.999))
    x = 2.0 * (x - x.min()) / (x.max() - x.min()) - 1.0
    n = x.shape[0] // 2
    return x.reshape(n, 2, n, 2, n, 2).mean(axis=(1, 3, 5))


def _reference_rad(hu: np.ndarray) -> np.ndarray:
    x = (np.clip(hu.astype(np.float64), -1000.0, 1000.0) + 1000.0) / 2000.0
    n = x.shape[0] // 2
    return x.reshape(n, 2, n, 2, n, 2).mean(axis=(1, 3, 5))


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("protocol")
    vols = {}
    for label, seeds in (("real", (0, 1, 2)), ("fake", (10, 11, 12))):
        (root / label).mkdir()
        vols[label] = []
        for s in seeds:
            hu = _ct(s, 256)
            vols[label].append(hu)
            write_nifti(Volume(hu, (1.0, 1.0, 1.0)), root / label / f"{label}_{s:03d}.nii")
    return root, vols


@pytest.mark.parametrize(
    "protocol, reference", [("published-lidc", _reference_lidc), ("published-rad", _reference_rad)]
)
def test_published_protocol_features_and_msssim_follow_the_recipe(folders, protocol, reference):
    root, vols = folders
    net = TinyNet().eval()
    extractor = FeatureExtractor(network=net, identity="tiny", comparable=False, description="tiny net")
    settings = EvalSettings(metrics=("fid", "msssim"), protocol=protocol, use_cache=False)
    report = evaluate_folders(root / "real", root / "fake", settings, extractor=extractor)

    def feats(label):
        x = torch.as_tensor(np.stack([reference(v) for v in vols[label]]), dtype=torch.float32)[:, None]
        with torch.no_grad():
            return net(x).double().numpy()

    expected = fid(feats("real"), feats("fake"))
    assert report["metrics"]["fid"]["value"] == pytest.approx(expected, rel=1e-4, abs=1e-6)
    # MS-SSIM: every pair of distinct generated volumes, on the recipe's scale, data range 1
    prepared = [torch.as_tensor(reference(v), dtype=torch.float32)[None, None] for v in vols["fake"]]
    cfg = msssim_config(tuple(prepared[0].shape))
    assert cfg.data_range == 1.0 and len(cfg.betas) == 5  # 128^3: the standard five scales
    pairs = [(a, b) for a in range(3) for b in range(a + 1, 3)]
    values = [float(ms_ssim(prepared[a], prepared[b], cfg)[0]) for a, b in pairs]
    ms = report["metrics"]["msssim"]
    assert ms["fake_pairs"] == 3 and "all pairs" in ms["input"]
    assert ms["fake_mean"] == pytest.approx(np.mean(values), abs=2e-3)  # float16 storage of the volumes
    assert report["real"]["shape"] == [128, 128, 128]
    # not comparable: a tiny network, not MedicalNet, and 3 samples, not 1000; each reason is named
    assert report["comparable_with_published"] is False
    reasons = " ".join(report["not_comparable_because"])
    assert "MedicalNet" in reasons and "3 generated volumes, not 1000" in reasons
    assert report["protocol"]["name"] == protocol


def test_protocol_settings_are_checked():
    with pytest.raises(ValueError, match="published-lidc evaluates at 128"):
        EvalSettings(protocol="published-lidc", size=64)
    with pytest.raises(ValueError, match="unknown --protocol"):
        EvalSettings(protocol="published-brats")


def test_a_volume_that_cannot_be_pooled_to_128_is_named(tmp_path):
    from prdit.metrics.folders import FolderError

    for label in ("real", "fake"):
        (tmp_path / label).mkdir()
        for s in range(2):
            write_nifti(Volume(_ct(s, 96), (1.0, 1.0, 1.0)), tmp_path / label / f"v{s}.nii.gz")
    extractor = FeatureExtractor(network=TinyNet(), identity="tiny", comparable=False, description="tiny")
    settings = EvalSettings(metrics=("fid",), protocol="published-rad", use_cache=False)
    with pytest.raises(FolderError, match=r"v[01]\.nii\.gz.*96x96x96.*multiple of 128"):
        evaluate_folders(tmp_path / "real", tmp_path / "fake", settings, extractor=extractor)
