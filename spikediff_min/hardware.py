"""What this machine can do fast: the bf16 autocast decision, made by detecting the hardware.

bf16 autocast (`amp`) only pays where the hardware multiplies bf16 natively:
- CUDA GPUs with bf16 support (Ampere and newer): yes.
- CPUs with AVX512-BF16 or AMX (Intel Sapphire Rapids and newer, AMD Zen 4 and newer): yes;
  measured 1.40-1.66x on every training and sampling path of `benchmarks/speed.py --quick --bf16`
  (AMD EPYC with AVX512-BF16, 2026-12-02).
- Other CPUs (AVX2 only, or AVX512 without its BF16 extension): no; bf16 is emulated there and
  ran about 4x slower than fp32 on an AVX2 EPYC.
- MPS and anything undetectable: no (fp32, the safe default).
Native bf16 is necessary, not sufficient: on an Intel Xeon with AVX512-BF16 and no AMX
(2026-12-03) bf16 made the cpu preset's VQ-SVAE step 1.5-1.7x faster and its SDID step 1.2x slower
(benchmarks/README.md).
So run_all.py measures both precisions per stage where `bf16_pays` is True (plan.pick_amp).

    from spikediff_min import hardware
    hardware.bf16_pays("cpu")      # True on AVX512-BF16 / AMX CPUs
    hardware.describe("cpu")       # one line for logs and benchmark JSON
"""
import functools
import platform

import torch

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")   # /proc/cpuinfo names of native bf16 arithmetic


@functools.lru_cache(maxsize=None)
def _cpuinfo(field):
    """The value of the first `field` line of /proc/cpuinfo (Linux), or None where it cannot be read."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(field):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_flags():
    """The CPU feature flags from /proc/cpuinfo; an empty set where it cannot be read."""
    return frozenset((_cpuinfo("flags") or "").split())


def cpu_model():
    """The CPU's model name (Linux /proc/cpuinfo), else platform.processor()."""
    return _cpuinfo("model name") or platform.processor() or "unknown CPU"


def cpu_bf16_flags():
    """The native-bf16 flags this CPU has, e.g. ('avx512_bf16',); () on AVX2-only CPUs."""
    return tuple(f for f in BF16_CPU_FLAGS if f in cpu_flags())


def vector_isa():
    """The widest SIMD extension the CPU reports, for logs: 'AVX512F', 'AVX2' or 'no AVX2'."""
    flags = cpu_flags()
    return "AVX512F" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"


def bf16_pays(device):
    """True where bf16 autocast is faster than fp32 on `device` (see the module docstring)."""
    kind = torch.device(device).type
    if kind == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if kind == "cpu":
        return bool(cpu_bf16_flags())
    return False


def describe(device):
    """One line naming the hardware and the bf16 decision, for logs and benchmark JSON."""
    kind = torch.device(device).type
    if kind == "cuda" and torch.cuda.is_available():
        name = torch.cuda.get_device_name(torch.device(device))
    elif kind == "cpu":
        flags = cpu_bf16_flags()
        name = (f"{cpu_model()}, {torch.get_num_threads()} threads, "
                + (" + ".join(flags) if flags else f"no native bf16 ({vector_isa()}, no AVX512-BF16 or AMX)"))
    else:
        name = kind
    return f"{name}; bf16 autocast {'pays' if bf16_pays(device) else 'does not pay'}"
