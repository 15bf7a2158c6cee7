"""LIF neuron (SPEC section 1): hand-checkable dynamics, hard reset, gradients, no state between calls."""
import math
import warnings

import pytest
import torch

from spikediff_min import LIF, lif
from spikediff_min.surrogate import atan, atan_primitive, sigmoid


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


@pytest.mark.parametrize("detach_reset", [False, True])
@pytest.mark.parametrize("v_reset, surrogate", [(0.0, atan(2.0)), (-0.3, sigmoid(4.0))])
def test_fused_bptt_equals_autograd_through_the_loop(monkeypatch, detach_reset, v_reset, surrogate):
    """lif.FUSED: same spikes, and the hand-written backward through time equals autograd's."""
    torch.manual_seed(0)
    neuron = LIF(tau=2.0, v_reset=v_reset, surrogate=surrogate, detach_reset=detach_reset)
    x = (torch.randn(6, 2, 3, 4, 4) * 1.5).contiguous(memory_format=torch.channels_last_3d).requires_grad_()
    g = torch.randn(6, 2, 3, 4, 4)
    out = {}
    for fused in (False, True):
        monkeypatch.setattr(lif, "FUSED", fused)
        s = neuron(x)
        (grad,) = torch.autograd.grad((s * g).sum(), x)
        out[fused] = s, grad
    assert torch.equal(out[True][0], out[False][0]) and 0 < out[True][0].mean() < 1
    assert torch.allclose(out[True][1], out[False][1], rtol=1e-5, atol=1e-6)
    assert out[True][1].abs().max() > 0.1            # the gradient is not trivially zero


@pytest.mark.parametrize("v_reset", [0.0, -0.3])
@pytest.mark.parametrize("tau", [2.0, 3.0])
def test_inference_fast_path_gives_the_plain_spikes(monkeypatch, tau, v_reset):
    """lif.INFERENCE_FAST (no grad): the plain loop's spikes, in the input's memory layout."""
    torch.manual_seed(4)
    x = (2 * torch.randn(6 * 5, 8, 7, 7) + 1.5).contiguous(memory_format=torch.channels_last)
    x = x.unflatten(0, (6, 5))                                   # [T, B, C, H, W], NHWC strides
    layer = LIF(tau=tau, v_reset=v_reset)
    out = {}
    for fast in (False, True):
        monkeypatch.setattr(lif, "INFERENCE_FAST", fast)
        with torch.no_grad():
            out[fast] = layer(x)
    assert out[True].stride() == x.stride()
    assert 0.1 < out[True].mean() < 0.9                          # both branches of the reset happen
    if v_reset == 0.0:
        assert torch.equal(out[True], out[False])
    else:   # the reset value is exact on the fast path and h - (h - v_reset) on the plain one
        assert (out[True] != out[False]).float().mean() < 1e-3


def test_inference_fast_path_is_not_used_when_training():
    x = (torch.randn(4, 10) + 1).requires_grad_()
    LIF()(x).sum().backward()                                    # the autograd loop, gradients reach x
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_compiled_inference_loop_gives_the_eager_spikes(monkeypatch):
    """lif.INFERENCE_COMPILE (forced here on a small input): torch.compile of the no-grad loop,
    with a folded BatchNorm affine, gives the eager loop's spikes but for ulp ties at V_th."""
    torch.manual_seed(5)
    x = (torch.randn(4 * 6, 16, 7, 7)).contiguous(memory_format=torch.channels_last).unflatten(0, (4, 6))
    affine = (torch.rand(16, 1, 1) + 0.5, torch.rand(16, 1, 1) + 0.5)
    layer = LIF()
    monkeypatch.setattr(lif, "COMPILE_MIN_ELEMENTS", 0)
    out = {}
    for compiled in (False, True):
        monkeypatch.setattr(lif, "INFERENCE_COMPILE", compiled)
        with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out[compiled] = layer(x, affine=affine)
        failed = [w for w in caught if "inference loop failed" in str(w.message)]
        if compiled and failed:
            pytest.skip(f"torch.compile is unavailable here: {failed[0].message}")
    assert lif._compiled_inference is not None
    assert 0.1 < out[False].mean() < 0.9
    assert (out[True] != out[False]).float().mean() <= 1e-4


def test_failed_compile_falls_back_to_the_eager_loop(monkeypatch):
    def broken(fn, **kw):
        raise RuntimeError("no C++ compiler")
    monkeypatch.setattr(torch, "compile", broken)
    monkeypatch.setattr(lif, "_compiled_inference", None)
    monkeypatch.setattr(lif, "INFERENCE_COMPILE", True)
    monkeypatch.setattr(lif, "COMPILE_MIN_ELEMENTS", 0)
    x = 2 * torch.rand(4, 50)
    with torch.no_grad(), pytest.warns(UserWarning, match="no C\\+\\+ compiler"):
        s = LIF()(x)
    assert lif.INFERENCE_COMPILE is False                        # later calls go straight to eager
    with torch.no_grad():
        assert torch.equal(s, LIF()(x))
