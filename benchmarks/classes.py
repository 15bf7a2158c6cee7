"""Mode coverage beside FID: the class histogram of generated images under a classifier of ours.

    python benchmarks/classes.py --dataset mnist --samples runs/mnist-cpu/samples.npz
    python benchmarks/classes.py --dataset fmnist --run runs/fmnist-cpu --n 10000   # generates first

FID says how far the sample distribution is from the data; it does not say *which* way. A model
that draws mostly ones and sevens can still score a middling FID. This script trains a small
(non-spiking) CNN on the real training split (about 99% / 91% test accuracy on MNIST /
Fashion-MNIST after 2 epochs; cached under $SPIKEDIFF_CACHE/classifiers), labels every generated
image, and compares each class's share with its real share in the test split. The issue-16 target:
every class within a factor 1.5 of its real share. Prints a table, writes --json.
"""
import argparse
import json
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from spikediff_min import calibrate, data, hardware, options
from spikediff_min.train import atomic_save, pick_device

FACTOR = 1.5          # target: every class within this factor of its real share


class Classifier(nn.Module):
    """Two conv blocks and a linear head: [B, C, 28, 28] in [-0.5, 0.5] -> logits [B, classes]."""

    def __init__(self, in_channels=1, classes=10, width=32):
        super().__init__()
        self.c1 = nn.Conv2d(in_channels, width, 3, padding=1)
        self.c2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.fc = nn.Linear(2 * width * 7 * 7, classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)          # [B, w, 14, 14]
        x = F.max_pool2d(F.relu(self.c2(x)), 2)          # [B, 2w, 7, 7]
        return self.fc(F.dropout(x.flatten(1), 0.3, self.training))


@torch.no_grad()
def predict(model, images, device, batch_size=1000):
    """uint8 [N, C, H, W] -> predicted class [N] (numpy)."""
    model.eval()
    return np.concatenate([model(data.to_float(images[i:i + batch_size]).to(device)).argmax(1).cpu().numpy()
                           for i in range(0, len(images), batch_size)])


