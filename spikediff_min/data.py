"""Datasets for Spiking-Diffusion (Liu et al. 2023, arXiv 2308.10187), SPEC section 9.

MNIST, Fashion-MNIST, KMNIST, EMNIST Letters and CIFAR-10, read from their official file formats
by hand (numpy + standard library; no torchvision).

    from spikediff_min import data
    x, y = data.load_arrays("mnist", "train")   # uint8 [60000, 1, 28, 28], int64 [60000]
    for xb in data.batches(x, 128):              # float32 [128, 1, 28, 28] in [-0.5, 0.5]
        ...
    img = data.from_float(xb)                    # back to uint8

Search order, first hit wins (<folder> = FOLDERS[name]): `root=` (the CLI's `--data-root`)/<folder>,
$SPIKEDIFF_DATA/<folder>, the copy shipped in `embedded/mnist/` (MNIST only), then the per-user
cache $SPIKEDIFF_CACHE (default ~/.cache/spikediff_min)/<folder>. Only if none has the files and
download=True are they fetched from the official URL into the cache (temp file, MD5 check where
published, IDX content check, atomic rename). Local files are checked by content (IDX magic,
dims, length, counts; CIFAR shapes), not by the MD5 of the compressed file. EMNIST Letters: the
extracted `emnist-letters-*` files or the official `gzip.zip`; images are transposed upright and
labels 1..26 become 0..25. CIFAR-10: `cifar-10-python.tar.gz` or `cifar-10-batches-py/`.
Any bad or missing file raises DatasetError naming the file, the problem and the fix. Parsed
arrays are cached in memory and returned read-only.
"""
import functools
import gzip
import hashlib
import os
import pathlib
import pickle
import struct
import tarfile
import tempfile
import urllib.request
import zipfile
import zlib

import numpy as np
import torch

from .errors import UserError

DATASETS = ("mnist", "fmnist", "kmnist", "letters", "cifar10")
SPLITS = ("train", "test")
FOLDERS = {"mnist": "mnist", "fmnist": "fashion-mnist", "kmnist": "kmnist", "letters": "emnist",
           "cifar10": "cifar-10"}
EMBEDDED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "embedded")

URLS = {"mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "fmnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "kmnist": "http://codh.rois.ac.jp/kmnist/dataset/kmnist/",
        "letters": "https://biometrics.nist.gov/cs_links/EMNIST/gzip.zip",
        "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"}
_ORDER = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
          "t10k-labels-idx1-ubyte")
MD5 = {  # of the downloaded file; a missing entry means unknown (then checked by content only)
    "mnist": dict(zip(_ORDER, ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
                               "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c"))),
    "fmnist": dict(zip(_ORDER, ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
                                "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12e480ee83cd310"))),
    "kmnist": {}, "letters": {"gzip.zip": "58c8d27c78d21e728a6bc7b3cc06412e"},
    "cifar10": {"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"}}
_ZIP, _TAR, _CDIR = "gzip.zip", "cifar-10-python.tar.gz", "cifar-10-batches-py"
_IDX = {"train": _ORDER[:2], "test": _ORDER[2:]}
_BATCHES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}


class DatasetError(UserError):
    """A dataset file is missing, truncated or malformed; the message names the file and the fix."""


def _fix(name):
    return (f"Fix: get the official file(s) from {URLS[name]} into <DIR>/{FOLDERS[name]}/ and pass "
            f"--data-root <DIR> (root=<DIR>) or set SPIKEDIFF_DATA=<DIR>; or, if the bad file is in "
            f"the cache, delete it to download it again.")


def _idx_names(name, split):
    if name == "letters":
        return (f"emnist-letters-{split}-images-idx3-ubyte", f"emnist-letters-{split}-labels-idx1-ubyte")
    return _IDX[split]


def _gunzip(raw, where, fix):
    try:
        return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw  # gzip magic bytes 1f 8b
    except (OSError, EOFError, zlib.error) as e:
        raise DatasetError(f"{where}: corrupt or truncated gzip data ({e}). {fix}") from None


def parse_idx(buf, where, kind, fix=""):
    """Parse IDX bytes: kind "images" (magic 0x00000803, [N, H, W]) or "labels" (0x00000801, [N])."""
    magic, ndim = (0x803, 3) if kind == "images" else (0x801, 1)
    head = 4 + 4 * ndim
    if len(buf) < head:
        raise DatasetError(f"{where}: only {len(buf)} bytes, too short for an IDX {kind} header "
                           f"({head} bytes); the file is truncated. {fix}")
    got = struct.unpack(">I", buf[:4])[0]
    if got != magic:
        raise DatasetError(f"{where}: IDX magic number 0x{got:08x}, expected 0x{magic:08x} "
                           f"(unsigned-byte {kind}, {ndim} dims); wrong or corrupt file. {fix}")
    dims = struct.unpack(f">{ndim}I", buf[4:head])
    need, have = int(np.prod(dims, dtype=np.int64)), len(buf) - head
    if have != need:
        raise DatasetError(f"{where}: IDX header dims {dims} need {need} payload bytes but there are "
                           f"{have}; the file is {'truncated' if have < need else 'corrupt'}. {fix}")
    return np.frombuffer(buf, np.uint8, need, head).reshape(dims)


