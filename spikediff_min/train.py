"""Training loop shared by both stages, run_all.py and the notebooks.

`fit` runs AdamW over shuffled mini-batches of an in-memory tensor with a tqdm bar, writes
atomic checkpoints (temp file + os.replace) every `ckpt_every_s` seconds and at the end, resumes
from a checkpoint (same batch order: each epoch's permutation is seeded by (seed, epoch)), and
stops on a non-finite loss without touching the last good checkpoint. Faults (unreadable, foreign
or mismatched checkpoint, full disk, unavailable device, diverging loss) raise errors.UserError
subclasses whose one-line message names the file and the fix; a failed write leaves the previous
checkpoint in place and no temp file behind.

    history = fit(model, step_fn, data, cfg, ckpt_path="runs/x/vq.pt", meta={...})
"""
import math
import os
import time
from dataclasses import asdict, fields

import torch
from tqdm.auto import tqdm

from .errors import UserError, one_line

EXECUTION_ONLY = ("amp",)   # config fields that change how, not what, is computed: not compared


class NonFiniteLoss(UserError):
    pass


class CheckpointMismatch(UserError):
    """A checkpoint that cannot be used: unreadable, not a plain state dict, or from another run."""


class CheckpointWriteError(UserError):
    pass


class DeviceUnavailable(UserError):
    pass


def available_devices():
    """The devices this machine can run on, e.g. ['cpu'] or ['cpu', 'cuda:0', 'cuda:1']."""
    out = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else ["cpu"]
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        out.append("mps")
    return out


def check_device(device):
    """torch.device(device), or DeviceUnavailable naming what this machine has."""
    have = available_devices()
    fix = f"available here: {', '.join(have)}. Fix: pass --device {have[-1]}, or leave --device out to pick the best."
    try:
        d = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise DeviceUnavailable(f"--device {device!r} is not a device name ({one_line(e, 120)}); {fix}") from None
    ok = (d.type == "cpu" or (d.type == "cuda" and torch.cuda.is_available()
                               and (d.index or 0) < torch.cuda.device_count())
          or (d.type == "mps" and "mps" in have))
    if not ok:
        why = {"cuda": f" (this torch {torch.__version__} {'has no CUDA support' if torch.version.cuda is None else 'sees no such GPU'})"}
        raise DeviceUnavailable(f"device {device!r} is not available on this machine{why.get(d.type, '')}; {fix}")
    return d


def pick_device(device=None):
    """cuda > mps > cpu unless told otherwise (a named device must exist: DeviceUnavailable)."""
    if device:
        return check_device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def autocast(device, enabled):
    """bf16 autocast on cpu/cuda when enabled (a no-op context otherwise)."""
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=enabled)


