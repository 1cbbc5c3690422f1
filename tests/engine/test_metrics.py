"""Metrics: FID, MMD (published recipe, chunked), MS-SSIM, WGAN-GP critic, HU histogram, anatomy,
MedicalNet weight loading and the per-folder helpers. Volumes are phantoms at 32^3 (fast on CPU)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import linalg
from scipy.ndimage import gaussian_filter

from prdit.data.phantom import generate_phantom
from prdit.metrics.anatomy import summarize_anatomy
from prdit.metrics.critic import CriticConfig, critic_wasserstein, pool_for_critic
from prdit.metrics.features import (
    FEATURE_DIM,
    WeightsError,
    build_default_extractor,
    build_extractor,
    load_medicalnet_weights,
    normalise_medicalnet_state_dict,
    resnet50,
)
from prdit.metrics.fid import feature_stats, fid, frechet_distance
from prdit.metrics.histogram import HUHistogram, hu_wasserstein
from prdit.metrics.kid import kid
from prdit.metrics.mmd import median_sq_distance, mmd_rbf
from prdit.metrics.msssim import MSSSIMConfig, ms_ssim, msssim_config

N_SET = 6
BLURS = (0.0, 0.3, 0.6, 0.9)


# --------------------------------------------------------------------------- shared fixtures
@pytest.fixture(scope="module")
def extractor():
    return build_default_extractor()


@pytest.fixture(scope="module")
def phantoms():
    real = np.stack([generate_phantom(i, size=32).array for i in range(N_SET)])
    other = np.stack([generate_phantom(100 + i, size=32).array for i in range(N_SET)])
    return real, other


@pytest.fixture(scope="module")
def blur_features(extractor, phantoms):
    """Features of the real set and of a second set blurred by increasing amounts."""
    real, other = phantoms
    feats_real = extractor.extract(real)
    shifted = []
    for sigma in BLURS:
        vols = np.stack([gaussian_filter(v, sigma) if sigma else v for v in other])
        shifted.append(extractor.extract(vols))
    return feats_real, shifted


# --------------------------------------------------------------------------- features
def test_default_extractor_is_fixed_and_labelled(extractor):
    again = build_default_extractor()
    assert again.identity == extractor.identity  # same seed -> same weights (hash in the id)
    assert extractor.identity.startswith("default:resnet50-seed0-")
    assert not extractor.comparable
    assert "not comparable with published numbers" in extractor.description
    x = torch.from_numpy(generate_phantom(3, size=32).array)[None]
    f1, f2 = extractor.extract(x), again.extract(x)
    assert f1.shape == (1, FEATURE_DIM) and f1.dtype == np.float64
    np.testing.assert_array_equal(f1, f2)
    assert np.all(np.isfinite(f1)) and f1.std() > 0


def test_default_network_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_default_extractor()
    np.testing.assert_array_equal(torch.rand(3), expected)


def test_preprocess_is_clip_then_zscore(extractor):
    vol = torch.linspace(-3000, 3000, 32**3).reshape(1, 32, 32, 32)
    x = extractor.preprocess(vol)
    assert x.shape == (1, 1, 32, 32, 32)
    assert abs(float(x.mean())) < 1e-5 and abs(float(x.std()) - 1) < 1e-4
    # values beyond the HU clip are equal after clipping
    assert float(x[0, 0, 0, 0, 0]) == float(x[0, 0, 0, 0, 1])


def test_architecture_is_medicalnet_resnet50():
    net = resnet50()
    sd = net.state_dict()
    assert tuple(sd["conv1.weight"].shape) == (64, 1, 7, 7, 7)
    assert net.conv1.stride == (2, 2, 2)
    assert [len(getattr(net, f"layer{i}")) for i in range(1, 5)] == [3, 4, 6, 3]
    assert net.layer3[0].conv2.dilation == (2, 2, 2) and net.layer3[0].conv2.stride == (1, 1, 1)
    assert net.layer4[0].conv2.dilation == (4, 4, 4) and net.layer4[0].conv2.stride == (1, 1, 1)
    assert tuple(sd["layer4.0.downsample.0.weight"].shape) == (2048, 1024, 1, 1, 1)


def test_medicalnet_weights_load_in_both_layouts(tmp_path, extractor):
    """Both published layouts: {'state_dict': {'module.' + name: ...}}, the 23dataset one with a
    conv_seg head; the loaded network gives exactly the features of the network that was saved."""
    source = extractor.network
    sd = {f"module.{k}": v for k, v in source.state_dict().items()}
    plain = tmp_path / "resnet_50.pth"
    torch.save({"state_dict": sd}, plain)
    with_head = dict(sd)
    with_head["module.conv_seg.0.weight"] = torch.zeros(32, 2048, 3, 3, 3)
    with_head["module.conv_seg.4.weight"] = torch.zeros(2, 32, 1, 1, 1)
    dataset23 = tmp_path / "resnet_50_23dataset.pth"
    torch.save({"state_dict": with_head, "epoch": 200}, dataset23)

    x = torch.from_numpy(generate_phantom(5, size=32).array)[None]
    expected = extractor.extract(x)
    for path in (plain, dataset23):
        ex = build_extractor(f"medicalnet:{path}")
        assert ex.comparable and ex.identity.startswith("medicalnet:")
        np.testing.assert_allclose(ex.extract(x), expected, rtol=1e-6, atol=1e-6)
    # a bare state dict without the DataParallel prefix is accepted too
    net, digest = load_medicalnet_weights(plain)
    assert len(digest) == 64


def test_medicalnet_bad_weights_give_clear_errors(tmp_path):
    sd = resnet50().state_dict()
    broken = {k: v for k, v in sd.items() if not k.startswith("layer4.2.")}
    broken["conv1.weight"] = torch.zeros(64, 3, 7, 7, 7)  # a 3-channel (video) ResNet
    with pytest.raises(WeightsError, match=r"missing layer4\.2\..*wrong shape conv1\.weight"):
        normalise_medicalnet_state_dict(broken, "x.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="junk.pth"):
        build_extractor(f"medicalnet:{junk}")
    listy = tmp_path / "list.pth"
    torch.save([1, 2, 3], listy)
    with pytest.raises(WeightsError, match="expected a dict"):
        build_extractor(f"medicalnet:{listy}")
    with pytest.raises(WeightsError, match="does not exist"):
        build_extractor(f"medicalnet:{tmp_path / 'missing.pth'}")
    with pytest.raises(WeightsError, match="unknown feature extractor"):
        build_extractor("inception")


# --------------------------------------------------------------------------- FID
def test_fid_of_a_set_with_itself_is_zero(blur_features):
    feats_real, _ = blur_features
    assert fid(feats_real, feats_real) == pytest.approx(0.0, abs=1e-6 * np.trace(np.cov(feats_real.T)))


def test_fid_matches_scipy_sqrtm_when_well_conditioned():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 16))
    b = rng.normal(size=(300, 16)) @ rng.normal(size=(16, 16)) * 0.5 + 0.3
    s1, s2 = feature_stats(a), feature_stats(b)
    covmean = linalg.sqrtm(s1.sigma @ s2.sigma).real
    diff = s1.mu - s2.mu
    expected = diff @ diff + np.trace(s1.sigma) + np.trace(s2.sigma) - 2 * np.trace(covmean)
    assert frechet_distance(s1, s2) == pytest.approx(expected, rel=1e-9)


def test_fid_sample_space_route_equals_covariance_route_with_fewer_samples_than_dims():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(20, 256)) @ rng.normal(size=(256, 256)) * 0.1
    b = rng.normal(size=(25, 256)) + 0.1
    value = fid(a, b)  # 20 / 25 samples in 256 dims: SVD of a 20 x 25 matrix
    assert math.isfinite(value) and value > 0
    assert value == pytest.approx(frechet_distance(feature_stats(a), feature_stats(b)), rel=1e-6)


def test_fid_and_mmd_grow_monotonically_with_blur(blur_features):
    feats_real, shifted = blur_features
    fids = [fid(feats_real, f) for f in shifted]
    mmds = [mmd_rbf(feats_real, f).mmd for f in shifted]
    assert all(a < b for a, b in zip(fids, fids[1:], strict=False)), fids
    assert all(a < b for a, b in zip(mmds, mmds[1:], strict=False)), mmds


# --------------------------------------------------------------------------- MMD
def _mmd_bruteforce(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """The reference evaluation's MMD, verbatim maths: full N x N x D tensors."""
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    d = (xt.unsqueeze(1) - xt.unsqueeze(0)).pow(2).sum(-1).view(-1)
    gamma = 1.0 / (2.0 * d.median().item())

    def k(a, b):
        return torch.exp(-gamma * (a.unsqueeze(1) - b.unsqueeze(0)).pow(2).sum(-1)).mean()

    mmd2 = k(xt, xt) + k(yt, yt) - 2 * k(xt, yt)
    return float(mmd2), gamma


