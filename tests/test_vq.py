"""Vector quantizer (SPEC section 4): straight-through, nearest code, losses in closed form, embed, stats."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from spikediff_min.layers import membrane_readout, psp
from spikediff_min.vq import VectorQuantizer, codebook_stats, spike_loss


def test_straight_through_forward_is_the_codebook_vector():
    torch.manual_seed(0)
    vq = VectorQuantizer(num_codes=8, code_dim=4)
    vq.codebook.weight.data = torch.randn(8, 4)
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    z_q, idx, _ = vq(z)
    assert idx.shape == (2, 3, 3) and idx.dtype == torch.long
    e = vq.codebook.weight[idx].permute(0, 3, 1, 2)            # codebook[indices] -> [B, D, H, W]
    assert torch.allclose(z_q, e, atol=1e-6)
    assert not torch.allclose(z_q, z, atol=1e-3)               # it really was replaced
    # backward: identity to z (straight-through), nothing from z_q to the codebook
    g = torch.randn_like(z_q)
    (z_q * g).sum().backward()
    assert torch.allclose(z.grad, g, atol=1e-6)
    assert vq.codebook.weight.grad is None or vq.codebook.weight.grad.abs().sum() == 0


def test_nearest_is_the_true_l2_nearest():
    torch.manual_seed(1)
    vq = VectorQuantizer(num_codes=32, code_dim=5)
    vq.codebook.weight.data = torch.randn(32, 5)
    z = torch.randn(3, 5, 4, 6)
    idx = vq.nearest(z)
    assert idx.shape == (3, 4, 6)
    flat = z.permute(0, 2, 3, 1).reshape(-1, 5)
    d = torch.cdist(flat, vq.codebook.weight)                 # [BHW, K]
    assert torch.equal(idx.flatten(), d.argmin(1))
    # channel axis is D (not mixed with space): a code planted at one position is found there
    z2 = torch.zeros(1, 5, 2, 2) + 100.0
    z2[0, :, 1, 0] = vq.codebook.weight[7]
    assert vq.nearest(z2)[0, 1, 0].item() == 7


def test_lookup_shape_and_values():
    vq = VectorQuantizer(num_codes=6, code_dim=3)
    idx = torch.tensor([[[0, 5], [2, 2]]])                     # [1, 2, 2]
    v = vq.lookup(idx)
    assert v.shape == (1, 3, 2, 2)
    assert torch.equal(v[0, :, 0, 1], vq.codebook.weight[5].detach())
    assert torch.equal(vq.nearest(v), idx)                     # lookup then nearest is the identity


def test_vq_loss_closed_form_hand_example():
    # K = 2 codes in D = 1: e0 = 0, e1 = 1; z = [0.2, 0.9] -> e = [0, 1]
    # mse(e, sg z) = (0.2^2 + 0.1^2) / 2 = 0.025; total = 0.025 * (1 + beta)
    vq = VectorQuantizer(num_codes=2, code_dim=1, beta=0.25)
    vq.codebook.weight.data = torch.tensor([[0.0], [1.0]])
    z = torch.tensor([0.2, 0.9]).view(1, 1, 1, 2).requires_grad_()
    z_q, idx, loss = vq(z)
    assert idx.flatten().tolist() == [0, 1]
    assert math.isclose(loss.item(), 0.025 * 1.25, rel_tol=1e-5)
    e = vq.lookup(idx)
    assert torch.allclose(loss, F.mse_loss(e, z.detach()) + 0.25 * F.mse_loss(z, e.detach()), atol=1e-7)
    loss.backward()
    # codebook gets d/de mse(e, z) = 2 (e - z) / N only (first term); z gets beta * 2 (z - e) / N
    assert torch.allclose(vq.codebook.weight.grad.flatten(), torch.tensor([2 * (0 - 0.2) / 2, 2 * (1 - 0.9) / 2]),
                          atol=1e-6)
    assert torch.allclose(z.grad.flatten(), 0.25 * torch.tensor([2 * 0.2 / 2, 2 * -0.1 / 2]), atol=1e-6)


def test_spike_loss_closed_form_with_psp():
    # T = 2, tau_s = 2: s_q = [1, 0] -> psp [0.5, 0.25]; s_enc = [0, 1] -> psp [0, 0.5]
    # mse = (0.5^2 + 0.25^2) / 2 = 0.15625; loss = 0.15625 * (1 + beta)
    s_q = torch.tensor([[1.0], [0.0]], requires_grad=True)
    s_e = torch.tensor([[0.0], [1.0]], requires_grad=True)
    assert torch.allclose(psp(s_q.detach()).flatten(), torch.tensor([0.5, 0.25]))
    out = spike_loss(s_q, s_e, beta=0.25, tau_s=2.0)
    assert math.isclose(out.item(), 0.15625 * 1.25, rel_tol=1e-6)
    out.backward()
    # general closed form on random trains, with the stop-gradients on the right sides
    torch.manual_seed(0)
    a, b = (torch.rand(4, 2, 3) < 0.5).float(), (torch.rand(4, 2, 3) < 0.5).float()
    a.requires_grad_(), b.requires_grad_()
    ref = F.mse_loss(psp(a), psp(b)) * 1.25
    assert torch.allclose(spike_loss(a, b, 0.25), ref, atol=1e-6)
    # gradient to s_q from the first term only, to s_enc from the beta term only
    ga = torch.autograd.grad(spike_loss(a, b, 0.25), a)[0]
    ga_ref = torch.autograd.grad(F.mse_loss(psp(a), psp(b).detach()), a)[0]
    gb = torch.autograd.grad(spike_loss(a, b, 0.25), b)[0]
    gb_ref = torch.autograd.grad(0.25 * F.mse_loss(psp(a).detach(), psp(b)), b)[0]
    assert torch.allclose(ga, ga_ref, atol=1e-7) and torch.allclose(gb, gb_ref, atol=1e-7)
    assert ga.abs().sum() > 0 and gb.abs().sum() > 0


def test_embed_hand_example_and_alpha():
    vq = VectorQuantizer(num_codes=4, code_dim=1, readout_decay=0.8)
    assert isinstance(vq.alpha, nn.Parameter) and vq.alpha.requires_grad
    assert vq.alpha.item() == 0.5
    assert any(p is vq.alpha for p in vq.parameters())         # the optimizer will see it
    # s = [1, 0, 1]: readout = 0.8^2 * 1 + 0 + 1 = 1.64; mean = 2/3
    s = torch.tensor([1.0, 0.0, 1.0]).view(3, 1, 1, 1, 1)
    assert math.isclose(membrane_readout(s, 0.8).item(), 1.64, rel_tol=1e-6)
    z = vq.embed(s)
    assert z.shape == (1, 1, 1, 1)
    assert math.isclose(z.item(), 0.5 * 1.64 + 0.5 * 2 / 3, rel_tol=1e-6)
    vq.alpha.data.fill_(0.25)                                  # which side gets (1 - alpha)
    assert math.isclose(vq.embed(s).item(), 0.75 * 1.64 + 0.25 * 2 / 3, rel_tol=1e-6)
    vq.embed(s).sum().backward()                               # dz/dalpha = mean - readout
    assert math.isclose(vq.alpha.grad.item(), 2 / 3 - 1.64, rel_tol=1e-5)


def test_usage_ema_updates_in_training_only():
    vq = VectorQuantizer(num_codes=4, code_dim=1)
    vq.codebook.weight.data = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    z = torch.tensor([0.0, 0.1, 2.9, 3.1]).view(1, 1, 1, 4)      # codes 0, 0, 3, 3
    vq.eval()
    vq(z)
    assert vq.usage.sum() == 0
    vq.train()
    vq(z)
    assert torch.allclose(vq.usage, torch.tensor([0.005, 0.0, 0.0, 0.005]), atol=1e-7)


def test_reseed_dead_codes_replaces_only_low_usage_codes():
    torch.manual_seed(0)
    K, D = 8, 3
    vq = VectorQuantizer(num_codes=K, code_dim=D)
    vq.usage.copy_(torch.tensor([0.3, 1e-6, 0.2, 0.0, 0.2, 0.3, 1e-5, 1e-4]))   # threshold 1e-3 / 8
    before = vq.codebook.weight.detach().clone()
    z = torch.randn(2, D, 4, 4) + 10.0                         # far from the initial codebook
    n = vq.reseed_dead_codes(z, threshold=1e-3)
    dead = [1, 3, 6, 7]                                        # usage < 1e-3 / K = 1.25e-4
    assert n == len(dead) == 4
    after = vq.codebook.weight.detach()
    alive = [k for k in range(K) if k not in dead]
    assert torch.equal(after[alive], before[alive])
    flat = z.permute(0, 2, 3, 1).reshape(-1, D)
    for k in dead:  # each new code is one of the encoder outputs plus a little noise
        assert torch.cdist(after[k:k + 1], flat).min() < 0.05
    assert torch.allclose(vq.usage[dead], torch.full((4,), 1 / K))
    assert vq.reseed_dead_codes(z, threshold=1e-3) == 0       # nothing dead any more


def test_codebook_stats_hand_examples():
    assert codebook_stats(torch.tensor([0, 0, 1, 1]), 4) == (2, 2.0)
    used, ppl = codebook_stats(torch.tensor([[0, 0], [0, 3]]), 5)     # p = (3/4, 1/4)
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert used == 2 and math.isclose(ppl, math.exp(h), rel_tol=1e-6)
    used, ppl = codebook_stats(torch.arange(16), 16)          # uniform over all K
    assert used == 16 and math.isclose(ppl, 16.0, rel_tol=1e-5)
    assert codebook_stats(torch.full((10,), 2), 4) == (1, 1.0)
