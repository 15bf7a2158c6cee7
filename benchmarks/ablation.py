"""Short ablations of the named options that depart from the paper (issues 4 and 5), on MNIST.

    python benchmarks/ablation.py --run runs/mnist-cpu     # about 12 minutes on 2 cores

1. VQ-SVAE `reseed_dead_codes` off vs on (cpu preset, --vq-epochs each): codebook use, perplexity,
   reconstruction MSE and SSIM on the first 2,000 test images.
2. SDID `token_input` "float" (paper) vs "embed" (ours) (cpu preset, --sdid-epochs each) on the
   tokens of the finished VQ-SVAE in --run: held-out reweighted-ELBO loss (bits per token) on
   the test split's tokens, averaged over 5 fixed-seed maskings.
Short runs rank the options; they are not the final numbers. Writes --json and prints a table.
"""
import argparse
import json
import time

import torch

from spikediff_min import absorbing, data
from spikediff_min.evaluate import encode_all, reconstruction_metrics
from spikediff_min.sdid import config_from_preset as sdid_config, train_sdid
from spikediff_min.train import load_checkpoint
from spikediff_min.vqsvae import VQSVAE, VQSVAEConfig, config_from_preset as vq_config, train_vqsvae


@torch.no_grad()
def heldout_bits(sdid, tokens, repeats=5):
    sdid.eval()
    T, K = sdid.cfg.num_timesteps, sdid.cfg.num_codes
    losses = []
    for r in range(repeats):
        torch.manual_seed(1000 + r)
        for i in range(0, len(tokens), 1000):
            x_0 = tokens[i:i + 1000]
            t = absorbing.sample_t(len(x_0), T, "cpu")
            x_t, mask = absorbing.q_sample(x_0, t, T, K)
            losses.append(absorbing.loss(sdid(x_t, t), x_0, mask, t, T).item() * len(x_0))
    return sum(losses) / (repeats * len(tokens))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", default="runs/mnist-cpu", help="finished run_all.py folder (vq.pt, tokens.pt)")
    p.add_argument("--vq-epochs", type=float, default=0.5)
    p.add_argument("--sdid-epochs", type=float, default=0.3)
    p.add_argument("--json", default="benchmarks/ablation.json")
    args = p.parse_args()
    x_train, _ = data.load_arrays("mnist", "train")
    x_test, _ = data.load_arrays("mnist", "test")
    rows = []
    for reseed in (False, True):
        cfg = vq_config("cpu", epochs=args.vq_epochs, reseed_dead_codes=reseed)
        t0 = time.time()
        vq, _ = train_vqsvae(cfg, x_train, progress=False)
        m, _ = reconstruction_metrics(vq, x_test[:2000], "cpu", progress=False)
        rows.append({"stage": "vq", "option": f"reseed_dead_codes={reseed}", "epochs": args.vq_epochs,
                     "seconds": time.time() - t0, **m})
        print(rows[-1], flush=True)
    ck = load_checkpoint(f"{args.run}/vq.pt")
    vq = VQSVAE(VQSVAEConfig(**ck["config"]))
    vq.load_state_dict(ck["model"])
    train_tokens = load_checkpoint(f"{args.run}/tokens.pt")["tokens"]
    test_tokens = encode_all(vq, x_test, "cpu", progress=False)
    for token_input in ("float", "embed"):
        cfg = sdid_config("cpu", epochs=args.sdid_epochs, token_input=token_input,
                          num_codes=vq.cfg.num_codes, num_timesteps=test_tokens[0].numel())
        t0 = time.time()
        sdid, _ = train_sdid(cfg, train_tokens, progress=False)
        rows.append({"stage": "sdid", "option": f"token_input={token_input}", "epochs": args.sdid_epochs,
                     "seconds": time.time() - t0, "heldout_bits_per_token": heldout_bits(sdid, test_tokens)})
        print(rows[-1], flush=True)
    json.dump({"date": time.strftime("%Y-%m-%d %H:%M"), "torch": torch.__version__,
               "threads": torch.get_num_threads(), "rows": rows}, open(args.json, "w"), indent=1)
    print("\n| stage | option | epochs | result | seconds |\n|---|---|---|---|---|")
    for r in rows:
        res = (f"codes {r['codes_used']}, perplexity {r['perplexity']:.1f}, MSE {r['mse']:.4f}, SSIM {r['ssim']:.3f}"
               if r["stage"] == "vq" else f"held-out loss {r['heldout_bits_per_token']:.4f} bits/token")
        print(f"| {r['stage']} | {r['option']} | {r['epochs']} | {res} | {r['seconds']:.0f} |")


if __name__ == "__main__":
    main()
