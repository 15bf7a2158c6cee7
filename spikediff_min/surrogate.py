"""Surrogate gradients for the Heaviside spike (Spiking-Diffusion, SPEC section 2).

Forward is the step `S = (x >= 0)`; backward uses the derivative of a smooth primitive g(x).
Each surrogate keeps its primitive next to its hand-written backward so a test can check the
two against autograd (spikingjelly's `check_manual_grad` idea).

    spike = atan(alpha=2.0)      # the paper's choice
    s = spike(v - v_threshold)   # 0/1 forward, (alpha/2)/(1+(pi/2*alpha*x)^2) backward
"""
import math

import torch


def atan_primitive(x, alpha=2.0):
    """g(x) = arctan(pi/2 * alpha * x) / pi + 1/2, a smooth step."""
    return torch.atan(math.pi / 2 * alpha * x) / math.pi + 0.5


def sigmoid_primitive(x, alpha=4.0):
    """g(x) = sigmoid(alpha * x)."""
    return torch.sigmoid(alpha * x)


class _ATanSpike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, alpha):
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        a = ctx.alpha
        # g'(x) = (alpha/2) / (1 + (pi/2 * alpha * x)^2)
        return grad * (a / 2) / (1 + (math.pi / 2 * a * x) ** 2), None


class _SigmoidSpike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, alpha):
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(ctx.alpha * x)
        # g'(x) = alpha * sigmoid(alpha x) * (1 - sigmoid(alpha x))
        return grad * ctx.alpha * s * (1 - s), None


class Surrogate:
    """A callable spike function f(x) with a named primitive; picklable and printable."""

    def __init__(self, fn, primitive, alpha):
        self.fn, self.primitive, self.alpha = fn, primitive, alpha

    def __call__(self, x):
        return self.fn.apply(x, self.alpha)

    def smooth(self, x):
        """The primitive g(x) whose derivative is the backward of __call__."""
        return self.primitive(x, self.alpha)

    def __repr__(self):
        return f"{self.primitive.__name__.replace('_primitive', '')}(alpha={self.alpha})"


def atan(alpha=2.0):
    """Heaviside forward, ATan surrogate backward (the paper's, alpha = 2)."""
    return Surrogate(_ATanSpike, atan_primitive, alpha)


def sigmoid(alpha=4.0):
    """Heaviside forward, sigmoid surrogate backward."""
    return Surrogate(_SigmoidSpike, sigmoid_primitive, alpha)
