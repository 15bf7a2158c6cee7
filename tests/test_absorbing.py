"""Absorbing mask schedule (SPEC section 5): forward masking, reweighted ELBO, the paper's and MaskGIT samplers."""
import math

import pytest
import torch
import torch.nn.functional as F

from spikediff_min import absorbing, fast

K = 6            # codes 0..5, MASK = 6


def test_q_sample_masked_fraction_is_t_over_T():
    torch.manual_seed(0)
    T = 49
    t = torch.tensor([1, 10, 25, 40])
    x_0 = torch.randint(0, K, (4, 250, 200))                   # 50k tokens per t, 200k in all
    x_t, mask = absorbing.q_sample(x_0, t, T, K)
    n = 250 * 200
    for i, ti in enumerate(t.tolist()):
        p = ti / T
        frac = mask[i].float().mean().item()
        assert abs(frac - p) < 5 * math.sqrt(p * (1 - p) / n), (ti, frac)
    assert torch.equal(x_t[~mask], x_0[~mask])
    assert (x_t[mask] == K).all()
    assert torch.equal(mask, x_t == K)                        # x_0 never holds MASK


def test_q_sample_extremes():
    x_0 = torch.randint(0, K, (2, 7, 7))
    x_t, mask = absorbing.q_sample(x_0, torch.tensor([49, 0]), 49, K)
    assert mask[0].all() and (x_t[0] == K).all()              # t = T: everything masked
    assert not mask[1].any() and torch.equal(x_t[1], x_0[1])  # t = 0: nothing
    assert mask.shape == x_0.shape and mask.dtype == torch.bool


def test_sample_t_range():
    t = absorbing.sample_t(5000, 49, "cpu")
    assert t.shape == (5000,) and t.min() == 1 and t.max() == 49


def _hand_loss(logits, x_0, mask, t, T):
    B, N = x_0.shape[0], x_0[0].numel()
    total = 0.0
    for b in range(B):
        s = 0.0
        for i, j in mask[b].nonzero().tolist():
            s += -F.log_softmax(logits[b, :, i, j], 0)[x_0[b, i, j]].item()
        total += s * (1 - t[b].item() / T) / (math.log(2) * N)
    return total / B


def test_loss_hand_computation_and_masked_only():
    torch.manual_seed(0)
    T = 9
    x_0 = torch.randint(0, K, (3, 3, 3))
    t = torch.tensor([2, 5, 7])
    _, mask = absorbing.q_sample(x_0, t, T, K)
    mask[0, 0, 0] = True                                       # at least one masked, one not
    mask[0, 0, 1] = False
    logits = torch.randn(3, K, 3, 3, requires_grad=True)
    out = absorbing.loss(logits, x_0, mask, t, T)
    assert math.isclose(out.item(), _hand_loss(logits.detach(), x_0, mask, t, T), rel_tol=1e-5)
    # changing the logits where not masked changes nothing, and gets no gradient
    other = logits.detach().clone()
    other.permute(0, 2, 3, 1)[~mask] = torch.randn(int((~mask).sum()), K) * 10
    assert torch.allclose(absorbing.loss(other, x_0, mask, t, T), out, atol=1e-6)
    out.backward()
    assert (logits.grad.permute(0, 2, 3, 1)[~mask] == 0).all()
    assert logits.grad.permute(0, 2, 3, 1)[mask].abs().sum() > 0
    # ...but at a masked position it does
    other = logits.detach().clone()
    other[0, :, 0, 0] += torch.randn(K) * 10
    assert not torch.allclose(absorbing.loss(other, x_0, mask, t, T), out)


def test_loss_zero_weight_at_t_equals_T():
    x_0 = torch.randint(0, K, (2, 4, 4))
    mask = torch.ones(2, 4, 4, dtype=torch.bool)
    logits = torch.randn(2, K, 4, 4)
    assert absorbing.loss(logits, x_0, mask, torch.tensor([16, 16]), 16).item() == 0.0
    # one item at t = T contributes zero, so the mean halves
    t = torch.tensor([16, 4])
    both = absorbing.loss(logits, x_0, mask, t, 16).item()
    second = absorbing.loss(logits[1:], x_0[1:], mask[1:], t[1:], 16).item()
    assert second > 0 and math.isclose(both, second / 2, rel_tol=1e-6)


class Recorder:
    """A denoiser that records (x_t, t) of every call and returns logits from `fn(x_t, t)`."""

    def __init__(self, fn):
        self.fn, self.calls = fn, []

    def __call__(self, x_t, t):
        assert x_t.dtype == torch.long and t.dtype == torch.long and t.shape == x_t.shape[:1]
        self.calls.append((x_t.clone(), t.clone()))
        return self.fn(x_t, t)


def _random_logits(x_t, t):
    return torch.randn(x_t.shape[0], K, *x_t.shape[1:])