@pytest.mark.parametrize("n,m,chunk", [(7, 5, 1), (8, 9, 3), (30, 41, 7), (31, 12, 1000)])
def test_chunked_mmd_equals_bruteforce(n, m, chunk):
    rng = np.random.default_rng(n * 100 + m)
    x = rng.normal(size=(n, 24))
    y = rng.normal(size=(m, 24)) * 1.2 + 0.2
    expected_mmd2, expected_gamma = _mmd_bruteforce(x, y)
    result = mmd_rbf(x, y, chunk=chunk)
    assert result.gamma == pytest.approx(expected_gamma, rel=1e-12)
    assert result.mmd2 == pytest.approx(expected_mmd2, rel=1e-9, abs=1e-12)
    assert result.mmd == pytest.approx(math.sqrt(max(expected_mmd2, 0.0)), rel=1e-9)


def test_kid_equals_the_written_out_u_statistic():
    rng = np.random.default_rng(3)
    r, f = rng.normal(size=(7, 5)), rng.normal(0.3, 1.0, size=(9, 5))

    def k(a, b):
        return (np.dot(a, b) / 5 + 1) ** 3

    rr = sum(k(r[i], r[j]) for i in range(7) for j in range(7) if i != j) / (7 * 6)
    ff = sum(k(f[i], f[j]) for i in range(9) for j in range(9) if i != j) / (9 * 8)
    rf = sum(k(a, b) for a in r for b in f) / (7 * 9)
    assert kid(r, f).value == pytest.approx(rr + ff - 2 * rf, rel=1e-12)


