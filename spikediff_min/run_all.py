"""The whole Spiking-Diffusion pipeline in one command (Liu et al. 2023, arXiv 2308.10187).

    python spikediff_min/run_all.py                       # MNIST, cpu preset
    python spikediff_min/run_all.py --dataset cifar10 --preset paper

    python spikediff_min/run_all.py --full-eval           # the paper's full evaluation protocol

Before training it prints the plan: each stage, its steps, the step time measured on this
machine and the expected duration (plan.py). Stages, each skipped when its finished checkpoint is
in --out (a killed run continues from its last periodic checkpoint with --resume):
1. train the VQ-SVAE (out/vq.pt)         2. encode the training set to tokens (out/tokens.pt)
3. train the SDID (out/sdid.pt)          4. evaluate: reconstructions, FID (on a CPU: FID-2k at
   the dataset's temperature; --full-eval, the default on CUDA: a sweep of both samplers, FID-10k
   and FID-1280), samples (out/samples.npz), energy per image (SPEC section 8), figures and
   results.json. With --calibrate (ours; default except for the paper preset) decoded pixels go
   through a lookup table fitted on training reconstructions (calibrate.py, out/calibration.npz)
   and FIDs are reported with it and, as the ablation, without it. Finished measurements go to out/eval_progress.json as they land, so a stopped
   evaluation rerun on the same checkpoints keeps them instead of recomputing (EvalProgress).
A fault (missing or corrupt file, unavailable device, bad flag, full disk) ends in one line naming
the problem, the file and the fix (errors.py); --debug shows the traceback.
"""
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict

import numpy as np
import torch

from spikediff_min import calibrate, data, errors, fid, hardware, options, plan, plot
from spikediff_min.energy import E_AC_PJ, E_MAC_PJ, energy_per_generated_image, energy_per_reconstruction
from spikediff_min.evaluate import decode_all, encode_all, generate, reconstruction_metrics
from spikediff_min.options import CPU_RECIPES, fid_label  # noqa: F401  (CPU_RECIPES: the recipes, for readers)
from spikediff_min.plan import STAGE_NAMES
from spikediff_min.sdid import train_sdid
from spikediff_min.sdid import config_from_preset as sdid_config
from spikediff_min.train import atomic_save, load_checkpoint, pick_device, read_checkpoint, steps_per_epoch
from spikediff_min.vqsvae import train_vqsvae
from spikediff_min.vqsvae import config_from_preset as vq_config


def parse_args(argv=None):
    return options.parse_args(argv, __doc__)


def configs(args, in_channels, amp=None):
    """The two stage configs: preset, then the cpu recipe, then the flags given (which win). amp:
    both stages' bf16, else each stage's from its flags and recipe (options.amp_flags; None keeps
    the preset's fp32 until run_all.choose_amp measures)."""
    flags = options.amp_flags(args)
    args = options.with_recipe(args)
    amps = {s: amp if amp is not None else flags[s][0] for s in ("vq", "sdid")}
    common = {k: v for k, v in dict(T=args.T, batch_size=args.batch_size, lr=args.lr, num_codes=args.num_codes,
                                    neuron=args.neuron).items() if v is not None}
    vq_only = {k: v for k, v in dict(T=args.vq_T, batch_size=args.vq_batch_size, epochs=args.vq_epochs,
                                     code_dim=args.code_dim, width=args.width, adv_weight=args.adv_weight,
                                     mid_blocks=args.mid_blocks, dec_blocks=args.dec_blocks,
                                     recon_loss=args.recon_loss,
                                     amp=amps["vq"]).items() if v is not None}
    vq = vq_config(args.preset, in_channels=in_channels, **{**common, **vq_only})
    sd_only = {k: v for k, v in dict(T=args.sdid_T, epochs=args.sdid_epochs, amp=amps["sdid"],
                                     dilations=args.dilations and tuple(args.dilations)).items() if v is not None}
    sd = sdid_config(args.preset, **{**common, **sd_only})
    return vq, sd


