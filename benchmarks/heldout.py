"""Held-out loss of finished SDIDs: the reweighted ELBO (bits per token) on the test split's tokens.

    python benchmarks/heldout.py --runs runs/mnist-v2 runs/mnist-dil

Each run's VQ-SVAE encodes the test split; its SDID is scored on those token grids under 5 fixed
maskings (the same seeds for every run), as benchmarks/ablation.py does. Lower is better, and
unlike a sample FID it has no sampling noise, so it separates two denoisers trained on the same
tokens more finely. Prints a table; writes --json.
"""
import argparse
import json
import os
import time

import torch

from ablation import heldout_bits
from spikediff_min import data, hardware
from spikediff_min.evaluate import encode_all, load_run


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", required=True, help="finished run_all.py --out folders")
    p.add_argument("--dataset", default="mnist", choices=data.DATASETS)
    p.add_argument("--json", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "heldout.json"))
    args = p.parse_args()
    x_test, _ = data.load_arrays(args.dataset, "test")
    rows = []
    for run in args.runs:
        vq, sdid = load_run(run, "cpu", amp=False)
        tokens = encode_all(vq, x_test, "cpu", progress=False)
        rows.append({"run": run, "dataset": args.dataset, "sdid_config": vars(sdid.cfg),
                     "heldout_bits_per_token": heldout_bits(sdid, tokens)})
        print(rows[-1]["run"], round(rows[-1]["heldout_bits_per_token"], 4), flush=True)
    json.dump({"date": time.strftime("%Y-%m-%d %H:%M"), "cpu": hardware.describe("cpu"),
               "torch": torch.__version__, "rows": rows}, open(args.json, "w"), indent=1)
    print("\n| run | SDID dilations | held-out bits/token |\n|---|---|---|")
    for r in rows:
        print(f"| {r['run']} | {tuple(r['sdid_config']['dilations'])} | {r['heldout_bits_per_token']:.4f} |")


if __name__ == "__main__":
    main()
