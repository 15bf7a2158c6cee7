"""bf16 autocast vs fp32 on this machine: speed and losses of the `cpu` preset, same seed and data.

    python benchmarks/bf16_check.py                 # about 5 minutes on 2 cores with native bf16
    python benchmarks/bf16_check.py --epochs 0.5    # longer runs, closer loss curves

Trains the VQ-SVAE on MNIST for --epochs in fp32 and in bf16 (same seed, same batches), then the
SDID on the fp32 tokenizer's tokens, also both ways, and reports images/s of each and the mean
loss over the last fifth of the steps. The tolerance (--tol, relative) is the bar bf16 must meet;
the FID side of the check (FID-2k of a whole bf16-trained run against the fp32 runs' seed spread)
is in benchmarks/README.md. The JSON names the CPU and its bf16 capability (hardware.describe).
"""
import argparse
import json
import os
import time
from dataclasses import replace

import torch

from spikediff_min import data, hardware
from spikediff_min.evaluate import encode_all
from spikediff_min.sdid import config_from_preset as sdid_config, train_sdid
from spikediff_min.train import pick_device
from spikediff_min.vqsvae import config_from_preset as vq_config, train_vqsvae


def tail_mean(history, key="loss", share=0.2):
    v = history[key]
    return sum(v[-max(1, int(len(v) * share)):]) / max(1, int(len(v) * share))


def run(train, cfg, n_items):
    t0 = time.time()
    model, hist = train(cfg)
    secs = time.time() - t0
    steps = hist["step"][-1] if hist["step"] else 0
    return model, {"loss_tail": tail_mean(hist), "seconds": secs,
                   "images_per_s": steps * cfg.batch_size / secs, "steps": steps}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=float, default=0.25, help="epochs of each stage (default 0.25)")
    p.add_argument("--tol", type=float, default=0.03, help="allowed relative loss difference (default 3%%)")
    p.add_argument("--device", help="cpu, cuda or mps")
    p.add_argument("--json", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "bf16_check.json"))
    args = p.parse_args(argv)
    device = pick_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(2)
    x, _ = data.load_arrays("mnist", "train")
    res = {"machine": hardware.describe(device), "bf16_pays": hardware.bf16_pays(device),
           "epochs": args.epochs, "tol": args.tol, "date": time.strftime("%Y-%m-%d %H:%M:%S"), "stages": {}}
    vq_cfg = vq_config("cpu", epochs=args.epochs)
    vq = {}
    for amp in (False, True):
        vq[amp], res["stages"].setdefault("vqsvae", {})["bf16" if amp else "fp32"] = run(
            lambda c: train_vqsvae(c, x, device=device, progress=False), replace(vq_cfg, amp=amp), len(x))
    tokens = encode_all(vq[False], x, device, progress=False)
    sd_cfg = sdid_config("cpu", epochs=args.epochs, num_codes=vq_cfg.num_codes, num_timesteps=tokens[0].numel())
    for amp in (False, True):
        _, res["stages"].setdefault("sdid", {})["bf16" if amp else "fp32"] = run(
            lambda c: train_sdid(c, tokens, device=device, progress=False), replace(sd_cfg, amp=amp), len(tokens))
    print(res["machine"])
    print("stage  | fp32 img/s | bf16 img/s | speedup | fp32 loss | bf16 loss | rel. diff | within tol")
    for stage, r in res["stages"].items():
        f, b = r["fp32"], r["bf16"]
        r["speedup"] = b["images_per_s"] / f["images_per_s"]
        r["rel_loss_diff"] = (b["loss_tail"] - f["loss_tail"]) / f["loss_tail"]
        r["within_tol"] = abs(r["rel_loss_diff"]) <= args.tol
        print(f"{stage:6s} | {f['images_per_s']:10.1f} | {b['images_per_s']:10.1f} | {r['speedup']:6.2f}x | "
              f"{f['loss_tail']:9.4f} | {b['loss_tail']:9.4f} | {r['rel_loss_diff']:+8.2%} | {r['within_tol']}")
    with open(args.json, "w") as f:
        json.dump(res, f, indent=1)
    return res


if __name__ == "__main__":
    main()
