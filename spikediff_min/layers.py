"""Spiking building blocks (Spiking-Diffusion, SPEC section 3).

- `SeqToANN`: apply an ordinary layer to a time-major tensor by folding [T, B] into one batch.
- `ConvBNLIF`: the paper's block, Conv (or ConvTranspose) -> BatchNorm -> LIF, time-distributed.
  With `neuron="relu"` the same block is the ANN twin's Conv -> BN -> ReLU (used with T = 1).
- `psp`: the post-synaptic-potential filter p[t] = p[t-1] + (s[t] - p[t-1]) / tau_s, p[-1] = 0.
- `membrane_readout`: the non-spiking output y = sum_t decay^(T-1-t) x[t] (decay 0.8).

Time-invariant input ("direct coding": the same analog tensor at every step) is passed once as
[B, ...] with `T=`; the plain path below copies it T times. Running conv and BN once instead
(static_once), NHWC convolutions (channels_last) and BatchNorm folded into the LIF loop at
inference are tricks in fast.py, off with `fast.ENABLED = False`.

    block = ConvBNLIF(1, 32, 3, stride=2, padding=1)
    s = block(x, T=4)                 # x: [B, 1, 28, 28] -> spikes [4, B, 32, 14, 14]
"""
import torch
import torch.nn as nn

from . import fast
from .lif import LIF


class SeqToANN(nn.Module):
    """Wrap a layer so it maps [T, B, ...] -> [T, B, ...] by folding time into the batch."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, x):
        if fast.ENABLED:                           # the same values, NHWC (fast.py)
            return fast.seq_to_ann(self, x)
        T, B = x.shape[:2]
        y = self.module(x.flatten(0, 1))           # [T*B, ...]
        return y.unflatten(0, (T, B))              # [T, B, ...]


def make_neuron(neuron="lif", **lif_kwargs):
    """'lif' -> LIF(**lif_kwargs); 'relu' -> ReLU (the ANN twin; LIF parameters are ignored)."""
    if neuron == "lif":
        return LIF(**lif_kwargs)
    if neuron == "relu":
        return nn.ReLU()
    raise ValueError(f"unknown neuron {neuron!r}; choose 'lif' or 'relu'")


class ConvBNLIF(nn.Module):
    """Conv -> BatchNorm -> LIF on [T, B, C, H, W]; `transposed=True` uses ConvTranspose2d."""

    def __init__(self, c_in, c_out, kernel_size=3, stride=1, padding=1, output_padding=0,
                 transposed=False, neuron="lif", dilation=1, **lif_kwargs):
        super().__init__()
        if transposed:
            self.conv = nn.ConvTranspose2d(c_in, c_out, kernel_size, stride, padding,
                                           output_padding, bias=False)
        else:
            self.conv = nn.Conv2d(c_in, c_out, kernel_size, stride, padding, dilation, bias=False)
        self.bn = nn.BatchNorm2d(c_out)
        self.neuron = make_neuron(neuron, **lif_kwargs)

    def forward(self, x, T=None):
        # x: [T, B, C, H, W], or [B, C, H, W] with T= (direct coding: the same input at every step)
        if fast.ENABLED:                                   # the same spikes, faster (fast.py)
            return fast.conv_bn_lif(self, x, T)
        if T is not None:
            x = x.unsqueeze(0).expand(T, *x.shape)         # [T, B, C, H, W], T copies
        t, b = x.shape[:2]
        y = self.bn(self.conv(x.flatten(0, 1)))            # time-distributed: [T*B, C_out, H', W']
        return self.neuron(y.unflatten(0, (t, b)))         # [T, B, C_out, H', W']


def psp(s, tau_s=2.0):
    """Post-synaptic potential of spike trains s: [T, ...] -> [T, ...]."""
    p, out = torch.zeros_like(s[0]), []
    for s_t in s:
        p = p + (s_t - p) / tau_s
        out.append(p)
    return torch.stack(out)


def membrane_readout(x, decay=0.8):
    """Leaky sum over time, y = sum_t decay^(T-1-t) x[t]: [T, ...] -> [...]."""
    y = torch.zeros_like(x[0])
    for x_t in x:
        y = decay * y + x_t
    return y
