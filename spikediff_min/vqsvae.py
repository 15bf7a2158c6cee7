"""VQ-SVAE: the spiking vector-quantized autoencoder (Spiking-Diffusion, SPEC section 4).

    image [B, C, H, W] --(direct coding, same image at each of T steps)--> encoder (spiking)
      -> spikes [T, B, D, H/4, W/4] -> z = mix of membrane readout and rate -> codebook (VQ)
      -> z_q [B, D, h, w] -> adaptive spike generator -> spikes -> decoder (spiking)
      -> membrane readout -> tanh -> image
For 1x28x28 inputs the token grid is 7x7, for 3x32x32 it is 8x8.
Ours, an option (`mid_blocks`, 0 = the paper): spiking 3x3 blocks at the token grid's resolution,
after the encoder's second conv and before the decoder's first upsampling. In the paper's network
each token sees a 7x7-pixel patch and each output pixel about 2x2 tokens; a 3x3 block widens both,
at little cost (the grid is small).

    cfg = VQ_PRESETS["cpu"]
    model = VQSVAE(cfg)
    out = model(x)                    # dict: loss, vq, spike, recon, indices
    idx = model.encode(x)             # [B, h, w] long
    x_hat = model.decode(idx)         # [B, C, H, W] in about [-0.5, 0.5]
"""
from dataclasses import dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from .critic import PatchCritic, adversarial_losses
from .layers import ConvBNLIF, SeqToANN, membrane_readout
from .spike_generator import SpikeGenerator
from .vq import VectorQuantizer, spike_loss


@dataclass
class VQSVAEConfig:
    in_channels: int = 1         # 1 for the MNIST family, 3 for CIFAR-10
    T: int = 16                  # SNN time steps
    num_codes: int = 128         # K, codebook size
    code_dim: int = 16           # D, codebook vector size
    width: int = 32              # encoder channels width -> 2*width; decoder mirrors them
    beta: float = 0.25           # commitment weight (VQ and spike losses)
    tau: float = 2.0             # LIF time constant
    readout_decay: float = 0.8   # membrane readout decay
    neuron: str = "lif"          # "lif", or "relu" for the ANN twin (use T=1)
    batch_size: int = 32
    lr: float = 1e-3             # AdamW
    weight_decay: float = 1e-3
    epochs: float = 100
    lr_schedule: str = "constant"    # "constant" (paper) or "cosine" (decays to 0; ours)
    reseed_dead_codes: bool = False  # ours: re-seed unused codes from encoder outputs
    adv_weight: float = 0.0          # ours: weight of a training-only critic's adversarial term (critic.py); 0 = paper
    adv_start: float = 0.2           # ours: share of the steps the critic trains alone before the term is on
    mid_blocks: int = 0              # ours: spiking 3x3 blocks at the token grid's resolution in the encoder
                                     # and the decoder (wider context per token); 0 = the paper
    dec_blocks: int = 0              # ours: spiking 3x3 blocks in the decoder after its first upsampling
                                     # (14x14 for MNIST), more decoder capacity; 0 = the paper
    dec_residual: bool = True        # each such block's spikes OR its input's (SEW-ResNet's OR join):
                                     # binary spikes, and the input passes through; False = a plain stack
    recon_loss: str = "mse"          # "mse" (paper): MSE / Var(x); ours: "l1", mean |x_hat - x| / Std(x),
                                     # whose optimum is the median pixel, not the mean: sharper strokes
    amp: bool = False                # bf16 autocast (spikes are exact in bf16)


