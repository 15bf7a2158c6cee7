"""calibrate.py: the histogram-matching lookup table, checked by hand on tiny inputs."""
import numpy as np
import pytest

from spikediff_min import calibrate


def img(values, c=1):
    """uint8 [N, c, 1, 1] from a list of pixel values (the same in each channel)."""
    a = np.asarray(values, np.uint8).reshape(-1, 1, 1, 1)
    return np.repeat(a, c, axis=1)


def test_two_levels_map_to_the_real_two_levels():
    # half the decoded pixels are 10 and half 200; the real ones are half 0 and half 255
    lut = calibrate.fit(img([10] * 50 + [200] * 50), img([0] * 50 + [255] * 50))
    assert lut.shape == (1, 256) and lut.dtype == np.uint8
    assert lut[0, 10] == 0 and lut[0, 200] == 255
    assert lut[0, 0] == 0 and lut[0, 255] == 255           # levels below / above everything seen


def test_same_distribution_is_the_identity_on_seen_levels():
    x = img(np.random.default_rng(0).integers(0, 256, 5000))
    lut = calibrate.fit(x, x)
    seen = np.unique(x)
    assert np.array_equal(lut[0, seen], seen)


def test_monotone_and_matches_the_real_black_share():
    rng = np.random.default_rng(1)
    real = np.where(rng.random(20000) < 0.8, 0, rng.integers(100, 256, 20000))   # 80% black
    decoded = np.clip(real + rng.normal(0, 12, 20000), 0, 255)                    # grey speckle
    real, decoded = img(real), img(decoded)
    lut = calibrate.fit(decoded, real)
    assert np.all(np.diff(lut[0].astype(int)) >= 0)
    out = calibrate.apply(decoded, lut)
    assert (decoded == 0).mean() < 0.5 < 0.75 < (out == 0).mean() < 0.85


def test_channels_are_fitted_separately():
    decoded = np.concatenate([img([100] * 10, c=1), img([100] * 10, c=1)], axis=1)   # [10, 2, 1, 1]
    real = np.concatenate([img([0] * 10), img([255] * 10)], axis=1)
    out = calibrate.apply(decoded, calibrate.fit(decoded, real))
    assert np.all(out[:, 0] == 0) and np.all(out[:, 1] == 255)


def test_bad_input_is_refused_with_a_reason():
    with pytest.raises(ValueError, match="uint8"):
        calibrate.fit(np.zeros((2, 1, 4, 4), np.float32), img([0, 1]))
    with pytest.raises(ValueError, match="channel"):
        calibrate.fit(img([0, 1], c=3), img([0, 1]))
    with pytest.raises(ValueError, match="lut"):
        calibrate.apply(img([0, 1], c=3), np.zeros((1, 256), np.uint8))