def write_npz(path, compressed=False, **arrays):
    """numpy arrays to path (.npz) via a temp file + rename: a reader sees the old file or the new one."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            (np.savez_compressed if compressed else np.savez)(f, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(obj, path):
    """json to path via a temp file + rename (a full disk never truncates the old file)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=1)
        os.replace(tmp, path)
    except OSError as e:
        raise errors.UserError(f"could not write {path}: {e.strerror or e}; the previous file (if any) is "
                               f"intact. Fix: free disk space and rerun (finished stages are skipped).") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def git_commit():
    try:
        r = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                           cwd=os.path.dirname(os.path.abspath(__file__)))
        return r.stdout.strip() if r.returncode == 0 else None
    except OSError:
        return None


def checkpoint_progress(path):
    """(steps done, finished?) of the checkpoint at path; (0, False) if there is none."""
    if not os.path.exists(path):
        return 0, False
    ck = read_checkpoint(path)
    return ck.get("step", 0), bool(ck.get("done"))


def announce(rows, stage):
    sec = sum(r[2] or 0 for r in rows if r[0] == stage)
    print(f"== {stage}: expected {plan.minutes(sec)} ==", flush=True)


def choose_amp(vq_cfg, sd_cfg, shape, device, flags, results, trained=None):
    """bf16 autocast per stage: as the flags or the recipe say (`flags` maps "vq"/"sdid" to
    (True/False/None, why), options.amp_flags); else, for a stage whose finished checkpoint is in
    --out, what it trained with (`trained` maps "vq"/"sdid" to that amp; nothing left to time); else,
    where the hardware has native bf16 (hardware.bf16_pays), bf16 if its training step measured
    clearly faster here (plan.pick_amp); else fp32. Returns the step times measured, for the plan."""
    measured, chosen = {}, {}
    for key, cfg in (("vq", vq_cfg), ("sdid", sd_cfg)):
        flag, why = (flags or {}).get(key, (None, None))
        if (trained or {}).get(key) is not None and options.FROM_RECIPE in (why or ""):
            flag = None                           # a finished stage reports how it trained, not the recipe
        if flag is not None or not hardware.bf16_pays(device):
            cfg.amp = bool(flag)
            chosen[key] = {"amp": cfg.amp, "why": why if flag is not None else "no native bf16"}
            continue
        if (trained or {}).get(key) is not None:
            cfg.amp = bool(trained[key])
            chosen[key] = {"amp": cfg.amp, "why": "finished checkpoint: the amp it trained with"}
            continue
        cfg.amp, secs = plan.pick_amp(key, cfg, shape, device)      # the SDID's grid is H/4 x W/4
        measured[key] = secs["bf16" if cfg.amp else "fp32"]
        chosen[key] = {"amp": cfg.amp, "why": f"measured (bf16 needs {options.BF16_MIN_SPEEDUP}x)", "s_per_step": secs}
        print(f"{STAGE_NAMES[key]}: {secs['fp32']:.3f} s/step in fp32, "
              f"{secs['bf16']:.3f} in bf16: {'bf16' if cfg.amp else 'fp32'}", flush=True)
    results["amp"] = chosen
    return measured


def fit_budget(args, stages, shape, n_train, device, measured, results):
    """--train-minutes (the mnist and fmnist cpu recipes' 50): set the epochs of each stage that no --*-epochs
    flag fixed so that it fills its share of the budget at its step time measured here (`measured`,
    filled in where choose_amp did not time it). A stage with a checkpoint in --out keeps the epochs
    it was started with, so a resumed or finished stage matches its checkpoint."""
    full = options.with_recipe(args)
    minutes, vq_share = full.train_minutes, full.vq_share or options.VQ_SHARE
    if not minutes:
        return
    chosen = {"minutes": minutes, "vq_share": vq_share}
    for key, (cfg, path) in stages.items():
        if getattr(args, f"{key}_epochs") is not None:
            chosen[key] = {"epochs": cfg.epochs, "why": f"--{key}-epochs"}
        elif os.path.exists(path):
            cfg.epochs = read_checkpoint(path)["config"]["epochs"]
            chosen[key] = {"epochs": cfg.epochs, "why": f"its checkpoint {path}"}
        else:
            share = vq_share if key == "vq" else 1 - vq_share
            sec = measured.get(key) or plan.train_step_seconds(key, cfg, shape, device, repeats=5)
            measured[key] = sec
            cfg.epochs = plan.epochs_for(minutes * 60 * share, sec, steps_per_epoch(n_train, cfg.batch_size))
            chosen[key] = {"epochs": cfg.epochs, "why": f"{share * minutes:g} min at {sec:.3f} s/step"}
        print(f"training budget {minutes:g} min: {key} {chosen[key]['epochs']:g} epochs ({chosen[key]['why']})",
              flush=True)
    results["budget"] = chosen


