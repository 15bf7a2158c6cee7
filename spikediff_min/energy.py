"""Energy accounting for the spiking networks and their ANN twins (SPEC section 8).

The usual SNN estimate, with the 45 nm figures of Horowitz (ISSCC 2014):
    E_MAC = 4.6 pJ   one 32-bit float multiply-accumulate (a layer fed analog values)
    E_AC  = 0.9 pJ   one 32-bit float accumulate = one synaptic operation, SOP (a layer fed spikes)
Per layer, for one sample:
    MACs = MACs_per_step x T                  analog input: e.g. the first layer under direct
                                              coding, which sees the image at every step
    SOPs = rate x T x MACs_per_step           spiking input: only a spike costs an accumulate
    energy = 4.6 pJ x MACs (analog)  or  0.9 pJ x SOPs (spiking)
A layer is spiking iff every input it was given is exactly 0/1. The ANN twin (neuron="relu",
T=1) is analog everywhere: 4.6 pJ x MACs per layer. BatchNorm (folded into the conv at
inference), neuron updates, the membrane readout and the codebook search are not counted.
MACs_per_step is the closed form; `exact=True` leaves out the taps that hit zero padding
(3x3, padding 1 on a 7x7 map: 361 of 441 taps are real).

    with EnergyMeter(model) as meter:          # hooks every Conv2d / ConvTranspose2d / Linear
        model(x)
    meter.layers()                             # rows: name, kind, macs_per_step, rate, sops, energy_pj
    meter.totals()["energy_total_pj"]          # = sum of the rows' energy_pj, per sample
    energy_per_reconstruction(vq, images)      # dicts in microjoules (keys end in _uJ)
    energy_per_generated_image(sdid, vq, sampler="paper", n=100)
"""
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import absorbing, fast
from .layers import ConvBNLIF, SeqToANN

E_MAC_PJ = 4.6      # pJ per 32-bit float MAC, 45 nm
E_AC_PJ = 0.9       # pJ per 32-bit float AC (one SOP), 45 nm
LAYERS = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


def macs_per_step(layer, in_shape, exact=False):
    """MACs of `layer` for one sample at one time step; in_shape = its input shape without batch."""
    if isinstance(layer, nn.Linear):
        return layer.in_features * layer.out_features * math.prod(in_shape[:-1])
    (h, w), (kh, kw) = in_shape[-2:], layer.kernel_size
    one, k = torch.ones(1, 1, h, w), torch.ones(1, 1, kh, kw)
    exact = exact and layer.padding_mode == "zeros"
    if isinstance(layer, nn.ConvTranspose2d):    # each input pixel scatters kh*kw taps
        y = F.conv_transpose2d(one, k, None, layer.stride, layer.padding, layer.output_padding, 1, layer.dilation)
        taps = y.sum().item() if exact else h * w * kh * kw
        return int(taps) * layer.in_channels * layer.out_channels // layer.groups
    y = F.conv2d(one, k, None, layer.stride, layer.padding, layer.dilation)   # each output gathers kh*kw
    taps = y.sum().item() if exact else y.numel() * kh * kw
    return int(taps) * layer.out_channels * layer.in_channels // layer.groups


def _is_binary(x):
    return bool(((x == 0) | (x == 1)).all())


