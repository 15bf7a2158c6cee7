"""Surrogate spike functions: Heaviside forward, hand-written backward == autograd of the primitive."""
import math

import pytest
import torch

from spikediff_min import surrogate
from spikediff_min.surrogate import atan, sigmoid


def test_atan_forward_is_heaviside_incl_zero():
    x = torch.tensor([-2.0, -1e-6, 0.0, 1e-6, 3.0])
    s = atan(2.0)(x)
    assert s.dtype == x.dtype
    assert torch.equal(s, torch.tensor([0.0, 0.0, 1.0, 1.0, 1.0]))
    x64 = x.double()
    assert atan(2.0)(x64).dtype == torch.float64


def test_sigmoid_forward_is_heaviside():
    x = torch.tensor([-1.0, 0.0, 1.0])
    assert torch.equal(sigmoid()(x), torch.tensor([0.0, 1.0, 1.0]))


@pytest.mark.parametrize("spike", [atan(2.0), atan(4.0), sigmoid(4.0)], ids=repr)
def test_manual_backward_matches_autograd_of_primitive(spike):
    # spikingjelly's check_manual_grad: d/dx spike(x) (hand-written) == d/dx g(x) (autograd)
    x = torch.linspace(-3, 3, 601, dtype=torch.float64, requires_grad=True)
    (g_manual,) = torch.autograd.grad(spike(x).sum(), x)
    (g_auto,) = torch.autograd.grad(spike.smooth(x).sum(), x)
    assert g_manual.dtype == torch.float64
    assert torch.allclose(g_manual, g_auto, atol=1e-10, rtol=0)
    assert (g_manual > 0).all()  # a surrogate never kills the gradient outright


def test_manual_backward_scales_incoming_grad():
    x = torch.tensor([-0.3, 0.0, 0.7], dtype=torch.float64, requires_grad=True)
    spike = atan(2.0)
    (g1,) = torch.autograd.grad(spike(x).sum(), x)
    (g3,) = torch.autograd.grad((3 * spike(x)).sum(), x)
    assert torch.allclose(g3, 3 * g1, atol=1e-12)


@pytest.mark.parametrize("alpha", [2.0, 4.0])
def test_atan_closed_form_by_hand(alpha):
    # g'(x) = (alpha/2) / (1 + (pi/2 * alpha * x)^2), SPEC section 2
    pts = [0.0, 0.25, -0.5, 1.0]
    x = torch.tensor(pts, requires_grad=True)
    (g,) = torch.autograd.grad(atan(alpha)(x).sum(), x)
    expected = torch.tensor([(alpha / 2) / (1 + (math.pi / 2 * alpha * p) ** 2) for p in pts])
    assert torch.allclose(g, expected, atol=1e-6)
    assert g[0].item() == pytest.approx(alpha / 2)  # peak at x = 0


def test_atan_paper_default_value_at_zero_is_one():
    x = torch.zeros(1, requires_grad=True)
    (g,) = torch.autograd.grad(atan()(x).sum(), x)
    assert g.item() == pytest.approx(1.0)  # alpha/2 with the paper's alpha = 2


def test_primitive_is_a_smooth_step():
    x = torch.tensor([-1e3, 0.0, 1e3], dtype=torch.float64)
    for prim in (surrogate.atan_primitive, surrogate.sigmoid_primitive):
        y = prim(x)
        assert torch.allclose(y, torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64), atol=1e-3)


def test_repr_names_surrogate_and_alpha():
    assert repr(atan(2.0)) == "atan(alpha=2.0)"
    assert repr(sigmoid(4.0)) == "sigmoid(alpha=4.0)"
