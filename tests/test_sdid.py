"""SDID, the spiking denoiser (SPEC section 6): shapes, spiking path, gradients, paper preset, training."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from spikediff_min import absorbing, fast
from spikediff_min.lif import LIF
from spikediff_min.sdid import SDID, SDID_PRESETS, SDIDConfig, train_sdid
from spikediff_min.vqsvae import VQ_PRESETS

K = 8


def tiny(token_input="embed", **kw):
    return SDIDConfig(**{"num_codes": K, "num_timesteps": 49, "T": 2, "channels": (4, 4, 4, 4, 4),
                         "token_input": token_input, "embed_dim": 6, **kw})


def _inputs(hw, B=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x_t = torch.randint(0, K + 1, (B, hw, hw), generator=g)
    x_t[0, 0, 0] = K                                               # MASK present
    x_t[0, 0, 1] = 3
    t = torch.randint(1, hw * hw + 1, (B,), generator=g)
    return x_t, t


@pytest.mark.parametrize("token_input", ["float", "embed"])
@pytest.mark.parametrize("hw", [7, 8])
def test_shapes(token_input, hw):
    torch.manual_seed(0)
    model = SDID(tiny(token_input, num_timesteps=hw * hw))
    x_t, t = _inputs(hw)
    logits = model(x_t, t)
    assert logits.shape == (3, K, hw, hw) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    assert model.inputs(x_t, t).shape == (3, 2 if token_input == "float" else 7, hw, hw)
    # the output depends on the tokens and on t (train mode: an untrained net in eval mode is silent)
    x2 = x_t.clone()
    x2[:, 1:] = (x2[:, 1:] + 1) % (K + 1)
    assert not torch.allclose(model(x_t, t), model(x2, t))
    assert not torch.allclose(model(x_t, t), model(x_t, t.flip(0)))


def test_float_input_planes_are_raw_id_and_t():
    model = SDID(tiny("float"))
    x_t, t = _inputs(7)
    planes = model.inputs(x_t, t)
    assert torch.equal(planes[:, 0], x_t.float())
    assert torch.equal(planes[:, 1], t.float().view(-1, 1, 1).expand(-1, 7, 7))


def test_bad_token_input_raises():
    with pytest.raises(ValueError):
        SDID(tiny("onehot"))


@pytest.mark.parametrize("token_input", ["float", "embed"])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_every_conv_after_the_first_sees_spikes(token_input, mode):
    torch.manual_seed(0)
    model = SDID(tiny(token_input))
    model.train(mode == "train")
    seen = {}
    convs = {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))}
    assert set(convs) == {"block1.conv", "blocks.0.conv", "blocks.1.conv", "blocks.2.conv",
                          "blocks.3.conv", "out.module"}
    for name, m in convs.items():
        def hook(mod, inp, name=name):
            x = inp[0]
            seen[name] = seen.get(name, True) and bool(((x == 0) | (x == 1)).all())
        m.register_forward_pre_hook(hook)
    with fast.enabled(mean_first=False):                           # the readout run at every step
        model(*_inputs(7))
    assert set(seen) == set(convs)
    assert seen["block1.conv"] is False                             # the analog token / time planes
    assert all(seen[n] for n in convs if n != "block1.conv"), seen


@pytest.mark.parametrize("token_input", ["float", "embed"])
def test_logits_are_the_time_mean_of_a_non_spiking_readout(token_input):
    torch.manual_seed(0)
    model = SDID(tiny(token_input))                                  # train mode: batch statistics
    x_t, t = _inputs(7)
    x1 = model.block1(model.inputs(x_t, t), T=2)
    x5 = model.blocks(x1)
    assert x1.sum() > 0 and x5.sum() > 0                             # spikes do flow
    per_step = torch.stack([model.out.module(torch.cat([x5[i], x1[i]], 1)) for i in range(2)])
    assert torch.allclose(model(x_t, t), per_step.mean(0), atol=1e-6)
    assert sum(isinstance(m, LIF) for m in model.modules()) == 5    # no neuron on the output


def test_grad_reaches_embedding_rows_used():
    torch.manual_seed(0)
    model = SDID(tiny("embed"))
    x_t, t = _inputs(7)
    x_t[x_t == 5] = 4                                               # code 5 never appears
    x_0 = torch.randint(0, K, x_t.shape)
    F.cross_entropy(model(x_t, t), x_0).backward()
    g = model.embed.weight.grad
    assert g.shape == (K + 1, 6)
    used = x_t.unique().tolist()
    assert K in used
    for k in range(K + 1):
        assert (g[k].abs().sum() > 0) == (k in used), k
    assert model.block1.conv.weight.grad.abs().sum() > 0


def test_paper_presets_match_spec():
    s = SDID_PRESETS["paper"]
    assert s.channels == (64, 128, 256, 512, 256) and s.T == 16 and s.token_input == "float"
    assert (s.num_codes, s.num_timesteps, s.neuron) == (128, 49, "lif")
    assert (s.batch_size, s.lr, s.weight_decay, s.epochs, s.lr_schedule) == (32, 1e-3, 1e-3, 200, "constant")
    v = VQ_PRESETS["paper"]
    assert (v.T, v.num_codes, v.code_dim) == (16, 128, 16)
    assert (v.batch_size, v.lr, v.weight_decay, v.epochs) == (32, 1e-3, 1e-3, 100)
    # the paper network's layers: 2->64, 64->128, 128->256, 256->512, 512->256, cat 320 -> K, all 3x3
    m = SDID(s)
    convs = [m.block1.conv] + [b.conv for b in m.blocks] + [m.out.module]
    assert [(c.in_channels, c.out_channels) for c in convs] == \
        [(2, 64), (64, 128), (128, 256), (256, 512), (512, 256), (320, 128)]
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) and c.stride == (1, 1) for c in convs)
    assert all(c.dilation == (1, 1) for c in convs)
    assert m.embed is None


@pytest.mark.parametrize("dilations, radius", [((1, 1, 1, 1, 1), 6), ((1, 1, 2, 3, 1), 9)])
def test_dilations_set_how_far_a_logit_sees(dilations, radius):
    """A logit depends on the tokens within `radius` of it and on no others: six 3x3 layers (five
    blocks and the readout) reach 1 + 1 + 1 + 1 + 1 + 1 = 6 tokens away, dilated 1 + 1 + 2 + 3 + 1 + 1
    = 9. The ANN twin in eval mode, so no spike threshold or batch statistic hides a dependence."""
    torch.manual_seed(0)
    m = SDID(tiny(neuron="relu", T=1, dilations=dilations)).eval()
    x, t = torch.zeros(1, 25, 25, dtype=torch.long), torch.tensor([10])
    with torch.no_grad():
        base = m(x, t)[0, :, 12, 12]
        for d in (radius, radius + 1):
            y = x.clone()
            y[0, 12, 12 + d] = 5
            moved = not torch.allclose(m(y, t)[0, :, 12, 12], base)
            assert moved == (d == radius), (d, moved)
        assert m(x[:, :7, :7], t).shape == (1, K, 7, 7)                 # the grid keeps its size


def test_bad_dilations_raise():
    for bad in [(1, 1, 2), (1, 0, 1, 1, 1), (1, 1.5, 1, 1, 1)]:
        with pytest.raises(ValueError, match="dilations"):
            SDID(tiny(dilations=bad))


def _heldout_loss(model, tokens, T_diff):
    torch.manual_seed(123)
    x = tokens.repeat(4, 1, 1)
    t = absorbing.sample_t(len(x), T_diff, "cpu")
    x_t, mask = absorbing.q_sample(x, t, T_diff, K)
    with torch.no_grad():
        return absorbing.loss(model(x_t, t), x, mask, t, T_diff).item()


def test_train_sdid_decreases_loss():
    # 64 grids, each filled with one code: the visible tokens tell the masked ones
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, K, (64, 1, 1), generator=g).expand(64, 7, 7).clone()
    cfg = tiny("embed", channels=(8, 8, 8, 8, 8), embed_dim=8, batch_size=64, epochs=20, lr=1e-2)
    torch.manual_seed(0)
    init = SDID(cfg).eval()                                          # train_sdid's init (same seed)
    model, h = train_sdid(cfg, tokens, device="cpu", seed=0, progress=False)
    assert h["step"] == [10, 20] and len(h["loss"]) == 2
    assert h["loss"][-1] < 0.85 * h["loss"][0]
    before, after = _heldout_loss(init, tokens, 49), _heldout_loss(model, tokens, 49)
    assert after < 0.75 * before, (before, after)
    assert not model.training
