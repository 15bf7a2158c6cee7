"""The optimised path computes the same function as the plain one (layers.STATIC_ONCE,
layers.CHANNELS_LAST, bf16 autocast), on whole models with fixed weights and inputs."""
import copy

import pytest
import torch

from spikediff_min import absorbing, layers
from spikediff_min.lif import LIF
from spikediff_min.sdid import SDID, SDIDConfig
from spikediff_min.train import autocast
from spikediff_min.vqsvae import VQSVAE, VQSVAEConfig

T, B = 3, 4
PLAIN = dict(static_once=False, channels_last=False)
PAIRS = {  # (off, on) for each optimisation, and all of them together
    "static_once": (PLAIN, dict(static_once=True, channels_last=False)),
    "channels_last": (dict(static_once=True, channels_last=False), dict(static_once=True, channels_last=True)),
    "both": (PLAIN, dict(static_once=True, channels_last=True)),
}


@pytest.fixture(autouse=True)
def restore_switches():
    saved = layers.STATIC_ONCE, layers.CHANNELS_LAST
    yield
    layers.STATIC_ONCE, layers.CHANNELS_LAST = saved


def tiny_vq():
    torch.manual_seed(0)
    model = VQSVAE(VQSVAEConfig(T=T, width=8, num_codes=16, code_dim=4))
    x = torch.rand(B, 1, 16, 16) - 0.5                       # [-0.5, 0.5], token grid 4x4
    return model, lambda m: m(x), lambda m: {"codes": m.encode(x), "decoded": m.decode(m.encode(x))}


def tiny_sdid(token_input):
    torch.manual_seed(0)
    cfg = SDIDConfig(num_codes=16, num_timesteps=16, T=T, channels=(8, 8, 8, 8, 8), token_input=token_input)
    model = SDID(cfg)
    x_0 = torch.randint(0, 16, (B, 4, 4))
    t = torch.tensor([1, 5, 11, 16])
    x_t, mask = absorbing.q_sample(x_0, t, 16, 16)

    def train_out(m):
        logits = m(x_t, t)
        return {"loss": absorbing.loss(logits, x_0, mask, t, 16), "logits": logits}
    return model, train_out, lambda m: {"logits": m(x_t, t)}


MODELS = {"vqsvae": tiny_vq, "sdid-float": lambda: tiny_sdid("float"), "sdid-embed": lambda: tiny_sdid("embed")}


def run(model, fn, static_once, channels_last, train=True):
    """Switches set, one forward (+ backward in training): outputs, spikes of every LIF, conv inputs."""
    layers.STATIC_ONCE, layers.CHANNELS_LAST = static_once, channels_last
    spikes, conv_inputs, hooks = [], [], []
    for mod in model.modules():
        if isinstance(mod, LIF):
            hooks.append(mod.register_forward_hook(lambda m, i, o: spikes.append(o.detach())))
        if isinstance(mod, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            hooks.append(mod.register_forward_pre_hook(lambda m, i: conv_inputs.append(i[0])))
    model.train(train)
    if train:
        out = fn(model)
        out["loss"].backward()
    else:
        with torch.no_grad():
            out = fn(model)
    for h in hooks:
        h.remove()
    return out, spikes, conv_inputs


def assert_same(a, b, atol=1e-5):
    for k in a:
        if a[k].dtype in (torch.long, torch.bool):
            assert torch.equal(a[k], b[k]), k
        else:
            assert torch.allclose(a[k], b[k], rtol=1e-5, atol=atol), (k, (a[k] - b[k]).abs().max())


@pytest.mark.parametrize("pair", PAIRS)
@pytest.mark.parametrize("name", MODELS)
def test_training_step_same_outputs_spikes_and_gradients(name, pair):
    off, on = PAIRS[pair]
    model, train_out, _ = MODELS[name]()
    m_off, m_on = copy.deepcopy(model), copy.deepcopy(model)
    out_off, s_off, _ = run(m_off, train_out, **off)
    out_on, s_on, _ = run(m_on, train_out, **on)
    assert_same(out_off, out_on)
    assert len(s_off) == len(s_on) > 0
    assert all(torch.equal(a, b) for a, b in zip(s_off, s_on))                 # identical spike trains
    for (n, p_off), p_on in zip(m_off.named_parameters(), m_on.parameters()):
        if p_off.grad is not None:
            assert torch.allclose(p_off.grad, p_on.grad, rtol=1e-4, atol=1e-6), (n, (p_off.grad - p_on.grad).abs().max())
    for b_off, b_on in zip(m_off.buffers(), m_on.buffers()):                    # BN running stats, VQ usage
        assert torch.allclose(b_off.float(), b_on.float(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("pair", PAIRS)
@pytest.mark.parametrize("name", MODELS)
def test_eval_same_outputs(name, pair):
    off, on = PAIRS[pair]
    model, _, eval_out = MODELS[name]()
    with torch.no_grad():   # non-trivial BN running statistics
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 1.5)
    out_off, s_off, _ = run(copy.deepcopy(model), eval_out, train=False, **off)
    out_on, s_on, _ = run(copy.deepcopy(model), eval_out, train=False, **on)
    assert_same(out_off, out_on)
    assert all(torch.equal(a, b) for a, b in zip(s_off, s_on))


def test_switches_change_the_computation():
    # guard against a switch that silently does nothing
    model, train_out, _ = tiny_sdid("float")
    _, _, ins = run(copy.deepcopy(model), train_out, static_once=True, channels_last=False)
    assert ins[0].shape[0] == B and not ins[1].is_contiguous(memory_format=torch.channels_last)
    _, _, ins = run(copy.deepcopy(model), train_out, static_once=False, channels_last=True)
    assert ins[0].shape[0] == T * B                                   # block1 runs on T copies
    assert all(x.is_contiguous(memory_format=torch.channels_last) for x in ins)


@pytest.mark.parametrize("name", ["vqsvae", "sdid-embed"])
def test_bf16_autocast_loss_close_to_fp32(name):
    # bf16 keeps 8 bits of mantissa (~0.4% per value) and may flip a few spikes: the loss must
    # stay within 1% of fp32 (measured here: 1e-4 relative)
    model, train_out, _ = MODELS[name]()
    model.eval()
    with torch.no_grad():
        fp32 = train_out(model)["loss"]
        with autocast("cpu", True):
            bf16 = train_out(model)["loss"]
    assert torch.isfinite(bf16)
    assert abs(bf16.item() - fp32.item()) <= 0.01 * abs(fp32.item()), (bf16.item(), fp32.item())
