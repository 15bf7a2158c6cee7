"""VQ-SVAE (SPEC section 4): shapes, gradients, an entirely spiking path, training, checkpoints, ANN twin."""
import os
import time
from dataclasses import dataclass, replace

import pytest
import torch
import torch.nn as nn

from spikediff_min.data import load_arrays
from spikediff_min.lif import LIF
from spikediff_min.train import CheckpointMismatch, NonFiniteLoss, fit
from spikediff_min.vqsvae import (VQ_PRESETS, VQSVAE, VQSVAEConfig, config_from_preset, reconstruction_loss,
                                 train_vqsvae)

TINY = VQSVAEConfig(T=2, width=8, num_codes=16, code_dim=4)


@pytest.fixture(scope="module")
def mnist256():
    x, _ = load_arrays("mnist", "train")
    return x[:256]


def test_grad_reaches_encoder_codebook_and_alpha():
    torch.manual_seed(0)
    model = VQSVAE(TINY)
    x = torch.rand(4, 1, 28, 28) - 0.5
    out = model(x)
    assert set(out) >= {"loss", "vq", "spike", "recon", "indices"}
    assert torch.allclose(out["loss"], out["vq"] + out["spike"] + out["recon"])
    out["loss"].backward()
    for name, p in [("encoder.conv1.conv.weight", model.encoder.conv1.conv.weight),
                    ("encoder.conv3.conv.weight", model.encoder.conv3.conv.weight),
                    ("vq.codebook.weight", model.vq.codebook.weight),
                    ("vq.alpha", model.vq.alpha),
                    ("generator.block.conv.weight", model.generator.block.conv.weight)]:
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_codebook_grad_comes_from_the_vq_loss():
    torch.manual_seed(0)
    model = VQSVAE(TINY)
    out = model(torch.rand(4, 1, 28, 28) - 0.5)
    g_all = torch.autograd.grad(out["loss"], model.vq.codebook.weight, retain_graph=True)[0]
    g_vq = torch.autograd.grad(out["vq"], model.vq.codebook.weight, retain_graph=True)[0]
    assert g_vq.abs().sum() > 0
    assert torch.allclose(g_all, g_vq, atol=1e-7)   # straight-through: recon/spike don't reach it


@pytest.mark.parametrize("c, hw, grid", [(1, 28, 7), (3, 32, 8)])
def test_encode_decode_shapes(c, hw, grid):
    torch.manual_seed(0)
    model = VQSVAE(VQSVAEConfig(in_channels=c, T=2, width=8, num_codes=16, code_dim=4)).eval()
    x = torch.rand(3, c, hw, hw) - 0.5
    idx = model.encode(x)
    assert idx.shape == (3, grid, grid) and idx.dtype == torch.long
    assert idx.min() >= 0 and idx.max() < 16
    x_hat = model.decode(idx)
    assert x_hat.shape == (3, c, hw, hw) and x_hat.dtype == torch.float32
    assert x_hat.abs().max() <= 1.0                                  # tanh output
    out = model(x)
    assert out["x_hat"].shape == x.shape and torch.equal(out["indices"], idx)
    assert torch.allclose(model.decode(idx), out["x_hat"], atol=1e-6)    # decode = the forward's decoder


ANALOG = {"encoder.conv1.conv", "generator.block.conv"}   # image; codebook vectors


def _record_conv_inputs(model):
    seen, handles = {}, []
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            def hook(mod, inp, name=name):
                x = inp[0]
                binary = bool(((x == 0) | (x == 1)).all())
                seen[name] = seen.get(name, True) and binary
            handles.append(m.register_forward_pre_hook(hook))
    return seen, handles


def _convs(model, prefix=""):
    return {n for n, m in model.named_modules()
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and n.startswith(prefix)}


@pytest.mark.parametrize("mode, mid_blocks", [("train", 0), ("eval", 0), ("train", 2), ("eval", 2)])
def test_entirely_spiking_except_image_and_codebook_inputs(mode, mid_blocks):
    torch.manual_seed(0)
    model = VQSVAE(replace(TINY, mid_blocks=mid_blocks))
    model.train(mode == "train")
    assert len(_convs(model)) == 7 + 2 * mid_blocks              # 3 enc + generator + 3 dec (+ mid blocks)
    seen, handles = _record_conv_inputs(model)
    x = torch.rand(4, 1, 28, 28) - 0.5
    model(x)
    assert set(seen) == _convs(model)                              # every conv ran
    binary = {n for n, b in seen.items() if b}
    assert {n for n in seen if not seen[n]} == ANALOG, seen
    assert binary == _convs(model) - ANALOG
    # encode / decode separately
    seen.clear()
    idx = model.encode(x)
    assert set(seen) == _convs(model, "encoder")
    assert {n for n, b in seen.items() if not b} == {"encoder.conv1.conv"}
    seen.clear()
    model.decode(idx)
    assert set(seen) == _convs(model, "generator") | _convs(model, "decoder")
    assert {n for n, b in seen.items() if not b} == {"generator.block.conv"}
    for h in handles:
        h.remove()


