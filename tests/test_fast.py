"""fast.py: every speed trick computes the plain path's function (issue 18: the plain path first,
the fast path beside it). The switch itself; each trick against the plain path; all of them on
whole models with fixed weights and inputs; and a guard that each trick really changes the
computation (so a trick that silently does nothing cannot pass as "equal")."""
import copy
import warnings

import pytest
import torch
import torch.nn as nn

from spikediff_min import absorbing, fast
from spikediff_min.layers import ConvBNLIF
from spikediff_min.lif import LIF
from spikediff_min.sdid import SDID, SDIDConfig
from spikediff_min.surrogate import atan, sigmoid
from spikediff_min.train import autocast
from spikediff_min.vqsvae import VQSVAE, VQSVAEConfig

DEFAULTS = dict(static_once=True, channels_last=True, inference_fast=True, inference_compile=True,
                fused=False, mean_first=True, skip_unchanged=True, logits_where_drawn=True)


@pytest.fixture(autouse=True)
def restore_tricks():
    saved = fast.ENABLED, dict(fast.TRICKS), fast.COMPILE_MIN_ELEMENTS, fast._compiled_inference
    yield
    fast.ENABLED, fast.COMPILE_MIN_ELEMENTS, fast._compiled_inference = saved[0], saved[2], saved[3]
    fast.TRICKS.update(saved[1])


def only(trick):
    """fast.enabled(**only(name)): that trick on, every other off."""
    return {k: k == trick for k in fast.TRICKS}


# ---- the switch --------------------------------------------------------------------------------

def test_defaults_and_one_switch_for_all():
    assert fast.ENABLED is True and fast.state() == DEFAULTS          # FUSED off, the rest on
    with fast.enabled(False):
        assert not any(fast.state().values())
        with fast.enabled(True, mean_first=False):                  # nested: one trick off
            assert fast.state() == {**DEFAULTS, "mean_first": False}
        assert not any(fast.state().values())
    assert fast.state() == DEFAULTS                                 # restored on exit


def test_set_returns_the_old_values_and_rejects_unknown_tricks():
    old = fast.set(fused=True, static_once=False)
    assert old == {"fused": False, "static_once": True} and fast.on("fused") and not fast.on("static_once")
    fast.set(**old)
    assert fast.state() == DEFAULTS
    with pytest.raises(ValueError, match="STATIC_ONCE"):
        fast.set(STATIC_ONCE=False)


# ---- LIF: inference_fast, inference_compile, fused ----------------------------------------------

@pytest.mark.parametrize("detach_reset", [False, True])
@pytest.mark.parametrize("v_reset, surrogate", [(0.0, atan(2.0)), (-0.3, sigmoid(4.0))])
def test_fused_bptt_equals_autograd_through_the_loop(detach_reset, v_reset, surrogate):
    """fused: same spikes, and the hand-written backward through time equals autograd's."""
    torch.manual_seed(0)
    neuron = LIF(tau=2.0, v_reset=v_reset, surrogate=surrogate, detach_reset=detach_reset)
    x = (torch.randn(6, 2, 3, 4, 4) * 1.5).contiguous(memory_format=torch.channels_last_3d).requires_grad_()
    g = torch.randn(6, 2, 3, 4, 4)
    out = {}
    for fused in (False, True):
        with fast.enabled(fused=fused):
            s = neuron(x)
        (grad,) = torch.autograd.grad((s * g).sum(), x)
        out[fused] = s, grad
        assert (type(s.grad_fn).__name__ == "_LIFFunctionBackward") == fused   # the trick did act
    assert torch.equal(out[True][0], out[False][0]) and 0 < out[True][0].mean() < 1
    assert torch.allclose(out[True][1], out[False][1], rtol=1e-5, atol=1e-6)
    assert out[True][1].abs().max() > 0.1            # the gradient is not trivially zero