def _check_never_changes(calls, final, mask_id):
    states = [c[0] for c in calls] + [final]
    for a, b in zip(states, states[1:]):
        known = a != mask_id
        assert torch.equal(b[known], a[known])                  # once unmasked, fixed
        assert ((b == mask_id) <= (a == mask_id)).all()          # never re-masked


@pytest.mark.parametrize("shape", [(7, 7), (8, 8)])
def test_sample_no_mask_left_monotone_and_calls(shape):
    torch.manual_seed(0)
    T = shape[0] * shape[1]
    rec = Recorder(_random_logits)
    with fast.enabled(skip_unchanged=False):                  # whole batches: calls map to images
        out = absorbing.sample(rec, 5, shape, T, K, temperature=1.0, batch_size=3, progress=False)
    assert out.shape == (5, *shape) and out.dtype == torch.long
    assert (out != K).all() and out.min() >= 0
    # batches of 3 and 2, each at most T calls, t strictly decreasing within 1..T
    firsts = [i for i, (x, _) in enumerate(rec.calls) if (x == K).all()]
    assert firsts[0] == 0 and len(firsts) == 2
    for lo, hi, b in [(0, firsts[1], 3), (firsts[1], len(rec.calls), 2)]:
        chunk = rec.calls[lo:hi]
        assert 0 < len(chunk) <= T
        ts = [int(c[1][0]) for c in chunk]
        assert all(c[0].shape[0] == b for c in chunk)
        assert all(1 <= x <= T for x in ts) and ts == sorted(ts, reverse=True) and len(set(ts)) == len(ts)
    _check_never_changes(rec.calls[:firsts[1]], out[:3], K)
    _check_never_changes(rec.calls[firsts[1]:], out[3:], K)


def test_sample_unmask_time_is_uniform():
    # the denoiser answers code t - 1 at step t, so each output token tells when it was unmasked;
    # unmasking w.p. 1/t from t = T down to 1 makes that step uniform over 1..T
    torch.manual_seed(0)
    T = 5

    def code_t(x_t, t):
        return F.one_hot(t - 1, K).float().view(-1, K, 1, 1).expand(-1, -1, *x_t.shape[1:]) * 1e4

    n = 1000
    out = absorbing.sample(code_t, n, (2, 2), T, K, temperature=1.0, batch_size=1000, progress=False)
    freq = torch.bincount(out.flatten(), minlength=K).float() / out.numel()
    p = 1 / T
    assert (freq[:T] - p).abs().max() < 5 * math.sqrt(p * (1 - p) / out.numel()), freq
    assert freq[T:].sum() == 0


def test_sample_one_code_denoiser():
    def only_3(x_t, t):
        logits = torch.full((x_t.shape[0], K, *x_t.shape[1:]), -1e9)
        logits[:, 3] = 0.0
        return logits
    for temp in (1.0, 0.0):
        out = absorbing.sample(only_3, 4, (7, 7), 49, K, temperature=temp, progress=False)
        assert (out == 3).all()


def _fixed_logits(shape, seed=0):
    # per position, a random permutation of 0..K-1 as logits: a clear argmax, gaps of 1
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randperm(K, generator=g) for _ in range(math.prod(shape))], 1) \
        .float().view(K, *shape)


def test_temperature_zero_is_greedy_and_tiny_temperature_equals_greedy():
    L = _fixed_logits((8, 8))

    def fixed(x_t, t):
        return L.unsqueeze(0).expand(x_t.shape[0], -1, -1, -1)
    greedy = L.argmax(0)
    assert len(greedy.unique()) > 1
    torch.manual_seed(0)
    out0 = absorbing.sample(fixed, 3, (8, 8), 64, K, temperature=0, progress=False)
    assert (out0 == greedy).all()
    out_small = absorbing.sample(fixed, 3, (8, 8), 64, K, temperature=1e-4, progress=False)
    assert (out_small == greedy).all()
    out_hot = absorbing.sample(fixed, 3, (8, 8), 64, K, temperature=1.0, progress=False)
    assert not (out_hot == greedy).all()                       # temperature 1 really samples


def test_temperature_at_by_hand():
    assert absorbing.temperature_at(0.7, 3, 5) == 0.7                 # a float: the paper's constant
    assert absorbing.temperature_at((1.0, 0.5), 5, 5) == 1.0          # first step (t = T_diff): start
    assert absorbing.temperature_at((1.0, 0.5), 1, 5) == 0.5          # last step (t = 1): end
    assert absorbing.temperature_at((1.0, 0.5), 3, 5) == pytest.approx(0.75)
    assert absorbing.temperature_at((1.0, 0.5), 4, 5) == pytest.approx(0.875)


def test_temperature_flag_parses_constants_and_anneals():
    import argparse
    from spikediff_min import options
    assert options.temperature("0.7") == 0.7
    assert options.temperature("1.0-0.6") == (1.0, 0.6)
    for bad in ("warm", "-1", "0", "1-0", "1-2-3", "nan", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="Fix"):
            options.temperature(bad)


