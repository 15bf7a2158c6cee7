"""Multi-step leaky integrate-and-fire neuron (Spiking-Diffusion, SPEC section 1).

Per step t with input current X[t] (hard reset, input decay, as in the paper's reference):
    charge: H[t] = V[t-1] + (X[t] - (V[t-1] - V_reset)) / tau
    fire:   S[t] = Heaviside(H[t] - V_th)
    reset:  V[t] = H[t] * (1 - S[t]) + V_reset * S[t],   V[-1] = V_reset
The time loop lives inside forward: no state survives between calls, so no `reset_net`.

    lif = LIF(tau=2.0)
    s = lif(x)                       # x: [T, ...] -> spikes [T, ...]
    s, v = lif(x, return_membrane=True)   # also H[t], the charged membrane before reset
"""
import torch
import torch.nn as nn

from .surrogate import atan


class LIF(nn.Module):
    def __init__(self, tau=2.0, v_threshold=1.0, v_reset=0.0, surrogate=None, detach_reset=False):
        super().__init__()
        self.tau, self.v_threshold, self.v_reset = tau, v_threshold, v_reset
        self.surrogate = surrogate if surrogate is not None else atan(2.0)
        self.detach_reset = detach_reset

    def forward(self, x, return_membrane=False):
        # x: [T, ...] input current
        v = torch.full_like(x[0], self.v_reset)
        spikes, membrane = [], []
        w = 1.0 / self.tau
        for x_t in x:
            h = torch.lerp(v, x_t + self.v_reset, w)              # charge: v + (x - (v - v_reset)) / tau
            s = self.surrogate(h - self.v_threshold)              # fire
            s_r = s.detach() if self.detach_reset else s
            v = torch.addcmul(h, h - self.v_reset, s_r, value=-1)  # hard reset: h (1 - s) + v_reset s
            spikes.append(s)
            if return_membrane:
                membrane.append(h)
        spikes = torch.stack(spikes)                              # [T, ...]
        if return_membrane:
            return spikes, torch.stack(membrane)
        return spikes

    def extra_repr(self):
        return (f"tau={self.tau}, v_threshold={self.v_threshold}, v_reset={self.v_reset}, "
                f"surrogate={self.surrogate}, detach_reset={self.detach_reset}")