@pytest.mark.parametrize("v_reset", [0.0, -0.3])
@pytest.mark.parametrize("tau", [2.0, 3.0])
def test_inference_fast_gives_the_plain_spikes(tau, v_reset):
    """inference_fast (no grad): the plain loop's spikes, in the input's memory layout."""
    torch.manual_seed(4)
    x = (2 * torch.randn(6 * 5, 8, 7, 7) + 1.5).contiguous(memory_format=torch.channels_last)
    x = x.unflatten(0, (6, 5))                                   # [T, B, C, H, W], NHWC strides
    layer = LIF(tau=tau, v_reset=v_reset)
    with torch.no_grad():
        with fast.enabled(False):
            plain = layer(x)
        fast_ = layer(x)
    assert fast_.stride() == x.stride()
    assert 0.1 < fast_.mean() < 0.9                              # both branches of the reset happen
    if v_reset == 0.0:
        assert torch.equal(fast_, plain)
    else:   # the reset value is exact on the fast path and h - (h - v_reset) on the plain one
        assert (fast_ != plain).float().mean() < 1e-3


def test_inference_fast_is_not_used_when_training():
    x = (torch.randn(4, 10) + 1).requires_grad_()
    s = LIF()(x)
    assert s.grad_fn is not None                                 # the autograd loop ...
    s.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0         # ... and gradients reach x


def test_compiled_inference_loop_gives_the_eager_spikes():
    """inference_compile (forced here on a small input): torch.compile of the no-grad loop, with
    a folded BatchNorm affine, gives the eager loop's spikes but for ulp ties at V_th."""
    torch.manual_seed(5)
    x = (torch.randn(4 * 6, 16, 7, 7)).contiguous(memory_format=torch.channels_last).unflatten(0, (4, 6))
    affine = (torch.rand(16, 1, 1) + 0.5, torch.rand(16, 1, 1) + 0.5)
    layer = LIF()
    fast.COMPILE_MIN_ELEMENTS = 0
    out = {}
    for compiled in (False, True):
        with torch.no_grad(), fast.enabled(inference_compile=compiled), \
                warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out[compiled] = layer(x, affine=affine)
        failed = [w for w in caught if "inference loop failed" in str(w.message)]
        if compiled and failed:
            pytest.skip(f"torch.compile is unavailable here: {failed[0].message}")
    assert fast._compiled_inference is not None
    assert 0.1 < out[False].mean() < 0.9
    assert (out[True] != out[False]).float().mean() <= 1e-4


def test_failed_compile_falls_back_to_the_eager_loop(monkeypatch):
    def broken(fn, **kw):
        raise RuntimeError("no C++ compiler")
    monkeypatch.setattr(torch, "compile", broken)
    fast._compiled_inference, fast.COMPILE_MIN_ELEMENTS = None, 0
    x = 2 * torch.rand(4, 50)
    with torch.no_grad(), pytest.warns(UserWarning, match="no C\\+\\+ compiler"):
        s = LIF()(x)
    assert fast.TRICKS["inference_compile"] is False             # later calls go straight to eager
    with torch.no_grad(), fast.enabled(False):
        assert torch.equal(s, LIF()(x))


# ---- ConvBNLIF: static_once, channels_last, BatchNorm folded into the LIF loop ------------------

def _static_vs_expanded(train, T=4):
    """The same block on a time-invariant input: [B, ...] with T= (static_once) vs T copies."""
    torch.manual_seed(3)
    block = ConvBNLIF(2, 6, 3, stride=2, padding=1).double()
    with torch.no_grad():  # non-trivial BN affine and running stats
        block.bn.weight.uniform_(0.5, 2.0)
        block.bn.bias.uniform_(-0.5, 0.5)
        block.bn.running_mean.uniform_(-0.5, 0.5)
        block.bn.running_var.uniform_(0.5, 2.0)
    a, b = copy.deepcopy(block), copy.deepcopy(block)
    a.train(train), b.train(train)
    x = torch.randn(3, 2, 8, 8, dtype=torch.float64) * 2
    s_static = a(x, T=T)
    with fast.enabled(static_once=False):
        s_expanded = b(x, T=T)
    return a, b, s_static, s_expanded


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_static_once_same_spikes_and_bn_running_stats(train):
    a, b, s_static, s_expanded = _static_vs_expanded(train)
    assert s_static.shape == s_expanded.shape == (4, 3, 6, 4, 4)
    assert torch.equal(s_static, s_expanded)
    assert a.bn.num_batches_tracked.item() == b.bn.num_batches_tracked.item()
    assert torch.allclose(a.bn.running_mean, b.bn.running_mean, atol=1e-10)
    assert torch.allclose(a.bn.running_var, b.bn.running_var, atol=1e-10)