def test_paper_architecture_matches_spec():
    cfg = VQ_PRESETS["paper"]
    assert (cfg.T, cfg.num_codes, cfg.code_dim, cfg.beta, cfg.in_channels) == (16, 128, 16, 0.25, 1)
    assert (cfg.batch_size, cfg.lr, cfg.weight_decay, cfg.epochs) == (32, 1e-3, 1e-3, 100)
    assert cfg.lr_schedule == "constant" and not cfg.reseed_dead_codes and cfg.neuron == "lif"
    m = VQSVAE(cfg)
    e, d = m.encoder, m.decoder

    def sig(conv):
        return (type(conv).__name__, conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                conv.padding, conv.output_padding if isinstance(conv, nn.ConvTranspose2d) else None)
    assert sig(e.conv1.conv) == ("Conv2d", 1, 32, (3, 3), (2, 2), (1, 1), None)
    assert sig(e.conv2.conv) == ("Conv2d", 32, 64, (3, 3), (2, 2), (1, 1), None)
    assert sig(e.conv3.conv) == ("Conv2d", 64, 16, (1, 1), (1, 1), (0, 0), None)
    assert sig(m.generator.block.conv) == ("Conv2d", 16, 16, (1, 1), (1, 1), (0, 0), None)
    assert sig(d.up1.conv) == ("ConvTranspose2d", 16, 64, (3, 3), (2, 2), (1, 1), (1, 1))
    assert sig(d.up2.conv) == ("ConvTranspose2d", 64, 32, (3, 3), (2, 2), (1, 1), (1, 1))
    assert sig(d.out.module) == ("ConvTranspose2d", 32, 1, (3, 3), (1, 1), (1, 1), (0, 0))
    assert m.vq.codebook.weight.shape == (128, 16)
    assert sum(isinstance(x, LIF) for x in m.modules()) == 6       # 3 enc + generator + 2 dec


def test_mid_blocks_add_spiking_3x3_blocks_at_the_token_grid():
    cfg = VQSVAEConfig(T=2, width=8, num_codes=16, code_dim=4, mid_blocks=2)
    m = VQSVAE(cfg)
    e, d = m.encoder.mid, m.decoder.mid
    assert [(b.conv.in_channels, b.conv.out_channels) for b in e] == [(16, 16), (16, 16)]     # 2w -> 2w
    assert [(b.conv.in_channels, b.conv.out_channels) for b in d] == [(4, 16), (16, 16)]      # D -> 2w -> 2w
    assert all(b.conv.kernel_size == (3, 3) and b.conv.stride == (1, 1) and b.conv.padding == (1, 1)
               for b in list(e) + list(d))
    assert m.decoder.up1.conv.in_channels == 16
    x = torch.rand(2, 1, 28, 28) - 0.5
    assert m.encode(x).shape == (2, 7, 7)                          # the token grid is unchanged
    assert sum(isinstance(x, LIF) for x in m.modules()) == 6 + 4
    # 0 is the paper, and a checkpoint saved before the option existed builds the same network
    assert VQ_PRESETS["paper"].mid_blocks == 0
    old = {k: v for k, v in vars(VQSVAEConfig(T=2, width=8)).items() if k != "mid_blocks"}
    assert VQSVAE(VQSVAEConfig(**old)).state_dict().keys() == VQSVAE(VQSVAEConfig(T=2, width=8)).state_dict().keys()