def test_kid_is_unbiased_at_small_n_where_fid_is_not():
    """Two sets from one distribution: KID averages ~0 at N = 4 and N = 32; FID falls with N."""
    rng = np.random.default_rng(0)
    kids, fids = {4: [], 32: []}, {4: [], 32: []}
    for n in kids:
        for _ in range(200):
            a, b = rng.normal(size=(n, 16)), rng.normal(size=(n, 16))
            kids[n].append(kid(a, b, subsets=0).value)
            fids[n].append(fid(a, b))
    shifted = kid(rng.normal(size=(32, 16)), rng.normal(0.5, 1.0, size=(32, 16)), subsets=0).value
    for n, values in kids.items():
        assert abs(np.mean(values)) < 3 * np.std(values) / np.sqrt(len(values)) + 1e-4, n
    assert shifted > 10 * np.std(kids[32]) / np.sqrt(200)
    assert np.mean(fids[4]) > 2 * np.mean(fids[32]) > 0
    with pytest.raises(ValueError, match="at least 2 volumes"):
        kid(np.zeros((1, 4)), np.zeros((3, 4)))
    spread = kid(rng.normal(size=(20, 4)), rng.normal(size=(20, 4)), subsets=10)
    assert spread.subset_size == 10 and spread.subset_std > 0


def test_mmd_median_counts_the_zero_diagonal_like_torch_median():
    x = np.array([[0.0], [1.0], [3.0]])  # squared distances 1, 9, 4 (twice each) and three zeros
    d = torch.from_numpy(x)
    full = (d.unsqueeze(1) - d.unsqueeze(0)).pow(2).sum(-1).view(-1)
    assert median_sq_distance(x) == full.median().item() == 1.0
    y = np.random.default_rng(0).normal(size=(2, 3))
    assert median_sq_distance(y) == 0.0  # 4 entries, two zeros: the lower median is 0


def test_mmd_of_a_set_with_itself_is_zero_and_rejects_bad_input():
    x = np.random.default_rng(2).normal(size=(10, 8))
    assert mmd_rbf(x, x).mmd == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="feature sizes differ"):
        mmd_rbf(x, x[:, :4])
    with pytest.raises(ValueError, match="NaN"):
        mmd_rbf(x, np.full((3, 8), np.nan))


