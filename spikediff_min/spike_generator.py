"""Adaptive spike generator (Spiking-Diffusion, SPEC section 4).

Turns quantized codebook vectors back into spike trains for the spiking decoder: repeat the
vectors over T, then Conv1x1 -> BN -> LIF. The input is the same at every step, so the conv and
BN run once (see layers.ConvBNLIF's `T=` argument).

    gen = SpikeGenerator(code_dim=16)
    s = gen(z_q, T=16)     # [B, D, H, W] -> spikes [T, B, D, H, W]
"""
import torch.nn as nn

from .layers import ConvBNLIF


class SpikeGenerator(nn.Module):
    def __init__(self, code_dim=16, neuron="lif", **lif_kwargs):
        super().__init__()
        self.block = ConvBNLIF(code_dim, code_dim, 1, 1, 0, neuron=neuron, **lif_kwargs)

    def forward(self, z_q, T):
        return self.block(z_q, T=T)      # [T, B, D, H, W]
