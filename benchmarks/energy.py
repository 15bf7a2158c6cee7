"""Energy per reconstructed and per generated image of a trained run (SPEC section 8).

    python benchmarks/energy.py --out runs/mnist-cpu          # an SNN run, or an ANN-twin run

Reads <out>/vq.pt and <out>/sdid.pt, prints a per-layer table, adds an entry keyed by the run
folder to benchmarks/energy.json (so an SNN run and its ANN twin sit side by side), and saves the
input firing rates of the spiking layers to figures/<dataset>/firing_rates.png (SNN runs only).
Costs: 4.6 pJ per MAC, 0.9 pJ per SOP (45 nm, Horowitz 2014); see spikediff_min/energy.py.
"""
import argparse
import dataclasses
import json
import os

import torch

from spikediff_min import data, plot
from spikediff_min.energy import E_AC_PJ, E_MAC_PJ, energy_per_generated_image, energy_per_reconstruction
from spikediff_min.sdid import SDID, SDIDConfig
from spikediff_min.train import load_checkpoint, pick_device
from spikediff_min.vqsvae import VQSVAE, VQSVAEConfig


def load_model(path, model_cls, cfg_cls, device):
    """Model from a checkpoint, built from its saved config (lists from torch.load -> tuples)."""
    ckpt = load_checkpoint(path)
    known = {f.name for f in dataclasses.fields(cfg_cls)}
    cfg = {k: tuple(v) if isinstance(v, list) else v for k, v in ckpt["config"].items() if k in known}
    model = model_cls(cfg_cls(**cfg))
    model.load_state_dict(ckpt["model"])
    if not ckpt.get("done"):
        print(f"warning: {path} is an unfinished checkpoint (step {ckpt.get('step')})")
    return model.to(device).eval(), ckpt.get("meta") or {}


def print_table(title, rows):
    print(f"\n{title}\n{'layer':<18}{'kind':>8}{'T':>4}{'MACs/step':>12}{'rate':>8}{'SOPs':>12}{'energy nJ':>11}")
    for r in rows:
        rate = f"{r['rate']:.3f}" if r["binary_input"] else "-"
        print(f"{r['name']:<18}{r['kind']:>8}{r['steps']:>4}{r['macs_per_step']:>12,}{rate:>8}"
              f"{r['sops']:>12,.0f}{r['energy_pj'] / 1e3:>11.2f}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="run folder holding vq.pt and sdid.pt")
    p.add_argument("--json", default=os.path.join("benchmarks", "energy.json"), help="results file to update")
    p.add_argument("--figures", help="folder for firing_rates.png (default figures/<dataset>)")
    p.add_argument("--data-root", help="as run_all.py's --data-root")
    p.add_argument("--device", help="cpu, cuda or mps (default: cuda > mps > cpu)")
    p.add_argument("--n-recon", type=int, default=500, help="test images to reconstruct")
    p.add_argument("--n-gen", type=int, default=100, help="images to generate")
    p.add_argument("--sampler", default="paper", choices=["paper", "maskgit"])
    p.add_argument("--steps", type=int, default=12, help="MaskGIT steps")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--exact", action="store_true", help="leave out the taps that hit zero padding")
    args = p.parse_args(argv)

    device = pick_device(args.device)
    vq, meta = load_model(os.path.join(args.out, "vq.pt"), VQSVAE, VQSVAEConfig, device)
    sdid, _ = load_model(os.path.join(args.out, "sdid.pt"), SDID, SDIDConfig, device)
    dataset = meta.get("dataset", "mnist")
    x_test, _ = data.load_arrays(dataset, "test", root=args.data_root)
    torch.manual_seed(0)
    rec = energy_per_reconstruction(vq, x_test[:args.n_recon], device, exact=args.exact)
    gen = energy_per_generated_image(sdid, vq, args.sampler, args.steps, device, args.n_gen,
                                     args.temperature, exact=args.exact)

    print_table(f"VQ-SVAE, encode + decode, per image ({rec['images']} test images)", rec["layers"])
    print_table(f"SDID, per denoiser call ({gen['denoiser_calls_per_image']:.1f} calls per image)",
                gen["layers"]["sdid"])
    params = {"vq": sum(q.numel() for q in vq.parameters()), "sdid": sum(q.numel() for q in sdid.parameters())}
    print(f"\nneuron {vq.cfg.neuron}, T = {vq.cfg.T} (VQ-SVAE) / {sdid.cfg.T} (SDID); "
          f"parameters: VQ-SVAE {params['vq']:,}, SDID {params['sdid']:,}")
    print(f"energy per reconstructed image: {rec['energy_uJ']:.3f} uJ "
          f"(same layers as a T=1 ANN: {rec['ann_equivalent_uJ']:.3f} uJ)")
    print(f"energy per generated image:     {gen['energy_uJ']:.3f} uJ = SDID {gen['sdid_uJ']:.3f} "
          f"+ decoder {gen['decoder_uJ']:.3f} (same layers as a T=1 ANN: {gen['ann_equivalent_uJ']:.3f} uJ)")

    rates = {f"vq.{r['name']}": r["rate"] for r in rec["layers"] if r["kind"] == "spiking"}
    rates.update({f"sdid.{r['name']}": r["rate"] for r in gen["layers"]["sdid"] if r["kind"] == "spiking"})
    if rates:
        path = os.path.join(args.figures or os.path.join("figures", dataset), "firing_rates.png")
        plot.bars(list(rates), list(rates.values()), "input firing rate",
                  f"{dataset}: spikes per neuron per step into each layer", path=path)
        print(f"wrote {path}")
    entry = {"dataset": dataset, "neuron": vq.cfg.neuron, "T": {"vq": vq.cfg.T, "sdid": sdid.cfg.T},
             "costs_pJ": {"MAC": E_MAC_PJ, "SOP": E_AC_PJ, "source": "45 nm, Horowitz 2014"},
             "padding_taps_counted": not args.exact, "parameters": params, "firing_rates": rates,
             "reconstruction": rec, "generation": gen}
    results = json.load(open(args.json)) if os.path.exists(args.json) else {}
    results[os.path.normpath(args.out)] = entry
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(results, f, indent=1)
    print(f"wrote {args.json} [{os.path.normpath(args.out)}]")
    return entry


if __name__ == "__main__":
    main()