def test_dec_blocks_add_spiking_3x3_blocks_after_the_first_upsampling():
    cfg = VQSVAEConfig(T=2, width=8, num_codes=16, code_dim=4, dec_blocks=2)
    m = VQSVAE(cfg)
    r = m.decoder.refine
    assert [(b.conv.in_channels, b.conv.out_channels) for b in r] == [(16, 16), (16, 16)]    # 2w -> 2w
    assert all(b.conv.kernel_size == (3, 3) and b.conv.stride == (1, 1) for b in r)
    assert m.decoder.up2.conv.in_channels == 16
    s = m.decoder.up1(torch.rand(2, 2, 4, 7, 7).round())            # [T, B, D, 7, 7] spikes
    assert r(s).shape == (2, 2, 16, 14, 14)                         # the 14x14 grid, spikes in and out
    assert set(r(s).unique().tolist()) <= {0.0, 1.0}
    x = torch.rand(2, 1, 28, 28) - 0.5
    assert m(x)["x_hat"].shape == x.shape and m.encode(x).shape == (2, 7, 7)
    assert sum(isinstance(x, LIF) for x in m.modules()) == 6 + 2
    # the OR join (dec_residual, default): every input spike passes, the block's spikes are added
    b = r[0](s)
    joined = s + b - s * b
    assert set(joined.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(joined, torch.maximum(s, b)) and (joined >= s).all()
    m1 = VQSVAE(VQSVAEConfig(T=2, width=8, num_codes=16, code_dim=4, dec_blocks=1))
    m0 = VQSVAE(VQSVAEConfig(T=2, width=8, num_codes=16, code_dim=4, dec_blocks=1, dec_residual=False))
    m0.load_state_dict(m1.state_dict())
    z = torch.rand(2, 2, 4, 7, 7).round()                           # train mode: batch statistics make spikes
    assert m1.decoder.up1(z).sum() > 0
    assert not torch.equal(m0.decoder(z), m1.decoder(z))           # the join changes the output
    # 0 is the paper, and a checkpoint saved before the option existed builds the same network
    assert VQ_PRESETS["paper"].dec_blocks == 0 and VQ_PRESETS["cpu"].dec_blocks == 0
    old = {k: v for k, v in vars(VQSVAEConfig(T=2, width=8)).items() if k not in ("dec_blocks", "dec_residual")}
    assert VQSVAE(VQSVAEConfig(**old)).state_dict().keys() == VQSVAE(VQSVAEConfig(T=2, width=8)).state_dict().keys()


def test_ann_twin_relu_t1():
    torch.manual_seed(0)
    cfg = VQSVAEConfig(T=1, width=8, num_codes=16, code_dim=4, neuron="relu")
    model = VQSVAE(cfg)
    assert not any(isinstance(m, LIF) for m in model.modules())
    assert sum(isinstance(m, nn.ReLU) for m in model.modules()) == 6
    x = torch.rand(4, 1, 28, 28) - 0.5
    out = model(x)
    assert out["x_hat"].shape == x.shape and out["indices"].shape == (4, 7, 7)
    assert out["z"].shape == (4, 4, 7, 7)
    out["loss"].backward()
    assert model.encoder.conv1.conv.weight.grad.abs().sum() > 0
    assert model.vq.codebook.weight.grad.abs().sum() > 0
    model.eval()
    assert model.decode(model.encode(x)).shape == x.shape
    with pytest.raises(ValueError):
        VQSVAE(VQSVAEConfig(neuron="gelu"))


def _smoke(**kw):
    return config_from_preset("smoke", **{"batch_size": 32, "amp": False, "lr": 2e-3, **kw})


def test_train_vqsvae_loss_decreases_on_mnist(mnist256):
    cfg = _smoke(epochs=7.5)                                       # 256 / 32 = 8 batches -> 60 steps
    assert (cfg.T, cfg.width) == (2, 8)
    model, h = train_vqsvae(cfg, mnist256, device="cpu", seed=0, progress=False)
    assert h["step"] == [10, 20, 30, 40, 50, 60]
    for k in ("loss", "vq", "spike", "recon"):
        assert len(h[k]) == 6 and all(map(lambda v: v == v and abs(v) < 1e6, h[k])), k
    assert all(abs(l - (a + b + c)) < 1e-4 for l, a, b, c in zip(h["loss"], h["vq"], h["spike"], h["recon"]))
    assert sum(h["loss"][-5:]) / 5 < h["loss"][0]
    assert h["recon"][-1] < 0.8 * h["recon"][0]
    assert h["seconds"] > 0
    assert not model.training
    # data variance is that of the training images in [-0.5, 0.5]
    x = torch.from_numpy(mnist256.astype("float32")) / 255 - 0.5
    assert torch.allclose(model.data_variance, x.var(), rtol=1e-4)


def test_train_resume_done_and_mismatch(mnist256, tmp_path, monkeypatch):
    cfg = _smoke(epochs=2.5)                                       # 2.5 * (64 // 32) = 5 steps
    data = mnist256[:64]
    path = str(tmp_path / "vq.pt")
    model, h = train_vqsvae(cfg, data, ckpt_path=path, device="cpu", progress=False, meta={"ds": "mnist"})
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["done"] is True and ckpt["step"] == 5
    assert ckpt["history"] == h and h["step"] == [5]
    raw, mtime = open(path, "rb").read(), os.stat(path).st_mtime_ns

    # a finished checkpoint: returns at once with the same history and weights, never runs a step
    def boom(*a, **k):
        raise AssertionError("trained again")
    with monkeypatch.context() as mp:
        mp.setattr(VQSVAE, "forward", boom)
        model2, h2 = train_vqsvae(cfg, data, ckpt_path=path, device="cpu", progress=False, meta={"ds": "mnist"})
    assert h2 == h
    for (k, a), b in zip(model.state_dict().items(), model2.state_dict().values()):
        assert torch.equal(a, b), k
    assert open(path, "rb").read() == raw and os.stat(path).st_mtime_ns == mtime

    # another config or another meta: refused, file untouched
    with pytest.raises(CheckpointMismatch):
        train_vqsvae(_smoke(epochs=2.5, lr=1e-3), data, ckpt_path=path, device="cpu", progress=False,
                     meta={"ds": "mnist"})
    with pytest.raises(CheckpointMismatch):
        train_vqsvae(cfg, data, ckpt_path=path, device="cpu", progress=False, meta={"ds": "fmnist"})
    assert open(path, "rb").read() == raw


@dataclass
class _FitCfg:
    lr: float = 1e-2
    weight_decay: float = 1e-3
    batch_size: int = 4
    epochs: float = 3
    lr_schedule: str = "cosine"


def _lin_step(m, batch):
    time.sleep(0.002)                  # so that ckpt_every_s=0 always saves
    return {"loss": ((m(batch) - batch.sum(1, keepdim=True)) ** 2).mean()}


def test_nonfinite_loss_keeps_last_checkpoint_and_resume_matches(tmp_path):
    data = torch.randn(16, 3)                                      # 4 batches x 3 epochs = 12 steps
    cfg = _FitCfg()
    torch.manual_seed(0)
    ref = nn.Linear(3, 1)
    init = {k: v.clone() for k, v in ref.state_dict().items()}
    h_ref = fit(ref, _lin_step, data, cfg, progress=False, seed=1)

    path = str(tmp_path / "lin.pt")
    k, calls, before = 7, [0], {}

    def nan_at_k(m, batch):
        out = _lin_step(m, batch)
        if calls[0] == k:              # the step numbered k (0-based): checkpoint of step k exists
            before["raw"], before["mtime"] = open(path, "rb").read(), os.stat(path).st_mtime_ns
            out["loss"] = out["loss"] * float("nan")
        calls[0] += 1
        return out

    model = nn.Linear(3, 1)
    model.load_state_dict(init)
    with pytest.raises(NonFiniteLoss):
        fit(model, nan_at_k, data, cfg, ckpt_path=path, progress=False, seed=1, ckpt_every_s=0)
    assert calls[0] == k + 1
    assert open(path, "rb").read() == before["raw"] and os.stat(path).st_mtime_ns == before["mtime"]
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["step"] == k and ckpt["done"] is False
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())
    assert not [f for f in os.listdir(tmp_path) if f != "lin.pt"]   # no temp files left

    # resume: same batch order and optimizer state -> the same weights as the uninterrupted run
    model = nn.Linear(3, 1)
    h = fit(model, _lin_step, data, cfg, ckpt_path=path, progress=False, seed=1, ckpt_every_s=0)
    assert h["step"] == h_ref["step"] == [10, 12]
    assert h["loss"] == pytest.approx(h_ref["loss"], rel=1e-6)
    for key in init:
        assert torch.allclose(model.state_dict()[key], ref.state_dict()[key], atol=1e-6), key
    assert torch.load(path, weights_only=True)["done"] is True


def test_recon_loss_options_by_hand():
    x = torch.tensor([[[[0.5, -0.5], [0.5, -0.5]]]])                  # [1, 1, 2, 2]
    x_hat = torch.tensor([[[[0.3, -0.5], [0.5, 0.1]]]])
    var = torch.tensor(0.25)
    # paper: MSE / Var = (0.04 + 0.36) / 4 / 0.25; ours: L1 / Std = (0.2 + 0.6) / 4 / 0.5
    assert torch.isclose(reconstruction_loss(x_hat, x, var, "mse"), torch.tensor(0.4))
    assert torch.isclose(reconstruction_loss(x_hat, x, var, "l1"), torch.tensor(0.4))
    assert VQ_PRESETS["paper"].recon_loss == VQ_PRESETS["cpu"].recon_loss == "mse"
    with pytest.raises(ValueError, match="recon_loss"):
        VQSVAE(replace(TINY, recon_loss="huber"))
    out = VQSVAE(replace(TINY, recon_loss="l1"))(torch.rand(2, 1, 28, 28) - 0.5)
    out["loss"].backward()                                             # trains: a finite loss with a gradient
    assert torch.isfinite(out["recon"])