# --------------------------------------------------------------------------- MS-SSIM
def _ms_ssim_full_kernel(x: torch.Tensor, y: torch.Tensor, cfg: MSSSIMConfig) -> torch.Tensor:
    """MONAI's compute_ms_ssim formulas with a full (non-separable) 3D Gaussian kernel."""
    k = cfg.kernel_size
    dist = torch.arange((1 - k) / 2, (1 + k) / 2, 1.0, dtype=torch.float64)
    g = torch.exp(-((dist / cfg.sigma) ** 2) / 2)
    g = g / g.sum()
    kern = (g[:, None, None] * g[None, :, None] * g[None, None, :])[None, None]
    c1, c2 = (cfg.k1 * cfg.data_range) ** 2, (cfg.k2 * cfg.data_range) ** 2
    x, y = x.double(), y.double()
    terms = []
    for level in range(len(cfg.betas)):
        mx, my = torch.nn.functional.conv3d(x, kern), torch.nn.functional.conv3d(y, kern)
        sxx = torch.nn.functional.conv3d(x * x, kern) - mx * mx
        syy = torch.nn.functional.conv3d(y * y, kern) - my * my
        sxy = torch.nn.functional.conv3d(x * y, kern) - mx * my
        cs = (2 * sxy + c2) / (sxx + syy + c2)
        ssim = (2 * mx * my + c1) / (mx**2 + my**2 + c1) * cs
        terms.append(torch.relu((ssim if level == len(cfg.betas) - 1 else cs).flatten(1).mean(1)))
        x, y = torch.nn.functional.avg_pool3d(x, 2), torch.nn.functional.avg_pool3d(y, 2)
    betas = torch.tensor(cfg.betas, dtype=torch.float64).view(-1, 1)
    return torch.prod(torch.stack(terms) ** betas, dim=0)


def test_msssim_of_identical_volumes_is_one(phantoms):
    real, _ = phantoms
    x = torch.from_numpy((np.clip(real[:2], -1000, 1000) + 1000) / 2000).float()
    np.testing.assert_array_equal(ms_ssim(x, x).numpy(), np.ones(2, dtype=np.float32))


def test_msssim_matches_full_kernel_reference_and_drops_with_noise(phantoms):
    real, other = phantoms
    a = torch.from_numpy((np.clip(real[:1], -1000, 1000) + 1000) / 2000).float()[:, None]
    b = torch.from_numpy((np.clip(other[:1], -1000, 1000) + 1000) / 2000).float()[:, None]
    cfg = msssim_config(tuple(a.shape))
    ref = _ms_ssim_full_kernel(a, b, cfg)
    np.testing.assert_allclose(ms_ssim(a, b, cfg).double().numpy(), ref.numpy(), rtol=1e-4)
    assert float(ms_ssim(a, b)) == pytest.approx(float(ms_ssim(b, a)), rel=1e-5)  # symmetric
    gen = torch.Generator().manual_seed(0)
    noisy = [(a + s * torch.randn(a.shape, generator=gen)).clamp(0, 1) for s in (0.02, 0.1, 0.3)]
    scores = [float(ms_ssim(a, b)) for b in noisy]
    assert 1.0 > scores[0] > scores[1] > scores[2] > 0.0


