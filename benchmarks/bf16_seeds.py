"""Does bf16 training cost FID? fp32 vs bf16 whole runs at two training seeds (issue 17).

    python benchmarks/bf16_seeds.py                         # MNIST, 1 + 1 epochs, seeds 0 1: 85 min on a 2-core Xeon
    python benchmarks/bf16_seeds.py --vq-epochs 7 --sdid-epochs 6   # the full cpu preset (~4 h)

For each training seed and each precision this runs the whole pipeline (run_all.py: VQ-SVAE,
tokens, SDID, evaluation) with `--amp off` or `--amp on`, so both stages train and sample in that
precision, and scores it the CPU-sized way: FID-2k of the paper sampler at the dataset's
temperature and the reconstruction FID-2k, MSE, SSIM and codes used of the tokenizer. bf16 passes
when its mean lies within the spread of the fp32 seeds (or within --tol of the fp32 mean, whichever
is wider): the seed-to-seed spread of a whole run is the noise any precision effect must beat.
Runs go to --out/<fp32|bf16>-s<seed> (finished stages are skipped on a rerun); the table and the
per-run numbers are written to --json together with the machine (hardware.describe).
"""
import argparse
import json
import os
import statistics
import time

from spikediff_min import hardware
from spikediff_min.train import pick_device
from whole_runs import run_one    # benchmarks/whole_runs.py: one run_all.py run -> its numbers

METRICS = ("fid", "recon_fid", "recon_mse", "recon_ssim", "codes_used")


def verdict(runs, tol):
    """runs: {"fp32": [summary, ...], "bf16": [...]} -> per metric: both means, the fp32 seed spread, pass."""
    out = {}
    for m in METRICS:
        f = [r[m] for r in runs["fp32"]]
        b = [r[m] for r in runs["bf16"]]
        fm, bm = statistics.fmean(f), statistics.fmean(b)
        noise = max(max(f) - min(f), tol * abs(fm))
        out[m] = {"fp32": f, "bf16": b, "fp32_mean": fm, "bf16_mean": bm, "diff": bm - fm,
                  "fp32_seed_spread": max(f) - min(f), "allowed": noise, "within_noise": abs(bm - fm) <= noise}
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="training seeds (default 0 1)")
    p.add_argument("--vq-epochs", type=float, default=1.0)
    p.add_argument("--sdid-epochs", type=float, default=1.0)
    p.add_argument("--fid-samples", type=int, default=2000)
    p.add_argument("--tol", type=float, default=0.05, help="smallest relative difference counted as noise (5%%)")
    p.add_argument("--data-root", help="as in run_all.py")
    p.add_argument("--out", default="runs/bf16-seeds")
    p.add_argument("--json", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "bf16_seeds.json"))
    args = p.parse_args(argv)
    device = pick_device(None)
    runs = {"fp32": [], "bf16": []}
    for seed in args.seeds:
        for amp in ("off", "on"):
            prec = "bf16" if amp == "on" else "fp32"
            runs[prec].append(run_one(os.path.join(args.out, f"{prec}-s{seed}"), ["--amp", amp], args.dataset, seed,
                                      args.vq_epochs, args.sdid_epochs, args.fid_samples, args.data_root))
    table = verdict(runs, args.tol)
    print(hardware.describe(device))
    print("metric     | fp32 per seed        | bf16 per seed        | bf16 - fp32 | fp32 seed spread | within noise")
    for m, r in table.items():
        print(f"{m:10s} | {' '.join(f'{v:9.4g}' for v in r['fp32']):20s} | {' '.join(f'{v:9.4g}' for v in r['bf16']):20s} | "
              f"{r['diff']:+11.4g} | {r['fp32_seed_spread']:16.4g} | {r['within_noise']}")
    out = {"machine": hardware.describe(device), "bf16_pays": hardware.bf16_pays(device), "args": vars(args),
           "date": time.strftime("%Y-%m-%d %H:%M:%S"), "runs": runs, "verdict": table}
    with open(args.json, "w") as f:
        json.dump(out, f, indent=1)
    return out


if __name__ == "__main__":
    main()
