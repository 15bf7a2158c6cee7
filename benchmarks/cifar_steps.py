"""Seconds per training step at CIFAR-10's 3x32x32 (issue 19), to size the cpu preset's recipe.

    python benchmarks/cifar_steps.py                 # cpu: about 2 minutes on the 2-core dev CPU
    python benchmarks/cifar_steps.py --device cuda

Each row is plan.train_step_seconds (the measurement run_all.py makes before it trains): two
warm-up steps, then the median of --repeats steps on a random batch of the real shape. Minutes per
epoch = steps per epoch (50,000 / batch) x seconds per step. MNIST's 1x28x28 rows are the scale:
its cpu-preset run is measured end to end in the README. Adds an entry keyed by device (and the
load average, since the dev CPU is shared) to benchmarks/cifar_steps.json.
"""
import argparse
import json
import os
import sys
from dataclasses import replace
from datetime import datetime, timezone

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from spikediff_min import hardware, plan  # noqa: E402
from spikediff_min.sdid import SDID_PRESETS  # noqa: E402
from spikediff_min.train import pick_device  # noqa: E402
from spikediff_min.vqsvae import VQ_PRESETS  # noqa: E402

ROWS = [  # (name, stage, preset, image shape, overrides, training images)
    ("mnist vq cpu T=4", "vq", "cpu", (1, 28, 28), {}, 60000),
    ("mnist sdid cpu T=4", "sdid", "cpu", (1, 28, 28), {}, 60000),
    ("cifar10 vq cpu T=4", "vq", "cpu", (3, 32, 32), dict(in_channels=3), 50000),
    ("cifar10 vq cpu T=2", "vq", "cpu", (3, 32, 32), dict(in_channels=3, T=2), 50000),
    ("cifar10 sdid cpu T=4", "sdid", "cpu", (3, 32, 32), {}, 50000),
    ("cifar10 sdid cpu T=2", "sdid", "cpu", (3, 32, 32), dict(T=2), 50000),
]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    device = pick_device(args.device)
    rows = []
    print(f"{'config':<24} {'s/step':>8} {'steps/epoch':>12} {'min/epoch':>10}")
    for name, stage, preset, shape, over, n in ROWS:
        presets = VQ_PRESETS if stage == "vq" else SDID_PRESETS
        cfg = replace(presets[preset], **over)
        if stage == "sdid":
            cfg = replace(cfg, num_timesteps=(shape[1] // 4) * (shape[2] // 4))
        sec = plan.train_step_seconds(stage, cfg, shape, device, args.repeats)
        per_epoch = n // cfg.batch_size
        rows.append(dict(config=name, seconds_per_step=sec, steps_per_epoch=per_epoch,
                         minutes_per_epoch=sec * per_epoch / 60, T=cfg.T, batch_size=cfg.batch_size))
        print(f"{name:<24} {sec:>8.3f} {per_epoch:>12} {sec * per_epoch / 60:>10.1f}", flush=True)
    entry = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "hardware": hardware.describe(device),
             "torch": torch.__version__, "threads": torch.get_num_threads(), "repeats": args.repeats,
             "load_average_1_5_15": list(os.getloadavg()),
             "note": "the dev CPU is shared with other jobs while this runs: a loaded machine's times",
             "rows": rows}
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cifar_steps.json")
    saved = json.load(open(path)) if os.path.exists(path) else {}
    saved[device.type] = entry
    with open(path, "w") as f:
        json.dump(saved, f, indent=1)


if __name__ == "__main__":
    main()
