"""FID of several sampler settings on one trained run: why MaskGIT lost to the paper's sampler.

    python benchmarks/samplers.py --run runs/mnist-v2 --n 2000 \
        --settings paper:0.9 maskgit:1.0:12:0 maskgit:1.0:12:4.5 maskgit:1.0:24:4.5

Loads the finished checkpoints of a run_all.py --out folder (evaluate.load_run; nothing is
trained), draws --n samples per setting with the same seed and scores each against the full test
split (FID-2k for --n 2000). A setting is `paper:TEMPERATURE` (the 1/t sampler over all T_diff
steps; TEMPERATURE may be START-END, annealed over the steps: absorbing.temperature_at) or
`maskgit:TEMPERATURE:STEPS:CHOICE_TEMPERATURE` (absorbing.sample_maskgit: confidence-ordered
unmasking on a cosine schedule; choice temperature 0 is the greedy order, > 0 MaskGIT's annealed
Gumbel noise on the confidence). Prints a table; adds the rows to --json.
"""
import argparse
import json
import os
import time

import numpy as np

from spikediff_min import fid, hardware, options
from spikediff_min.evaluate import generate, load_run
from spikediff_min.train import pick_device


def parse_setting(text):
    """'paper:0.9' -> dict(sampler, temperature); 'maskgit:1.0:12:4.5' adds steps, choice_temperature."""
    parts = text.split(":")
    if parts[0] == "paper" and len(parts) == 2:
        return {"sampler": "paper", "temperature": options.temperature(parts[1])}
    if parts[0] == "maskgit" and len(parts) == 4:
        return {"sampler": "maskgit", "temperature": float(parts[1]), "steps": int(parts[2]),
                "choice_temperature": float(parts[3])}
    raise argparse.ArgumentTypeError(f"{text!r}: use paper:TEMP or maskgit:TEMP:STEPS:CHOICE_TEMP")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="a finished run_all.py --out folder (vq.pt, sdid.pt)")
    p.add_argument("--dataset", default="mnist", help="the run's dataset (the real side of FID)")
    p.add_argument("--settings", type=parse_setting, nargs="+", required=True, help="see above")
    p.add_argument("--n", type=int, default=2000, help="samples per setting (default 2000: FID-2k)")
    p.add_argument("--seed", type=int, default=1, help="sampling seed, the same for every setting")
    p.add_argument("--data-root", help="as in run_all.py")
    p.add_argument("--device", help="cpu or cuda (default: cuda if present)")
    p.add_argument("--save-samples", metavar="FOLDER",
                   help="also write each setting's images to FOLDER/<setting>.npz (for benchmarks/classes.py --samples)")
    p.add_argument("--json", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "samplers.json"))
    a = p.parse_args(argv)
    device = pick_device(a.device)
    vq, sdid = load_run(a.run, device)
    rows = []
    for st in a.settings:
        maskgit_kw = {k: st[k] for k in ("steps", "choice_temperature") if k in st}   # else generate's defaults
        images, secs = generate(sdid, vq, a.n, st["temperature"], st["sampler"], device=device, seed=a.seed,
                                **maskgit_kw)
        if a.save_samples:
            os.makedirs(a.save_samples, exist_ok=True)
            name = "_".join(options.show_temperature(v) for v in st.values())
            np.savez_compressed(os.path.join(a.save_samples, f"{name}.npz"), images=images)
        score = fid.fid(images, a.dataset, root=a.data_root, device=device)
        rows.append({**st, "fid": score, "fid_label": options.fid_label(a.n), "n": a.n, "sampling_s": secs})
        print(f"{st}: {options.fid_label(a.n)} {score:.2f} (sampling {secs:.0f} s)", flush=True)
    old = json.load(open(a.json)) if os.path.exists(a.json) else {}
    old.setdefault(a.run, []).extend({**r, "seed": a.seed, "machine": hardware.describe(device),
                                      "date": time.strftime("%Y-%m-%d %H:%M:%S")} for r in rows)
    with open(a.json, "w") as f:
        json.dump(old, f, indent=1)
    print("sampler | temperature | steps | choice temp. | FID")
    for r in rows:
        print(f"{r['sampler']:7} | {str(r['temperature']):11} | {r.get('steps', 49):5} | "
              f"{r.get('choice_temperature', '-'):12} | {r['fid']:.2f}")
    return rows


if __name__ == "__main__":
    main()
