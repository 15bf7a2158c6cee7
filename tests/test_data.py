"""Tests for spikediff_min.data: every parser on small synthetic files in the real formats, every
bad-input case, and the real MNIST / Fashion-MNIST files. No test touches the network."""
import gzip
import io
import os
import pickle
import struct
import tarfile
import urllib.request
import zipfile

import numpy as np
import pytest
import torch

from spikediff_min import data
from spikediff_min.data import DatasetError, load_arrays

REAL_DATA = os.environ.get("SPIKEDIFF_DATA")  # read before the fixture below clears it


class _NoNetwork(OSError):
    pass


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No network, no $SPIKEDIFF_DATA, and a private empty cache for every test."""
    def no_network(*a, **k):
        raise _NoNetwork("network disabled in tests")
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.delenv("SPIKEDIFF_DATA", raising=False)
    monkeypatch.setenv("SPIKEDIFF_CACHE", str(tmp_path / "cache"))


# ---------------------------------------------------------------- writers in the real formats
def idx_bytes(arr, magic=None):
    arr = np.asarray(arr, dtype=np.uint8)
    magic = (0x800 | arr.ndim) if magic is None else magic
    return struct.pack(">I", magic) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def write(path, raw, gz=True):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def synth(n, h=5, w=7, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, h, w), dtype=np.uint8), rng.integers(0, classes, n).astype(np.uint8)


def write_idx_split(folder, split, x, y, gz=True):
    img, lab = data._IDX[split]
    ext = ".gz" if gz else ""
    write(folder / (img + ext), idx_bytes(x), gz)
    write(folder / (lab + ext), idx_bytes(y), gz)


def letter_image():
    """Asymmetric upright 'L'-like image, [H=6, W=4]."""
    a = np.zeros((6, 4), np.uint8)
    a[:, 0] = 255
    a[5, :] = 128
    a[0, 3] = 7
    return a


def cifar_batch_bytes(x, labels):
    d = {b"batch_label": b"synthetic", b"labels": list(map(int, labels)),
         b"data": x.reshape(len(x), 3072), b"filenames": [b"f%d.png" % i for i in range(len(x))]}
    return pickle.dumps(d, protocol=2)


def cifar_synth(seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (3, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, 3)


def write_cifar_tar(path, batches):
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as t:
        for name, raw in batches.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            t.addfile(info, io.BytesIO(raw))


def all_cifar():
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    return {n: cifar_synth(i) for i, n in enumerate(names)}


# ---------------------------------------------------------------- parsers on synthetic files
@pytest.mark.parametrize("gz", [True, False])
def test_idx_gz_and_raw(tmp_path, gz):
    x, y = synth(11)
    write_idx_split(tmp_path / "kmnist", "test", x, y, gz)
    xi, yi = load_arrays("kmnist", "test", root=tmp_path, download=False)
    assert xi.shape == (11, 1, 5, 7) and xi.dtype == np.uint8
    assert yi.shape == (11,) and yi.dtype == np.int64
    np.testing.assert_array_equal(xi[:, 0], x)  # no transposition for plain IDX
    np.testing.assert_array_equal(yi, y)
    with pytest.raises(ValueError):  # cached arrays are shared, so read-only
        xi[0, 0, 0, 0] = 1


def test_search_order_root_then_env_then_cache(tmp_path, monkeypatch):
    for i, place in enumerate(["root", "env", "cache"]):
        write_idx_split(tmp_path / place / "fashion-mnist", "train", *synth(3 + i, seed=i))
    monkeypatch.setenv("SPIKEDIFF_DATA", str(tmp_path / "env"))
    assert len(load_arrays("fmnist", "train", root=tmp_path / "root", download=False)[0]) == 3
    assert len(load_arrays("fmnist", "train", root=tmp_path / "nothing", download=False)[0]) == 4
    monkeypatch.delenv("SPIKEDIFF_DATA")
    assert len(load_arrays("fmnist", "train", download=False)[0]) == 5  # $SPIKEDIFF_CACHE


def test_letters_extracted_transposed_and_label_shift(tmp_path):
    a = letter_image()
    x = np.stack([a, 255 - a, a])
    y = np.array([1, 26, 13], np.uint8)
    stored = x.transpose(0, 2, 1)  # EMNIST stores images transposed: [N, W, H]
    folder = tmp_path / "emnist"
    write(folder / "emnist-letters-train-images-idx3-ubyte.gz", idx_bytes(stored))
    write(folder / "emnist-letters-train-labels-idx1-ubyte", idx_bytes(y), gz=False)
    xi, yi = load_arrays("letters", "train", root=tmp_path, download=False)
    assert xi.shape == (3, 1, 6, 4)
    np.testing.assert_array_equal(xi[:, 0], x)  # upright again
    assert xi[0, 0, 5, 3] == 128 and xi[0, 0, 0, 3] == 7 and xi[0, 0, 0, 1] == 0
    np.testing.assert_array_equal(yi, [0, 25, 12])


def test_letters_from_official_zip(tmp_path):
    x = np.stack([letter_image()] * 2)
    y = np.array([2, 5], np.uint8)
    (tmp_path / "emnist").mkdir()
    with zipfile.ZipFile(tmp_path / "emnist" / "gzip.zip", "w") as z:
        z.writestr("gzip/emnist-digits-test-images-idx3-ubyte.gz", gzip.compress(idx_bytes(x[:1])))
        z.writestr("gzip/emnist-letters-test-images-idx3-ubyte.gz",
                   gzip.compress(idx_bytes(x.transpose(0, 2, 1))))
        z.writestr("gzip/emnist-letters-test-labels-idx1-ubyte.gz", gzip.compress(idx_bytes(y)))
    xi, yi = load_arrays("letters", "test", root=tmp_path, download=False)
    np.testing.assert_array_equal(xi[:, 0], x)
    np.testing.assert_array_equal(yi, [1, 4])
    with pytest.raises(DatasetError, match="gzip.zip.*emnist-letters-train-images"):
        load_arrays("letters", "train", root=tmp_path, download=False)  # members missing


def test_letters_rejects_labels_outside_1_26(tmp_path):
    folder = tmp_path / "emnist"
    write(folder / "emnist-letters-test-images-idx3-ubyte.gz", idx_bytes(np.zeros((2, 4, 4))))
    write(folder / "emnist-letters-test-labels-idx1-ubyte.gz", idx_bytes([0, 3]))
    with pytest.raises(DatasetError, match="1..26"):
        load_arrays("letters", "test", root=tmp_path, download=False)


def test_cifar_tar_gz(tmp_path):
    batches = all_cifar()
    write_cifar_tar(tmp_path / "cifar-10" / "cifar-10-python.tar.gz",
                    {n: cifar_batch_bytes(*v) for n, v in batches.items()})
    x, y = load_arrays("cifar10", "train", root=tmp_path, download=False)
    assert x.shape == (15, 3, 32, 32) and x.dtype == np.uint8 and y.dtype == np.int64
    np.testing.assert_array_equal(x, np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)]))
    np.testing.assert_array_equal(y, np.concatenate([batches[f"data_batch_{i}"][1] for i in range(1, 6)]))
    xt, yt = load_arrays("cifar10", "test", root=tmp_path, download=False)
    np.testing.assert_array_equal(xt, batches["test_batch"][0])
    # channel-major rows: the first 1024 bytes of a row are the red plane
    row = batches["test_batch"][0][1].reshape(3072)
    np.testing.assert_array_equal(xt[1, 0], row[:1024].reshape(32, 32))


def test_cifar_extracted_folder(tmp_path):
    batches = all_cifar()
    d = tmp_path / "cifar-10" / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for n, v in batches.items():
        (d / n).write_bytes(cifar_batch_bytes(*v))
    # the official batches were pickled by Python 2 numpy, under the old module name numpy.core
    old = cifar_batch_bytes(*batches["test_batch"]).replace(b"cnumpy._core.multiarray\n",
                                                            b"cnumpy.core.multiarray\n")
    assert b"cnumpy.core.multiarray" in old
    (d / "test_batch").write_bytes(old)
    xt, yt = load_arrays("cifar10", "test", root=tmp_path, download=False)
    np.testing.assert_array_equal(xt, batches["test_batch"][0])
    np.testing.assert_array_equal(yt, batches["test_batch"][1])


def test_cifar_bad_shape_and_unsafe_pickle(tmp_path):
    d = tmp_path / "cifar-10" / "cifar-10-batches-py"
    d.mkdir(parents=True)
    (d / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(DatasetError, match=r"test_batch.*\[N, 3072\]"):
        load_arrays("cifar10", "test", root=tmp_path, download=False)
    (d / "test_batch").write_bytes(pickle.dumps({b"data": os.getcwd}))  # a global not allowed
    with pytest.raises(DatasetError, match="not allowed"):
        load_arrays("cifar10", "test", root=tmp_path, download=False)


def test_cifar_truncated_tar(tmp_path):
    p = tmp_path / "cifar-10" / "cifar-10-python.tar.gz"
    write_cifar_tar(p, {n: cifar_batch_bytes(*v) for n, v in all_cifar().items()})
    p.write_bytes(p.read_bytes()[:3000])
    with pytest.raises(DatasetError, match="cifar-10-python.tar.gz"):
        load_arrays("cifar10", "train", root=tmp_path, download=False)


# ---------------------------------------------------------------- bad input
def test_unknown_name_and_split():
    with pytest.raises(ValueError, match="mnist, fmnist, kmnist, letters, cifar10"):
        load_arrays("svhn", "train")
    with pytest.raises(ValueError, match="train, test"):
        load_arrays("mnist", "val")


@pytest.mark.parametrize("name", ["fmnist", "kmnist", "letters", "cifar10"])
def test_missing_offline_names_paths_and_url(tmp_path, name):
    with pytest.raises(DatasetError) as e:
        load_arrays(name, "train", root=tmp_path, download=False)
    msg = str(e.value)
    assert str(tmp_path / data.FOLDERS[name]) in msg and str(tmp_path / "cache") in msg
    assert data.URLS[name] in msg and "SPIKEDIFF_DATA" in msg and "--data-root" in msg


def test_missing_with_no_network_names_url_and_leaves_nothing(tmp_path):
    with pytest.raises(DatasetError, match="fashion-mnist.*train-images-idx3-ubyte.gz.*no network"):
        load_arrays("fmnist", "train", root=tmp_path, download=True)
    assert os.listdir(tmp_path / "cache" / "fashion-mnist") == []


def test_truncated_idx(tmp_path):
    x, y = synth(4)
    folder = tmp_path / "kmnist"
    write_idx_split(folder, "train", x, y, gz=False)
    p = folder / "train-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte.*truncated"):
        load_arrays("kmnist", "train", root=tmp_path, download=False)
    p.write_bytes(b"\x00\x00\x08")  # shorter than the header
    with pytest.raises(DatasetError, match="too short"):
        load_arrays("kmnist", "train", root=tmp_path, download=False)


def test_truncated_gzip(tmp_path):
    x, y = synth(50, 28, 28)
    folder = tmp_path / "kmnist"
    write_idx_split(folder, "train", x, y)
    p = folder / "train-images-idx3-ubyte.gz"
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte.gz.*corrupt or truncated gzip.*Fix"):
        load_arrays("kmnist", "train", root=tmp_path, download=False)


def test_wrong_magic(tmp_path):
    x, y = synth(4)
    folder = tmp_path / "kmnist"
    write_idx_split(folder, "test", x, y)
    write(folder / "t10k-images-idx3-ubyte.gz", idx_bytes(x, magic=0x801))
    with pytest.raises(DatasetError, match=r"t10k-images.*magic number 0x00000801, expected 0x00000803"):
        load_arrays("kmnist", "test", root=tmp_path, download=False)
    write(folder / "t10k-images-idx3-ubyte.gz", idx_bytes(x, magic=0x0D03))  # float dtype byte
    with pytest.raises(DatasetError, match="magic"):
        load_arrays("kmnist", "test", root=tmp_path, download=False)


def test_count_mismatch(tmp_path):
    x, y = synth(6)
    folder = tmp_path / "kmnist"
    write_idx_split(folder, "train", x, y[:5])
    with pytest.raises(DatasetError, match="6 images.*5 labels"):
        load_arrays("kmnist", "train", root=tmp_path, download=False)


# ---------------------------------------------------------------- downloads (fake urlopen)
class FakeResponse(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def test_download_atomic_with_content_check(tmp_path, monkeypatch):
    x, y = synth(5)
    served = {data.URLS["kmnist"] + "t10k-images-idx3-ubyte.gz": gzip.compress(idx_bytes(x)),
              data.URLS["kmnist"] + "t10k-labels-idx1-ubyte.gz": gzip.compress(idx_bytes(y))}
    urls = []
    monkeypatch.setattr(urllib.request, "urlopen", lambda u, timeout=None: urls.append(u) or FakeResponse(served[u]))
    xi, yi = load_arrays("kmnist", "test")
    np.testing.assert_array_equal(xi[:, 0], x)
    assert sorted(urls) == sorted(served)
    cache = tmp_path / "cache" / "kmnist"
    assert sorted(os.listdir(cache)) == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    np.testing.assert_array_equal(load_arrays("kmnist", "test", download=False)[1], y)
    # a download whose content is not IDX is rejected and never gets the final name
    served[data.URLS["kmnist"] + "train-images-idx3-ubyte.gz"] = b"<html>not found</html>"
    served[data.URLS["kmnist"] + "train-labels-idx1-ubyte.gz"] = gzip.compress(idx_bytes(y))
    with pytest.raises(DatasetError, match="magic"):
        load_arrays("kmnist", "train")
    assert not any(f.startswith("train-images") for f in os.listdir(cache))


def test_download_md5_mismatch_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen",
                        lambda u, timeout=None: FakeResponse(gzip.compress(idx_bytes(np.zeros(3)))))
    with pytest.raises(DatasetError, match="MD5"):
        load_arrays("fmnist", "test")
    assert os.listdir(tmp_path / "cache" / "fashion-mnist") == []


# ---------------------------------------------------------------- float conversion / batching
def test_to_float_from_float_roundtrip():
    u = np.arange(256, dtype=np.uint8).reshape(1, 1, 16, 16)
    f = data.to_float(u)
    assert f.dtype == torch.float32 and f.min() == -0.5 and f.max() == 0.5
    assert torch.allclose(f, torch.from_numpy(u).float() / 255 - 0.5)
    assert torch.equal(data.from_float(f), torch.from_numpy(u))
    assert torch.equal(data.to_float(torch.from_numpy(u)), f)
    assert data.from_float(torch.tensor([-3.0, 0.0, 9.0])).tolist() == [0, 128, 255]
    with pytest.raises(TypeError):
        data.to_float(f)  # already float: refuse to scale twice


def test_batches():
    x = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1)
    out = list(data.batches(x, 4, generator=torch.Generator().manual_seed(0)))
    assert [b.shape for b in out] == [(4, 1, 1, 1)] * 2  # drop_last
    seen = torch.cat(out).flatten()
    assert len(set(data.from_float(seen).tolist())) == 8 and seen.min() >= -0.5 and seen.max() <= 0.5
    again = list(data.batches(x, 4, generator=torch.Generator().manual_seed(0)))
    assert all(torch.equal(a, b) for a, b in zip(out, again))
    ordered = list(data.batches(torch.from_numpy(x), 4, shuffle=False, drop_last=False))
    assert [len(b) for b in ordered] == [4, 4, 2]
    assert data.from_float(torch.cat(ordered)).flatten().tolist() == list(range(10))


# ---------------------------------------------------------------- real data
def test_real_mnist_embedded():
    assert "SPIKEDIFF_DATA" not in os.environ
    x, y = load_arrays("mnist", "train", download=False)
    assert x.shape == (60000, 1, 28, 28) and x.dtype == np.uint8 and y.dtype == np.int64
    assert np.bincount(y).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert abs(float(x.mean()) - 33.318) < 1e-3
    xt, yt = load_arrays("mnist", "test", download=False)
    assert xt.shape == (10000, 1, 28, 28)
    assert np.bincount(yt).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_real_fashion_mnist_from_env(monkeypatch):
    if not REAL_DATA or data._locate("fmnist", "train", os.path.join(REAL_DATA, "fashion-mnist")) is None:
        pytest.skip("$SPIKEDIFF_DATA does not hold fashion-mnist/")
    monkeypatch.setenv("SPIKEDIFF_DATA", REAL_DATA)
    x, y = load_arrays("fmnist", "train", download=False)
    assert x.shape == (60000, 1, 28, 28) and x.dtype == np.uint8
    assert np.bincount(y).tolist() == [6000] * 10
    xt, yt = load_arrays("fmnist", "test", download=False)
    assert xt.shape == (10000, 1, 28, 28) and np.bincount(yt).tolist() == [1000] * 10