def test_static_once_gradient_matches_expanded():
    a, b, s_static, s_expanded = _static_vs_expanded(True)
    g = torch.randn_like(s_static)
    (s_static * g).sum().backward()
    (s_expanded * g).sum().backward()
    assert torch.allclose(a.conv.weight.grad, b.conv.weight.grad, atol=1e-8)
    assert torch.allclose(a.bn.weight.grad, b.bn.weight.grad, atol=1e-8)
    assert a.conv.weight.grad.abs().max() > 0


@pytest.mark.parametrize("static", [False, True])
def test_eval_folds_batchnorm_into_the_lif_loop(static):
    """Eval without autograd: BN runs as the LIF loop's affine (inference_fast); the spikes match
    conv -> BN -> LIF up to an ulp at the threshold, with BN's trained statistics."""
    torch.manual_seed(0)
    block = ConvBNLIF(4, 8)
    with torch.no_grad():
        block.bn.running_mean.uniform_(-0.5, 0.5), block.bn.running_var.uniform_(0.5, 2.0)
        block.bn.weight.uniform_(0.5, 1.5), block.bn.bias.uniform_(-0.3, 0.8)
    block.eval()
    x = 3 * (torch.randn(5, 6, 4, 7, 7) if not static else torch.randn(6, 4, 7, 7))
    out = {}
    for on in (False, True):
        with torch.no_grad(), fast.enabled(inference_fast=on):
            out[on] = block(x, T=5) if static else block(x)
    assert out[True].shape == (5, 6, 8, 7, 7) and 0.05 < out[True].mean() < 0.95
    assert (out[True] != out[False]).float().mean() <= 1e-3
    scale, shift = fast.bn_affine(block.bn)
    y = torch.randn(3, 8, 7, 7)
    assert torch.allclose(y * scale + shift, block.bn(y), atol=1e-6)


# ---- SDID: mean_first, the readout at some positions only ---------------------------------------

def tiny_sdid_cfg(token_input="embed"):
    return SDIDConfig(num_codes=8, num_timesteps=49, T=2, channels=(4, 4, 4, 4, 4), token_input=token_input,
                      embed_dim=6)


def _sdid_inputs(B=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 9, (B, 7, 7), generator=g), torch.randint(1, 50, (B,), generator=g)


@pytest.mark.parametrize("token_input", ["float", "embed"])
def test_mean_first_gives_the_same_logits_and_gradients(token_input):
    torch.manual_seed(0)
    model = SDID(tiny_sdid_cfg(token_input))
    x_t, t = _sdid_inputs()
    results = []
    for mean_first in (False, True):
        with fast.enabled(mean_first=mean_first):
            model.zero_grad()
            logits = model(x_t, t)
            (logits ** 2).mean().backward()
        results.append((logits.detach(), [p.grad.clone() for p in model.parameters()]))
    (plain, g_plain), (fast_, g_fast) = results
    assert plain.abs().max() > 0
    assert torch.allclose(plain, fast_, atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-5, rtol=1e-4) for a, b in zip(g_plain, g_fast))


@pytest.mark.parametrize("kernel, padding, bias", [(3, 1, True), (5, 2, False), (3, 0, True)])
def test_conv_at_is_the_conv_picked_at_the_positions(kernel, padding, bias):
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 4, kernel, padding=padding, bias=bias)
    x = torch.randn(3, 6, 7, 7)
    full = conv(x)                                             # [3, 4, H', W']
    where = torch.rand(3, *full.shape[2:]) < 0.3
    where[0, 0, 0] = where[-1, -1, -1] = True                  # corners: the padding is used
    picked = fast.conv_at(conv, x, where)
    assert picked.shape == (int(where.sum()), 4)
    assert torch.allclose(picked, full.permute(0, 2, 3, 1)[where], atol=1e-5)


