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


def test_per_pixel_tables_see_only_their_own_position():
    # [N, 1, 1, 2]: the left pixel's decoded 100 is black in the real data, the right one's is white
    decoded = np.full((10, 1, 1, 2), 100, np.uint8)
    real = np.zeros((10, 1, 1, 2), np.uint8)
    real[:, 0, 0, 1] = 255
    lut = calibrate.fit(decoded, real, per_pixel=True)
    assert lut.shape == (1, 1, 2, 256)
    out = calibrate.apply(decoded, lut)
    assert np.all(out[:, 0, 0, 0] == 0) and np.all(out[:, 0, 0, 1] == 255)
    shared = calibrate.apply(decoded, calibrate.fit(decoded, real))     # one table: both get the same value
    assert np.all(shared[:, 0, 0, 0] == shared[:, 0, 0, 1])


def test_per_pixel_equals_the_one_table_fit_of_each_position():
    rng = np.random.default_rng(2)
    decoded = rng.integers(0, 256, (300, 2, 3, 3)).astype(np.uint8)
    real = (rng.integers(0, 256, (200, 2, 3, 3)) ** 2 // 255).astype(np.uint8)
    lut = calibrate.fit(decoded, real, per_pixel=True)
    out = calibrate.apply(decoded, lut)
    for c, i, j in [(0, 0, 0), (1, 2, 1)]:
        one = calibrate.fit(decoded[:, c:c + 1, i:i + 1, j:j + 1], real[:, c:c + 1, i:i + 1, j:j + 1])
        assert np.array_equal(lut[c, i, j], one[0])
        assert np.array_equal(out[:, c, i, j], one[0][decoded[:, c, i, j]])


def test_bad_input_is_refused_with_a_reason():
    with pytest.raises(ValueError, match="uint8"):
        calibrate.fit(np.zeros((2, 1, 4, 4), np.float32), img([0, 1]))
    with pytest.raises(ValueError, match="channel"):
        calibrate.fit(img([0, 1], c=3), img([0, 1]))
    with pytest.raises(ValueError, match="lut"):
        calibrate.apply(img([0, 1], c=3), np.zeros((1, 256), np.uint8))
    with pytest.raises(ValueError, match="image size"):
        calibrate.fit(np.zeros((2, 1, 4, 4), np.uint8), np.zeros((2, 1, 5, 5), np.uint8), per_pixel=True)
    with pytest.raises(ValueError, match="lut"):
        calibrate.apply(np.zeros((2, 1, 4, 4), np.uint8), np.zeros((1, 5, 5, 256), np.uint8))
