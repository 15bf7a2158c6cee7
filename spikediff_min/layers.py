"""Spiking building blocks (Spiking-Diffusion, SPEC section 3).

- `SeqToANN`: apply an ordinary layer to a time-major tensor by folding [T, B] into one batch.
- `ConvBNLIF`: the paper's block, Conv (or ConvTranspose) -> BatchNorm -> LIF, time-distributed.
  With `neuron="relu"` the same block is the ANN twin's Conv -> BN -> ReLU (used with T = 1).
- `psp`: the post-synaptic-potential filter p[t] = p[t-1] + (s[t] - p[t-1]) / tau_s, p[-1] = 0.
- `membrane_readout`: the non-spiking output y = sum_t decay^(T-1-t) x[t] (decay 0.8).

Time-invariant input ("direct coding": the same analog tensor at every step) is passed once as
[B, ...] with `T=`; conv and BN then run once instead of T times. This computes the same thing:
T identical copies give the same normalisation as one (BN still sees all T copies in training so
the running variance gets the same unbiased correction).

Two module-level switches, for benchmarks/speed.py and the tests; neither changes the values:
- `STATIC_ONCE = True`: run conv and BN of a time-invariant input once. False expands it to
  [T, B, ...] and runs conv and BN on all T copies (the straightforward path).
- `CHANNELS_LAST = True`: the folded [T*B, C, H, W] input of every conv is made
  channels_last (NHWC), the layout oneDNN and cuDNN run natively; conv and BN outputs stay NHWC
  through the LIF loop and `torch.stack`, so later layers do not copy again. Weights stay as they
  are (PyTorch reorders them per call; converting them once would outlive the switch).

    import spikediff_min.layers as layers
    layers.CHANNELS_LAST = True       # before the forward pass
"""
import torch
import torch.nn as nn

from . import lif
from .lif import LIF

STATIC_ONCE = True      # time-invariant input: conv + BN once instead of on T copies
CHANNELS_LAST = True    # NHWC input to every conv (see the docstring; 1.1-1.5x on the 2-core CPU, benchmarks/speed.py)


def _layout(x):
    """[N, C, H, W] -> channels_last if CHANNELS_LAST (same values); other shapes unchanged."""
    return x.contiguous(memory_format=torch.channels_last) if CHANNELS_LAST and x.dim() == 4 else x


class SeqToANN(nn.Module):
    """Wrap a layer so it maps [T, B, ...] -> [T, B, ...] by folding time into the batch."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, x):
        T, B = x.shape[:2]
        y = self.module(_layout(x.flatten(0, 1)))  # [T*B, ...]
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
                 transposed=False, neuron="lif", **lif_kwargs):
        super().__init__()
        if transposed:
            self.conv = nn.ConvTranspose2d(c_in, c_out, kernel_size, stride, padding,
                                           output_padding, bias=False)
        else:
            self.conv = nn.Conv2d(c_in, c_out, kernel_size, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(c_out)
        self.neuron = make_neuron(neuron, **lif_kwargs)

    def forward(self, x, T=None):
        if T is not None and not STATIC_ONCE:          # T copies: [B, ...] -> [T, B, ...]
            x, T = x.unsqueeze(0).expand(T, *x.shape), None
        fold = (lif.INFERENCE_FAST and not self.training and not torch.is_grad_enabled()
                and isinstance(self.neuron, LIF))      # eval, no autograd: BN is an affine the LIF loop applies
        if T is None:                                  # x: [T, B, C, H, W]
            t, b = x.shape[:2]
            y = self.conv(_layout(x.flatten(0, 1)))    # [T*B, C_out, H', W']
            y = (y if fold else self.bn(y)).unflatten(0, (t, b))
        else:                                          # x: [B, C, H, W], same at every step
            y = self.conv(_layout(x)).unsqueeze(0).expand(T, -1, -1, -1, -1)   # conv once
            if self.training:     # BN over all T copies, so running_var gets the T*B*H*W correction
                y = self.bn(y.flatten(0, 1)).unflatten(0, (T, x.shape[0]))
            elif not fold:        # eval: BN once (fold: the LIF loop applies it)
                y = self.bn(y[0]).unsqueeze(0).expand(T, -1, -1, -1, -1)
        if fold:
            return self.neuron(y, affine=[a.to(y.dtype) for a in bn_affine(self.bn)])
        return self.neuron(y)                          # [T, B, C_out, H', W']


def bn_affine(bn):
    """A BatchNorm2d in eval as y * scale + shift: (scale, shift), each [C, 1, 1]."""
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.affine:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale + (bn.bias if bn.affine else 0)
    return scale.view(-1, 1, 1), shift.view(-1, 1, 1)


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
