"""Speed tricks: the same functions as the plain code, computed faster (issue 7; grouped in issue 18).

The component files (lif.py, layers.py, sdid.py, absorbing.py) compute the paper's equations
plainly. Where a faster route gives the same result, the component hands over here in one line,
`if fast.ENABLED: ...` or `if fast.on(trick): ...` (nanoGPT's `if self.flash:`). One switch turns
every trick off:

    from spikediff_min import fast
    fast.ENABLED = False                      # every component on its plain path
    with fast.enabled(False): ...             # the same, for a block
    with fast.enabled(static_once=False): ... # tricks on, one of them off (benchmarks, ablation)
    old = fast.set(fused=True)                # for good; returns the values it replaced
    fast.state()                              # {trick: in use?}, as the benchmarks record it

The tricks, where they act, and why each computes the same function (tests/test_fast.py checks
every one against the plain path; benchmarks/speed.py measures what each gains):
- static_once (ConvBNLIF): direct coding feeds the same [B, ...] input at every step, so conv and
  BN run once, not on T copies: a conv maps equal copies to equal outputs, and BN's batch mean and
  variance over T equal copies are those of one (training still normalises the T-fold tensor, so
  the running variance gets the same T*B*H*W unbiased correction).
- channels_last (ConvBNLIF, SeqToANN): every conv input in NHWC, the layout oneDNN and cuDNN run
  natively: a memory layout, not a value.
- inference_fast (LIF, ConvBNLIF; no autograd only): the LIF loop in 4 passes per step instead of
  8 (lerp, compare, masked-fill reset, a write into one preallocated output), with BatchNorm in
  eval folded in as the current x * scale + shift. The same charge; the reset writes V_reset
  where the plain path computes H - (H - V_reset), equal when V_reset = 0 (the paper's); the
  folded BN equals BN up to rounding (an ulp at V_th can flip a spike).
- inference_compile (LIF; with inference_fast, inputs of at least COMPILE_MIN_ELEMENTS): that
  loop through torch.compile, one kernel for all T steps (reads X once, writes S once). The same
  ops, but compiled code may fuse a multiply-add: H within an ulp of V_th may flip a spike.
- fused (LIF, training; OFF by default, no faster on the 2-core CPU): the loop outside autograd
  with a hand-written backward through time: the same spikes, the same gradients up to rounding.
- mean_first (SDID): the readout conv is linear, so mean_T(conv(s_t)) = conv(mean_T(s_t)): the
  readout runs once, not T times. energy.EnergyMeter turns it off to count its SOPs per step.
- skip_unchanged (absorbing.sample): the denoiser runs only on the images that unmask a token at
  a step (about 1/e have none), and tokens are drawn only where they unmask: unused logits are
  never computed, so the samples follow the same distribution (greedy: the same samples).
- logits_where_drawn (with skip_unchanged, a denoiser with `takes_where`, the SDID): only the
  logits of the tokens drawn (one or two of 49 per image and step), by `conv_at`: the same
  logits up to rounding.
"""
import warnings
from contextlib import contextmanager

import torch
import torch.nn.functional as F

ENABLED = True          # the one switch: False puts every component on its plain path
TRICKS = dict(static_once=True, channels_last=True, inference_fast=True, inference_compile=True,
              fused=False, mean_first=True, skip_unchanged=True, logits_where_drawn=True)
COMPILE_MIN_ELEMENTS = 2 ** 20   # sampling batches are compiled, the tests' toy tensors are not


def on(trick):
    """Is `trick` in use now (ENABLED and the trick itself on)?"""
    return ENABLED and TRICKS[trick]


def set(**tricks):
    """Turn tricks on or off by name; returns their previous values (for `set(**old)`)."""
    unknown = tricks.keys() - TRICKS.keys()
    if unknown:
        raise ValueError(f"unknown trick(s) {sorted(unknown)}; choose from {list(TRICKS)}")
    old = {k: TRICKS[k] for k in tricks}
    TRICKS.update(tricks)
    return old


@contextmanager
def enabled(flag=True, **tricks):
    """ENABLED = flag and the named tricks set, for the duration of a with-block."""
    global ENABLED
    saved_flag, saved = ENABLED, set(**tricks)
    ENABLED = flag
    try:
        yield
    finally:
        ENABLED = saved_flag
        set(**saved)


def state():
    """{trick: in use now}."""
    return {k: on(k) for k in TRICKS}


# ---- LIF (lif.py) -------------------------------------------------------------------------------

