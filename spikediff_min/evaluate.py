"""Evaluation helpers for the two stages (Spiking-Diffusion, SPEC section 7).

- `encode_all` / `decode_all`: whole datasets through the VQ-SVAE in batches.
- `reconstruction_metrics`: MSE (on the [-0.5, 0.5] scale), SSIM and codebook use on a split.
- `generate`: sample code grids with the SDID (paper sampler or MaskGIT) and decode them.
- `load_run`: the trained (vq, sdid) of a run_all.py --out folder, for benchmarks and notebooks.
FID itself lives in fid.py; run_all.py ties them together.
"""
import math
import os
import time

import torch
from tqdm.auto import tqdm

from . import absorbing
from .data import from_float, to_float
from .fid import ssim
from .sdid import make_denoiser
from .vq import codebook_stats


@torch.no_grad()
def encode_all(vq, images, device, batch_size=500, progress=True):
    """uint8 [N, C, H, W] -> code indices [N, h, w] (long, on cpu)."""
    vq.eval()
    out = [vq.encode(to_float(images[i:i + batch_size]).to(device)).cpu()
           for i in tqdm(range(0, len(images), batch_size), desc="encoding", disable=not progress)]
    return torch.cat(out)


@torch.no_grad()
def decode_all(vq, indices, device, batch_size=500, progress=True):
    """Code indices [N, h, w] -> uint8 images [N, C, H, W] (numpy)."""
    vq.eval()
    out = [from_float(vq.decode(indices[i:i + batch_size].to(device)).cpu())
           for i in tqdm(range(0, len(indices), batch_size), desc="decoding", disable=not progress)]
    return torch.cat(out).numpy()


@torch.no_grad()
def reconstruction_metrics(vq, images, device, progress=True):
    """decode(encode(x)) on uint8 images -> (metrics dict, reconstructions uint8)."""
    idx = encode_all(vq, images, device, progress=progress)
    recon = decode_all(vq, idx, device, progress=progress)
    x, y = to_float(images), to_float(recon)
    used, perplexity = codebook_stats(idx, vq.cfg.num_codes)
    return {"mse": float(((x - y) ** 2).mean()), "ssim": float(ssim(images, recon)),
            "codes_used": used, "perplexity": perplexity}, recon


@torch.no_grad()
def generate(sdid, vq, n, temperature, sampler="paper", steps=12, device="cpu", batch_size=500,
             seed=0, progress=True, choice_temperature=4.5):
    """n generated images (uint8 [n, C, H, W]) and the seconds it took (sampling + decoding).
    steps and choice_temperature: the MaskGIT sampler's (absorbing.sample_maskgit). temperature: a
    float, or (start, end) annealed over the steps (paper sampler only: absorbing.temperature_at)."""
    h = w = int(math.isqrt(sdid.cfg.num_timesteps))
    kw = dict(n=n, shape=(h, w), num_timesteps=sdid.cfg.num_timesteps, mask_id=sdid.cfg.num_codes,
              temperature=temperature, batch_size=batch_size, device=device, progress=progress,
              generator_seed=seed)
    t0 = time.time()
    if sampler == "paper":
        idx = absorbing.sample(make_denoiser(sdid), **kw)
    elif sampler == "maskgit":
        if not isinstance(temperature, (int, float)):
            raise ValueError(f"temperature {temperature} anneals, which only the paper sampler does. Fix: give "
                             f"the MaskGIT sampler one temperature, such as 0.8")
        idx = absorbing.sample_maskgit(make_denoiser(sdid), steps=steps, choice_temperature=choice_temperature,
                                       **kw)
    else:
        raise ValueError(f"unknown sampler {sampler!r}; choose 'paper' or 'maskgit'")
    images = decode_all(vq, idx.cpu(), device, batch_size, progress=False)
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    return images, time.time() - t0


def load_run(folder, device="cpu", amp=None):
    """(vq, sdid) in eval mode from the finished checkpoints vq.pt and sdid.pt of a run_all.py --out
    folder, each built from the config saved beside its weights. amp: bf16 autocast for both; None
    keeps what each stage trained with where the hardware has native bf16, fp32 elsewhere.
    A missing, unfinished or unreadable checkpoint raises train.CheckpointMismatch naming the fix."""
    from dataclasses import replace
    from . import hardware
    from .sdid import SDID, SDIDConfig
    from .train import CheckpointMismatch, read_checkpoint
    from .vqsvae import VQSVAE, VQSVAEConfig
    models = []
    for name, cls, cfg_cls in (("vq.pt", VQSVAE, VQSVAEConfig), ("sdid.pt", SDID, SDIDConfig)):
        path = os.path.join(folder, name)
        if not os.path.exists(path):
            raise CheckpointMismatch(f"{path} does not exist. Fix: train the run first with run_all.py --out {folder}")
        ck = read_checkpoint(path)
        if not ck.get("done"):
            raise CheckpointMismatch(f"{path} is unfinished (step {ck.get('step')}). Fix: finish it with "
                                     f"run_all.py --out {folder} --resume")
        cfg = cfg_cls(**ck["config"])
        cfg = replace(cfg, amp=cfg.amp and hardware.bf16_pays(device) if amp is None else amp)
        m = cls(cfg)
        m.load_state_dict(ck["model"])
        models.append(m.to(device).eval())
    return tuple(models)