def test_msssim_scales_follow_volume_size():
    assert msssim_config((128, 128, 128)).betas == (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
    assert len(msssim_config((64, 64, 64)).betas) == 5
    small = msssim_config((32, 32, 32))
    assert len(small.betas) == 4 and sum(small.betas) == pytest.approx(1.0)
    assert len(msssim_config((16, 16, 16)).betas) == 3
    with pytest.raises(ValueError, match="too small"):
        msssim_config((2, 2, 2))


# --------------------------------------------------------------------------- critic
def test_critic_near_zero_for_one_set_and_large_for_phantoms_vs_noise():
    vols = np.stack([generate_phantom(i, size=16).array for i in range(24)])
    noise = np.random.default_rng(0).normal(-300, 500, (12, 16, 16, 16)).astype(np.float32)
    ph, nz = pool_for_critic(vols, 16), pool_for_critic(noise, 16)
    cfg = CriticConfig(size=16, iterations=50, width=8, batch_size=8, seed=0)
    same = critic_wasserstein(ph[:12], ph[12:], cfg)
    apart = critic_wasserstein(ph[:12], nz, cfg)
    assert same.n_train == (6, 6) and same.n_test == (6, 6)
    assert abs(same.wasserstein) < 0.05
    assert apart.wasserstein > 0.3
    assert apart.wasserstein > 10 * abs(same.wasserstein)


def test_critic_is_deterministic_with_a_seed():
    vols = pool_for_critic(np.stack([generate_phantom(i, size=16).array for i in range(8)]), 8)
    cfg = CriticConfig(size=8, iterations=5, width=4, batch_size=4, seed=3)
    assert critic_wasserstein(vols[:4], vols[4:], cfg) == critic_wasserstein(vols[:4], vols[4:], cfg)
    with pytest.raises(ValueError, match="at least 4"):
        critic_wasserstein(vols[:3], vols[4:], cfg)


# --------------------------------------------------------------------------- histogram / anatomy
def test_hu_histogram_wasserstein_is_the_hu_shift():
    rng = np.random.default_rng(0)
    vols = [rng.normal(-300, 120, (8, 8, 8)).round().astype(np.float32) for _ in range(3)]
    real, same, shifted = HUHistogram(), HUHistogram(), HUHistogram()
    for v in vols:
        real.add(v)
        same.add(v)
        shifted.add(v + 37)
    assert hu_wasserstein(real, same) == 0.0
    assert hu_wasserstein(real, shifted) == pytest.approx(37.0, abs=1e-9)
    assert shifted.mean() - real.mean() == pytest.approx(37.0)
    merged = real.merge(same)
    assert merged.total == 2 * real.total
    with pytest.raises(ValueError, match="NaN"):
        real.add(np.array([np.nan]))


def test_anatomy_summary_counts_generated_inside_real_range():
    keys = ("body_fraction", "lung_lr_balance")
    real = np.array([[0.4, 0.45], [0.5, 0.5], [0.45, np.nan]])
    fake = np.array([[0.42, 0.47], [0.9, 0.2], [0.5, np.nan], [0.4, 0.46]])
    s = summarize_anatomy(real, fake, keys)
    assert s["body_fraction"]["fake_in_real_range"] == pytest.approx(3 / 4)
    assert s["lung_lr_balance"]["fake_in_real_range"] == pytest.approx(2 / 4)  # NaN counts as outside
    assert s["lung_lr_balance"]["real_min"] == 0.45 and s["lung_lr_balance"]["real_undefined"] == 1
    assert s["body_fraction"]["real_mean"] == pytest.approx(0.45)


def test_noise_volumes_have_no_lungs():
    """Low-HU speckle of a noise volume is not lung (it scored 'in range' on lung fraction before)."""
    from prdit.data.anatomy import measure_anatomy, phantom_reference_ranges
    from prdit.data.phantom import generate_phantom

    ranges = phantom_reference_ranges(range(12), size=32)
    rng = np.random.default_rng(0)
    for mean in (-500.0, -300.0, -100.0):
        for sd in (300.0, 600.0, 800.0):
            noise = rng.normal(mean, sd, (32, 32, 32)).astype(np.float32)
            measures = measure_anatomy(noise)
            assert measures["lung_fraction"] == 0.0, (mean, sd)
            low, high = ranges["lung_fraction"]
            assert not low <= measures["lung_fraction"] <= high
    for seed in (0, 5):  # real (phantom) lungs are kept, thin airways included
        assert ranges["lung_fraction"][0] <= measure_anatomy(generate_phantom(seed, 32))["lung_fraction"]


def test_the_critic_says_when_its_number_is_weak():
    import torch

    from prdit.metrics.critic import CriticConfig, critic_wasserstein
    from prdit.metrics.report import table_rows

    gen = torch.Generator().manual_seed(0)
    real = torch.rand(8, 16, 16, 16, generator=gen) * 2 - 1
    fake = torch.rand(8, 16, 16, 16, generator=gen) * 2 - 1
    result = critic_wasserstein(real, fake, CriticConfig(size=16, iterations=60))
    assert result.n_test == (4, 4) and any("held-out volumes per set" in w for w in result.warnings)
    assert result.train_gap == result.train_estimate - result.wasserstein
    report = {"metrics": {"critic": {"value": result.wasserstein, **result.to_dict()}}}
    (row,) = table_rows(report)
    assert "WARNING: only 4 held-out volumes per set" in row.note
