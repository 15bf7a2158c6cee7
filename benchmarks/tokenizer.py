"""Tokenizer (VQ-SVAE) options side by side at one budget: reconstruction FID-2k, MSE, SSIM, codes.

    python benchmarks/tokenizer.py --epochs 2 --variants mid_blocks=0 mid_blocks=1 mid_blocks=2
    python benchmarks/tokenizer.py --dataset fmnist --epochs 14 --variants T=2,amp=False

Each variant is the `cpu` preset with KEY=VALUE overrides of VQSVAEConfig, trained at the same seed
and budget (bf16 where the hardware pays, as run_all.py), then scored on the test split: MSE and
SSIM of all 10,000 reconstructions, and FID of the first 2,000 reconstructions against the full
test split (run_all.py's reconstruction FID-2k). Short runs rank options; the preset's full budget
gives the final numbers. Appends one row per variant to --json and prints a table.
"""
import argparse
import ast
import json
import os
import time

import torch

from spikediff_min import data, fid, hardware
from spikediff_min.evaluate import reconstruction_metrics
from spikediff_min.vqsvae import config_from_preset, train_vqsvae


def override(text):
    """'mid_blocks=1' -> ('mid_blocks', 1)."""
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE. Fix: write e.g. mid_blocks=1")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="mnist", choices=data.DATASETS)
    p.add_argument("--epochs", type=float, default=2.0, help="VQ-SVAE epochs of every variant")
    p.add_argument("--variants", nargs="+", default=["mid_blocks=0"],
                   help="one per variant: comma-separated KEY=VALUE overrides of the cpu preset")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda (bf16 where hardware.bf16_pays(device))")
    p.add_argument("--fid-n", type=int, default=2000, help="reconstructions scored by FID")
    p.add_argument("--json", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "tokenizer.json"))
    args = p.parse_args()
    x_train, _ = data.load_arrays(args.dataset, "train")
    x_test, _ = data.load_arrays(args.dataset, "test")
    amp = hardware.bf16_pays(args.device)
    old = json.load(open(args.json)) if os.path.exists(args.json) else {"rows": []}
    for variant in args.variants:
        kw = dict(override(v) for v in variant.split(","))
        kw = {"amp": amp, **kw}                                       # amp=False in a variant wins
        cfg = config_from_preset("cpu", in_channels=x_train.shape[1], epochs=args.epochs, **kw)
        t0 = time.time()
        vq, _ = train_vqsvae(cfg, x_train, device=args.device, seed=args.seed, progress=False)
        seconds = time.time() - t0
        m, recon = reconstruction_metrics(vq, x_test, args.device, progress=False)
        m["fid"] = fid.fid(recon[:args.fid_n], args.dataset, device=args.device, progress=False)        # against the full test split
        row = {"dataset": args.dataset, "variant": variant, "epochs": args.epochs, "seed": args.seed,
               "amp": cfg.amp, "train_s": round(seconds, 1), "fid_n": args.fid_n, **m,
               "date": time.strftime("%Y-%m-%d %H:%M"), "cpu": hardware.describe(args.device),
               "threads": torch.get_num_threads(), "torch": torch.__version__}
        old["rows"].append(row)
        json.dump(old, open(args.json, "w"), indent=1)
        print(row, flush=True)
    print("\n| dataset | variant | epochs | train s | recon. FID | MSE | SSIM | codes |\n|---|---|---|---|---|---|---|---|")
    for r in old["rows"]:
        print(f"| {r['dataset']} | {r['variant']} | {r['epochs']} | {r['train_s']:.0f} | {r['fid']:.2f} | "
              f"{r['mse']:.4f} | {r['ssim']:.3f} | {r['codes_used']} |")


if __name__ == "__main__":
    main()
