"""Regenerate the FID statistics that ship with the package (spikediff_min/embedded/fid_stats/).

    python tools/make_fid_stats.py                      # MNIST test split (the embedded copy)
    python tools/make_fid_stats.py --dataset mnist --split test --device cuda

Runs the Inception-v3 of fid.py over every image of the split (about 25 min on a 2-core CPU,
seconds on a GPU; the features are cached, so a rerun is instant), then writes
`<dataset>_<split>.npz`: float32 mu [2048], the upper triangle of sigma in float32 (about 8 MB),
the sha256 of the images it was made from and the protocol string. fid.real_statistics uses it
only when the images in hand hash to the same digest.
"""
import argparse
from pathlib import Path

import numpy as np

from spikediff_min import data, fid


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="mnist", choices=data.DATASETS, help="dataset (default mnist)")
    p.add_argument("--split", default="test", choices=["train", "test"], help="split (default test)")
    p.add_argument("--data-root", help="folder holding one subfolder per dataset")
    p.add_argument("--device", help="device for Inception-v3 (default cpu)")
    p.add_argument("--out", default=str(fid.SHIPPED), help="output folder (default: the package's)")
    args = p.parse_args(argv)
    images, _ = data.load_arrays(args.dataset, args.split, root=args.data_root)
    mu, sigma = fid.real_statistics(args.dataset, args.split, root=args.data_root, device=args.device,
                                    shipped_dir=False)
    out = Path(args.out) / f"{args.dataset}_{args.split}.npz"
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **fid.pack_statistics(mu, sigma, fid.images_digest(images)))
    back = fid.shipped_statistics(args.dataset, args.split, images, args.out)
    err = fid.frechet_distance(*back, mu, sigma)        # float32 rounding only
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {len(images)} images); "
          f"FID(shipped, float64) = {err:.2e}")


if __name__ == "__main__":
    main()