def _zip_member(zpath, base, fix):
    try:
        with zipfile.ZipFile(zpath) as z:
            hits = [n for n in z.namelist() if os.path.basename(n) in (base + ".gz", base)]
            if not hits:
                raise DatasetError(f"{zpath}: has no member gzip/{base}.gz; not the official EMNIST "
                                   f"gzip.zip. {fix}")
            raw = z.read(hits[0])
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as e:
        raise DatasetError(f"{zpath}: corrupt or truncated zip archive ({e}). {fix}") from None
    return _gunzip(raw, f"{zpath}:{hits[0]}", fix), f"{zpath}:{hits[0]}"


class _Unpickler(pickle.Unpickler):
    """Only what a CIFAR-10 batch needs (dict, lists, bytes, numpy arrays): no arbitrary code."""
    _OK = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
           ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) in self._OK:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR-10 batch")


def _cifar_batch(f, where, fix):
    try:
        d = _Unpickler(f, encoding="bytes").load()
        data, labels = np.asarray(d[b"data"]), np.asarray(d[b"labels"], dtype=np.int64)
    except Exception as e:  # pickle raises many kinds (truncated, wrong format, missing key)
        raise DatasetError(f"{where}: not a readable CIFAR-10 batch (pickle dict with b'data', "
                           f"b'labels'): {type(e).__name__}: {e}. {fix}") from None
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or labels.shape != (len(data),):
        raise DatasetError(f"{where}: data {data.dtype} {data.shape} with labels {labels.shape}; "
                           f"expected uint8 [N, 3072] and N labels. {fix}")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DatasetError(f"{where}: labels outside 0..9. {fix}")
    return data.reshape(-1, 3, 32, 32), labels


def _cifar(kind, src, split, fix):
    """The batches of `split` from an extracted folder or (one sequential pass) the tar.gz."""
    got = {f"{_CDIR}/{b}": None for b in _BATCHES[split]}
    try:
        if kind == "dir":
            for b in _BATCHES[split]:
                with open(os.path.join(src, b), "rb") as f:
                    got[f"{_CDIR}/{b}"] = _cifar_batch(f, f.name, fix)
        else:
            with tarfile.open(src, "r:gz") as t:
                for m in t:
                    if m.name in got and got[m.name] is None:
                        got[m.name] = _cifar_batch(t.extractfile(m), f"{src}:{m.name}", fix)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise DatasetError(f"{src}: cannot read it ({type(e).__name__}: {e}); corrupt or truncated "
                           f"{'archive' if kind == 'tar' else 'file'}. {fix}") from None
    missing = [k for k, v in got.items() if v is None]
    if missing:
        raise DatasetError(f"{src}: has no member {missing[0]}; not the official {_TAR}. {fix}")
    return list(got.values())


@functools.lru_cache(maxsize=4)
def _load(name, split, kind, src, stamp):
    fix = _fix(name)
    if name == "cifar10":
        parts = _cifar(kind, src, split, fix)
        x, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    else:
        if kind == "zip":
            (ib, iw), (lb, lw) = (_zip_member(src, b, fix) for b in _idx_names(name, split))
        else:
            (ib, iw), (lb, lw) = ((_gunzip(pathlib.Path(p).read_bytes(), p, fix), p) for p in src)
        x, y = parse_idx(ib, iw, "images", fix), parse_idx(lb, lw, "labels", fix)
        if len(x) != len(y):
            raise DatasetError(f"{iw} has {len(x)} images but {lw} has {len(y)} labels; both must "
                               f"come from the same split of the same release. {fix}")
        x, y = x[:, None], y.astype(np.int64)
    if name == "letters" and y.size and (y.min() < 1 or y.max() > 26):
        raise DatasetError(f"{src}: EMNIST Letters labels must be 1..26, got {y.min()}..{y.max()}; "
                           f"wrong EMNIST split? {fix}")
    if name == "letters":
        x, y = np.ascontiguousarray(x.transpose(0, 1, 3, 2)), y - 1  # stored transposed
    for a in (x, y):
        a.setflags(write=False)
    return x, y


def _find(folder, base):
    return next((p for p in (os.path.join(folder, base + ".gz"), os.path.join(folder, base))
                 if os.path.isfile(p)), None)


def _locate(name, split, folder):
    """(kind, source) for `split` of `name` if `folder` holds it, else None."""
    if name == "cifar10":
        d = os.path.join(folder, _CDIR)
        if all(os.path.isfile(os.path.join(d, b)) for b in _BATCHES[split]):
            return "dir", d
        return ("tar", os.path.join(folder, _TAR)) if os.path.isfile(os.path.join(folder, _TAR)) else None
    found = tuple(_find(folder, b) for b in _idx_names(name, split))
    if all(found):
        return "idx", found
    if name == "letters" and os.path.isfile(os.path.join(folder, _ZIP)):
        return "zip", os.path.join(folder, _ZIP)
    return None