@pytest.mark.parametrize("mean_first", [False, True])
def test_sdid_where_gives_the_picked_logits(mean_first):
    torch.manual_seed(0)
    model = SDID(tiny_sdid_cfg()).eval()
    x_t, t = _sdid_inputs(5)
    where = torch.rand(x_t.shape) < 0.2
    with torch.no_grad(), fast.enabled(mean_first=mean_first):
        full, picked = model(x_t, t), model(x_t, t, where=where)
    assert picked.shape == (int(where.sum()), model.cfg.num_codes)
    assert torch.allclose(picked, full.permute(0, 2, 3, 1)[where], atol=1e-5)


# ---- the paper sampler: skip_unchanged, logits_where_drawn -------------------------------------

K = 6


def test_skip_unchanged_gives_the_same_greedy_samples():
    """skip_unchanged runs the denoiser only on images that unmask a token at this step. With
    temperature 0 no token draw uses the RNG, so both paths see the same unmasking order and must
    agree exactly, for a denoiser whose logits depend on each image's current tokens and on t."""
    def context(x_t, t):                                       # [B, H, W], [B] -> [B, K, H, W]
        known = (x_t != K).float()
        logits = torch.stack([((x_t * known) % (k + 2)).float() * known.sum((1, 2), keepdim=True)
                              for k in range(K)], 1)
        return logits + t.float().view(-1, 1, 1, 1) * torch.arange(K).float().view(1, K, 1, 1) % 3

    runs = {}
    for skip in (False, True):
        calls = []

        def denoiser(x_t, t):
            calls.append(x_t.clone())
            return context(x_t, t)
        with fast.enabled(skip_unchanged=skip):
            out = absorbing.sample(denoiser, 6, (7, 7), 49, K, temperature=0, batch_size=4, progress=False,
                                   generator_seed=0)
        assert (out != K).all()
        runs[skip] = out, sum(len(x) for x in calls), calls    # samples, image evaluations
    assert torch.equal(runs[True][0], runs[False][0])
    assert runs[True][1] < runs[False][1]
    assert all(len(x) <= 4 and (x == K).flatten(1).any(1).all() for x in runs[True][2])  # masked images only


def test_logits_where_drawn_asks_only_for_the_drawn_tokens():
    """logits_where_drawn: a denoiser with `takes_where` is asked for exactly the positions
    unmasked at this step, and the samples equal those drawn from the full logits."""
    def logits_fn(x_t, t):
        return torch.stack([((x_t + 3 * k) % 5).float() + t.view(-1, 1, 1) % (k + 2) for k in range(K)], 1)

    asked = []

    def denoiser(x_t, t, where=None):
        full = logits_fn(x_t, t)
        if where is None:
            return full
        asked.append((((x_t == K) & where) == where, int(where.sum())))   # masked positions only
        return full.permute(0, 2, 3, 1)[where]
    denoiser.takes_where = True

    runs = {}
    for on in (False, True):
        with fast.enabled(logits_where_drawn=on):
            runs[on] = absorbing.sample(denoiser, 6, (4, 4), 16, K, temperature=1.0, batch_size=4, progress=False,
                                        generator_seed=0)
    assert torch.equal(runs[True], runs[False]) and (runs[True] != K).all()
    assert all(ok.all() for ok, _ in asked)
    assert sum(n for _, n in asked) == 6 * 16                  # each token is asked for once, when drawn


# ---- whole models: every trick alone, and the defaults, against the plain path ------------------

T, B = 3, 4


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
TRAIN_TRICKS = ["static_once", "channels_last", "fused", "mean_first", "defaults"]
EVAL_TRICKS = ["static_once", "channels_last", "inference_fast", "mean_first", "defaults"]


