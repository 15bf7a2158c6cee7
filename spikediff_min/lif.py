"""Multi-step leaky integrate-and-fire neuron (Spiking-Diffusion, SPEC section 1).

Per step t with input current X[t] (hard reset, input decay, as in the paper's reference):
    charge: H[t] = V[t-1] + (X[t] - (V[t-1] - V_reset)) / tau
    fire:   S[t] = Heaviside(H[t] - V_th)
    reset:  V[t] = H[t] * (1 - S[t]) + V_reset * S[t],   V[-1] = V_reset
The time loop lives inside forward: no state survives between calls, so no `reset_net`.

`INFERENCE_FAST = True` (on by default; issue 7) runs a forward without autograd (eval, sampling) in
four passes over the membrane per step instead of eight: charge (lerp), compare (h >= V_th, the same
test as h - V_th >= 0), hard reset as a masked fill of h, and the spikes written straight into one
preallocated [T, ...] output (no stack). Identical spikes when V_reset = 0 (the paper's); otherwise
the reset value is V_reset exactly where the plain path has h - (h - V_reset), equal up to rounding.
`LIF(x, affine=(scale, shift))` charges with x * scale + shift instead of x: a BatchNorm in eval
folded into the loop (layers.ConvBNLIF does this when it runs without autograd).

`INFERENCE_COMPILE = True` (on by default; issue 7): on inputs of at least COMPILE_MIN_ELEMENTS
(sampling batches, not the tests' toy tensors) that loop goes through torch.compile, which fuses
the affine, charge, fire and reset of all T steps into one kernel: it reads X once and writes S
once. It compiles once per process and per T (about 20-40 s on the 2-core CPU) and falls back to
the eager loop, with a warning, where compiling fails (no C++ compiler, say). Spikes equal the
eager loop's except where rounding puts H within an ulp of V_th (compiled code may fuse a multiply
and an add): tests/test_lif.py bounds that at 1e-4 of the spikes.

`FUSED = True` (off by default: no faster on the 2-core CPU) runs the loop outside autograd and
back-propagates through time by hand (`_LIFFunction`): the same spikes, and the same gradients up
to float rounding, with one saved tensor per step instead of autograd's graph of small ops.
False: the loop above, under autograd.

    lif = LIF(tau=2.0)
    s = lif(x)                       # x: [T, ...] -> spikes [T, ...]
    s, v = lif(x, return_membrane=True)   # also H[t], the charged membrane before reset
"""
import warnings

import torch
import torch.nn as nn

from .surrogate import atan

INFERENCE_FAST = True   # no-grad forward in 4 passes per step instead of 8 (same spikes); speed.py measures it
INFERENCE_COMPILE = True   # torch.compile that loop for big inputs (one kernel for all T steps)
COMPILE_MIN_ELEMENTS = 2 ** 20
FUSED = False   # hand-written BPTT instead of autograd (same function); 0.91-1.01x on the 2-core CPU (speed.py)


def _lif_inference(x, w, v_threshold, v_reset, scale=None, shift=None):
    """The LIF loop without autograd, in as few passes as the loop allows: x [T, ...] -> spikes
    [T, ...]. With scale and shift (broadcast to x[0]) the current is x * scale + shift."""
    spikes = torch.empty_like(x)                 # same memory layout as x (channels_last stays)
    v = torch.full_like(x[0], v_reset)
    for t, x_t in enumerate(x):
        if scale is not None:
            x_t = torch.addcmul(shift, x_t, scale)                    # a BatchNorm in eval
        h = torch.lerp(v, x_t + v_reset if v_reset else x_t, w)   # charge (the plain path's lerp)
        s = h >= v_threshold                     # fire (bool)
        spikes[t] = s                            # 0./1. into the output
        v = h.masked_fill_(s, v_reset)           # hard reset, in place: h is not needed again
    return spikes


_compiled_inference = None


def _inference(x, *args):
    """_lif_inference, compiled for big inputs when INFERENCE_COMPILE (see the module docstring)."""
    global _compiled_inference, INFERENCE_COMPILE
    if INFERENCE_COMPILE and x.numel() >= COMPILE_MIN_ELEMENTS:
        try:
            if _compiled_inference is None:
                _compiled_inference = torch.compile(_lif_inference, dynamic=True)
            return _compiled_inference(x, *args)
        except Exception as e:   # any compiler failure: the eager loop computes the same spikes
            warnings.warn(f"lif: torch.compile of the inference loop failed ({type(e).__name__}: {e}); "
                          f"using the eager loop (set spikediff_min.lif.INFERENCE_COMPILE = False to skip)")
            INFERENCE_COMPILE = False
    return _lif_inference(x, *args)


class _LIFFunction(torch.autograd.Function):
    """The LIF loop with a hand-written backward through time.

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


class LIF(nn.Module):
    def __init__(self, tau=2.0, v_threshold=1.0, v_reset=0.0, surrogate=None, detach_reset=False):
        super().__init__()
        self.tau, self.v_threshold, self.v_reset = tau, v_threshold, v_reset
        self.surrogate = surrogate if surrogate is not None else atan(2.0)
        self.detach_reset = detach_reset

    def forward(self, x, return_membrane=False, affine=None):
        # x: [T, ...] input current; affine = (scale, shift): the current is x * scale + shift
        affine = tuple(affine or ())
        needs_grad = torch.is_grad_enabled() and any(a.requires_grad for a in (x, *affine))
        if INFERENCE_FAST and not return_membrane and not needs_grad:
            return _inference(x, 1.0 / self.tau, self.v_threshold, self.v_reset, *affine)
        if affine:
            x = torch.addcmul(affine[1], x, affine[0])
        if FUSED and not return_membrane and needs_grad:
            sg = self.surrogate
            return _LIFFunction.apply(x, self.tau, self.v_threshold, self.v_reset, sg.derivative, sg.alpha,
                                      self.detach_reset)
        v = torch.full_like(x[0], self.v_reset)
        spikes, membrane = [], []
        w = 1.0 / self.tau
        for x_t in x:
            h = torch.lerp(v, x_t + self.v_reset, w)              # charge: v + (x - (v - v_reset)) / tau
            s = self.surrogate(h - self.v_threshold)              # fire
            s_r = s.detach() if self.detach_reset else s
            v = torch.addcmul(h, h - self.v_reset, s_r, value=-1)  # hard reset: h (1 - s) + v_reset s
            spikes.append(s)
            if return_membrane:
                membrane.append(h)
        spikes = torch.stack(spikes)                              # [T, ...]
        if return_membrane:
            return spikes, torch.stack(membrane)
        return spikes

    def extra_repr(self):
        return (f"tau={self.tau}, v_threshold={self.v_threshold}, v_reset={self.v_reset}, "
                f"surrogate={self.surrogate}, detach_reset={self.detach_reset}")
