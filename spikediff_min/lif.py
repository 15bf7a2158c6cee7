"""Multi-step leaky integrate-and-fire neuron (Spiking-Diffusion, SPEC section 1).

Per step t with input current X[t] (hard reset, input decay, as in the paper's reference):
    charge: H[t] = V[t-1] + (X[t] - (V[t-1] - V_reset)) / tau
    fire:   S[t] = Heaviside(H[t] - V_th)         (backward: the surrogate's derivative, surrogate.py)
    reset:  V[t] = H[t] * (1 - S[t]) + V_reset * S[t],   V[-1] = V_reset
The time loop lives inside forward: no state survives between calls, so no `reset_net`.
Faster routes to the same spikes (a no-grad loop, torch.compile, a hand-written backward through
time) are tricks in fast.py, off with `fast.ENABLED = False`.

    lif = LIF(tau=2.0)
    s = lif(x)                            # x: [T, ...] -> spikes [T, ...]
    s, v = lif(x, return_membrane=True)   # also H[t], the charged membrane before reset
"""
import torch
import torch.nn as nn

from . import fast
from .surrogate import atan


class LIF(nn.Module):
    def __init__(self, tau=2.0, v_threshold=1.0, v_reset=0.0, surrogate=None, detach_reset=False):
        super().__init__()
        self.tau, self.v_threshold, self.v_reset = tau, v_threshold, v_reset
        self.surrogate = surrogate if surrogate is not None else atan(2.0)
        self.detach_reset = detach_reset      # True: no gradient through the reset's S[t]

    def forward(self, x, return_membrane=False, affine=None):
        # x: [T, ...] input current; affine = (scale, shift): the current is x * scale + shift
        if fast.ENABLED and not return_membrane:                  # the same spikes, faster (fast.py)
            s = fast.lif_spikes(self, x, affine)
            if s is not None:
                return s
        if affine:
            x = torch.addcmul(affine[1], x, affine[0])            # a BatchNorm in eval, folded in
        v = torch.full_like(x[0], self.v_reset)                   # V[-1] = V_reset
        spikes, membrane = [], []
        for x_t in x:
            h = torch.lerp(v, x_t + self.v_reset, 1 / self.tau)   # charge: V + (X - (V - V_reset)) / tau
            s = self.surrogate(h - self.v_threshold)              # fire: Heaviside(H - V_th)
            s_r = s.detach() if self.detach_reset else s
            v = torch.addcmul(h, h - self.v_reset, s_r, value=-1)  # reset: H (1 - S) + V_reset S
            spikes.append(s)
            if return_membrane:
                membrane.append(h)
        if return_membrane:
            return torch.stack(spikes), torch.stack(membrane)     # [T, ...] each
        return torch.stack(spikes)                                # [T, ...]

    def extra_repr(self):
        return (f"tau={self.tau}, v_threshold={self.v_threshold}, v_reset={self.v_reset}, "
                f"surrogate={self.surrogate}, detach_reset={self.detach_reset}")