def atomic_save(obj, path):
    """torch.save to a temp file, then rename: `path` is either the old file or the new one, never
    half-written. Out of disk (or any OSError): the temp file is removed, `path` is untouched."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except OSError as e:
        kept = f"the previous {path} is intact" if os.path.exists(path) else f"nothing was written at {path}"
        raise CheckpointWriteError(f"could not write {path}: {e.strerror or one_line(e)}; {kept} and the "
                                   f"temp file was removed. Fix: free disk space (or pass --out on another "
                                   f"disk) and rerun with --resume.") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read_checkpoint(path, map_location="cpu"):
    """The dict saved at `path` (weights_only: no code is run), or CheckpointMismatch saying why not."""
    fix = f"Fix: delete {path} (or move it away) to redo that stage, or restore a good copy."
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, garbage, empty file, or a pickle with code in it
        if "Weights only load failed" in str(e):
            raise CheckpointMismatch(f"{path} is not a plain state dict: it holds Python objects that "
                                     f"loading would have to execute, so it was not loaded (nothing was "
                                     f"run). {fix}") from None
        raise CheckpointMismatch(f"cannot read checkpoint {path}: it is truncated or corrupt "
                                 f"({type(e).__name__}: {one_line(e, 120) or 'empty file'}). {fix}") from None
    if not isinstance(ckpt, dict) or not {"model", "config"} <= set(ckpt) and "tokens" not in ckpt:
        raise CheckpointMismatch(f"{path} is a readable file but not a spikediff_min checkpoint (a dict "
                                 f"with 'model' and 'config'). {fix}")
    return ckpt


def load_checkpoint(path, config=None, meta=None, map_location="cpu"):
    """Load a checkpoint (weights_only) and refuse it if its config or meta differ from ours.
    Execution-only fields (EXECUTION_ONLY: bf16 autocast) may differ: a checkpoint trained with
    bf16 on one machine loads on a machine without it."""
    ckpt = read_checkpoint(path, map_location)
    want = {"config": asdict(config) if config is not None else None, "meta": meta}
    # a field newer than the checkpoint reads as its default, which keeps the behaviour from before it
    defaults = {f.name: f.default for f in fields(config)} if config is not None else {}
    for key, expected in want.items():
        if expected is None:
            continue
        saved = ckpt.get(key, {})
        if key == "config":
            saved = {**defaults, **saved}
        diff = {k: (saved.get(k), v) for k, v in expected.items()
                if saved.get(k) != v and not (key == "config" and k in EXECUTION_ONLY)}
        if diff:
            lines = ", ".join(f"{k}: checkpoint has {a!r}, this run wants {b!r}" for k, (a, b) in diff.items())
            raise CheckpointMismatch(f"checkpoint {path} was made by another run ({lines}). "
                                     f"Use another --out folder, or delete the file to retrain.")
    return ckpt


def steps_per_epoch(n, batch_size):
    """Optimizer steps in one epoch of n examples (the last partial batch is dropped; at least 1)."""
    return max(1, n // batch_size)


def total_steps(epochs, n, batch_size):
    """The steps a stage of `epochs` (fractional allowed) trains for: the one count the loop, the plan
    and the budget share."""
    return max(1, round(epochs * steps_per_epoch(n, batch_size)))


def fit(model, step_fn, data, cfg, ckpt_path=None, meta=None, seed=0, desc="train",
        ckpt_every_s=120.0, progress=True, after_step=None, before_step=None):
    """Train `model` on `data` ([N, ...] tensor on any device) with `step_fn(model, batch) -> dict`.

    step_fn returns a dict with a scalar "loss" (and other scalars to log). `before_step(model,
    step, total)` runs before each step_fn call, `after_step(model, out, step, total)` after each
    optimizer step. Returns the history {name: [values]}.
    """
    device = next(model.parameters()).device
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.999), weight_decay=cfg.weight_decay)
    n_batches = steps_per_epoch(len(data), cfg.batch_size)
    total = total_steps(cfg.epochs, len(data), cfg.batch_size)
    lr_at = (lambda s: cfg.lr * 0.5 * (1 + math.cos(math.pi * s / total))) if cfg.lr_schedule == "cosine" \
        else (lambda s: cfg.lr)
    step, history, seconds, saved_step = 0, {"step": []}, 0.0, None
    if ckpt_path and os.path.exists(ckpt_path):
        ckpt = load_checkpoint(ckpt_path, cfg, meta)
        model.load_state_dict(ckpt["model"])
        if ckpt.get("done"):
            return ckpt["history"]
        opt.load_state_dict(ckpt["opt"])
        step, history, seconds, saved_step = ckpt["step"], ckpt["history"], ckpt["seconds"], ckpt["step"]
        print(f"{desc}: resuming from step {step} of {total} ({ckpt_path})", flush=True)

    def save(done=False):
        nonlocal saved_step
        if ckpt_path:
            atomic_save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                         "history": history, "config": asdict(cfg), "meta": meta or {},
                         "done": done, "seconds": seconds}, ckpt_path)
            saved_step = step

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
        if before_step is not None:
            before_step(model, step, total)
        out = step_fn(model, batch)
        loss = out["loss"]
        if not torch.isfinite(loss):
            if saved_step is not None:
                kept = (f"the last good checkpoint {ckpt_path} (step {saved_step}) was kept. Fix: rerun with "
                        f"a lower --lr (or --amp off) in another --out folder, or delete {ckpt_path} first")
            else:
                kept = ("no checkpoint had been written yet, so none was kept and nothing on disk changed. "
                        "Fix: rerun with a lower --lr (or --amp off)")
            raise NonFiniteLoss(f"{desc}: loss is {loss.item()} at step {step}; {kept}.")
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
