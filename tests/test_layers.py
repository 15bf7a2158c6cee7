"""Spiking building blocks (SPEC section 3): time folding, Conv-BN-LIF, PSP filter, membrane readout."""

import pytest
import torch
import torch.nn as nn

from spikediff_min import ConvBNLIF, SeqToANN, fast, membrane_readout, psp


@pytest.fixture(autouse=True, params=["plain", "fast"])
def path(request):
    """Every fact below holds on the plain blocks (fast.ENABLED off) and on fast.py's routes."""
    with fast.enabled(request.param == "fast"):
        yield request.param


def test_seq_to_ann_equals_per_step():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, 3, stride=2, padding=1)
    x = torch.randn(4, 2, 3, 8, 8)
    y = SeqToANN(conv)(x)
    assert y.shape == (4, 2, 5, 4, 4)
    per_step = torch.stack([conv(x_t) for x_t in x])
    assert torch.allclose(y, per_step, atol=1e-6)


def test_seq_to_ann_keeps_time_and_batch_apart():
    # folding must be [T, B] -> T*B -> [T, B], not mixing time with batch
    x = torch.arange(3 * 2, dtype=torch.float32).reshape(3, 2, 1)
    y = SeqToANN(nn.Identity())(x)
    assert torch.equal(y, x)
    lin = nn.Linear(1, 1)
    assert torch.allclose(SeqToANN(lin)(x), torch.stack([lin(x_t) for x_t in x]), atol=1e-6)


def test_conv_and_transposed_shapes():
    x = torch.randn(3, 2, 4, 14, 14)
    down = ConvBNLIF(4, 6, 3, stride=2, padding=1)
    assert down(x).shape == (3, 2, 6, 7, 7)
    up = ConvBNLIF(6, 4, 3, stride=2, padding=1, output_padding=1, transposed=True)
    assert isinstance(up.conv, nn.ConvTranspose2d)
    assert up(torch.randn(3, 2, 6, 7, 7)).shape == (3, 2, 4, 14, 14)
    one = ConvBNLIF(4, 16, 1, padding=0)
    assert one(x).shape == (3, 2, 16, 14, 14)


def test_block_output_is_binary():
    torch.manual_seed(1)
    s = ConvBNLIF(1, 8)(torch.randn(4, 3, 1, 7, 7) * 3)
    assert ((s == 0) | (s == 1)).all()
    assert 0 < s.mean().item() < 1  # some spikes, not all


def test_block_equals_manual_composition():
    torch.manual_seed(2)
    block = ConvBNLIF(2, 3).double().eval()
    with torch.no_grad():
        block.bn.running_mean.uniform_(-0.5, 0.5)
        block.bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(4, 2, 2, 5, 5, dtype=torch.float64)
    y = torch.stack([block.bn(block.conv(x_t)) for x_t in x])
    assert torch.equal(block(x), block.neuron(y))


def test_relu_variant_and_unknown_neuron():
    torch.manual_seed(4)
    block = ConvBNLIF(2, 4, neuron="relu")
    assert isinstance(block.neuron, nn.ReLU)
    y = block(torch.randn(1, 3, 2, 6, 6))
    assert (y >= 0).all() and (y > 0).any()
    assert not ((y == 0) | (y == 1)).all()  # analog, not spikes
    with pytest.raises(ValueError):
        ConvBNLIF(2, 4, neuron="izhikevich")


def test_lif_kwargs_reach_the_neuron():
    block = ConvBNLIF(2, 4, tau=3.0, v_threshold=0.5, detach_reset=True)
    assert (block.neuron.tau, block.neuron.v_threshold, block.neuron.detach_reset) == (3.0, 0.5, True)


def test_psp_closed_form():
    # p[t] = sum_{k<=t} (1/tau)(1 - 1/tau)^(t-k) s[k]
    torch.manual_seed(5)
    for tau in (2.0, 3.0):
        s = (torch.rand(10, 3, 4) > 0.5).double()
        T = s.shape[0]
        closed = torch.stack([
            sum((1 / tau) * (1 - 1 / tau) ** (t - k) * s[k] for k in range(t + 1)) for t in range(T)
        ])
        assert torch.allclose(psp(s, tau_s=tau), closed, atol=1e-12)


def test_psp_by_hand_and_default_tau():
    s = torch.tensor([1.0, 0.0, 1.0, 1.0])
    assert torch.allclose(psp(s), torch.tensor([0.5, 0.25, 0.625, 0.8125]), atol=1e-6)
    assert psp(torch.zeros(3, 2)).abs().sum() == 0


def test_membrane_readout_direct_sum():
    torch.manual_seed(6)
    x = torch.randn(7, 2, 3, 4, dtype=torch.float64)
    T = x.shape[0]
    direct = sum(0.8 ** (T - 1 - t) * x[t] for t in range(T))
    y = membrane_readout(x)
    assert y.shape == x.shape[1:]
    assert torch.allclose(y, direct, atol=1e-12)
    # by hand: x = [1, 1, 1] -> 0.64 + 0.8 + 1
    assert membrane_readout(torch.ones(3, 1)).item() == pytest.approx(2.44)
    # the last step weighs most
    e_last = torch.zeros(3, 1)
    e_last[-1] = 1
    e_first = torch.zeros(3, 1)
    e_first[0] = 1
    assert membrane_readout(e_last).item() == 1.0
    assert membrane_readout(e_first).item() == pytest.approx(0.64)
