"""How fast training at the paper's architecture could be on this machine (issue 7's 3x target).

    python benchmarks/roofline.py                 # cpu, 2 threads: about 3 minutes on the 2-core dev CPU
    python benchmarks/roofline.py --device cuda

A training step is mostly convolutions (forward, and two more of the same size in backward:
gradients of the input and of the weights). This script counts their floating-point operations
(torch.utils.flop_counter, on one real step of each path) and measures the fastest rate this
machine reaches on such work: a 2048^3 fp32 matmul and the model's own biggest convolution
forward, each the median of a few calls. A step cannot take less than FLOPs / that rate, so

    ceiling (images/s) = batch * peak (FLOP/s) / FLOPs of one optimised step

is an upper bound on the optimised path's throughput: the time of every other op (BatchNorm, the
LIF loop, AdamW) is counted as zero and every convolution runs at the best rate measured. The
table gives the ceiling as a multiple of the plain path's measured throughput, and the FLOP rate
a 3x speedup would need; equivalently, 3x is out of reach once the plain path already runs at more
than 1 / (3 * optimised FLOPs / plain FLOPs) of the peak. Paths as in benchmarks/speed.py:
plain = every trick of fast.py off; optimised = the package defaults. Adds an entry keyed by
device to benchmarks/roofline.json.
"""
import argparse
import json
import os
import shlex
import sys
import time
from datetime import datetime, timezone

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from speed import device_name, median_seconds, path, plain_and_optimised, timed_seconds, trainer  # noqa: E402

from spikediff_min.sdid import SDID, SDID_PRESETS  # noqa: E402
from spikediff_min.train import pick_device  # noqa: E402
from spikediff_min.vqsvae import VQ_PRESETS  # noqa: E402

def step_flops(step, switches):
    """FLOPs of one training step (forward + backward + AdamW) with the given switches."""
    with path(*switches), FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def biggest_conv(model):
    """(c_in, c_out) of the Conv2d with the most weights in model (for the SDID: all 3x3, stride 1)."""
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    big = max(convs, key=lambda m: m.weight.numel())
    return big.in_channels, big.out_channels


def best_seconds(fn, device, repeats):
    """The fastest of `repeats` calls after two untimed ones (a peak should be generous)."""
    return min(timed_seconds(fn, device, 2, repeats))