VQ_PRESETS = {
    # the paper's settings (SPEC section 4)
    "paper": VQSVAEConfig(),
    # tuned for quality per CPU minute on 2 cores: T=4, bigger batches, dead-code re-seeding and a
    # cosine learning rate (README's ablation); 7 epochs (2.5 until 2026-12-03: the tokenizer was the
    # bound, benchmarks/README.md). run_all.py picks bf16 per stage where it measures faster.
    "cpu": VQSVAEConfig(T=4, batch_size=128, lr=2e-3, epochs=7, lr_schedule="cosine",
                        reseed_dead_codes=True),
    # minutes on one GPU (issue 16): the cpu preset's network, which is launch-bound there, so twice
    # the batch costs little more per step (H200: 0.020 s at 256 against 0.016 s at 128,
    # benchmarks/README.md); the minutes go to epochs
    "gpu": VQSVAEConfig(T=4, batch_size=256, lr=2e-3, epochs=16, lr_schedule="cosine",
                        reseed_dead_codes=True),
    # a few seconds, for tests and notebooks' SMOKE mode
    "smoke": VQSVAEConfig(T=2, width=8, batch_size=64, epochs=0.05, lr=2e-3,
                          reseed_dead_codes=True),
}


class Encoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        w, kw = cfg.width, dict(neuron=cfg.neuron, tau=cfg.tau)
        self.conv1 = ConvBNLIF(cfg.in_channels, w, 3, 2, 1, **kw)      # sees the analog image
        self.conv2 = ConvBNLIF(w, 2 * w, 3, 2, 1, **kw)
        self.mid = nn.Sequential(*[ConvBNLIF(2 * w, 2 * w, 3, 1, 1, **kw) for _ in range(cfg.mid_blocks)])
        self.conv3 = ConvBNLIF(2 * w, cfg.code_dim, 1, 1, 0, **kw)

    def forward(self, x, T):
        s = self.conv1(x, T=T)           # [T, B, w, H/2, W/2]   direct coding: the image at every step
        s = self.mid(self.conv2(s))      # [T, B, 2w, H/4, W/4]
        return self.conv3(s)             # [T, B, D, H/4, W/4]


class Decoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        w, kw = cfg.width, dict(neuron=cfg.neuron, tau=cfg.tau)
        n, c = cfg.mid_blocks, cfg.code_dim
        self.mid = nn.Sequential(*[ConvBNLIF(c if i == 0 else 2 * w, 2 * w, 3, 1, 1, **kw) for i in range(n)])
        self.up1 = ConvBNLIF(2 * w if n else c, 2 * w, 3, 2, 1, 1, transposed=True, **kw)
        self.refine = nn.Sequential(*[ConvBNLIF(2 * w, 2 * w, 3, 1, 1, **kw) for _ in range(cfg.dec_blocks)])
        self.up2 = ConvBNLIF(2 * w, w, 3, 2, 1, 1, transposed=True, **kw)
        self.out = SeqToANN(nn.ConvTranspose2d(w, cfg.in_channels, 3, 1, 1))
        self.residual = cfg.dec_residual
        self.readout_decay = cfg.readout_decay

    def forward(self, s):
        s = self.up1(self.mid(s))                                   # [T, B, 2w, H/2, W/2]
        for block in self.refine:
            b = block(s)
            s = s + b - s * b if self.residual else b               # OR of two spike maps is a spike map
        s = self.up2(s)                                             # [T, B, w, H, W]
        y = membrane_readout(self.out(s), self.readout_decay)       # [B, C, H, W]
        return torch.tanh(y)


RECON_LOSSES = ("mse", "l1")


def reconstruction_loss(x_hat, x, variance, kind="mse"):
    """The decoder's loss, scale-free: MSE / Var(x) (the paper) or mean |x_hat - x| / Std(x) (ours).

    Where a pixel could plausibly be ink or background, MSE is minimised by their mean (grey: blur) and
    L1 by their median (one or the other), which is why L1 gives sharper reconstructions.
    """
    if kind == "mse":
        return F.mse_loss(x_hat, x) / variance
    if kind == "l1":
        return F.l1_loss(x_hat, x) / variance.sqrt()
    raise ValueError(f"unknown recon_loss {kind!r}; choose from {RECON_LOSSES}")