def cache_dir():
    """The per-user download cache: $SPIKEDIFF_CACHE or ~/.cache/spikediff_min."""
    return os.environ.get("SPIKEDIFF_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "spikediff_min")


def _folders(name, root):
    places = [os.path.expanduser(os.fspath(p)) for p in (root, os.environ.get("SPIKEDIFF_DATA")) if p]
    embedded = [os.path.join(EMBEDDED, "mnist")] if name == "mnist" else []
    return [os.path.join(p, FOLDERS[name]) for p in places] + embedded + [os.path.join(cache_dir(), FOLDERS[name])]


def _downloads(name, split):
    """(url, file name, md5) to fetch into the cache folder."""
    if name in ("letters", "cifar10"):
        fname = os.path.basename(URLS[name])
        return [(URLS[name], fname, MD5[name][fname])]
    return [(URLS[name] + b + ".gz", b + ".gz", MD5[name].get(b)) for b in _idx_names(name, split)]


def _download(url, dest, md5, name):
    folder, tmp = os.path.dirname(dest), None
    fix = (f"Fix: download {url} by hand and put it at {dest}, or pass --data-root <DIR> / set "
           f"SPIKEDIFF_DATA=<DIR> with the file in <DIR>/{FOLDERS[name]}/.")
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=os.path.basename(dest) + ".", suffix=".part", dir=folder)
        h = hashlib.md5(usedforsecurity=False)
        with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url, timeout=60) as r:
            for chunk in iter(lambda: r.read(1 << 20), b""):
                f.write(chunk)
                h.update(chunk)
        if md5 and h.hexdigest() != md5:
            raise DatasetError(f"{url}: downloaded file has MD5 {h.hexdigest()}, published MD5 is "
                               f"{md5}; nothing was saved at {dest}. Retry later. {fix}")
        if "-idx" in dest:  # check the content before it gets the final name
            kind = "images" if "images" in dest else "labels"
            parse_idx(_gunzip(pathlib.Path(tmp).read_bytes(), url, fix), url, kind, fix)
        os.replace(tmp, dest)
    except DatasetError:
        raise
    except Exception as e:  # URLError/HTTPError/timeouts (OSError), IncompleteRead, bad URL...
        raise DatasetError(f"could not download {url} to {dest} ({type(e).__name__}: {e}); "
                           f"no network? {fix}") from None
    finally:
        if tmp and os.path.exists(tmp):
            os.remove(tmp)


def load_arrays(name, split, root=None, download=True):
    """Read-only images uint8 [N, C, H, W] and labels int64 [N] of `split` of dataset `name`.
    Files are searched/downloaded as the module docstring says; DatasetError if missing or bad."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    folders = _folders(name, root)
    hit = next((h for h in (_locate(name, split, f) for f in folders) if h), None)
    if hit is None:
        todo = _downloads(name, split)
        if not download:
            alt = {"letters": " (or the extracted emnist-letters-*-ubyte[.gz] files)",
                   "cifar10": f" (or the extracted {_CDIR}/ folder)"}.get(name, "")
            raise DatasetError(
                f"{name} {split} not found: looked for {', '.join(t[1] for t in todo)}{alt} in "
                f"{', '.join(folders)}. Fix: download {' and '.join(t[0] for t in todo)} into "
                f"<DIR>/{FOLDERS[name]}/ and pass --data-root <DIR> (root=<DIR>) or set "
                f"SPIKEDIFF_DATA=<DIR>; or call with download=True to fetch into {folders[-1]}.")
        for url, fname, md5 in todo:
            if not os.path.isfile(os.path.join(folders[-1], fname)):
                _download(url, os.path.join(folders[-1], fname), md5, name)
        hit = _locate(name, split, folders[-1])
    kind, src = hit
    files = src if kind == "idx" else [os.path.join(src, b) for b in _BATCHES[split]] if kind == "dir" else [src]
    stamp = tuple((p, os.stat(p).st_mtime_ns, os.stat(p).st_size) for p in files)
    return _load(name, split, kind, src, stamp)


def to_float(images):
    """uint8 images (numpy or torch) -> float32 tensor scaled to [-0.5, 0.5]: x / 255 - 0.5."""
    if images.dtype != (torch.uint8 if torch.is_tensor(images) else np.uint8):
        raise TypeError(f"to_float expects uint8 images, got {images.dtype}")
    x = images.float() if torch.is_tensor(images) else torch.from_numpy(np.array(images, dtype=np.float32))
    return x / 255.0 - 0.5


def from_float(x):
    """Inverse of `to_float`: float in [-0.5, 0.5] -> uint8 tensor (clamped, rounded)."""
    x = torch.as_tensor(x).detach().float()
    return ((x + 0.5) * 255.0).round().clamp(0, 255).to(torch.uint8)


def batches(images, batch_size, shuffle=True, generator=None, drop_last=True):
    """Yield float32 batches [B, C, H, W] in [-0.5, 0.5] from uint8 images [N, C, H, W]."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(images)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for i in range(0, n - n % batch_size if drop_last else n, batch_size):
        idx = order[i:i + batch_size]
        yield to_float(images[idx] if torch.is_tensor(images) else images[idx.numpy()])