def peak_rates(device, shapes, repeats):
    """Best fp32 FLOP/s measured: a 2048^3 matmul, and conv2d forward (3x3, stride 1, channels_last,
    batch T*B = 512) at each (c_in, c_out, side) in shapes; the fastest of `repeats` calls each.
    Returns {name: FLOP/s}."""
    rates = {}
    a, b = torch.randn(2048, 2048, device=device), torch.randn(2048, 2048, device=device)
    rates["matmul 2048^3"] = 2 * 2048 ** 3 / best_seconds(lambda: a @ b, device, repeats)
    for c_in, c_out, side in shapes:
        x = torch.rand(512, c_in, side, side, device=device).contiguous(memory_format=torch.channels_last)
        w = torch.randn(c_out, c_in, 3, 3, device=device)
        flops = 2 * 512 * side * side * 9 * c_in * c_out
        rates[f"conv {c_in}->{c_out} at {side}x{side}"] = flops / best_seconds(
            lambda: F.conv2d(x, w, padding=1), device, repeats)
    return rates


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or mps")
    p.add_argument("--threads", type=int, help="torch threads (default 2 on cpu; untouched otherwise)")
    p.add_argument("--repeats", type=int, default=5, help="timed training steps per path (median); peak: best of twice as many")
    p.add_argument("--target", type=float, default=3.0, help="the speedup asked for (issue 7: 3x)")
    p.add_argument("--json", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "roofline.json"))
    a = p.parse_args(argv)
    device = pick_device(a.device)
    if device.type == "cpu" or a.threads:
        torch.set_num_threads(a.threads or 2)
    t_start = time.time()

    stages = {}
    for kind, cfg in (("vqsvae", VQ_PRESETS["paper"]), ("sdid", SDID_PRESETS["paper"])):
        step = trainer(kind, cfg, device, warmup=1)
        row = {"T": cfg.T, "batch_size": cfg.batch_size}
        for label, switches in plain_and_optimised():
            flops = step_flops(step, switches)
            with path(*switches):
                sec = median_seconds(step, device, 1, a.repeats)
            row[label] = {"gflop_per_step": flops / 1e9, "images_per_s": cfg.batch_size / sec,
                          "achieved_gflop_per_s": flops / sec / 1e9}
        row["measured_speedup"] = row["optimised"]["images_per_s"] / row["plain"]["images_per_s"]
        stages[kind] = row
        del step

    shapes = [(*biggest_conv(SDID(SDID_PRESETS["paper"])), 7)]   # the SDID's 7x7 token grid
    rates = peak_rates(device, shapes, 2 * a.repeats)
    peak = max(rates.values())
    for row in stages.values():
        opt_flops = row["optimised"]["gflop_per_step"] * 1e9
        ceiling = row["batch_size"] * peak / opt_flops
        need = a.target * row["plain"]["images_per_s"] * opt_flops / row["batch_size"]
        row.update(ceiling_images_per_s=ceiling, ceiling_speedup=ceiling / row["plain"]["images_per_s"],
                   target=a.target, gflop_per_s_needed=need / 1e9, needed_over_peak=need / peak,
                   plain_share_of_peak=row["plain"]["achieved_gflop_per_s"] * 1e9 / peak)

    res = {"meta": {"device": device.type, "device_name": device_name(device), "torch": torch.__version__,
                    "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
                    "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "command": shlex.join(["python"] + sys.argv), "repeats": a.repeats,
                    "seconds": round(time.time() - t_start, 1)},
           "peak_gflop_per_s": {k: v / 1e9 for k, v in rates.items()}, "peak_used": peak / 1e9, "stages": stages}
    report(res)
    table = json.load(open(a.json)) if os.path.exists(a.json) else {}
    table[device.type] = res
    with open(a.json, "w") as f:
        json.dump(table, f, indent=1)
    print(f"\nwrote {a.json} [{device.type!r}] in {res['meta']['seconds']:.0f} s")


def report(res):
    m = res["meta"]
    print(f"{m['device_name']} ({m['device']}, {m['cpu_capability']}), torch {m['torch']}, {m['threads']} threads")
    print("best fp32 rates measured, GFLOP/s: " + ", ".join(f"{k}: {v:.0f}" for k, v in res["peak_gflop_per_s"].items()))
    print(f"\ntraining at the paper architecture (forward + backward + AdamW), peak used {res['peak_used']:.0f} GFLOP/s")
    print(f"{'stage':<8}{'T':>3}{'batch':>6}{'GFLOP plain':>13}{'GFLOP opt':>11}{'img/s plain':>13}{'img/s opt':>11}"
          f"{'GFLOP/s plain':>15}{'GFLOP/s opt':>13}{'ceiling':>9}{'ceiling/plain':>15}{'need for 3x':>13}")
    for kind, r in res["stages"].items():
        pl, op = r["plain"], r["optimised"]
        print(f"{kind:<8}{r['T']:>3}{r['batch_size']:>6}{pl['gflop_per_step']:>13.0f}{op['gflop_per_step']:>11.0f}"
              f"{pl['images_per_s']:>13.1f}{op['images_per_s']:>11.1f}"
              f"{pl['achieved_gflop_per_s']:>9.0f} ({100 * r['plain_share_of_peak']:.0f}%){op['achieved_gflop_per_s']:>11.0f}"
              f"{r['ceiling_images_per_s']:>9.1f}{r['ceiling_speedup']:>14.2f}x"
              f"{r['gflop_per_s_needed']:>8.0f} ({r['needed_over_peak']:.1f}x peak)")


if __name__ == "__main__":
    main()