class VQSVAE(nn.Module):
    def __init__(self, cfg=VQSVAEConfig()):
        super().__init__()
        if cfg.recon_loss not in RECON_LOSSES:
            raise ValueError(f"unknown recon_loss {cfg.recon_loss!r}. Fix: choose one of {RECON_LOSSES}")
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.vq = VectorQuantizer(cfg.num_codes, cfg.code_dim, cfg.beta, cfg.readout_decay)
        self.generator = SpikeGenerator(cfg.code_dim, neuron=cfg.neuron, tau=cfg.tau)
        self.decoder = Decoder(cfg)
        self.register_buffer("data_variance", torch.tensor(1.0))   # Var(train images), set by training
        # training only (adv_weight > 0): never runs in encode/decode, so generation stays spiking
        self.critic = PatchCritic(cfg.in_channels) if cfg.adv_weight > 0 else None

    def forward(self, x):
        T = self.cfg.T
        s_enc = self.encoder(x, T)                     # [T, B, D, h, w]
        z = self.vq.embed(s_enc)                       # [B, D, h, w]
        z_q, indices, vq_loss = self.vq(z)
        s_q = self.generator(z_q, T)                   # [T, B, D, h, w]
        x_hat = self.decoder(s_q)                      # [B, C, H, W]
        recon = reconstruction_loss(x_hat.float(), x.float(), self.data_variance, self.cfg.recon_loss)
        sp = spike_loss(s_q.float(), s_enc.float(), self.cfg.beta)
        return {"loss": vq_loss + sp + recon, "vq": vq_loss, "spike": sp, "recon": recon,
                "indices": indices, "z": z, "x_hat": x_hat}

    @torch.no_grad()
    def encode(self, x):
        """Images [B, C, H, W] in [-0.5, 0.5] -> code indices [B, h, w]."""
        return self.vq.nearest(self.vq.embed(self.encoder(x, self.cfg.T)))

    @torch.no_grad()
    def decode(self, indices):
        """Code indices [B, h, w] -> images [B, C, H, W]."""
        z_q = self.vq.lookup(indices)
        return self.decoder(self.generator(z_q, self.cfg.T)).float()


def config_from_preset(name, **overrides):
    if name not in VQ_PRESETS:
        raise ValueError(f"unknown VQ-SVAE preset {name!r}; choose from {sorted(VQ_PRESETS)}")
    return replace(VQ_PRESETS[name], **overrides)


def train_vqsvae(cfg, images, ckpt_path=None, device=None, seed=0, meta=None, progress=True,
                 ckpt_every_s=120.0):
    """Train a VQ-SVAE on uint8 images [N, C, H, W]. Returns (model, history)."""
    from .data import to_float
    from .train import autocast, fit, pick_device

    device = pick_device(device)
    torch.manual_seed(seed)
    x = to_float(images)                                                # [-0.5, 0.5]
    model = VQSVAE(cfg).to(device)
    model.data_variance.fill_(x.var().item())

    adv_on = {"on": False}      # the critic's warm-up (adv_start), set before each step

    def before_step(m, step, total):
        adv_on["on"] = step >= cfg.adv_start * total

    def step_fn(m, batch):
        with autocast(device, cfg.amp):
            out = m(batch)
            if m.critic is not None:
                out["critic"], out["adv"], out["adv_lambda"] = adversarial_losses(
                    m.critic, batch, out["x_hat"], out["recon"], m.decoder.out.module.weight, cfg.adv_weight,
                    adv_on["on"])
                out["loss"] = out["loss"] + out["critic"] + out["adv"]
        return {k: v for k, v in out.items() if k in ("loss", "vq", "spike", "recon", "z", "critic", "adv",
                                                       "adv_lambda")}

    def after_step(m, out, step, total):
        if cfg.reseed_dead_codes and step % 50 == 0 and step < 0.8 * total:
            m.vq.reseed_dead_codes(out["z"])

    history = fit(model, step_fn, x, cfg, ckpt_path, meta, seed, "VQ-SVAE", ckpt_every_s, progress, after_step,
                  before_step)
    model.eval()
    return model, history