def train_classifier(dataset, root, device, epochs=2, seed=0):
    """The classifier for `dataset`, trained once and cached; returns (model, test accuracy)."""
    path = os.path.join(data.cache_dir(), "classifiers", f"{dataset}.pt")
    x_test, y_test = data.load_arrays(dataset, "test", root=root)
    classes = int(np.max(y_test)) + 1
    model = Classifier(x_test.shape[1], classes).to(device)
    if os.path.exists(path):
        model.load_state_dict(torch.load(path, map_location=device, weights_only=True)["model"])
    else:
        x, y = data.load_arrays(dataset, "train", root=root)
        x, y = data.to_float(torch.from_numpy(np.array(x))), torch.from_numpy(np.array(y)).long()
        opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
        g = torch.Generator().manual_seed(seed)
        for epoch in range(epochs):
            model.train()
            perm = torch.randperm(len(x), generator=g)
            for i in range(0, len(x), 128):
                idx = perm[i:i + 128]
                xb = x[idx].to(device)
                xb = torch.roll(xb, tuple(torch.randint(-2, 3, (2,), generator=g).tolist()), (2, 3))   # shift
                loss = F.cross_entropy(model(xb), y[idx].to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        atomic_save({"model": model.state_dict(), "epochs": epochs, "seed": seed}, path)
    acc = float((predict(model, x_test, device) == np.asarray(y_test)).mean())
    return model, acc, np.bincount(np.asarray(y_test), minlength=classes) / len(y_test)


def histogram(pred, classes):
    return np.bincount(pred, minlength=classes) / len(pred)


def coverage(gen_share, real_share, factor=FACTOR):
    """Per-class ratio generated/real share, its extremes, and whether all are within the factor."""
    ratio = gen_share / real_share
    return {"ratio": ratio.tolist(), "min_ratio": float(ratio.min()), "max_ratio": float(ratio.max()),
            "within_factor": bool((ratio <= factor).all() and (ratio >= 1 / factor).all()), "factor": factor}


def generated_images(args, device):
    """Yield (uint8 images [N, C, H, W], where they come from): the .npz, or one set per temperature."""
    if args.samples:
        with np.load(args.samples) as z:
            yield z["images"][:args.n], args.samples
        return
    from spikediff_min.evaluate import generate, load_run
    models = load_run(args.run, device)
    lut_path = os.path.join(args.run, "calibration.npz")      # run_all --calibrate's table, if it fitted one
    lut = np.load(lut_path)["lut"] if os.path.exists(lut_path) else None
    for temp in args.temperature:
        images, _ = generate(models[1], models[0], args.n, temp, args.sampler, 12, device, seed=args.seed)
        yield (images if lut is None else calibrate.apply(images, lut)), \
            f"{args.run} ({args.sampler} sampler, temperature {temp}, seed {args.seed}" \
            f"{', calibrated' if lut is not None else ''})"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="mnist", choices=["mnist", "fmnist", "kmnist"], help="10-class datasets")
    p.add_argument("--samples", help="an .npz with uint8 'images' [N, C, H, W] (run_all's samples.npz: the images as shown, "
                        "calibrated with --calibrate)")
    p.add_argument("--run", help="or a run folder with vq.pt and sdid.pt: generate --n images first (through its "
                        "calibration.npz when there is one)")
    p.add_argument("--n", type=int, default=10000, help="generated images to label (default 10000)")
    p.add_argument("--sampler", default="paper", choices=["paper", "maskgit"], help="with --run")
    p.add_argument("--temperature", type=options.temperature, nargs="+",
                   help="with --run (default: run_all's for the dataset, options.TEMPERATURE); several give one "
                        "histogram each; START-END anneals it (absorbing.temperature_at)")
    p.add_argument("--seed", type=int, default=2, help="with --run")
    p.add_argument("--data-root", help="folder holding one subfolder per dataset")
    p.add_argument("--device", help="cpu, cuda or mps")
    p.add_argument("--json", help="write the results here (default benchmarks/classes_<dataset>.json)")
    args = p.parse_args(argv)
    if not (args.samples or args.run):
        p.error("give --samples FILE.npz or --run FOLDER")
    args.temperature = args.temperature or [options.TEMPERATURE.get(args.dataset, 0.7)]
    device = pick_device(args.device)
    t0 = time.time()
    model, acc, real_share = train_classifier(args.dataset, args.data_root, device)
    rows = []
    for images, source in generated_images(args, device):
        gen_share = histogram(predict(model, images, device), len(real_share))
        res = {"dataset": args.dataset, "source": source, "n": len(images), "classifier_test_accuracy": acc,
               "real_share": real_share.tolist(), "generated_share": gen_share.tolist(),
               **coverage(gen_share, real_share), "seconds": time.time() - t0,
               "machine": hardware.describe(device), "date": time.strftime("%Y-%m-%d %H:%M:%S")}
        print(f"{args.dataset}: classifier test accuracy {acc:.4f}; {len(images)} generated images from {source}")
        print("class | real share | generated share | ratio")
        for c, (r, g) in enumerate(zip(real_share, gen_share)):
            print(f"{c:5d} | {r:10.4f} | {g:15.4f} | {g / r:5.2f}")
        print(f"ratios {res['min_ratio']:.2f}-{res['max_ratio']:.2f}; every class within x{FACTOR}: "
              f"{res['within_factor']}")
        rows.append(res)
    res = rows[0] if len(rows) == 1 else {"rows": rows}
    path = args.json or os.path.join(os.path.dirname(os.path.abspath(__file__)), f"classes_{args.dataset}.json")
    with open(path, "w") as f:
        json.dump(res, f, indent=1)
    return res


if __name__ == "__main__":
    main()