def tricks(name):
    return DEFAULTS if name == "defaults" else only(name)


def run(model, fn, train=True, **kw):
    """fast.enabled(**kw), one forward (+ backward in training): outputs, spikes of every LIF, conv inputs."""
    spikes, conv_inputs, hooks = [], [], []
    for mod in model.modules():
        if isinstance(mod, LIF):
            hooks.append(mod.register_forward_hook(lambda m, i, o: spikes.append(o.detach())))
        if isinstance(mod, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            hooks.append(mod.register_forward_pre_hook(lambda m, i: conv_inputs.append(i[0])))
    model.train(train)
    with fast.enabled(**kw):
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


@pytest.mark.parametrize("trick", TRAIN_TRICKS)
@pytest.mark.parametrize("name", MODELS)
def test_training_step_same_outputs_spikes_and_gradients(name, trick):
    model, train_out, _ = MODELS[name]()
    m_off, m_on = copy.deepcopy(model), copy.deepcopy(model)
    out_off, s_off, _ = run(m_off, train_out, flag=False)
    out_on, s_on, _ = run(m_on, train_out, **tricks(trick))
    assert_same(out_off, out_on)
    assert len(s_off) == len(s_on) > 0
    assert all(torch.equal(a, b) for a, b in zip(s_off, s_on))                 # identical spike trains
    for (n, p_off), p_on in zip(m_off.named_parameters(), m_on.parameters()):
        if p_off.grad is not None:
            assert torch.allclose(p_off.grad, p_on.grad, rtol=1e-4, atol=1e-6), (n, (p_off.grad - p_on.grad).abs().max())
    for b_off, b_on in zip(m_off.buffers(), m_on.buffers()):                    # BN running stats, VQ usage
        assert torch.allclose(b_off.float(), b_on.float(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("trick", EVAL_TRICKS)
@pytest.mark.parametrize("name", MODELS)
def test_eval_same_outputs(name, trick):
    model, _, eval_out = MODELS[name]()
    with torch.no_grad():   # non-trivial BN running statistics, and a bias so that eval spikes
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 1.5)
                mod.bias.uniform_(0.5, 1.5)
    out_off, s_off, _ = run(copy.deepcopy(model), eval_out, train=False, flag=False)
    out_on, s_on, _ = run(copy.deepcopy(model), eval_out, train=False, **tricks(trick))
    assert_same(out_off, out_on)
    assert len(s_off) == len(s_on) > 0 and all(0 < s.mean() < 1 for s in s_on)   # spikes, not all
    assert all(torch.equal(a, b) for a, b in zip(s_off, s_on))


def test_each_trick_changes_the_computation():
    """Guard against a trick that silently does nothing (the equality tests would still pass)."""
    model, train_out, _ = tiny_sdid("float")
    _, _, ins = run(copy.deepcopy(model), train_out, flag=False)
    assert ins[0].shape[0] == T * B and len(ins) == 6 and ins[-1].shape[0] == T * B   # plain: T copies, T readouts
    assert not any(x.is_contiguous(memory_format=torch.channels_last) and x.shape[1] > 1 for x in ins)
    _, _, ins = run(copy.deepcopy(model), train_out, **only("static_once"))
    assert ins[0].shape[0] == B and ins[1].shape[0] == T * B                            # block1's conv once
    _, _, ins = run(copy.deepcopy(model), train_out, **only("channels_last"))
    assert all(x.is_contiguous(memory_format=torch.channels_last) for x in ins)
    _, _, ins = run(copy.deepcopy(model), train_out, **only("mean_first"))
    assert ins[-1].shape[0] == B                                                        # the readout once
    m = copy.deepcopy(model)
    bn_calls = []
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.register_forward_hook(lambda *a: bn_calls.append(1))
    run(m, train_out, train=False, flag=False)
    assert len(bn_calls) == 5
    run(m, train_out, train=False, **only("inference_fast"))
    assert len(bn_calls) == 5                                  # eval: BN folded into the LIF loop
    with fast.enabled(False):
        assert not any(fast.state().values())


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