class EnergyMeter:
    """Context manager recording, per layer, MACs, input rate and calls of every forward pass.

    Steps and samples per call: a layer inside ConvBNLIF / SeqToANN gets them from its wrapper
    (time-folded [T*B, ...], or static [B, ...] with `T=`: direct coding, MACs counted at each
    of the T steps as in the paper; `static_once=True` counts them once, as fast.py's static_once
    trick computes them). A bare layer is assumed fed [T*B, ...] with the meter's T (default model.cfg.T).
    `ann` (default: model.cfg.neuron != "lif") costs every layer as analog.
    While it is open, fast.py's mean_first trick is off: the SDID readout then sees the spikes of
    every step, as a neuromorphic chip would run it.
    """

    def __init__(self, model, T=None, ann=None, exact=False, static_once=False):
        cfg = getattr(model, "cfg", None)
        self.model, self.exact, self.static_once = model, exact, static_once
        self.T = T or getattr(cfg, "T", 1)
        self.ann = getattr(cfg, "neuron", "lif") != "lif" if ann is None else ann
        self.stats, self._ctx, self._handles, self._macs = {}, {}, [], {}

    def __enter__(self):
        self._tricks = fast.set(mean_first=False)
        names = {}
        for name, m in self.model.named_modules():
            inner = m.conv if isinstance(m, ConvBNLIF) else m.module if isinstance(m, SeqToANN) else None
            if isinstance(inner, LAYERS):
                names[id(inner)] = name or type(m).__name__
                self._handles.append(m.register_forward_pre_hook(self._wrapper_hook, with_kwargs=True))
        for name, m in self.model.named_modules():
            if isinstance(m, LAYERS):
                label = names.get(id(m), name or type(m).__name__)
                self._handles.append(m.register_forward_pre_hook(
                    lambda mod, args, label=label: self._layer_hook(label, mod, args[0])))
        return self

    def __exit__(self, *exc):
        fast.set(**self._tricks)
        for h in self._handles:
            h.remove()
        self._handles, self._ctx = [], {}

    def reset(self):
        self.stats = {}

    def _wrapper_hook(self, wrapper, args, kwargs):
        x, inner = args[0], wrapper.conv if isinstance(wrapper, ConvBNLIF) else wrapper.module
        T = kwargs.get("T", args[1] if len(args) > 1 else None) if isinstance(wrapper, ConvBNLIF) else None
        if T is None:                                  # x: [T, B, ...], folded to [T*B, ...]
            self._ctx[id(inner)] = (x.shape[0], x.shape[1], False)
        else:                                          # x: [B, ...], the same at all T steps
            self._ctx[id(inner)] = (T, x.shape[0], True)

    def _layer_hook(self, label, layer, x):
        steps, samples, static = self._ctx.pop(id(layer), (self.T, None, False))
        if samples is None:                            # bare layer: [T*B, ...]
            if x.shape[0] % steps:
                raise ValueError(f"{label}: batch {x.shape[0]} is not T*B with T={steps}")
            samples = x.shape[0] // steps
        key = (id(layer), tuple(x.shape[1:]))
        if key not in self._macs:
            self._macs[key] = macs_per_step(layer, x.shape[1:], self.exact)
        per_step = self._macs[key]
        macs = per_step * samples * (1 if static and self.static_once else steps)   # this call
        rate = x.detach().float().mean().item()
        s = self.stats.setdefault(label, dict(binary=True, calls=0, samples=0, macs=0, sops=0.0,
                                              sum_x=0.0, n_x=0, steps=steps, macs_per_step=per_step))
        s["binary"] &= _is_binary(x.detach())
        s["calls"] += 1
        s["samples"] += samples
        s["macs"] += macs
        s["sops"] += rate * macs
        s["sum_x"] += rate * x.numel()
        s["n_x"] += x.numel()
        s["steps"], s["macs_per_step"] = steps, per_step

    def layers(self):
        """Per-layer rows, all numbers per sample (one forward pass of one sample)."""
        rows = []
        for name, s in self.stats.items():
            spiking = s["binary"] and not self.ann
            macs, sops = s["macs"] / s["samples"], s["sops"] / s["samples"] if spiking else 0.0
            rows.append(dict(name=name, kind="spiking" if spiking else "analog", binary_input=s["binary"],
                             steps=s["steps"], macs_per_step=s["macs_per_step"], macs=macs,
                             rate=s["sum_x"] / s["n_x"], sops=sops,
                             energy_pj=E_AC_PJ * sops if spiking else E_MAC_PJ * macs,
                             calls=s["calls"], samples=s["samples"]))
        return rows

    def totals(self):
        """Per-sample totals; ann_equivalent_pj: the same layers as a T = 1 ANN (4.6 pJ x MACs)."""
        rows = self.layers()
        return {"energy_total_pj": sum(r["energy_pj"] for r in rows),
                "macs_analog": sum(r["macs"] for r in rows if r["kind"] == "analog"),
                "sops": sum(r["sops"] for r in rows),
                "macs_per_step": sum(r["macs_per_step"] for r in rows),
                "ann_equivalent_pj": E_MAC_PJ * sum(r["macs_per_step"] for r in rows)}


def _device(model, device):
    return torch.device(device) if device is not None else next(model.parameters()).device