def lif_spikes(neuron, x, affine=None):
    """LIF.forward's spikes by inference_fast (no autograd) or fused (autograd); None where
    neither applies. affine = (scale, shift): the current is x * scale + shift."""
    affine = tuple(affine or ())
    needs_grad = torch.is_grad_enabled() and any(a.requires_grad for a in (x, *affine))
    if not needs_grad and on("inference_fast"):
        return _inference(x, 1.0 / neuron.tau, neuron.v_threshold, neuron.v_reset, *affine)
    if needs_grad and on("fused"):
        if affine:
            x = torch.addcmul(affine[1], x, affine[0])
        sg = neuron.surrogate
        return _LIFFunction.apply(x, neuron.tau, neuron.v_threshold, neuron.v_reset, sg.derivative,
                                  sg.alpha, neuron.detach_reset)
    return None


def _lif_inference(x, w, v_threshold, v_reset, scale=None, shift=None):
    """The LIF loop without autograd in 4 passes per step: x [T, ...] -> spikes [T, ...]."""
    spikes = torch.empty_like(x)                 # same memory layout as x (channels_last stays)
    v = torch.full_like(x[0], v_reset)
    for t, x_t in enumerate(x):
        if scale is not None:
            x_t = torch.addcmul(shift, x_t, scale)                    # a BatchNorm in eval
        h = torch.lerp(v, x_t + v_reset if v_reset else x_t, w)   # charge (the plain path's lerp)
        s = h >= v_threshold                     # fire (bool): the plain path's h - V_th >= 0
        spikes[t] = s                            # 0./1. into the output
        v = h.masked_fill_(s, v_reset)           # hard reset, in place: h is not needed again
    return spikes


_compiled_inference = None


def _inference(x, *args):
    """_lif_inference, through torch.compile for big inputs (inference_compile). It compiles once
    per process and T (20-40 s on the 2-core CPU) and falls back to the eager loop, with a
    warning, where compiling fails (no C++ compiler, say)."""
    global _compiled_inference
    if on("inference_compile") and x.numel() >= COMPILE_MIN_ELEMENTS:
        try:
            if _compiled_inference is None:
                _compiled_inference = torch.compile(_lif_inference, dynamic=True)
            return _compiled_inference(x, *args)
        except Exception as e:   # any compiler failure: the eager loop computes the same spikes
            warnings.warn(f"fast: torch.compile of the inference loop failed ({type(e).__name__}: {e}); "
                          f"using the eager loop (fast.set(inference_compile=False) skips it)")
            TRICKS["inference_compile"] = False
    return _lif_inference(x, *args)


class _LIFFunction(torch.autograd.Function):
    """The LIF loop with a hand-written backward through time (the `fused` trick).

    Backward, with w = 1/tau, g_t = surrogate'(H[t] - V_th) and G_v the gradient reaching V[t]:
        dL/dH[t]   = dL/dS[t] g_t + G_v (1 - S[t] - (H[t] - V_reset) g_t)   (no g_t term if detach_reset)
        dL/dX[t]   = w dL/dH[t]
        dL/dV[t-1] = (1 - w) dL/dH[t]
    """

    @staticmethod
    def forward(ctx, x, tau, v_threshold, v_reset, derivative, alpha, detach_reset):
        w = 1.0 / tau
        v = torch.full_like(x[0], v_reset)
        spikes, membrane = torch.empty_like(x), torch.empty_like(x)
        for t, x_t in enumerate(x):              # the same ops as LIF.forward's plain loop
            h = torch.lerp(v, x_t + v_reset, w)
            s = (h - v_threshold >= 0).to(x.dtype)
            v = torch.addcmul(h, h - v_reset, s, value=-1)
            spikes[t], membrane[t] = s, h
        ctx.save_for_backward(spikes, membrane)
        ctx.consts = w, v_threshold, v_reset, derivative, alpha, detach_reset
        return spikes

    @staticmethod
    def backward(ctx, grad_spikes):
        spikes, membrane = ctx.saved_tensors
        w, v_threshold, v_reset, derivative, alpha, detach_reset = ctx.consts
        grad_x = torch.empty_like(membrane)
        grad_v = None                            # dL/dV[t], zero after the last step
        for t in range(len(membrane) - 1, -1, -1):
            h, s = membrane[t], spikes[t]
            g = derivative(h - v_threshold, alpha)
            grad_h = grad_spikes[t] * g
            if grad_v is not None:
                dv_dh = 1 - s if detach_reset else 1 - s - (h - v_reset) * g
                grad_h = grad_h + grad_v * dv_dh
            grad_x[t] = grad_h * w
            grad_v = grad_h * (1 - w)
        return grad_x, None, None, None, None, None, None


# ---- Conv -> BN -> LIF (layers.py) --------------------------------------------------------------

def _layout(x):
    """[N, C, H, W] -> channels_last when that trick is on (same values); other shapes unchanged."""
    return x.contiguous(memory_format=torch.channels_last) if on("channels_last") and x.dim() == 4 else x