def keep_started_T(args, stages, results):
    """The cpu recipe's T per stage depends on the machine (options.FP32_RECIPES): where no flag fixed
    a stage's T (--vq-T / --sdid-T, or --T), its checkpoint in --out keeps the T it was started with,
    so a run moved to a machine with (or without) native bf16 still resumes or evaluates there.
    stages: {"vq": (VQSVAEConfig, path), "sdid": (SDIDConfig, path)}, as fit_budget takes them."""
    for key, (cfg, path) in stages.items():
        if getattr(args, f"{key}_T") is None and args.T is None and os.path.exists(path):
            started = read_checkpoint(path).get("config", {}).get("T", cfg.T)
            if started != cfg.T:
                print(f"{STAGE_NAMES[key]}: T={started} from its checkpoint {path} (the recipe here says "
                      f"T={cfg.T})", flush=True)
                results[f"{key}_T"] = {"T": started, "why": f"its checkpoint {path}"}
                cfg.T = started


def train_stages(args, device, out, info, amp_flags, results):
    """Stages 1-3 after printing the plan; a stage whose finished checkpoint exists is loaded."""
    vq_path, tok_path, sd_path = (os.path.join(out, f) for f in ("vq.pt", "tokens.pt", "sdid.pt"))
    progress = {"vq": checkpoint_progress(vq_path), "sdid": checkpoint_progress(sd_path)}
    for path, (step, finished) in zip((vq_path, sd_path), progress.values()):
        if os.path.exists(path) and not finished and not args.resume:
            raise errors.UserError(f"{path} is an unfinished checkpoint (step {step}). Fix: pass --resume to "
                                   f"continue it, or delete it to start over.")
    both_done = progress["vq"][1] and progress["sdid"][1]
    # the training images are only needed for training; a finished run loads no training data
    x_train, _ = data.load_arrays(args.dataset, "test" if both_done else "train", root=args.data_root)
    n_test = len(data.load_arrays(args.dataset, "test", root=args.data_root)[0])
    vq_cfg, sd_cfg = configs(args, x_train.shape[1])          # amp: set per stage by choose_amp
    stages = {"vq": (vq_cfg, vq_path), "sdid": (sd_cfg, sd_path)}
    keep_started_T(args, stages, results)
    sd_cfg.num_codes, sd_cfg.num_timesteps = vq_cfg.num_codes, (x_train.shape[2] // 4) * (x_train.shape[3] // 4)
    trained = {k: read_checkpoint(p).get("config", {}).get("amp") for k, (_, p) in stages.items() if progress[k][1]}
    measured = choose_amp(vq_cfg, sd_cfg, x_train.shape[1:], device, amp_flags, results, trained)
    fit_budget(args, stages, x_train.shape[1:], len(x_train), device, measured, results)
    rows = plan.stage_rows(args, vq_cfg, sd_cfg, x_train.shape[1:], len(x_train), n_test, progress, device, measured)
    results["plan"] = {"rows": [{"stage": r[0], "what": r[1], "expected_s": r[2]} for r in rows],
                       "total_s": plan.print_plan(rows, hardware.describe(device), args.dataset)}
    meta, kw = {"dataset": args.dataset}, dict(ckpt_every_s=args.ckpt_every_s)

    announce(rows, "VQ-SVAE")
    vq, vq_hist = train_vqsvae(vq_cfg, x_train, vq_path, device, args.seed, meta, **kw)
    stage_info(info, "vq", vq_hist, device, progress["vq"][1], results)
    tokens = torch.zeros(1, 1, 1, dtype=torch.long)            # placeholder when the SDID is finished
    if not progress["sdid"][1]:
        if os.path.exists(tok_path):
            tokens = load_checkpoint(tok_path, vq_cfg, meta)["tokens"]
        else:
            announce(rows, "tokens")
            t0 = time.time()
            tokens = encode_all(vq, x_train, device)          # [N, h, w]
            atomic_save({"tokens": tokens, "config": asdict(vq_cfg), "meta": meta}, tok_path)
            info["encode"] = {"seconds": time.time() - t0, "device": str(device)}
    announce(rows, "SDID")
    sdid, sd_hist = train_sdid(sd_cfg, tokens, sd_path, device, args.seed, meta, **kw)
    stage_info(info, "sdid", sd_hist, device, progress["sdid"][1], results)
    return vq, sdid, {"VQ-SVAE": vq_hist, "SDID": sd_hist}, rows


def stage_info(info, key, hist, device, finished, results):
    """train_info.json's row for a stage: its seconds and device and, when it trained in this run, the
    bf16 and budget decisions with the step times they measured; a later run that only evaluates the
    finished checkpoint reports "finished checkpoint" in results' amp and budget, and these here."""
    row = info.setdefault(key, {"seconds": hist.get("seconds"), "device": str(device)})
    if not finished:
        row.update({k: results[k][key] for k in ("amp", "budget") if key in results.get(k, {})})


def file_stamp(path):
    """[size, mtime_ns] of path: a file rewritten since has another stamp."""
    return [os.path.getsize(path), os.stat(path).st_mtime_ns]


def calibration(args, vq, device, out):
    """--calibrate's lookup table (calibrate.py) for the VQ-SVAE in out/vq.pt, uint8 [C, 256]: fitted on
    the reconstructions of the first --calibrate-n training images, kept in out/calibration.npz and
    reused while vq.pt and --calibrate-n are unchanged."""
    path = os.path.join(out, "calibration.npz")
    stamp = np.array(file_stamp(os.path.join(out, "vq.pt")) + [args.calibrate_n], np.int64)
    try:
        with np.load(path) as z:
            if np.array_equal(z["stamp"], stamp):
                return z["lut"]
    except Exception:                                  # none yet, truncated or foreign: fit it again
        pass
    x, _ = data.load_arrays(args.dataset, "train", root=args.data_root)
    x = x[:args.calibrate_n]
    t0 = time.time()
    lut = calibrate.fit(decode_all(vq, encode_all(vq, x, device), device), x)   # uint8 [C, 256]
    write_npz(path, lut=lut, stamp=stamp)
    print(f"calibration: lookup table fitted on {len(x)} training reconstructions in {time.time() - t0:.0f} s "
          f"({path})", flush=True)
    return lut


class EvalProgress:
    """out/eval_progress.json: the finished measurements of an evaluation, so a stopped one loses
    nothing. A rerun on the same checkpoints (size and mtime of vq.pt and sdid.pt), device, seed and
    real statistics keeps the reconstruction FID, each finished sweep row and the headline samples
    (out/samples.npz) instead of recomputing them; anything else starts afresh. Sampling is seeded,
    so a kept measurement is the one a rerun would make."""

    def __init__(self, args, out, device, n_real):
        stamp = lambda name: file_stamp(os.path.join(out, name))
        self.path = os.path.join(out, "eval_progress.json")
        self.key = {"vq": stamp("vq.pt"), "sdid": stamp("sdid.pt"), "dataset": args.dataset, "device": str(device),
                    "seed": args.seed, "n_real": n_real, "maskgit_steps": args.maskgit_steps}
        try:
            with open(self.path) as f:
                old = json.load(f)
        except (OSError, ValueError):                      # none yet, or cut short while written
            old = {}
        self.state = old if old.get("key") == self.key else {"key": self.key}
        self.samples_path = os.path.join(out, "samples.npz")

    def get(self, kind, **what):
        """The stored record of `kind` ("recon", "sweep", "samples") made with `what`, or None."""
        what = json.loads(json.dumps(what))                # tuples -> lists, as stored
        return next((r for r in self.state.get(kind, []) if r["what"] == what), None)

    def put(self, kind, value, **what):
        self.state.setdefault(kind, []).append({"what": json.loads(json.dumps(what)), "value": value})
        write_json(self.state, self.path)

    def samples(self, **what):
        """The stored headline samples made with `what` as (the sampler's uint8 [N, C, H, W], the
        images shown: calibrated or the same), or (None, None)."""
        if self.get("samples", **what) is None:
            return None, None
        try:
            with np.load(self.samples_path) as z:
                shown = z["images"]
                raw = z["raw"] if "raw" in z.files else shown
        except Exception:                                  # missing, truncated (BadZipFile) or foreign: remake
            return None, None
        return (raw, shown) if len(raw) == what["n"] else (None, None)

    def save_samples(self, raw, shown, secs, **what):
        """out/samples.npz: 'images', the samples as shown and scored (calibrated with --calibrate),
        and 'raw', the sampler's output before calibration when they differ. One set: the record of
        the set it replaces goes first."""
        self.state["samples"] = []
        write_json(self.state, self.path)
        write_npz(self.samples_path, compressed=True, images=shown, **({} if shown is raw else {"raw": raw}))
        self.put("samples", secs, **what)


def evaluate(args, vq, sdid, device, out, figs, results, rows):
    """Stage 4: reconstructions, then (FID on) a sweep if there is more than one setting, the
    headline FID (labelled by its sample count: FID-2k, FID-10k) and, with --full-eval, FID-1280.
    With --calibrate every image shown or scored goes through the lookup table first; the
    reconstruction FID and the headline samples' first 2,000 are also scored without it."""
    announce(rows, "eval")
    x_test, _ = data.load_arrays(args.dataset, "test", root=args.data_root)
    rec, recon_raw = reconstruction_metrics(vq, x_test, device)       # mse, ssim: the decoder's own output
    lut = calibration(args, vq, device, out) if args.calibrate else None
    look = (lambda im: calibrate.apply(im, lut)) if lut is not None else (lambda im: im)
    cal = {"calibrated": hashlib.sha1(lut.tobytes()).hexdigest()[:12]} if lut is not None else {}
    recon = look(recon_raw)
    plot.reconstructions(x_test, recon, path=os.path.join(figs, "reconstructions.png"))
    results["reconstruction"], results["calibrated"] = rec, lut is not None
    samplers = ["paper", "maskgit"] if args.sampler == "both" else [args.sampler]
    gen = lambda n, temp, s, seed: generate(sdid, vq, n, temp, s, args.maskgit_steps, device, seed=seed)
    if args.fid_samples <= 0:
        images, secs = gen(100, args.temperatures[0], samplers[0], args.seed)
        plot.image_grid(look(images), path=os.path.join(figs, "samples.png"))
        return results
    n_real = args.fid_real or len(x_test)
    n_recon = min(args.recon_fid_samples or n_real, len(x_test))
    score = lambda feats: fid.frechet_distance(*fid.statistics(feats), *real)
    kept = EvalProgress(args, out, device, n_real)
    note = " (kept from an earlier evaluation of these checkpoints: eval_progress.json)"

    def scored(kind, images, **what):
        """(FID of images, kept?): the stored value of (kind, what), else computed and stored."""
        old = kept.get(kind, **what)
        if old:
            return old["value"], True
        value = score(fid.inception_features(images, device=device))
        kept.put(kind, value, **what)
        return value, False

    try:
        real = fid.real_statistics(args.dataset, "test", n=args.fid_real, root=args.data_root, device=device)
        rec["fid"], old = scored("recon", recon[:n_recon], n=n_recon, **cal)
        rec["fid_n"], rec["fid_label"] = n_recon, fid_label(n_recon)
        print(f"reconstruction {fid_label(n_recon)} ({n_recon} reconstructed test images vs {n_real} real"
              f"{', calibrated' if cal else ''}): {rec['fid']:.2f}{note if old else ''}")
        if cal:
            rec["fid_uncalibrated"], old = scored("recon", recon_raw[:n_recon], n=n_recon)
            print(f"reconstruction {fid_label(n_recon)} without calibration: {rec['fid_uncalibrated']:.2f}"
                  f"{note if old else ''}")
        sweep = []
        settings = options.sweep_settings(samplers, args.temperatures)
        for s, temp in settings if len(settings) > 1 else ():      # one setting: nothing to choose
            what = dict(sampler=s, temperature=temp, n=args.sweep_samples, **cal)
            old = kept.get("sweep", **what)
            if old:
                row = old["value"]
            else:
                images, secs = gen(args.sweep_samples, temp, s, args.seed + 1)
                row = {"sampler": s, "temperature": temp, "n": args.sweep_samples,
                       "fid": score(fid.inception_features(look(images), device=device)),
                       "fid_label": fid_label(args.sweep_samples), "images_per_s": args.sweep_samples / secs}
                kept.put("sweep", row, **what)
            sweep.append(dict(row, temperature=temp))
            print(f"sweep: {s} sampler, temperature {temp}: {fid_label(args.sweep_samples)} {row['fid']:.2f}"
                  f"{note if old else ''}")
        results["sweep"] = sweep
        best = min(sweep, key=lambda r: r["fid"]) if sweep else {"sampler": samplers[0],
                                                                   "temperature": args.temperatures[0]}
        what = dict(sampler=best["sampler"], temperature=best["temperature"], n=args.fid_samples)
        raw, shown = kept.samples(**what)
        fresh = raw is None
        if fresh:
            raw, secs = gen(args.fid_samples, best["temperature"], best["sampler"], args.seed + 2)
        else:
            secs = kept.get("samples", **what)["value"]
            print(f"{args.fid_samples} samples{note.replace('eval_progress.json', 'samples.npz')}")
        images = look(raw)
        if fresh or not np.array_equal(shown, images):          # new, or kept but shown with another table
            kept.save_samples(raw, images, secs, **what)
        full = args.full_eval and args.fid_samples >= 1280 and n_real >= 1280    # the paper's protocol
        n_ab = min(args.fid_samples, 2000)                  # the calibration ablation's sample count
        old = kept.get("fid", **what, **cal)
        if old:
            scores = old["value"]
        else:
            feats = fid.inception_features(images, device=device)
            scores = {"fid": score(feats)}
            if full:
                real_1280 = fid.real_statistics(args.dataset, "test", n=1280, root=args.data_root, device=device)
                scores["fid_1280"] = fid.frechet_distance(*fid.statistics(feats[:1280]), *real_1280)
            if cal:                                         # the same first n_ab samples, with and without
                scores["calibrated_first"] = score(feats[:n_ab])
                scores["uncalibrated_first"] = score(fid.inception_features(raw[:n_ab], device=device))
            kept.put("fid", scores, **what, **cal)
        results.update({
            "sampler": best["sampler"], "best_temperature": best["temperature"], "fid": scores["fid"],
            "fid_label": fid_label(args.fid_samples), "fid_samples": args.fid_samples, "fid_real": n_real,
            "sampling": {"seconds": secs, "images": args.fid_samples, "images_per_s": args.fid_samples / secs,
                         "device": str(device)}})
        if "fid_1280" in scores:
            results["fid_1280"] = scores["fid_1280"]
        print(f"{fid_label(args.fid_samples)} ({args.fid_samples} samples vs {n_real} real test images, "
              f"{best['sampler']} sampler, temperature {best['temperature']}{', calibrated' if cal else ''}): "
              f"{results['fid']:.2f}{note if old else ''}")
        if cal:
            results["calibration_ablation"] = {
                "n": n_ab, "fid_label": fid_label(n_ab), "calibrated": scores["calibrated_first"],
                "uncalibrated": scores["uncalibrated_first"]}
            print(f"the first {n_ab} samples, {fid_label(n_ab)}: calibrated {scores['calibrated_first']:.2f}, "
                  f"without calibration {scores['uncalibrated_first']:.2f}")
        for s in samplers if sweep else ():
            picked = [r for r in sweep if r["sampler"] == s and not isinstance(r["temperature"], tuple)]
            if len(picked) > 1:                                       # a curve needs two points
                plot.fid_vs_temperature([r["temperature"] for r in picked], [r["fid"] for r in picked], rec["fid"],
                                        path=os.path.join(figs, f"fid_vs_temperature_{s}.png"))
    except fid.FIDUnavailable as e:
        print(f"warning: FID skipped: {errors.one_line(e)}")
        images = look(gen(100, args.temperatures[0], samplers[0], args.seed)[0])
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
                                     results.get("best_temperature", args.temperatures[0]), args.seed)
    rates = {f"vq.{r['name']}": r["rate"] for r in rec["layers"] if r["kind"] == "spiking"}
    rates.update({f"sdid.{r['name']}": r["rate"] for r in gen["layers"]["sdid"] if r["kind"] == "spiking"})
    if rates:
        plot.bars(list(rates), list(rates.values()), "input firing rate", f"{args.dataset}: input firing rates",
                  path=os.path.join(figs, "firing_rates.png"))
    results["energy"] = {"costs_pJ": {"MAC": E_MAC_PJ, "SOP": E_AC_PJ}, "firing_rates": rates,
                         "calibration": "a table lookup per output pixel: no MAC or SOP, not counted",
                         "reconstruction": {k: v for k, v in rec.items() if k != "layers"},
                         "generation": {k: v for k, v in gen.items() if k != "layers"}}
    print(f"energy per image: reconstruction {rec['energy_uJ']:.3f} uJ, generation {gen['energy_uJ']:.2f} uJ "
          f"({gen['denoiser_calls_per_image']:.1f} SDID calls)")
    return results


