"""SDID, the spiking diffusion image decoder (Spiking-Diffusion, SPEC section 6).

Maps a partly masked token grid x_t [B, H, W] (MASK = K) and the step t [B] to logits over the
K codes [B, K, H, W]. The paper's network: token ids and t as two float planes, repeated over T
steps, Conv3x3-BN-LIF blocks 2->64 (x1), 64->128, 128->256, 256->512, 512->256 (x5), then a
non-spiking Conv3x3 on cat[x5, x1] -> K, averaged over T.

Averaging the spikes over T before the (linear) readout, and running it only at the positions
asked for, is a trick in fast.py (mean_first), off with `fast.ENABLED = False`.

Named options beyond the paper (ablation in the README):
- `token_input="embed"`: a learned token embedding instead of the raw id as a float (a float id
  puts unrelated codes next to each other);
- `channels`: a narrower or wider stack;
- `dilations`: the dilation of each of the five 3x3 blocks (padding follows, so the grid stays
  7x7). All 1 is the paper, whose logits see 13x13 tokens around them, just the whole 7x7 grid
  from a corner, and only in the last layers; e.g. (1, 1, 2, 3, 1) sees 19x19 with the same
  multiply-adds (fewer real ones: more taps fall on the zero padding).

    model = SDID(SDID_PRESETS["cpu"])
    logits = model(x_t, t)          # [B, K, H, W]
    picked = model(x_t, t, where=m) # [m.sum(), K], the same rows of logits.permute(0, 2, 3, 1)[m]
"""
from dataclasses import dataclass, replace

import torch
import torch.nn as nn

from . import absorbing, fast
from .layers import ConvBNLIF, SeqToANN


@dataclass
class SDIDConfig:
    num_codes: int = 128            # K; MASK id = K
    num_timesteps: int = 49         # T_diff, the number of tokens (49 for 7x7, 64 for 8x8)
    T: int = 16                     # SNN time steps
    channels: tuple = (64, 128, 256, 512, 256)
    token_input: str = "float"      # "float" (paper) or "embed" (ours)
    dilations: tuple = (1, 1, 1, 1, 1)  # of the five 3x3 blocks; all 1 = the paper (ours: wider context)
    embed_dim: int = 32             # size of the learned token embedding ("embed" only)
    tau: float = 2.0
    neuron: str = "lif"             # "lif", or "relu" for the ANN twin (use T=1)
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-3
    epochs: float = 200
    lr_schedule: str = "constant"   # "constant" (paper) or "cosine"
    amp: bool = False               # bf16 autocast


SDID_PRESETS = {
    "paper": SDIDConfig(),
    # 2-core CPU: T=4, a narrower stack, a learned token embedding, cosine learning rate; 6 epochs
    # (3.5 until 2026-12-03, benchmarks/README.md)
    "cpu": SDIDConfig(T=4, channels=(64, 128, 128, 128, 128), token_input="embed", batch_size=128,
                      lr=2e-3, epochs=6, lr_schedule="cosine"),
    # minutes on one GPU (issue 16): the cpu preset's network, twice the batch, more epochs
    "gpu": SDIDConfig(T=4, channels=(64, 128, 128, 128, 128), token_input="embed", batch_size=256,
                      lr=2e-3, epochs=16, lr_schedule="cosine"),
    "smoke": SDIDConfig(T=2, channels=(16, 16, 16, 16, 16), token_input="embed", batch_size=64,
                        epochs=0.05, lr=2e-3),
}


