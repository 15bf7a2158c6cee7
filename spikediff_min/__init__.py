"""spikediff_min: a minimal, from-scratch PyTorch Spiking-Diffusion.

Liu et al. 2023, "Spiking-Diffusion: Vector Quantized Discrete Diffusion Model with Spiking
Neural Networks", arXiv 2308.10187. One file per component; see README.md for the map.
"""
from . import fast
from .surrogate import atan, sigmoid
from .lif import LIF
from .layers import SeqToANN, ConvBNLIF, psp, membrane_readout

__version__ = "0.1.0"
__all__ = ["fast", "atan", "sigmoid", "LIF", "SeqToANN", "ConvBNLIF", "psp", "membrane_readout"]
