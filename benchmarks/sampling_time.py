"""Wall-clock time of sampling N images from a trained run (issue 7: 10,000 MNIST images with the
`cpu` preset in under 10 minutes on the 2-core CPU).

    python benchmarks/sampling_time.py --run runs/mnist-cpu-sdid3.5 --overrides='--sdid-epochs 3.5'

Loads the run's finished checkpoints (nothing is trained) and times one call of
evaluate.generate (tokens and decoding, batch --batch-size) on the package's default path, as
run_all.py samples; the time includes any one-off torch.compile of the LIF loop
(fast.py's inference_compile, about 30 s), which the small warm-up does not trigger. On cpu it uses
2 threads unless --threads says otherwise. `--off TRICK ...` turns fast.py tricks off for an A/B
(e.g. --off inference_compile; the upper-case names of benchmarks/speed.json work too). Adds an
entry keyed by device, sampler and tricks turned off (upper case) to benchmarks/sampling_time.json.
"""
import os
import platform
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fid_paths import load_run, run_parser, save_entry  # noqa: E402
from speed import SWITCHES, device_name, switch_state  # noqa: E402

from spikediff_min import fast  # noqa: E402
from spikediff_min.evaluate import generate  # noqa: E402
from spikediff_min.train import pick_device  # noqa: E402


def main(argv=None):
    p = run_parser(__doc__, "sampling_time.json")
    p.add_argument("--batch-size", type=int, default=500, help="images sampled side by side (run_all.py uses 500)")
    p.add_argument("--threads", type=int, help="torch threads (default 2 on cpu)")
    p.add_argument("--off", nargs="+", default=[], type=str.lower, choices=SWITCHES,
                   help="fast.py tricks to turn off for this run (an A/B against the default path)")
    a = p.parse_args(argv)
    fast.set(**{k: False for k in a.off})
    a.off = [k.upper() for k in a.off]
    device = pick_device(a.device)
    if device.type == "cpu" or a.threads:
        torch.set_num_threads(a.threads or 2)
    vq, sdid = load_run(a, device)
    generate(sdid, vq, 8, a.temperature, a.sampler, device=device, batch_size=8, progress=False)   # warm-up
    images, secs = generate(sdid, vq, a.n, a.temperature, a.sampler, device=device,
                            batch_size=a.batch_size, seed=a.seed)
    assert len(images) == a.n
    print(f"{a.n} images in {secs:.1f} s ({secs / 60:.2f} min, {a.n / secs:.1f} img/s) on {device_name(device)}")
    key = f"{a.dataset}-{device.type}-{a.sampler}" + "".join(f"-off-{k}" for k in a.off)
    save_entry(a.json, key, {
        "run": a.run, "overrides": a.overrides, "n": a.n, "batch_size": a.batch_size, "sampler": a.sampler,
        "temperature": a.temperature, "seconds": secs, "images_per_s": a.n / secs,
        "switches": switch_state(), "device": str(device),
        "device_name": device_name(device), "threads": torch.get_num_threads(), "torch": torch.__version__,
        "platform": platform.platform(), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join(["python"] + sys.argv)})


if __name__ == "__main__":
    main()
