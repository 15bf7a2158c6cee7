"""Training loop shared by both stages, run_all.py and the notebooks.

`fit` runs AdamW over shuffled mini-batches of an in-memory tensor with a tqdm bar, writes
atomic checkpoints (temp file + os.replace) every `ckpt_every_s` seconds and at the end, resumes
from a checkpoint (same batch order: each epoch's permutation is seeded by (seed, epoch)), and
stops on a non-finite loss without touching the last good checkpoint.

    history = fit(model, step_fn, data, cfg, ckpt_path="runs/x/vq.pt", meta={...})
"""
import math
import os
import time
from dataclasses import asdict

import torch
from tqdm.auto import tqdm


class NonFiniteLoss(RuntimeError):
    pass


class CheckpointMismatch(RuntimeError):
    pass


def pick_device(device=None):
    """cuda > mps > cpu unless told otherwise."""
    if device:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def autocast(device, enabled):
    """bf16 autocast on cpu/cuda when enabled (a no-op context otherwise)."""
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=enabled)


def atomic_save(obj, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path, config=None, meta=None, map_location="cpu"):
    """Load a checkpoint (weights_only) and refuse it if its config or meta differ from ours."""
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated or not a checkpoint
        raise CheckpointMismatch(f"cannot read checkpoint {path}: {e}. Delete it to start over.") from e
    want = {"config": asdict(config) if config is not None else None, "meta": meta}
    for key, expected in want.items():
        if expected is None:
            continue
        saved = ckpt.get(key, {})
        diff = {k: (saved.get(k), v) for k, v in expected.items() if saved.get(k) != v}
        if diff:
            lines = ", ".join(f"{k}: checkpoint has {a!r}, this run wants {b!r}" for k, (a, b) in diff.items())
            raise CheckpointMismatch(f"checkpoint {path} was made by another run ({lines}). "
                                     f"Use another --out folder, or delete the file to retrain.")
    return ckpt


def fit(model, step_fn, data, cfg, ckpt_path=None, meta=None, seed=0, desc="train",
        ckpt_every_s=120.0, progress=True, after_step=None):
    """Train `model` on `data` ([N, ...] tensor on any device) with `step_fn(model, batch) -> dict`.

    step_fn returns a dict with a scalar "loss" (and other scalars to log). `after_step(model,
    out, step, total)` runs after each optimizer step. Returns the history {name: [values]}.
    """
    device = next(model.parameters()).device
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.999), weight_decay=cfg.weight_decay)
    n_batches = max(1, len(data) // cfg.batch_size)
    total = max(1, round(cfg.epochs * n_batches))
    lr_at = (lambda s: cfg.lr * 0.5 * (1 + math.cos(math.pi * s / total))) if cfg.lr_schedule == "cosine" \
        else (lambda s: cfg.lr)
    step, history, seconds = 0, {"step": []}, 0.0
    if ckpt_path and os.path.exists(ckpt_path):
        ckpt = load_checkpoint(ckpt_path, cfg, meta)
        model.load_state_dict(ckpt["model"])
        if ckpt.get("done"):
            return ckpt["history"]
        opt.load_state_dict(ckpt["opt"])
        step, history, seconds = ckpt["step"], ckpt["history"], ckpt["seconds"]

    def save(done=False):
        if ckpt_path:
            atomic_save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                         "history": history, "config": asdict(cfg), "meta": meta or {},
                         "done": done, "seconds": seconds}, ckpt_path)

    model.train()
    bar = tqdm(total=total, initial=step, desc=desc, disable=not progress, dynamic_ncols=True)
    last_save, t0 = time.time(), time.time() - seconds
    perm, perm_epoch = None, -1
    while step < total:
        epoch, i = divmod(step, n_batches)
        if epoch != perm_epoch:   # the same order on resume
            perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed * 100003 + epoch))
            perm_epoch = epoch
        batch = data[perm[i * cfg.batch_size:(i + 1) * cfg.batch_size].to(data.device)].to(device)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        out = step_fn(model, batch)
        loss = out["loss"]
        if not torch.isfinite(loss):
            raise NonFiniteLoss(f"{desc}: loss is {loss.item()} at step {step}. The last good checkpoint "
                                f"{ckpt_path} was kept. Lower --lr or turn off bf16 (amp) and rerun with --resume.")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if after_step is not None:
            after_step(model, out, step, total)
        if step % 10 == 0 or step == total:
            history["step"].append(step)
            for k, v in out.items():
                if torch.is_tensor(v) and v.dim() == 0:
                    history.setdefault(k, []).append(v.item())
            bar.set_postfix(loss=f"{loss.item():.4f}")
        bar.update(1)
        seconds = time.time() - t0
        if time.time() - last_save > ckpt_every_s:
            save()
            last_save = time.time()
    bar.close()
    seconds = time.time() - t0
    history["seconds"] = seconds
    save(done=True)
    return history
