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


def atan_derivative(x, alpha=2.0):
    """g'(x) = (alpha/2) / (1 + (pi/2 * alpha * x)^2), written by hand."""
    return (alpha / 2) / (1 + (math.pi / 2 * alpha * x) ** 2)


def sigmoid_derivative(x, alpha=4.0):
    """g'(x) = alpha * sigmoid(alpha x) * (1 - sigmoid(alpha x)), written by hand."""
    s = torch.sigmoid(alpha * x)
    return alpha * s * (1 - s)


class _Spike(torch.autograd.Function):
    """Forward: Heaviside step (x >= 0). Backward: grad * derivative(x, alpha)."""

    @staticmethod
    def forward(ctx, x, alpha, derivative):
        ctx.save_for_backward(x)
        ctx.alpha, ctx.derivative = alpha, derivative
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * ctx.derivative(x, ctx.alpha), None, None


class Surrogate:
    """A callable spike function f(x) with a named primitive; picklable and printable."""

    def __init__(self, derivative, primitive, alpha):
        self.derivative, self.primitive, self.alpha = derivative, primitive, alpha

    def __call__(self, x):
        return _Spike.apply(x, self.alpha, self.derivative)

    def smooth(self, x):
        """The primitive g(x) whose derivative is the backward of __call__."""
        return self.primitive(x, self.alpha)

    def __repr__(self):
        return f"{self.primitive.__name__.replace('_primitive', '')}(alpha={self.alpha})"


def atan(alpha=2.0):
    """Heaviside forward, ATan surrogate backward (the paper's, alpha = 2)."""
    return Surrogate(atan_derivative, atan_primitive, alpha)


def sigmoid(alpha=4.0):
    """Heaviside forward, sigmoid surrogate backward."""
    return Surrogate(sigmoid_derivative, sigmoid_primitive, alpha)
