"""Vector quantization of spike trains (Spiking-Diffusion, SPEC section 4, Eqs. for the VQ-SVAE).

1. Embed a spike train s: [T, B, D, H, W] as a real vector per position,
       z = (1 - alpha) * membrane_readout(s) + alpha * mean_t(s)      (alpha learnable, init 0.5)
   i.e. a mix of the post-synaptic potential (leaky sum) and the firing rate.
2. Nearest codebook vector e_k (K x D, L2), loss ||sg[z] - e||^2 + beta ||z - sg[e]||^2,
   straight-through z_q = z + sg[e - z].
3. `spike_loss`: the PSP distance between the generator's spike trains and the encoder's.

Optional (our addition, off in the paper preset): `reseed_dead_codes` replaces codes no input
chose for a while by recent encoder outputs, a standard remedy for codebook collapse.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import membrane_readout, psp


class VectorQuantizer(nn.Module):
    def __init__(self, num_codes=128, code_dim=16, beta=0.25, readout_decay=0.8, alpha=0.5):
        super().__init__()
        self.num_codes, self.code_dim, self.beta, self.readout_decay = num_codes, code_dim, beta, readout_decay
        self.alpha = nn.Parameter(torch.tensor(float(alpha)))
        self.codebook = nn.Embedding(num_codes, code_dim)
        self.codebook.weight.data.uniform_(-1 / num_codes, 1 / num_codes)
        self.register_buffer("usage", torch.zeros(num_codes))   # EMA of how often each code is chosen

    def embed(self, s):
        """Spike train [T, B, D, H, W] (or analog, ANN twin) -> z [B, D, H, W]."""
        return (1 - self.alpha) * membrane_readout(s, self.readout_decay) + self.alpha * s.mean(0)

    def nearest(self, z):
        """z [B, D, H, W] -> code indices [B, H, W] (long)."""
        flat = z.permute(0, 2, 3, 1).reshape(-1, self.code_dim).float()        # [BHW, D]
        e = self.codebook.weight.float()
        d = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ e.t() + e.pow(2).sum(1)   # [BHW, K]
        return d.argmin(1).view(z.shape[0], *z.shape[2:])

    def lookup(self, indices):
        """Code indices [B, H, W] -> vectors [B, D, H, W]."""
        return self.codebook(indices).permute(0, 3, 1, 2)

    def forward(self, z):
        """z [B, D, H, W] -> (z_q straight-through, indices [B, H, W], vq loss)."""
        indices = self.nearest(z)
        e = self.lookup(indices).to(z.dtype)
        loss = F.mse_loss(e, z.detach()) + self.beta * F.mse_loss(z, e.detach())
        z_q = z + (e - z).detach()                      # forward: e; backward: identity to z
        if self.training:
            with torch.no_grad():
                counts = torch.bincount(indices.flatten(), minlength=self.num_codes).float()
                self.usage.mul_(0.99).add_(counts / counts.sum(), alpha=0.01)
        return z_q, indices, loss

    @torch.no_grad()
    def reseed_dead_codes(self, z, threshold=1e-3):
        """Replace codes with EMA usage < threshold / K by random encoder outputs from z. Returns count."""
        dead = (self.usage < threshold / self.num_codes).nonzero().flatten()
        if len(dead) == 0:
            return 0
        flat = z.detach().permute(0, 2, 3, 1).reshape(-1, self.code_dim).float()
        pick = flat[torch.randint(len(flat), (len(dead),), device=flat.device)]
        self.codebook.weight.data[dead] = pick + 1e-3 * torch.randn_like(pick)
        self.usage[dead] = 1.0 / self.num_codes
        return len(dead)


def spike_loss(s_q, s_enc, beta=0.25, tau_s=2.0):
    """mean((PSP(s_q) - PSP(sg[s_enc]))^2) + beta * mean((PSP(sg[s_q]) - PSP(s_enc))^2)."""
    p_q, p_e = psp(s_q, tau_s), psp(s_enc, tau_s)
    return F.mse_loss(p_q, p_e.detach()) + beta * F.mse_loss(p_q.detach(), p_e)


def codebook_stats(indices, num_codes):
    """(codes in use, perplexity) of a batch of indices."""
    counts = torch.bincount(indices.flatten(), minlength=num_codes).float()
    p = counts / counts.sum()
    perplexity = torch.exp(-(p[p > 0] * p[p > 0].log()).sum()).item()
    return int((counts > 0).sum()), perplexity