class SDID(nn.Module):
    def __init__(self, cfg=SDIDConfig()):
        super().__init__()
        self.cfg = cfg
        c1, c2, c3, c4, c5 = cfg.channels
        kw = dict(neuron=cfg.neuron, tau=cfg.tau)
        if cfg.token_input == "embed":
            self.embed = nn.Embedding(cfg.num_codes + 1, cfg.embed_dim)
            c_in = cfg.embed_dim + 1
        elif cfg.token_input == "float":
            self.embed, c_in = None, 2
        else:
            raise ValueError(f"token_input must be 'float' or 'embed', not {cfg.token_input!r}")
        if len(cfg.dilations) != 5 or any(int(d) != d or d < 1 for d in cfg.dilations):
            raise ValueError(f"dilations must be five integers >= 1, one per 3x3 block, not {cfg.dilations!r}")
        d1, d2, d3, d4, d5 = (dict(dilation=int(d), padding=int(d)) for d in cfg.dilations)
        self.block1 = ConvBNLIF(c_in, c1, **d1, **kw)        # sees the analog token/time planes
        self.blocks = nn.Sequential(ConvBNLIF(c1, c2, **d2, **kw), ConvBNLIF(c2, c3, **d3, **kw),
                                    ConvBNLIF(c3, c4, **d4, **kw), ConvBNLIF(c4, c5, **d5, **kw))
        self.out = SeqToANN(nn.Conv2d(c5 + c1, cfg.num_codes, 3, 1, 1))

    def inputs(self, x_t, t):
        """x_t [B, H, W] long, t [B] -> analog input planes [B, C_in, H, W]."""
        t_plane = t.float().view(-1, 1, 1, 1).expand(-1, 1, *x_t.shape[1:])
        if self.embed is None:
            return torch.cat([x_t.float().unsqueeze(1), t_plane], 1)            # paper: raw id, raw t
        return torch.cat([self.embed(x_t).permute(0, 3, 1, 2),
                          t_plane / self.cfg.num_timesteps], 1)

    def forward(self, x_t, t, where=None):
        """Logits [B, K, H, W]; with `where` [B, H, W] bool, only those at the True positions,
        [n_true, K] in row-major order."""
        x1 = self.block1(self.inputs(x_t, t), T=self.cfg.T)   # [T, B, c1, H, W]
        x5 = self.blocks(x1)                                   # [T, B, c5, H, W]
        if fast.on("mean_first"):                              # the same logits, faster (fast.py)
            return fast.mean_first_readout(self.out, x5, x1, where)
        logits = self.out(torch.cat([x5, x1], 2)).mean(0)      # readout of cat[x5, x1], mean over T: [B, K, H, W]
        return logits if where is None else logits.permute(0, 2, 3, 1)[where]


def config_from_preset(name, **overrides):
    if name not in SDID_PRESETS:
        raise ValueError(f"unknown SDID preset {name!r}; choose from {sorted(SDID_PRESETS)}")
    return replace(SDID_PRESETS[name], **overrides)


def train_sdid(cfg, tokens, ckpt_path=None, device=None, seed=0, meta=None, progress=True,
               ckpt_every_s=120.0):
    """Train an SDID on code grids [N, H, W] (long). Returns (model, history)."""
    from .train import autocast, fit, pick_device

    device = pick_device(device)
    torch.manual_seed(seed)
    model = SDID(cfg).to(device)

    def step_fn(m, x_0):
        t = absorbing.sample_t(len(x_0), cfg.num_timesteps, x_0.device)
        x_t, mask = absorbing.q_sample(x_0, t, cfg.num_timesteps, cfg.num_codes)
        with autocast(x_0.device, cfg.amp):
            logits = m(x_t, t)
        return {"loss": absorbing.loss(logits, x_0, mask, t, cfg.num_timesteps)}

    history = fit(model, step_fn, torch.as_tensor(tokens).long(), cfg, ckpt_path, meta, seed, "SDID",
                  ckpt_every_s, progress)
    model.eval()
    return model, history


def make_denoiser(model, amp=None):
    """Wrap a trained SDID as `denoiser(x_t, t) -> float logits` for the samplers (eval, no grad)."""
    amp = model.cfg.amp if amp is None else amp
    model.eval()

    def denoiser(x_t, t, where=None):
        from .train import autocast
        with autocast(x_t.device, amp):
            return model(x_t, t, where).float()
    denoiser.takes_where = True     # absorbing.sample may ask for the logits at some positions only
    return denoiser
