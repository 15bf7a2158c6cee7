"""Energy accounting (SPEC section 8): MAC counts, SOPs, totals, the ANN twin."""
import itertools

import pytest
import torch
import torch.nn as nn

from spikediff_min import energy
from spikediff_min.energy import E_AC_PJ, E_MAC_PJ, EnergyMeter, macs_per_step
from spikediff_min.layers import SeqToANN
from spikediff_min.sdid import SDID, SDIDConfig, train_sdid
from spikediff_min.vqsvae import VQSVAE, VQSVAEConfig, train_vqsvae


def brute_conv(c_in, c_out, k, s, p, h, w):
    """(all taps, taps on real input) of Conv2d, counted position by position."""
    h_out, w_out = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    every = inside = 0
    for oy, ox, ky, kx in itertools.product(range(h_out), range(w_out), range(k), range(k)):
        iy, ix = oy * s - p + ky, ox * s - p + kx
        every += 1
        inside += 0 <= iy < h and 0 <= ix < w
    return every * c_in * c_out, inside * c_in * c_out


def brute_conv_transpose(c_in, c_out, k, s, p, op, h, w):
    """(all taps, taps landing in the output) of ConvTranspose2d: input pixel i scatters to i*s-p+k."""
    h_out, w_out = (h - 1) * s - 2 * p + k + op, (w - 1) * s - 2 * p + k + op
    every = inside = 0
    for iy, ix, ky, kx in itertools.product(range(h), range(w), range(k), range(k)):
        oy, ox = iy * s - p + ky, ix * s - p + kx
        every += 1
        inside += 0 <= oy < h_out and 0 <= ox < w_out
    return every * c_in * c_out, inside * c_in * c_out


def test_conv2d_macs_closed_form_and_brute_force():
    conv = nn.Conv2d(3, 8, 3, 1, 1)
    assert macs_per_step(conv, (3, 5, 5)) == 8 * 5 * 5 * 3 * 9 == brute_conv(3, 8, 3, 1, 1, 5, 5)[0]
    assert macs_per_step(conv, (3, 5, 5), exact=True) == 13 * 13 * 3 * 8     # 13 real taps per row
    assert brute_conv(3, 8, 3, 1, 1, 5, 5)[1] == 13 * 13 * 3 * 8
    for args in [(4, 6, 3, 2, 1, 9, 7), (2, 5, 1, 1, 0, 7, 7), (3, 4, 3, 2, 0, 8, 8)]:
        c_in, c_out, k, s, p, h, w = args
        every, inside = brute_conv(*args)
        conv = nn.Conv2d(c_in, c_out, k, s, p)
        assert macs_per_step(conv, (c_in, h, w)) == every
        assert macs_per_step(conv, (c_in, h, w), exact=True) == inside


def test_conv_transpose_macs_closed_form_and_brute_force():
    # closed form C_in * H_in * W_in * C_out * kH * kW: every scattered tap
    up = nn.ConvTranspose2d(16, 64, 3, 2, 1, 1)             # the decoder's up1, 7x7 -> 14x14
    assert macs_per_step(up, (16, 7, 7)) == 16 * 7 * 7 * 64 * 9 == brute_conv_transpose(16, 64, 3, 2, 1, 1, 7, 7)[0]
    for args in [(16, 64, 3, 2, 1, 1, 7, 7), (3, 2, 3, 1, 1, 0, 6, 5), (2, 3, 3, 2, 0, 0, 4, 4)]:
        c_in, c_out, k, s, p, op, h, w = args
        every, inside = brute_conv_transpose(*args)
        layer = nn.ConvTranspose2d(c_in, c_out, k, s, p, op)
        assert layer(torch.zeros(1, c_in, h, w)).shape[-2:] == ((h - 1) * s - 2 * p + k + op,
                                                                (w - 1) * s - 2 * p + k + op)
        assert macs_per_step(layer, (c_in, h, w)) == every
        assert macs_per_step(layer, (c_in, h, w), exact=True) == inside
        if p == 0:                           # nothing cropped: the closed form is exact
            assert every == inside


