"""Greedy samples on the plain and the optimised path (issue 7: no loss of quality).

    python benchmarks/greedy_paths.py --run runs/mnist-cpu-sdid3.5 --overrides='--sdid-epochs 3.5'

At temperature 0 the paper sampler draws no token at random (argmax), so both paths see the same
unmasking order and, if they compute the same logits up to rounding, give the same tokens. A cheap
check (a minute on the 2-core CPU) to run beside benchmarks/fid_paths.py, which needs 2 x 10,000
samples and Inception. The compiled LIF loop is forced on (fast.COMPILE_MIN_ELEMENTS = 0) so the
small batch takes the same kernels as a batch of 500. Adds an entry to benchmarks/greedy_paths.json.
"""
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fid_paths import load_run, run_parser, save_entry  # noqa: E402
from speed import path, plain_and_optimised, switch_state  # noqa: E402

from spikediff_min import absorbing, fast  # noqa: E402
from spikediff_min.sdid import make_denoiser  # noqa: E402
from spikediff_min.train import pick_device  # noqa: E402


def main(argv=None):
    p = run_parser(__doc__, "greedy_paths.json")
    a = p.parse_args(argv)
    device = pick_device(a.device)
    if device.type == "cpu":
        torch.set_num_threads(2)
    vq, sdid = load_run(a, device)
    fast.COMPILE_MIN_ELEMENTS = 0
    n, side = min(a.n, 200), int(sdid.cfg.num_timesteps ** 0.5)
    out = {}
    for label, values in plain_and_optimised():
        with path(*values):
            out[label] = absorbing.sample(make_denoiser(sdid), n, (side, side), sdid.cfg.num_timesteps,
                                          sdid.cfg.num_codes, temperature=0, batch_size=n, device=device,
                                          progress=False, generator_seed=a.seed)
    same = out["plain"] == out["optimised"]
    tokens, images = same.float().mean().item(), same.flatten(1).all(1).float().mean().item()
    print(f"temperature 0, {n} images: {tokens:.4%} of tokens and {images:.1%} of images equal, plain vs optimised")
    save_entry(a.json, f"{a.dataset}-{device.type}", {
        "run": a.run, "overrides": a.overrides, "n": n, "tokens_equal": tokens, "images_equal": images,
        "switches": switch_state(), "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(["python"] + sys.argv)})


if __name__ == "__main__":
    main()