def default_figures(args, out, ann=""):
    """figures/<dataset> for the default run; <out>/figures for the smoke preset or a chosen --out.

    An experiment in its own --out folder must not overwrite the committed figures/<dataset>
    (a run there needs --figures figures/<dataset> said out loud)."""
    if args.preset == "smoke" or args.out:
        return os.path.join(out, "figures")
    return os.path.join("figures", args.dataset + ann)


def run(args):
    device = pick_device(args.device)
    args.native_bf16 = hardware.bf16_pays(device)       # picks the fp32 recipe where False (options.with_recipe)
    options.resolve_eval(args, device)
    amp_flags = options.amp_flags(args)
    amp_note = ", ".join(f"{STAGE_NAMES[s]} {'bf16' if f else 'fp32'} ({why})"
                         for s, (f, why) in amp_flags.items() if f is not None)
    if any(f is None for f, _ in amp_flags.values()):
        amp_note += ("; " if amp_note else "") + (
            f"bf16 autocast per stage where measured at least {options.BF16_MIN_SPEEDUP}x faster here"
            if hardware.bf16_pays(device) else "fp32")
    print(f"hardware: {hardware.describe(device)}; {amp_note}; "
          f"evaluation: {'full protocol' if args.full_eval else 'CPU-sized'}"
          f"{'' if args.full_eval else ' (--full-eval for the sweep, FID-10k and FID-1280)'}", flush=True)
    ann = "-ann" if args.neuron == "relu" else ""
    out = args.out or os.path.join("runs", f"{args.dataset}-{args.preset}{ann}")
    figs = args.figures or default_figures(args, out, ann)
    os.makedirs(out, exist_ok=True)
    info_path = os.path.join(out, "train_info.json")
    info = json.load(open(info_path)) if os.path.exists(info_path) else {}
    results = {"dataset": args.dataset, "preset": args.preset, "hardware": hardware.describe(device),
               "eval_protocol": "full" if args.full_eval else "cpu"}
    vq, sdid, hists, rows = train_stages(args, device, out, info, amp_flags, results)
    write_json(info, info_path)
    plot.loss_curves(hists, path=os.path.join(figs, "loss_curves.png"))
    results.update({"training": info, "vq_config": asdict(vq.cfg), "sdid_config": asdict(sdid.cfg),
                    "parameters": {"vq": sum(p.numel() for n, p in vq.named_parameters() if not n.startswith("critic.")),
                                   "sdid": sum(p.numel() for p in sdid.parameters())}})
    evaluate(args, vq, sdid, device, out, figs, results, rows)
    if args.energy_samples > 0:
        announce(rows, "energy")
        energy(args, vq, sdid, device, figs, results)
    results.update({"device": str(device), "torch": torch.__version__, "platform": platform.platform(),
                    "cpu_threads": torch.get_num_threads(), "git_commit": git_commit(),
                    "date": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(["python"] + sys.argv)})
    write_json(results, os.path.join(figs, "results.json"))
    print(json.dumps({k: v for k, v in results.items() if "config" not in k and k != "plan"}, indent=1))
    return results


def main(argv=None):
    """run_all's entry point: a fault ends in one line and a non-zero exit (--debug: the traceback)."""
    args = parse_args(argv)
    try:
        return run(args)
    except BaseException as e:
        errors.report(e, args.debug)


if __name__ == "__main__":
    main()
