"""Issue 19: every fault ends in one line (problem, file, fix), a non-zero exit, and nothing on disk
lost. Runs the smoke preset on small synthetic files in the real formats (KMNIST IDX, EMNIST
gzip.zip, CIFAR-10 python batches); no network."""
import errno
import gzip
import io
import os
import pickle
import struct
import urllib.request
import zipfile
from dataclasses import replace

import numpy as np
import pytest
import torch

from spikediff_min import run_all, train
from spikediff_min.vqsvae import VQ_PRESETS

FAST = ["--preset", "smoke", "--fid-samples", "0", "--energy-samples", "0"]


def idx(arr):
    arr = np.asarray(arr, np.uint8)
    return struct.pack(">I", 0x800 | arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def write_datasets(root, n_train=256, n_test=64):
    rng = np.random.default_rng(0)
    img = lambda n, *s: rng.integers(0, 256, (n, *s), dtype=np.uint8)
    k = root / "kmnist"
    k.mkdir(parents=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        (k / f"{split}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx(img(n, 28, 28))))
        (k / f"{split}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx(rng.integers(0, 10, n))))
    (root / "emnist").mkdir()
    with zipfile.ZipFile(root / "emnist" / "gzip.zip", "w") as z:
        for split, n in (("train", n_train), ("test", n_test)):
            z.writestr(f"gzip/emnist-letters-{split}-images-idx3-ubyte.gz", gzip.compress(idx(img(n, 28, 28))))
            z.writestr(f"gzip/emnist-letters-{split}-labels-idx1-ubyte.gz",
                       gzip.compress(idx(rng.integers(1, 27, n))))
    c = root / "cifar-10" / "cifar-10-batches-py"
    c.mkdir(parents=True)
    for name, n in [(f"data_batch_{i}", n_train // 5) for i in range(1, 6)] + [("test_batch", n_test)]:
        d = {b"data": img(n, 3072), b"labels": list(map(int, rng.integers(0, 10, n)))}
        (c / name).write_bytes(pickle.dumps(d, protocol=2))


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    r = tmp_path_factory.mktemp("data")
    write_datasets(r)
    return r


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: (_ for _ in ()).throw(OSError("no network")))


@pytest.fixture(scope="module")
def finished(root, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    args = FAST + ["--dataset", "kmnist", "--data-root", str(root), "--out", str(out), "--figures", str(out / "f")]
    run_all.main(args)
    return out, args


def fails(argv, capsys):
    """run_all.main(argv) must exit non-zero with one line on stderr and no traceback; returns it."""
    with pytest.raises(SystemExit) as e:
        run_all.main(argv)
    msg = e.value.code if isinstance(e.value.code, str) else capsys.readouterr().err.strip()
    assert e.value.code != 0 and msg.startswith("error: ") and "\n" not in msg and "Traceback" not in msg
    return msg


@pytest.mark.parametrize("dataset,tokens", [("kmnist", 49), ("letters", 49), ("cifar10", 64)])
def test_each_format_runs_end_to_end_with_a_plan(root, tmp_path, dataset, tokens, capsys):
    r = run_all.main(FAST + ["--dataset", dataset, "--data-root", str(root), "--out", str(tmp_path)])
    assert r["sdid_config"]["num_timesteps"] == tokens and r["vq_config"]["in_channels"] == (3 if tokens == 64 else 1)
    out = capsys.readouterr().out
    assert "s/step measured" in out and f"the paper's FID for {dataset}" in out
    assert r["plan"]["total_s"] > 0 and r["hardware"] and set(r["amp"]) == {"vq", "sdid"}


@pytest.mark.parametrize("fault", ["truncated", "code", "garbage", "empty", "not_a_dict"])
def test_bad_checkpoint_one_line_and_file_kept(finished, tmp_path, fault, capsys):
    out, args = finished
    good = (out / "vq.pt").read_bytes()
    bad = {"truncated": good[:len(good) // 2], "garbage": b"hello" * 50, "empty": b""}.get(fault)
    path = tmp_path / "vq.pt"
    if fault == "code":
        class Evil:
            def __reduce__(self):
                return (os.system, (f"touch {tmp_path / 'PWNED'}",))
        torch.save({"model": Evil()}, path)
    elif fault == "not_a_dict":
        torch.save([1, 2, 3], path)
    else:
        path.write_bytes(bad)
    before = path.read_bytes()
    msg = fails(args + ["--out", str(tmp_path)], capsys)
    assert str(path) in msg and "Fix:" in msg
    assert path.read_bytes() == before and not (tmp_path / "PWNED").exists()
    if fault == "code":
        assert "not a plain state dict" in msg


def test_unavailable_device_lists_what_is_there(finished, capsys):
    _, args = finished
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    msg = fails(args + ["--device", "cuda"], capsys)
    assert "'cuda' is not available" in msg and "available here: cpu" in msg
    assert "available here: cpu" in fails(args + ["--device", "tpu7"], capsys)


@pytest.mark.parametrize("flag,value", [("--fid-samples", "-5"), ("--sweep-samples", "0"), ("--temperatures", "0"),
                                        ("--temperatures", "-1"), ("--vq-epochs", "0"), ("--sdid-epochs", "-2"),
                                        ("--batch-size", "0"), ("--lr", "nan"), ("--T", "0"), ("--num-codes", "1"),
                                        ("--ckpt-every-s", "0"), ("--energy-samples", "-1"), ("--seed", "-3")])
def test_invalid_numeric_flags_one_line_exit_2(flag, value, capsys):
    with pytest.raises(SystemExit) as e:
        run_all.main([flag, value])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err.startswith(f"error: argument {flag}") and "\n" not in err and value in err


def test_out_of_disk_keeps_previous_checkpoint_and_no_temp(finished, tmp_path, monkeypatch, capsys):
    out, args = finished
    for f in ("vq.pt", "tokens.pt"):
        (tmp_path / f).write_bytes((out / f).read_bytes())
    old = torch.load(out / "sdid.pt", weights_only=True)
    old["done"], old["step"] = False, 0
    torch.save(old, tmp_path / "sdid.pt")
    before = (tmp_path / "sdid.pt").read_bytes()
    real_save = torch.save

    def full_disk(obj, f, *a, **k):
        if "sdid.pt" in str(f):
            with open(f, "wb") as h:
                h.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **k)
    monkeypatch.setattr(torch, "save", full_disk)
    msg = fails(args + ["--out", str(tmp_path), "--resume"], capsys)
    assert "No space left on device" in msg and "intact" in msg and str(tmp_path / "sdid.pt") in msg
    assert (tmp_path / "sdid.pt").read_bytes() == before
    assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))


def test_nan_loss_claims_a_kept_checkpoint_only_when_there_is_one(tmp_path):
    cfg = replace(VQ_PRESETS["smoke"], epochs=1)            # 640 / 64 = 10 steps
    nan_at = {"step": 0}

    def step_fn(m, batch):
        nan_at["step"] += 1
        return {"loss": m.w.sum() * (float("nan") if nan_at["step"] > 3 else 1.0)}
    data = torch.zeros(640, 1)
    with pytest.raises(train.NonFiniteLoss) as e:
        train.fit(Tiny(), step_fn, data, cfg, str(tmp_path / "a.pt"), progress=False)
    assert "no checkpoint had been written yet" in str(e.value) and not (tmp_path / "a.pt").exists()
    nan_at["step"] = 0
    with pytest.raises(train.NonFiniteLoss) as e:
        train.fit(Tiny(), step_fn, data, cfg, str(tmp_path / "b.pt"), progress=False, ckpt_every_s=0)
    assert "(step 3) was kept" in str(e.value) and torch.load(tmp_path / "b.pt", weights_only=True)["step"] == 3


def test_bf16_checkpoint_loads_without_amp(finished, tmp_path):
    out, args = finished
    ck = torch.load(out / "vq.pt", weights_only=True)
    ck["config"]["amp"] = not ck["config"]["amp"]
    torch.save(ck, tmp_path / "vq.pt")
    r = run_all.main(args + ["--out", str(tmp_path), "--amp", "off" if ck["config"]["amp"] else "on"])
    assert r["vq_config"]["amp"] != ck["config"]["amp"]   # loaded, and this run uses its own amp
    ck["config"]["T"] += 1                                  # a model field still refuses
    torch.save(ck, tmp_path / "vq.pt")
    with pytest.raises(train.CheckpointMismatch):
        train.load_checkpoint(tmp_path / "vq.pt", run_all.configs(run_all.parse_args(args), 1)[0])
