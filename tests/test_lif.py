"""LIF neuron (SPEC section 1): hand-checkable dynamics, hard reset, gradients, no state between calls."""
import math

import pytest
import torch

from spikediff_min import LIF, fast
from spikediff_min.surrogate import atan_primitive


@pytest.fixture(autouse=True, params=["plain", "fast", "fast+fused"])
def path(request):
    """Every fact below holds on the paper's loop (fast.ENABLED off) and on fast.py's routes, the
    hand-written backward through time (fused, off by default) included."""
    with fast.enabled(request.param != "plain", fused=request.param == "fast+fused"):
        yield request.param


def const(value, T, shape=(1,), dtype=torch.float32):
    return torch.full((T, *shape), value, dtype=dtype)


def test_constant_input_spikes_every_other_step():
    # tau 2, V_th 1, V_reset 0, X = 1.5:
    # H[0] = 0 + 1.5/2 = 0.75 (no spike); H[1] = 0.75 + (1.5 - 0.75)/2 = 1.125 -> spike, V = 0; repeat
    T = 8
    s, h = LIF(tau=2.0, v_threshold=1.0, v_reset=0.0)(const(1.5, T), return_membrane=True)
    assert torch.equal(s.flatten(), torch.tensor([0.0, 1.0] * (T // 2)))
    assert torch.equal(h.flatten(), torch.tensor([0.75, 1.125] * (T // 2)))


def test_return_membrane_is_before_reset():
    s, h = LIF()(const(1.5, 2), return_membrane=True)
    assert s[1].item() == 1.0 and h[1].item() == 1.125  # H above threshold, not the reset value 0


def test_default_forward_returns_spikes_only():
    out = LIF()(const(1.5, 4))
    assert isinstance(out, torch.Tensor) and out.shape == (4, 1)


def test_subthreshold_input_never_spikes():
    # V -> X + V_reset = 0.9 < V_th from below, never reaching 1
    s, h = LIF()(const(0.9, 50), return_membrane=True)
    assert s.sum().item() == 0
    assert (h < 1.0).all() and h[-1].item() > 0.89
    assert (h[1:] >= h[:-1]).all()  # monotone charging (saturates at 0.9), no reset


def test_spike_exactly_at_threshold():
    # X = 2, tau = 2: H[0] = 1.0 == V_th -> spikes (S = Heaviside(H - V_th), H >= V_th)
    s = LIF()(const(2.0, 1))
    assert s.item() == 1.0


def test_hard_reset_next_charge_is_x_over_tau():
    torch.manual_seed(0)
    x = torch.rand(30, 64, dtype=torch.float64) * 3
    tau = 2.0
    s, h = LIF(tau=tau)(x, return_membrane=True)
    after = s[:-1].bool()                   # a spike at t ...
    assert after.any()
    # ... means V[t] = V_reset = 0, so H[t+1] = 0 + (X[t+1] - 0)/tau exactly
    assert torch.equal(h[1:][after], x[1:][after] / tau)


def test_matches_hand_loop_on_random_input():
    torch.manual_seed(1)
    x = torch.randn(12, 5, dtype=torch.float64) + 1.0
    tau, vth, vr = 3.0, 0.7, -0.2
    s, h = LIF(tau=tau, v_threshold=vth, v_reset=vr)(x, return_membrane=True)
    v = torch.full_like(x[0], vr)
    for t in range(x.shape[0]):
        ht = v + (x[t] - (v - vr)) / tau
        st = (ht >= vth).double()
        v = ht * (1 - st) + vr * st
        assert torch.allclose(h[t], ht, atol=1e-12)
        assert torch.equal(s[t], st)


def test_nonzero_v_reset():
    # V_reset = -0.5, X = 2, tau = 2: V[-1] = -0.5
    # H[0] = -0.5 + (2 - 0)/2 = 0.5; H[1] = 0.5 + (2 - 1.0)/2 = 1.0 -> spike, V = -0.5; repeat
    s, h = LIF(tau=2.0, v_threshold=1.0, v_reset=-0.5)(const(2.0, 6), return_membrane=True)
    assert torch.equal(s.flatten(), torch.tensor([0.0, 1.0] * 3))
    assert torch.equal(h.flatten(), torch.tensor([0.5, 1.0] * 3))
    # zero input relaxes towards V_reset and stays there: H = V_reset at every step
    _, h0 = LIF(v_reset=-0.5)(const(0.0, 5), return_membrane=True)
    assert torch.equal(h0.flatten(), torch.full((5,), -0.5))


def test_single_step_gradient_by_hand():
    # dS[0]/dX[0] = g'(H[0] - V_th) * (1/tau), H[0] = 0.75, g' = 1/(1 + (pi/2*2*x)^2) with alpha 2
    x = const(1.5, 1, dtype=torch.float64).requires_grad_()
    (g,) = torch.autograd.grad(LIF()(x).sum(), x)
    expected = (1.0 / (1 + (math.pi / 2 * 2 * (0.75 - 1.0)) ** 2)) / 2.0
    assert abs(g.item() - expected) < 1e-12


def test_gradient_flows_through_time():
    T = 6
    x = (torch.rand(T, 4, dtype=torch.float64) * 2).requires_grad_()
    s = LIF(detach_reset=False)(x)
    (g,) = torch.autograd.grad(s[-1].sum(), x)
    assert (g[0] != 0).all()            # last step's spike reaches the input at step 0
    assert (g[-1] != 0).all()


def test_detach_reset_changes_gradient_not_forward():
    # X = 1.5 spikes at t = 1, 3. With a detached reset, V[1] = H[1]*(1 - S[1]) has zero
    # derivative wrt H[1] (S[1] = 1), so S[3] cannot see X[0]; without detaching it can.
    T = 4
    x = const(1.5, T, dtype=torch.float64).requires_grad_()
    s_a = LIF(detach_reset=False)(x)
    s_b = LIF(detach_reset=True)(x)
    assert torch.equal(s_a, s_b)
    (g_a,) = torch.autograd.grad(s_a[-1].sum(), x)
    (g_b,) = torch.autograd.grad(s_b[-1].sum(), x)
    assert g_a[0].item() != 0
    assert g_b[0].item() == 0
    assert g_b[-1].item() == g_a[-1].item() != 0  # the same-step path is unaffected


def test_no_state_between_calls():
    torch.manual_seed(2)
    lif = LIF()
    x = torch.rand(5, 3, 2, 4, 4) * 2
    s1, h1 = lif(x, return_membrane=True)
    s2, h2 = lif(x, return_membrane=True)
    assert torch.equal(s1, s2) and torch.equal(h1, h2)
    # a different batch size right after works and starts from V_reset too
    y = torch.rand(5, 7, 2, 4, 4) * 2
    sy = lif(y)
    assert sy.shape == y.shape
    assert torch.equal(lif(y[:, :3]), sy[:, :3])
    assert len(list(lif.buffers())) == 0 and len(list(lif.parameters())) == 0


def test_shape_dtype_and_binary_output():
    x = torch.randn(4, 2, 3, 5, 5)
    s, h = LIF()(x, return_membrane=True)
    assert s.shape == x.shape == h.shape
    assert s.dtype == x.dtype
    assert ((s == 0) | (s == 1)).all()


def test_default_surrogate_is_atan_alpha_2():
    lif = LIF()
    assert lif.surrogate.primitive is atan_primitive
    assert lif.surrogate.alpha == 2.0
    assert (lif.tau, lif.v_threshold, lif.v_reset, lif.detach_reset) == (2.0, 1.0, 0.0, False)
    assert "atan(alpha=2.0)" in repr(lif)