def seq_to_ann(wrapper, x):
    """SeqToANN.forward with channels_last: [T, B, ...] -> [T, B, ...]."""
    T, B = x.shape[:2]
    return wrapper.module(_layout(x.flatten(0, 1))).unflatten(0, (T, B))


def conv_bn_lif(block, x, T=None):
    """ConvBNLIF.forward with static_once, channels_last and (eval, no autograd) the BatchNorm
    folded into the LIF loop (inference_fast)."""
    if T is not None and not on("static_once"):    # T copies: [B, ...] -> [T, B, ...]
        x, T = x.unsqueeze(0).expand(T, *x.shape), None
    fold = (on("inference_fast") and not block.training and not torch.is_grad_enabled()
            and hasattr(block.neuron, "v_threshold"))   # a LIF, not the ANN twin's ReLU
    if T is None:                                  # x: [T, B, C, H, W]
        t, b = x.shape[:2]
        y = block.conv(_layout(x.flatten(0, 1)))   # [T*B, C_out, H', W']
        y = (y if fold else block.bn(y)).unflatten(0, (t, b))
    else:                                          # x: [B, C, H, W], the same at every step
        y = block.conv(_layout(x)).unsqueeze(0).expand(T, -1, -1, -1, -1)   # conv once
        if block.training:    # BN over all T copies, so running_var gets the T*B*H*W correction
            y = block.bn(y.flatten(0, 1)).unflatten(0, (T, x.shape[0]))
        elif not fold:        # eval: BN once (fold: the LIF loop applies it)
            y = block.bn(y[0]).unsqueeze(0).expand(T, -1, -1, -1, -1)
    if fold:
        return block.neuron(y, affine=[a.to(y.dtype) for a in bn_affine(block.bn)])
    return block.neuron(y)                         # [T, B, C_out, H', W']


def bn_affine(bn):
    """A BatchNorm2d in eval as y * scale + shift: (scale, shift), each [C, 1, 1]."""
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.affine:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale + (bn.bias if bn.affine else 0)
    return scale.view(-1, 1, 1), shift.view(-1, 1, 1)


# ---- SDID readout (sdid.py) ---------------------------------------------------------------------

def mean_first_readout(out, x5, x1, where=None):
    """SDID logits mean_T(out(cat[x5, x1])) as out(mean_T(...)): [B, K, H, W], or with `where`
    [B, H, W] bool the [n_true, K] rows at its True positions (the readout run there alone)."""
    s = torch.cat([x5.mean(0), x1.mean(0)], 1)    # [B, c5 + c1, H, W]: mean, then concatenate
    if where is None:
        return out(s.unsqueeze(0))[0]              # [B, K, H, W], one conv
    return conv_at(out.module, s, where)           # [n_true, K]


def conv_at(conv, x, where):
    """A stride-1 Conv2d's output at the positions where [B, H, W] is True (row-major order) and
    nowhere else: x [B, C, H, W] -> [n_true, C_out]. Each is one patch times the weights."""
    assert conv.stride == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1, "plain stride-1 conv only"
    (kh, kw), (ph, pw) = conv.kernel_size, conv.padding
    b, i, j = where.nonzero(as_tuple=True)                     # [n] each, row-major
    x = F.pad(x, (pw, pw, ph, ph))                             # [B, C, H + 2ph, W + 2pw]
    rows = (i[:, None] + torch.arange(kh, device=x.device))[:, :, None]     # [n, kh, 1]
    cols = (j[:, None] + torch.arange(kw, device=x.device))[:, None, :]     # [n, 1, kw]
    patches = x[b[:, None, None], :, rows, cols]               # [n, kh, kw, C]
    y = patches.permute(0, 3, 1, 2).flatten(1) @ conv.weight.flatten(1).T   # [n, C_out]
    return y if conv.bias is None else y + conv.bias


# ---- the paper sampler (absorbing.py) -----------------------------------------------------------

def changed_logits(denoiser, x_t, t, change):
    """Logits [n, K] at the positions where change [B, H, W] is True (row-major), from the denoiser
    run on the images with a True only (skip_unchanged) and, where it can (`takes_where`), at
    those positions only (logits_where_drawn)."""
    rows = change.flatten(1).any(1).nonzero().squeeze(1)      # [r] images that unmask a token
    x_rows, t_rows, c = x_t[rows], t[rows], change[rows]
    if on("logits_where_drawn") and getattr(denoiser, "takes_where", False):
        return denoiser(x_rows, t_rows, where=c)
    return denoiser(x_rows, t_rows).permute(0, 2, 3, 1)[c]
