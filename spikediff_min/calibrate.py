"""Output calibration (ours, not in the paper): a monotone 256-level lookup table on decoded pixels.

What it fixes: the VQ-SVAE is trained on MSE, whose optimum where a pixel could be ink or
background is grey. Its outputs therefore have a different pixel-intensity distribution from the
data: on MNIST 56.8% of reconstructed pixels are exactly 0 against 80.7% of real ones (faint speckle on
the background), and strokes are less saturated. Inception notices: on 2,000 MNIST test images the
reconstruction FID-2k drops from 21.5 to 8.7 when only the intensity histogram is matched to the
real one (benchmarks/calibration.py, benchmarks/README.md).

The calibration is histogram matching fitted once on the *training* split: for each decoded level
v in 0..255, the real pixel value at the same quantile,

    lut[v] = Q_real( F_decoded(v) ),   F_decoded(v) = P(d < v) + P(d = v) / 2   (mid-rank CDF)

per channel. It is monotone (order of intensities is kept: no pixel becomes darker than a pixel
that was darker before), elementwise (it sees one pixel at a time, no spatial context) and costs
one table lookup per pixel: no synaptic operation, like the decoder's tanh it follows. The spiking
decoder is unchanged, so generation stays fully spiking up to the analog readout.

    lut = fit(decoded_train_uint8, real_train_uint8)      # uint8 [C, 256]
    lut = fit(decoded, real, per_pixel=True)              # uint8 [C, H, W, 256]: one table per position
    images = apply(decoded_uint8, lut)                    # same shape, uint8
"""
import numpy as np


def _match(counts, real_sorted):
    """Histogram matching for a batch of independent channels: counts float [P, 256] of decoded levels,
    real_sorted uint8 [M, P] (each column sorted) -> lut uint8 [P, 256]."""
    below = np.concatenate([np.zeros((len(counts), 1)), np.cumsum(counts, 1)[:, :-1]], 1)   # pixels < v
    cdf = (below + counts / 2) / counts.sum(1, keepdims=True)                          # mid-rank F(v)
    q = np.round(cdf * (len(real_sorted) - 1)).astype(np.int64)                      # a valid row index
    return np.take_along_axis(real_sorted, q.T, 0).T                                  # monotone in v


def fit(decoded, real, per_pixel=False):
    """uint8 [N, C, H, W] decoded (reconstructed) training images and uint8 [M, C, H, W] real ones
    -> lut uint8 [C, 256]: level v of channel c maps to lut[c, v]. per_pixel=True (ours, an
    ablation in benchmarks/calibration.py): one table per pixel position, lut uint8 [C, H, W, 256],
    the same matching done on each position's own N decoded and M real values."""
    decoded, real = np.asarray(decoded), np.asarray(real)
    for name, a in (("decoded", decoded), ("real", real)):
        if a.dtype != np.uint8 or a.ndim != 4:
            raise ValueError(f"{name} must be uint8 images [N, C, H, W], got {a.dtype} {a.shape}")
    if decoded.shape[1] != real.shape[1]:
        raise ValueError(f"channel counts differ: decoded {decoded.shape[1]}, real {real.shape[1]}")
    if per_pixel and decoded.shape[2:] != real.shape[2:]:
        raise ValueError(f"a per-pixel table needs one image size: decoded {decoded.shape[2:]}, real {real.shape[2:]}")
    N, C = decoded.shape[:2]
    if per_pixel:
        d, r = decoded.reshape(N, -1), real.reshape(len(real), -1)          # [N, P], P = C*H*W
    else:
        d = decoded.transpose(0, 2, 3, 1).reshape(-1, C)                     # [N*H*W, C]
        r = real.transpose(0, 2, 3, 1).reshape(-1, C)
    P = d.shape[1]
    counts = np.bincount((np.arange(P) * 256 + d.astype(np.int64)).ravel(), minlength=P * 256)
    lut = _match(counts.reshape(P, 256).astype(np.float64), np.sort(r, 0))  # [P, 256]
    return lut.reshape(*decoded.shape[1:], 256) if per_pixel else lut


def apply(images, lut):
    """uint8 images [N, C, H, W] -> the same through lut [C, 256] (or [C, H, W, 256], per pixel)."""
    images, lut = np.asarray(images), np.asarray(lut)
    if images.dtype != np.uint8 or images.ndim != 4 or lut.shape not in ((images.shape[1], 256), (*images.shape[1:], 256)):
        raise ValueError(f"need uint8 images [N, C, H, W] and a lut [C, 256] or [C, H, W, 256]; got "
                         f"{images.dtype} {images.shape} and {lut.shape}")
    where = np.indices(images.shape[1:], sparse=True)[:lut.ndim - 1]   # each pixel's channel (, row, column)
    return lut[(*where, images)]                                        # [N, C, H, W]
