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