def test_linear_macs():
    assert macs_per_step(nn.Linear(10, 7), (10,)) == 70
    assert macs_per_step(nn.Linear(10, 7), (5, 10)) == 350


@pytest.mark.parametrize("fill, expected_rate", [(0.0, 0.0), (1.0, 1.0)])
def test_sops_of_silent_and_saturated_input(fill, expected_rate):
    T, B = 4, 3
    layer = SeqToANN(nn.Conv2d(3, 8, 3, 1, 1))
    with EnergyMeter(layer, T=T) as meter:
        layer(torch.full((T, B, 3, 5, 5), fill))
    (row,) = meter.layers()
    macs = 8 * 5 * 5 * 3 * 9
    assert row["kind"] == "spiking" and row["samples"] == B and row["steps"] == T
    assert row["rate"] == expected_rate
    assert row["sops"] == pytest.approx(expected_rate * T * macs)
    assert row["energy_pj"] == pytest.approx(E_AC_PJ * expected_rate * T * macs)


def test_bare_layer_time_folded_and_analog():
    T, B = 2, 5
    conv = nn.Conv2d(1, 2, 3, 1, 1)
    with EnergyMeter(conv, T=T) as meter:
        conv(torch.rand(T * B, 1, 4, 4) + 0.1)             # analog, folded [T*B, ...]
    (row,) = meter.layers()
    assert row["kind"] == "analog" and row["samples"] == B and row["sops"] == 0
    assert row["energy_pj"] == pytest.approx(E_MAC_PJ * T * 2 * 16 * 9)


def snn_vq():
    torch.manual_seed(0)
    return VQSVAE(VQSVAEConfig(T=3, width=4, num_codes=8, code_dim=4)).eval()


def test_snn_classification_and_totals():
    vq = snn_vq()
    x = torch.rand(2, 1, 28, 28) - 0.5
    with torch.no_grad(), EnergyMeter(vq) as meter:
        vq.decode(vq.encode(x))
    rows = {r["name"]: r for r in meter.layers()}
    assert list(rows) == ["encoder.conv1", "encoder.conv2", "encoder.conv3", "generator.block",
                          "decoder.up1", "decoder.up2", "decoder.out"]
    assert rows["encoder.conv1"]["kind"] == "analog" and rows["generator.block"]["kind"] == "analog"
    for name in ("encoder.conv2", "encoder.conv3", "decoder.up1", "decoder.up2", "decoder.out"):
        assert rows[name]["kind"] == "spiking", name
    c1 = rows["encoder.conv1"]             # direct coding: the image's MACs at each of T steps
    assert c1["macs_per_step"] == 4 * 14 * 14 * 1 * 9 and c1["macs"] == 3 * c1["macs_per_step"]
    assert c1["energy_pj"] == pytest.approx(E_MAC_PJ * 3 * c1["macs_per_step"])
    c2 = rows["encoder.conv2"]
    assert c2["sops"] == pytest.approx(c2["rate"] * 3 * c2["macs_per_step"])
    assert all(r["samples"] == 2 and r["calls"] == 1 for r in rows.values())
    total = meter.totals()["energy_total_pj"]
    assert total == pytest.approx(sum(r["energy_pj"] for r in rows.values()))
    rec = energy.energy_per_reconstruction(vq, (torch.rand(3, 1, 28, 28) * 255).to(torch.uint8))
    assert rec["energy_uJ"] == pytest.approx(sum(r["energy_pj"] for r in rec["layers"]) * 1e-6)
    assert rec["energy_uJ"] == pytest.approx(rec["encoder_uJ"] + rec["decoder_uJ"])
    with torch.no_grad(), EnergyMeter(vq, static_once=True) as once:
        vq.decode(vq.encode(x))
    assert once.layers()[0]["macs"] == c1["macs_per_step"]


