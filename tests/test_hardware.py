"""hardware.py: the bf16 decision follows the CPU flags, never an assumption."""
import torch

from spikediff_min import hardware


def _with_flags(monkeypatch, flags):
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset(flags))


def test_avx2_only_cpu_keeps_fp32(monkeypatch):
    _with_flags(monkeypatch, {"sse4_2", "avx", "avx2", "fma"})
    assert hardware.cpu_bf16_flags() == ()
    assert hardware.bf16_pays("cpu") is False
    assert "no native bf16" in hardware.describe("cpu")


def test_avx512_bf16_or_amx_cpu_uses_bf16(monkeypatch):
    for flags in ({"avx2", "avx512f", "avx512_bf16"}, {"avx2", "amx_tile", "amx_bf16"}):
        _with_flags(monkeypatch, flags)
        assert hardware.bf16_pays("cpu") is True
        assert "bf16 autocast pays" in hardware.describe("cpu")


def test_mps_and_missing_cuda_never_bf16(monkeypatch):
    _with_flags(monkeypatch, {"avx512_bf16"})
    assert hardware.bf16_pays("mps") is False
    if not torch.cuda.is_available():
        assert hardware.bf16_pays("cuda") is False


def test_real_flags_parse_as_a_set():
    flags = hardware.cpu_flags()
    assert isinstance(flags, frozenset)
    assert all(" " not in f for f in flags)


def test_pick_amp_keeps_the_faster_measured_step(monkeypatch):
    from spikediff_min import plan
    from spikediff_min.sdid import config_from_preset
    cfg = config_from_preset("smoke")
    for bf16_s, want in ((0.5, True), (0.9, False)):      # fp32 takes 0.7 s/step in both cases
        monkeypatch.setattr(plan, "train_step_seconds", lambda stage, c, shape, dev: bf16_s if c.amp else 0.7)
        amp, secs = plan.pick_amp("sdid", cfg, (1, 28, 28), "cpu")
        assert amp is want and secs == {"fp32": 0.7, "bf16": bf16_s}
    assert cfg.amp is False                                # the config passed in is not changed


def test_choose_amp_per_stage(monkeypatch):
    from spikediff_min import plan
    from spikediff_min.run_all import choose_amp
    from spikediff_min.sdid import config_from_preset as sdid_config
    from spikediff_min.vqsvae import config_from_preset as vq_config
    # native bf16, bf16 faster for the VQ-SVAE only (what an AVX512-BF16 Xeon without AMX measured)
    _with_flags(monkeypatch, {"avx512_bf16"})
    monkeypatch.setattr(plan, "train_step_seconds",
                        lambda stage, c, shape, dev: {"vq": (0.54, 0.42), "sdid": (0.62, 0.75)}[stage][c.amp])
    vq, sd, results = vq_config("smoke"), sdid_config("smoke"), {}
    measured = choose_amp(vq, sd, (1, 28, 28), "cpu", None, results)
    assert (vq.amp, sd.amp) == (True, False) and measured == {"vq": 0.42, "sdid": 0.62}
    assert results["amp"]["sdid"]["s_per_step"] == {"fp32": 0.62, "bf16": 0.75}
    # a finished stage keeps the amp it trained with, untimed; the unfinished one is measured
    vq, sd, results = vq_config("smoke"), sdid_config("smoke"), {}
    assert choose_amp(vq, sd, (1, 28, 28), "cpu", None, results, trained={"vq": False}) == {"sdid": 0.62}
    assert (vq.amp, sd.amp) == (False, False) and "finished" in results["amp"]["vq"]["why"]
    # --amp wins and nothing is measured; no native bf16: fp32, nothing measured
    monkeypatch.setattr(plan, "train_step_seconds", lambda *a: 1 / 0)
    for flag, flags, want in ((True, {"avx512_bf16"}, True), (False, {"avx512_bf16"}, False), (None, {"avx2"}, False)):
        _with_flags(monkeypatch, flags)
        vq, sd = vq_config("smoke"), sdid_config("smoke")
        assert choose_amp(vq, sd, (1, 28, 28), "cpu", flag, {}) == {} and vq.amp is sd.amp is want
