"""The whole Spiking-Diffusion pipeline in one command (Liu et al. 2023, arXiv 2308.10187).

    python spikediff_min/run_all.py                       # MNIST, cpu preset
    python spikediff_min/run_all.py --dataset cifar10 --preset paper

Stages, each skipped when its finished checkpoint is in --out (so a rerun resumes):
1. train the VQ-SVAE (out/vq.pt)         2. encode the training set to tokens (out/tokens.pt)
3. train the SDID (out/sdid.pt)          4. evaluate: reconstructions, a temperature sweep,
   FID-10k / FID-1280 at the best setting (out/samples.npz), energy per image (SPEC section 8),
   figures and results.json.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict

import numpy as np
import torch

from spikediff_min import data, fid, plot
from spikediff_min.energy import E_AC_PJ, E_MAC_PJ, energy_per_generated_image, energy_per_reconstruction
from spikediff_min.evaluate import encode_all, generate, reconstruction_metrics
from spikediff_min.sdid import train_sdid
from spikediff_min.sdid import config_from_preset as sdid_config
from spikediff_min.train import CheckpointMismatch, NonFiniteLoss, atomic_save, load_checkpoint, pick_device
from spikediff_min.vqsvae import VQ_PRESETS, train_vqsvae
from spikediff_min.vqsvae import config_from_preset as vq_config


# The cpu preset's per-dataset recipes, each measured to train in under an hour on the 2-core CPU
# (README): Fashion-MNIST's tokenizer needs far more epochs than MNIST's (GPU ablation), which fit
# the hour only at T=2; its SDID keeps the preset's T=4. A flag given on the command line wins.
CPU_RECIPES = {"fmnist": dict(vq_T=2, vq_epochs=14, sdid_epochs=3.5)}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="mnist", choices=data.DATASETS, help="which dataset (default mnist, embedded)")
    p.add_argument("--preset", default="cpu", choices=sorted(VQ_PRESETS),
                   help="paper: the paper's settings; cpu: tuned for a 2-core CPU in < 1 h (fmnist adds "
                        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in CPU_RECIPES["fmnist"].items())
                        + "); smoke: seconds, for tests")
    p.add_argument("--out", help="folder for checkpoints, tokens and samples (default runs/<dataset>-<preset>)")
    p.add_argument("--figures", help="folder for figures and results.json (default figures/<dataset>; "
                                     "<out>/figures for the smoke preset)")
    p.add_argument("--data-root", help="folder holding one subfolder per dataset (mnist/, fashion-mnist/, ...)")
    p.add_argument("--device", help="cpu, cuda or mps (default: cuda > mps > cpu)")
    p.add_argument("--resume", action="store_true", help="continue an unfinished checkpoint in --out")
    p.add_argument("--seed", type=int, default=0, help="random seed for training and sampling")
    p.add_argument("--fid-samples", type=int, default=10000, help="samples for the headline FID (0 skips FID)")
    p.add_argument("--fid-real", type=int, help="real test images for FID statistics (default: the full test split)")
    p.add_argument("--recon-fid-samples", type=int,
                   help="test images whose reconstructions are scored by FID (default: as many as --fid-real)")
    p.add_argument("--sweep-samples", type=int, default=2000, help="samples per setting in the temperature sweep")
    p.add_argument("--temperatures", type=float, nargs="+", default=[0.5, 0.6, 0.7, 0.8, 0.9, 1.0],
                   help="sampling temperatures to sweep; with one temperature and one sampler there is no sweep")
    p.add_argument("--sampler", default="both", choices=["paper", "maskgit", "both"],
                   help="paper: unmask w.p. 1/t over all steps; maskgit: confidence order; both: sweep both")
    p.add_argument("--maskgit-steps", type=int, default=12, help="steps of the MaskGIT sampler")
    p.add_argument("--energy-samples", type=int, default=100,
                   help="images for the energy estimate (reconstructed and generated; 0 skips it)")
    g = p.add_argument_group("overrides of the preset (both stages unless named)")
    g.add_argument("--T", type=int, help="SNN time steps")
    g.add_argument("--vq-T", type=int, help="SNN time steps of the VQ-SVAE only (wins over --T)")
    g.add_argument("--sdid-T", type=int, help="SNN time steps of the SDID only (wins over --T); the SDID sees tokens, "
                                              "so its T need not match the VQ-SVAE's")
    g.add_argument("--batch-size", type=int, help="batch size")
    g.add_argument("--lr", type=float, help="AdamW learning rate")
    g.add_argument("--vq-epochs", type=float, help="VQ-SVAE epochs (fractions allowed)")
    g.add_argument("--sdid-epochs", type=float, help="SDID epochs (fractions allowed)")
    g.add_argument("--num-codes", type=int, help="codebook size K")
    g.add_argument("--code-dim", type=int, help="VQ-SVAE codebook vector size D")
    g.add_argument("--width", type=int, help="VQ-SVAE encoder width (the decoder mirrors it)")
    g.add_argument("--amp", choices=["on", "off"], help="bf16 autocast (fast only on CPUs with AMX/AVX512-BF16, and GPUs)")
    g.add_argument("--neuron", choices=["lif", "relu"], help="relu: the ANN twin, with T = 1 unless --T is given")
    args = p.parse_args(argv)
    if args.neuron == "relu" and args.T is None:
        args.T = 1
    return args


def configs(args, in_channels):
    recipe = CPU_RECIPES.get(args.dataset, {}) if args.preset == "cpu" else {}
    args = argparse.Namespace(**{**vars(args), **{k: v for k, v in recipe.items()
                                                  if getattr(args, k) is None and not (k == "vq_T" and args.T)}})
    common = {k: v for k, v in dict(T=args.T, batch_size=args.batch_size, lr=args.lr, num_codes=args.num_codes,
                                    neuron=args.neuron,
                                    amp=None if args.amp is None else args.amp == "on").items() if v is not None}
    vq_only = {k: v for k, v in dict(T=args.vq_T, epochs=args.vq_epochs, code_dim=args.code_dim,
                                     width=args.width).items() if v is not None}
    vq = vq_config(args.preset, in_channels=in_channels, **{**common, **vq_only})
    sd_only = {k: v for k, v in dict(T=args.sdid_T, epochs=args.sdid_epochs).items() if v is not None}
    sd = sdid_config(args.preset, **{**common, **sd_only})
    return vq, sd


def git_commit():
    try:
        r = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                           cwd=os.path.dirname(os.path.abspath(__file__)))
        return r.stdout.strip() if r.returncode == 0 else None
    except OSError:
        return None


def read_checkpoint(path):
    """The checkpoint at path (weights_only), or None if there is none."""
    return torch.load(path, map_location="cpu", weights_only=True) if os.path.exists(path) else None


def train_stages(args, device, out, info):
    """Stages 1-3; a stage whose finished checkpoint exists is loaded, not retrained."""
    vq_path, tok_path, sd_path = (os.path.join(out, f) for f in ("vq.pt", "tokens.pt", "sdid.pt"))
    done = {}
    for path in (vq_path, sd_path):
        ck = read_checkpoint(path)
        done[path] = bool(ck and ck.get("done"))
        if ck is not None and not done[path] and not args.resume:
            sys.exit(f"error: {path} is an unfinished checkpoint (step {ck['step']}). "
                     f"Pass --resume to continue it, or delete it to start over.")
    both_done = done[vq_path] and done[sd_path]
    # the training images are only needed for training; a finished run loads no training data
    x_train, _ = data.load_arrays(args.dataset, "test" if both_done else "train", root=args.data_root)
    vq_cfg, sd_cfg = configs(args, x_train.shape[1])
    meta = {"dataset": args.dataset}

    vq, vq_hist = train_vqsvae(vq_cfg, x_train, vq_path, device, args.seed, meta)
    info.setdefault("vq", {"seconds": vq_hist.get("seconds"), "device": str(device)})

    sd_cfg.num_codes, sd_cfg.num_timesteps = vq_cfg.num_codes, (x_train.shape[2] // 4) * (x_train.shape[3] // 4)
    tokens = torch.zeros(1, 1, 1, dtype=torch.long)            # placeholder when the SDID is finished
    if not done[sd_path]:
        if os.path.exists(tok_path):
            tokens = load_checkpoint(tok_path, vq_cfg, meta)["tokens"]
        else:
            t0 = time.time()
            tokens = encode_all(vq, x_train, device)          # [N, h, w]
            atomic_save({"tokens": tokens, "config": asdict(vq_cfg), "meta": meta}, tok_path)
            info["encode"] = {"seconds": time.time() - t0, "device": str(device)}
    sdid, sd_hist = train_sdid(sd_cfg, tokens, sd_path, device, args.seed, meta)
    info.setdefault("sdid", {"seconds": sd_hist.get("seconds"), "device": str(device)})
    return vq, sdid, {"VQ-SVAE": vq_hist, "SDID": sd_hist}


def evaluate(args, vq, sdid, device, out, figs, results):
    x_test, _ = data.load_arrays(args.dataset, "test", root=args.data_root)
    rec, recon = reconstruction_metrics(vq, x_test, device)
    plot.reconstructions(x_test, recon, path=os.path.join(figs, "reconstructions.png"))
    results["reconstruction"] = rec
    samplers = ["paper", "maskgit"] if args.sampler == "both" else [args.sampler]
    gen = lambda n, temp, s, seed: generate(sdid, vq, n, temp, s, args.maskgit_steps, device, seed=seed)
    if args.fid_samples <= 0:
        images, secs = gen(100, 1.0, samplers[0], args.seed)
        plot.image_grid(images, path=os.path.join(figs, "samples.png"))
        return results
    n_real = args.fid_real or len(x_test)
    n_recon = min(args.recon_fid_samples or n_real, len(x_test))
    n_inception = n_real + n_recon + args.sweep_samples * len(samplers) * len(args.temperatures) + args.fid_samples
    if torch.device(device).type == "cpu":   # about 6 images/s on a 2-core CPU (measured)
        print(f"note: FID needs about {n_inception} Inception-v3 passes (fewer once the real statistics are "
              f"cached); on a 2-core CPU that is about {n_inception / 6 / 3600:.1f} h. Use --device cuda, fewer "
              f"--fid-samples/--sweep-samples/--recon-fid-samples, or --fid-samples 0 to skip FID.")
    try:
        real = fid.real_statistics(args.dataset, "test", n=args.fid_real, root=args.data_root, device=device)
        rec["fid"] = fid.frechet_distance(*fid.statistics(fid.inception_features(recon[:n_recon], device=device)),
                                          *real)
        rec["fid_n"] = n_recon
        print(f"reconstruction FID ({n_recon} reconstructed test images vs {n_real} real): {rec['fid']:.2f}")
        sweep = []
        settings = [(s, temp) for s in samplers for temp in args.temperatures]
        for s, temp in settings if len(settings) > 1 else ():      # one setting: nothing to choose
            images, secs = gen(args.sweep_samples, temp, s, args.seed + 1)
            f = fid.frechet_distance(*fid.statistics(fid.inception_features(images, device=device)), *real)
            sweep.append({"sampler": s, "temperature": temp, "fid": f, "n": args.sweep_samples,
                          "images_per_s": args.sweep_samples / secs})
            print(f"sweep: {s} sampler, temperature {temp}: FID-{args.sweep_samples} {f:.2f}")
        results["sweep"] = sweep
        best = min(sweep, key=lambda r: r["fid"]) if sweep else {"sampler": samplers[0],
                                                                   "temperature": args.temperatures[0]}
        images, secs = gen(args.fid_samples, best["temperature"], best["sampler"], args.seed + 2)
        np.savez_compressed(os.path.join(out, "samples.npz"), images=images)
        feats = fid.inception_features(images, device=device)
        results.update({
            "sampler": best["sampler"], "best_temperature": best["temperature"],
            "fid": fid.frechet_distance(*fid.statistics(feats), *real),
            "fid_samples": args.fid_samples, "fid_real": n_real,
            "sampling": {"seconds": secs, "images": args.fid_samples, "images_per_s": args.fid_samples / secs,
                         "device": str(device)}})
        if args.fid_samples >= 1280 and n_real >= 1280:   # the paper's protocol
            real_1280 = fid.real_statistics(args.dataset, "test", n=1280, root=args.data_root, device=device)
            results["fid_1280"] = fid.frechet_distance(*fid.statistics(feats[:1280]), *real_1280)
        for s in samplers if sweep else ():
            rows = [r for r in sweep if r["sampler"] == s]
            plot.fid_vs_temperature([r["temperature"] for r in rows], [r["fid"] for r in rows], rec["fid"],
                                    path=os.path.join(figs, f"fid_vs_temperature_{s}.png"))
    except fid.FIDUnavailable as e:
        print(f"warning: FID skipped: {e}")
        images, secs = gen(100, 1.0, samplers[0], args.seed)
    plot.image_grid(images[:100], path=os.path.join(figs, "samples.png"))
    return results


def energy(args, vq, sdid, device, figs, results):
    """Energy per reconstructed / generated image, 4.6 pJ per MAC and 0.9 pJ per SOP (SPEC section 8).
    Per-layer numbers: benchmarks/energy.py."""
    n = args.energy_samples
    x_test, _ = data.load_arrays(args.dataset, "test", root=args.data_root)
    rec = energy_per_reconstruction(vq, x_test[:n], device)
    sampler = results.get("sampler", "paper" if args.sampler == "both" else args.sampler)
    gen = energy_per_generated_image(sdid, vq, sampler, args.maskgit_steps, device, n,
                                     results.get("best_temperature", 1.0), args.seed)
    rates = {f"vq.{r['name']}": r["rate"] for r in rec["layers"] if r["kind"] == "spiking"}
    rates.update({f"sdid.{r['name']}": r["rate"] for r in gen["layers"]["sdid"] if r["kind"] == "spiking"})
    if rates:
        plot.bars(list(rates), list(rates.values()), "input firing rate", f"{args.dataset}: input firing rates",
                  path=os.path.join(figs, "firing_rates.png"))
    results["energy"] = {"costs_pJ": {"MAC": E_MAC_PJ, "SOP": E_AC_PJ}, "firing_rates": rates,
                         "reconstruction": {k: v for k, v in rec.items() if k != "layers"},
                         "generation": {k: v for k, v in gen.items() if k != "layers"}}
    print(f"energy per image: reconstruction {rec['energy_uJ']:.3f} uJ, generation {gen['energy_uJ']:.2f} uJ "
          f"({gen['denoiser_calls_per_image']:.1f} SDID calls)")
    return results


def main(argv=None):
    args = parse_args(argv)
    device = pick_device(args.device)
    ann = "-ann" if args.neuron == "relu" else ""
    out = args.out or os.path.join("runs", f"{args.dataset}-{args.preset}{ann}")
    figs = args.figures or (os.path.join(out, "figures") if args.preset == "smoke" else os.path.join("figures", args.dataset + ann))
    os.makedirs(out, exist_ok=True)
    info_path = os.path.join(out, "train_info.json")
    info = json.load(open(info_path)) if os.path.exists(info_path) else {}
    try:
        vq, sdid, hists = train_stages(args, device, out, info)
    except (NonFiniteLoss, CheckpointMismatch, data.DatasetError) as e:
        sys.exit(f"error: {e}")
    json.dump(info, open(info_path, "w"), indent=1)
    plot.loss_curves(hists, path=os.path.join(figs, "loss_curves.png"))
    results = {"dataset": args.dataset, "preset": args.preset, "training": info,
               "vq_config": asdict(vq.cfg), "sdid_config": asdict(sdid.cfg),
               "parameters": {"vq": sum(p.numel() for p in vq.parameters()),
                              "sdid": sum(p.numel() for p in sdid.parameters())}}
    evaluate(args, vq, sdid, device, out, figs, results)
    if args.energy_samples > 0:
        energy(args, vq, sdid, device, figs, results)
    results.update({"device": str(device), "torch": torch.__version__, "platform": platform.platform(),
                    "cpu_threads": torch.get_num_threads(), "git_commit": git_commit(),
                    "date": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(["python"] + sys.argv)})
    os.makedirs(figs, exist_ok=True)
    with open(os.path.join(figs, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(json.dumps({k: v for k, v in results.items() if "config" not in k}, indent=1))
    return results


if __name__ == "__main__":
    main()