def test_ann_twin_trains_and_costs_a_mac_per_mac():
    torch.manual_seed(0)
    images = (torch.rand(64, 1, 28, 28) * 255).to(torch.uint8)
    vq_cfg = VQSVAEConfig(neuron="relu", T=1, width=4, num_codes=8, code_dim=4, batch_size=16, epochs=1)
    vq, hist = train_vqsvae(vq_cfg, images, device="cpu", progress=False)
    assert all(torch.isfinite(torch.tensor(v)).all() for k, v in hist.items() if isinstance(v, list) and v)
    assert hist["loss"][0] > 0
    tokens = vq.encode((images[:32].float() / 255 - 0.5))
    sd_cfg = SDIDConfig(neuron="relu", T=1, num_codes=8, num_timesteps=49, channels=(4, 4, 4, 4, 4),
                        batch_size=16, epochs=1)
    sdid, sd_hist = train_sdid(sd_cfg, tokens, device="cpu", progress=False)
    assert torch.isfinite(torch.tensor(sd_hist["loss"])).all()
    torch.manual_seed(0)                 # train_sdid starts from this same initialisation
    assert not torch.equal(sdid.block1.conv.weight, SDID(sd_cfg).block1.conv.weight)   # it trained
    rec = energy.energy_per_reconstruction(vq, images[:4])
    for r in rec["layers"]:
        assert r["kind"] == "analog" and r["sops"] == 0
        assert r["energy_pj"] == pytest.approx(E_MAC_PJ * r["macs_per_step"])
    assert rec["energy_uJ"] == pytest.approx(rec["ann_equivalent_uJ"])
    gen = energy.energy_per_generated_image(sdid, vq, sampler="maskgit", steps=3, n=4)
    assert gen["denoiser_calls_per_image"] == 3
    assert all(r["kind"] == "analog" for r in gen["layers"]["sdid"])
    assert gen["energy_uJ"] == pytest.approx(3 * gen["sdid_per_call_uJ"] + gen["decoder_uJ"])


def test_generated_image_energy_counts_denoiser_calls():
    torch.manual_seed(0)
    vq = snn_vq()
    sdid = SDID(SDIDConfig(T=2, num_codes=8, num_timesteps=49, channels=(4, 4, 4, 4, 4))).eval()
    gen = energy.energy_per_generated_image(sdid, vq, sampler="paper", n=3)
    assert 1 <= gen["denoiser_calls_per_image"] <= 49
    assert {r["name"]: r["kind"] for r in gen["layers"]["sdid"]}["block1"] == "analog"
    assert {r["name"]: r["kind"] for r in gen["layers"]["sdid"]}["out"] == "spiking"
    assert gen["energy_uJ"] == pytest.approx(gen["sdid_uJ"] + gen["decoder_uJ"])
    assert gen["sdid_uJ"] == pytest.approx(gen["sdid_per_call_uJ"] * gen["denoiser_calls_per_image"])
    rates = energy.firing_rates(vq, torch.rand(2, 1, 28, 28) - 0.5, fn=lambda x: vq.decode(vq.encode(x)))
    assert "encoder.conv1" not in rates and all(0 <= r <= 1 for r in rates.values())


def test_meter_counts_the_readout_at_every_step_and_restores_mean_first():
    """fast.py's mean_first runs the SDID readout once on the mean over T; the meter turns it off
    so the readout's SOPs are counted on the spikes of each step, and turns it back on after."""
    from spikediff_min import fast
    torch.manual_seed(0)
    sdid = SDID(SDIDConfig(T=3, num_codes=8, num_timesteps=49, channels=(4, 4, 4, 4, 4))).eval()
    x_t, t = torch.randint(0, 9, (2, 7, 7)), torch.tensor([3, 40])
    assert fast.on("mean_first")
    with torch.no_grad(), EnergyMeter(sdid) as meter:
        assert not fast.on("mean_first")
        sdid(x_t, t)
    assert fast.on("mean_first")
    out = {r["name"]: r for r in meter.layers()}["out"]
    assert out["binary_input"] and out["steps"] == 3
    assert out["sops"] == pytest.approx(out["rate"] * 3 * out["macs_per_step"])