def _images(images):
    from .data import to_float
    if images.dtype == (torch.uint8 if torch.is_tensor(images) else np.uint8):
        return to_float(images)                                       # -> [-0.5, 0.5]
    return images.float() if torch.is_tensor(images) else torch.from_numpy(np.array(images, np.float32))


@torch.no_grad()
def energy_per_reconstruction(vq, images, device=None, batch_size=500, **meter_kw):
    """Energy of decode(encode(x)) per image (uint8 or [-0.5, 0.5] float images [N, C, H, W])."""
    vq.eval()
    x, device = _images(images), _device(vq, device)
    with EnergyMeter(vq, **meter_kw) as meter:
        for i in range(0, len(x), batch_size):
            vq.decode(vq.encode(x[i:i + batch_size].to(device)))
    rows, tot = meter.layers(), meter.totals()
    enc = sum(r["energy_pj"] for r in rows if r["name"].startswith("encoder."))
    return {"energy_uJ": tot["energy_total_pj"] * 1e-6, "encoder_uJ": enc * 1e-6,
            "decoder_uJ": (tot["energy_total_pj"] - enc) * 1e-6,          # generator + decoder
            "ann_equivalent_uJ": tot["ann_equivalent_pj"] * 1e-6, "sops": tot["sops"],
            "macs_analog": tot["macs_analog"], "T": vq.cfg.T, "neuron": vq.cfg.neuron,
            "images": len(x), "layers": rows}


@torch.no_grad()
def energy_per_generated_image(sdid, vq, sampler="paper", steps=12, device=None, n=100,
                               temperature=1.0, seed=0, batch_size=500, **meter_kw):
    """Energy per generated image: SDID per call x denoiser calls per image + generator/decoder."""
    from .sdid import make_denoiser
    device, denoise, evals = _device(sdid, device), make_denoiser(sdid), [0, 0]

    def counting(x_t, t):                 # evals = [calls, sample-evaluations]
        evals[0], evals[1] = evals[0] + 1, evals[1] + len(x_t)
        return denoise(x_t, t)

    h = w = math.isqrt(sdid.cfg.num_timesteps)
    kw = dict(n=n, shape=(h, w), num_timesteps=sdid.cfg.num_timesteps, mask_id=sdid.cfg.num_codes,
              temperature=temperature, batch_size=batch_size, device=device, progress=False,
              generator_seed=seed)
    with EnergyMeter(sdid, **meter_kw) as m_sd:
        if sampler == "paper":
            idx = absorbing.sample(counting, **kw)
        elif sampler == "maskgit":
            idx = absorbing.sample_maskgit(counting, steps=steps, **kw)
        else:
            raise ValueError(f"unknown sampler {sampler!r}; choose 'paper' or 'maskgit'")
    vq.eval()
    with EnergyMeter(vq, **meter_kw) as m_vq:
        vq.decode(idx.to(_device(vq, device)))
    calls = evals[1] / n                              # denoiser evaluations per image
    sd, dec = m_sd.totals(), m_vq.totals()
    return {"energy_uJ": (sd["energy_total_pj"] * calls + dec["energy_total_pj"]) * 1e-6,
            "sdid_uJ": sd["energy_total_pj"] * calls * 1e-6, "sdid_per_call_uJ": sd["energy_total_pj"] * 1e-6,
            "denoiser_calls_per_image": calls, "decoder_uJ": dec["energy_total_pj"] * 1e-6,
            "ann_equivalent_uJ": (sd["ann_equivalent_pj"] * calls + dec["ann_equivalent_pj"]) * 1e-6,
            "sampler": sampler, "steps": steps if sampler == "maskgit" else sdid.cfg.num_timesteps,
            "temperature": temperature, "images": n, "T": sdid.cfg.T, "neuron": sdid.cfg.neuron,
            "layers": {"sdid": m_sd.layers(), "vq": m_vq.layers()}}


@torch.no_grad()
def firing_rates(model, *inputs, fn=None):
    """{layer name: input firing rate} of the spiking-input layers during `fn(*inputs)` (default
    model(*inputs)), e.g. firing_rates(vq, x, fn=lambda x: vq.decode(vq.encode(x)))."""
    with EnergyMeter(model, ann=False) as meter:
        (fn or model)(*inputs)
    return {r["name"]: r["rate"] for r in meter.layers() if r["kind"] == "spiking"}
