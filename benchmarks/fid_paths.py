"""FID of the plain path vs the optimised path from one trained run (issue 7: "no loss of quality").

    python benchmarks/fid_paths.py --run runs/mnist-cpu-sdid3.5 --overrides '--sdid-epochs 3.5' --device cuda

Loads the finished checkpoints of a run_all.py run (nothing is trained), then draws --n samples with
the same seed twice: once on the plain path (fast.ENABLED = False: every trick of
spikediff_min/fast.py off) and once on the optimised path (the package defaults), and scores each
against the full test split. The fp32 tricks compute the same function, so the two FIDs differ
only through floating-point rounding (and, for the paper sampler, the order in which random
numbers are drawn when rows are skipped).
Adds an entry to benchmarks/fid_paths.json.
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from speed import path, plain_and_optimised, switch_state  # noqa: E402

from spikediff_min import evaluate, fid, run_all  # noqa: E402
from spikediff_min.evaluate import generate  # noqa: E402
from spikediff_min.train import pick_device  # noqa: E402


def run_parser(doc, json_name):
    """Arguments naming a finished run_all.py run and how to sample from it."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="folder of a finished run_all.py run (vq.pt, sdid.pt)")
    p.add_argument("--dataset", default="mnist", help="the run's dataset")
    p.add_argument("--preset", default="cpu", help="the run's preset")
    p.add_argument("--overrides", default="", help="the run's run_all.py overrides, quoted, e.g. '--sdid-epochs 3.5' (recorded "
                                                   "in the JSON only: the configs come from the checkpoints)")
    p.add_argument("--n", type=int, default=10000, help="samples (per path)")
    p.add_argument("--temperature", type=float, default=0.7, help="sampling temperature")
    p.add_argument("--sampler", default="paper", choices=["paper", "maskgit"])
    p.add_argument("--data-root", help="as in run_all.py")
    p.add_argument("--device", help="cpu or cuda (default: cuda if present)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), json_name))
    return p


def load_run(a, device):
    """(vq, sdid) from the finished checkpoints of run a.run (evaluate.load_run: the configs saved
    with the weights, so --overrides is only recorded); a missing or unfinished one exits in a line."""
    try:
        return evaluate.load_run(a.run, device)
    except run_all.errors.UserError as e:
        sys.exit(f"error: {e}")


def save_entry(path, key, entry):
    old = json.load(open(path)) if os.path.exists(path) else {}
    old[key] = entry
    with open(path, "w") as f:
        json.dump(old, f, indent=1)


def main(argv=None):
    a = run_parser(__doc__, "fid_paths.json").parse_args(argv)
    device = pick_device(a.device)
    vq, sdid = load_run(a, device)
    rows = {}
    for label, values in plain_and_optimised():
        with path(*values):
            used = switch_state()
            images, secs = generate(sdid, vq, a.n, a.temperature, a.sampler, device=device, seed=a.seed)
        score = fid.fid(images, a.dataset, root=a.data_root, device=device)
        rows[label] = {"fid": score, "switches": used, "sampling_s": secs}
        print(f"{label:10s} FID-{a.n} {score:8.2f}   sampling {secs:7.1f} s   {used}", flush=True)
    rel = abs(rows["optimised"]["fid"] - rows["plain"]["fid"]) / rows["plain"]["fid"]
    print(f"relative difference {100 * rel:.2f}% (target: within 5%)")
    entry = {"run": a.run, "dataset": a.dataset, "n": a.n, "temperature": a.temperature, "sampler": a.sampler,
             "device": str(device), "torch": torch.__version__,
             "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None,
             "date": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(["python"] + sys.argv),
             **rows, "relative_difference": rel}
    save_entry(a.json, f"{a.dataset}-{device.type}", entry)


if __name__ == "__main__":
    main()