@pytest.mark.parametrize("skip", [False, True])
def test_annealed_temperature_reaches_every_draw(monkeypatch, skip):
    # the sampler draws step t's tokens at temperature_at(t): record what each draw is given
    seen = []
    real = absorbing._draw_rows
    monkeypatch.setattr(absorbing, "_draw_rows", lambda picked, temp: seen.append(temp) or real(picked, temp))
    torch.manual_seed(0)
    T = 16
    with fast.enabled(skip_unchanged=skip):
        out = absorbing.sample(_random_logits, 2, (4, 4), T, K, temperature=(1.0, 0.25), progress=False)
    assert (out != K).all()
    allowed = {absorbing.temperature_at((1.0, 0.25), t, T) for t in range(1, T + 1)}
    assert seen and set(seen) <= allowed
    assert seen == sorted(seen, reverse=True)                          # t runs down, so does the temperature
    assert seen[0] == 1.0                                              # t = T unmasks w.p. 1: always drawn


@pytest.mark.parametrize("shape, steps", [((7, 7), 12), ((8, 8), 8), ((2, 2), 8)])
def test_maskgit_schedule_calls_and_monotone(shape, steps):
    torch.manual_seed(0)
    N = math.prod(shape)
    rec = Recorder(_random_logits)
    out = absorbing.sample_maskgit(rec, 3, shape, N, K, temperature=1.0, steps=steps, progress=False)
    assert out.shape == (3, *shape) and (out != K).all()
    assert len(rec.calls) <= steps
    _check_never_changes(rec.calls, out, K)
    # masked count per sample after step s: floor(N cos(pi/2 s/steps)), ending at 0
    want = [N] + [math.floor(N * math.cos(math.pi / 2 * s / steps)) for s in range(1, steps + 1)]
    want[-1] = 0
    for x, _ in rec.calls:
        counts = (x == K).flatten(1).sum(1)
        assert (counts == counts[0]).all()                       # same schedule for every sample
    seen = [int((x[0] == K).sum()) for x, _ in rec.calls] + [0]

    def dedup(v):
        return [a for i, a in enumerate(v) if i == 0 or a != v[i - 1]]
    assert dedup(seen) == dedup(want), (seen, want)
    if len(rec.calls) == steps:
        assert seen == want
    # t passed is the masked fraction times T, in 1..T
    for x, t in rec.calls:
        assert 1 <= int(t[0]) <= N


def test_maskgit_one_code_and_confidence_order():
    def only_2(x_t, t):
        logits = torch.full((x_t.shape[0], K, *x_t.shape[1:]), -1e9)
        logits[:, 2] = 0.0
        return logits
    out = absorbing.sample_maskgit(only_2, 2, (7, 7), 49, K, steps=8, progress=False)
    assert (out == 2).all()

    # code 0 everywhere, with a confidence rising with the position index: the most confident
    # positions must be unmasked first
    conf = torch.arange(16, dtype=torch.float32).view(4, 4) / 4

    def ordered(x_t, t):
        logits = torch.zeros(x_t.shape[0], K, 4, 4)
        logits[:, 0] = conf
        return logits
    rec = Recorder(ordered)
    out = absorbing.sample_maskgit(rec, 1, (4, 4), 16, K, temperature=0, steps=4, progress=False,
                                   choice_temperature=0)                # the greedy order
    assert (out == 0).all()
    for x, _ in rec.calls[1:]:
        known = (x[0] != K).flatten()
        n = int(known.sum())
        assert n > 0 and known[16 - n:].all() and not known[:16 - n].any()


def test_maskgit_choice_temperature_randomises_the_order():
    """Same confidences everywhere but rising with the position: choice_temperature 0 unmasks
    the most confident first (as above); with Gumbel noise the first-step picks vary by image."""
    conf = torch.arange(16, dtype=torch.float32).view(4, 4) / 4

    def ordered(x_t, t):
        logits = torch.zeros(x_t.shape[0], K, 4, 4)
        logits[:, 0] = conf
        return logits
    torch.manual_seed(0)
    rec = Recorder(ordered)
    out = absorbing.sample_maskgit(rec, 64, (4, 4), 16, K, temperature=0, steps=4, progress=False,
                                   choice_temperature=4.5)
    assert (out == 0).all()
    first = rec.calls[1][0] != K                   # [64, 4, 4]: what step 1 unmasked
    n = int(first[0].sum())
    assert n > 0 and (first.flatten(1).sum(1) == n).all()               # the schedule is unchanged
    assert len({tuple(f.flatten().tolist()) for f in first}) > 1        # but the positions differ
    assert not first.flatten(1)[:, 16 - n:].all()                       # not always the greedy ones
