"""Training and sampling speed, plain path vs optimised path (issue 7).

    python benchmarks/speed.py                  # cpu, 2 threads: a few minutes on the 2-core dev CPU
    python benchmarks/speed.py --quick          # fewer repeats and sizes: about 2 minutes there
    python benchmarks/speed.py --device cuda    # 20 s on an H200

Prints tables and adds an entry keyed by device ("cpu", "cuda", "cpu-quick", ...) to
benchmarks/speed.json. Paths (the tricks are those of spikediff_min/fast.py):
- plain:     fast.ENABLED = False (every trick off), fp32;
- optimised: the fastest path measured with static_once on, channels_last on or off and bf16
  autocast where `hardware.bf16_pays(device)` detects native bf16 (bf16-capable GPUs, CPUs with
  AVX512-BF16 or AMX; on AVX2-only CPUs bf16 is several times slower than fp32: --bf16 measures it
  there too, but never picks it). The JSON's meta names the CPU and its bf16 capability. For the paper sampler the optimised
  path also skips the images with no token to unmask at a step (skip_unchanged), and training
  also tries the hand-written BPTT of the LIF loop (fused); the SDID, in training and sampling,
  also tries averaging over T before its readout conv (mean_first). Sampling also tries the
  no-grad LIF loop in fewer passes (inference_fast) and, for the paper sampler, the readout at
  the drawn tokens only (logits_where_drawn). inference_compile is off on every path here: it
  only acts on batches far bigger than these (benchmarks/sampling_time.py measures it, at the
  batch of 500 run_all.py samples with). The JSON names each trick in upper case (STATIC_ONCE,
  ...), as the module switches of issue 7 that they replace were named.
Every number is the median of `repeats` timed calls after `warmup` untimed ones per model and
`rewarm` more per path (the same model and optimizer serve every path; 4x the repeats on cuda,
where a step takes milliseconds and launch jitter dominates), on random data:
speed does not depend on the values, and sampling speed not on training. Training: images/s of
forward + backward + AdamW step. Sampling: images/s of evaluate.generate (tokens + decoding) with
an untrained cpu-preset SDID and VQ-SVAE.
"""
import argparse
import json
import os
import shlex
import statistics
import sys
import time
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timezone

import torch

from spikediff_min import absorbing, fast, hardware
from spikediff_min.evaluate import generate
from spikediff_min.sdid import SDID, SDID_PRESETS
from spikediff_min.train import autocast, pick_device
from spikediff_min.vqsvae import VQ_PRESETS, VQSVAE

SETTINGS = {  # untimed calls (once per model, again per path), timed calls, sizes of the sweeps
    "full": dict(warmup=2, rewarm=1, repeats=5, sample_repeats=3, n_images=64, Ts=(1, 2, 4, 8, 16),
                 batches=(32, 64, 128, 256), steps=(4, 8, 12, 16)),
    "quick": dict(warmup=1, rewarm=0, repeats=2, sample_repeats=1, n_images=16, Ts=(1, 4, 16),
                  batches=(32, 128), steps=(4, 8, 12, 16)),
    "tiny": dict(warmup=0, rewarm=0, repeats=1, sample_repeats=1, n_images=4, Ts=(1, 2), batches=(4, 8),
                 steps=(2, 4)),
}


SWITCHES = ("static_once", "channels_last", "skip_unchanged", "fused", "mean_first", "inference_fast",
            "logits_where_drawn", "inference_compile")   # fast.TRICKS, in the order of path()'s arguments


@contextmanager
def path(static_once, channels_last, skip_unchanged=False, fused=False, mean_first=False, inference_fast=False,
         where_drawn=False, inference_compile=False):
    """fast.py's tricks (SWITCHES, in order) set for the duration; all off: fast.ENABLED = False, the plain path."""
    values = (static_once, channels_last, skip_unchanged, fused, mean_first, inference_fast, where_drawn,
              inference_compile)
    with fast.enabled(any(values), **dict(zip(SWITCHES, values))):
        yield


def plain_and_optimised():
    """The two paths the quality and roofline scripts compare, as (label, values for path(*values)):
    every trick off, and the package's defaults as they are now."""
    return [("plain", [False] * len(SWITCHES)), ("optimised", [fast.on(k) for k in SWITCHES])]


def switch_state():
    """{trick name in upper case: in use now}, for the JSON entries."""
    return {k.upper(): fast.on(k) for k in SWITCHES}


def median_seconds(fn, device, warmup, repeats, warm_fn=None):
    return statistics.median(timed_seconds(fn, device, warmup, repeats, warm_fn))


def timed_seconds(fn, device, warmup, repeats, warm_fn=None):
    """Seconds of each of `repeats` calls of fn, after `warmup` untimed calls of warm_fn (or fn)."""
    for _ in range(warmup):
        (warm_fn or fn)()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return times


def trainer(kind, cfg, device, warmup):
    """A model on a fixed random batch, warmed up on the plain path: step(amp) does one AdamW step."""
    torch.manual_seed(0)
    model = (VQSVAE if kind == "vqsvae" else SDID)(cfg).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if kind == "vqsvae":
        x = torch.rand(cfg.batch_size, cfg.in_channels, 28, 28, device=device) - 0.5
        loss_fn = lambda: model(x)["loss"]                                      # noqa: E731
    else:
        side = int(cfg.num_timesteps ** 0.5)
        x_0 = torch.randint(0, cfg.num_codes, (cfg.batch_size, side, side), device=device)

        def loss_fn():   # as sdid.train_sdid's step
            t = absorbing.sample_t(len(x_0), cfg.num_timesteps, device)
            x_t, mask = absorbing.q_sample(x_0, t, cfg.num_timesteps, cfg.num_codes)
            return absorbing.loss(model(x_t, t), x_0, mask, t, cfg.num_timesteps)

    def step(amp=False):
        with autocast(device, amp):
            loss = loss_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with path(False, False):
        for _ in range(warmup):
            step()
    return step


def train_ips(step, batch_size, device, s, static_once, channels_last, amp=False, fused=False, mean_first=False):
    with path(static_once, channels_last, fused=fused, mean_first=mean_first):
        sec = median_seconds(lambda: step(amp), device, s["rewarm"], s["repeats"])
    return batch_size / sec


def sample_ips(sdid, vq, sampler, steps, device, s, static_once, channels_last, amp=False, **switches):
    n = s["n_images"]
    sdid.cfg = replace(sdid.cfg, amp=amp)          # make_denoiser reads cfg.amp
    gen = lambda sm, st, k: generate(sdid, vq, k, 1.0, sm, st, device, batch_size=k, progress=False)  # noqa: E731
    with path(static_once, channels_last, **switches):
        sec = median_seconds(lambda: gen(sampler, steps, n), device, 1, s["sample_repeats"],
                             warm_fn=lambda: gen("maskgit", 2, min(n, 4)))
    return n / sec


def compare(measure, device, force_bf16):
    """images/s of each path (plain, +static_once, +channels_last, +bf16) and of the optimised one:
    the fastest with static_once, bf16 allowed only where the hardware has native bf16."""
    paths = {"plain": (False, False, False), "static_once": (True, False, False),
             "static_once+channels_last": (True, True, False)}
    v = {name: measure(*p) for name, p in paths.items()}
    cl = v["static_once+channels_last"] > v["static_once"]
    native = hardware.bf16_pays(device)
    if native or force_bf16:
        name = "static_once" + "+channels_last" * cl + "+bf16"
        paths[name] = (True, cl, True)
        v[name] = measure(*paths[name])
    best = max((n for n in paths if n != "plain" and (native or not paths[n][2])), key=v.get)
    return {"variants": v, "plain": v["plain"], "optimised": v[best], "speedup": v[best] / v["plain"],
            "optimised_path": dict(zip(("static_once", "channels_last", "amp"), paths[best]))}


def add_switch(res, r, name, key, where, measure):
    """Measure r's optimised path with one more switch on: a row in the optimisations table, and
    the switch joins the optimised path if it is faster."""
    off, best_path = r["optimised"], r["optimised_path"]
    on = measure(**{**best_path, key: True})
    res["optimisations"].append({"name": name, "where": where, "off": off, "on": on, "gain": on / off})
    if on > off:
        r["variants"]["+".join([k for k, v in best_path.items() if v] + [key])] = on
        r.update(optimised=on, speedup=on / r["plain"], optimised_path={**best_path, key: True})


def gain_rows(where, r):
    v = r["variants"]
    rows = [("static-once", v["plain"], v["static_once"]),
            ("channels_last", v["static_once"], v["static_once+channels_last"])]
    for name in v:
        if name.endswith("+bf16"):
            rows.append(("bf16", v[name[:-len("+bf16")]], v[name]))
    return [{"name": n, "where": where, "off": a, "on": b, "gain": b / a} for n, a, b in rows]


def presets(tiny):
    if not tiny:
        return {"paper": (VQ_PRESETS["paper"], SDID_PRESETS["paper"]), "cpu": (VQ_PRESETS["cpu"], SDID_PRESETS["cpu"])}
    vq, sd = replace(VQ_PRESETS["smoke"], batch_size=4), replace(SDID_PRESETS["smoke"], batch_size=4)
    return {"paper": (vq, replace(sd, token_input="float")), "cpu": (vq, sd)}


def device_name(device):
    """The GPU or CPU model, its native-bf16 capability and whether bf16 is picked (hardware.py)."""
    return hardware.describe(device)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or mps")
    p.add_argument("--threads", type=int, help="torch threads (default 2 on cpu; untouched otherwise)")
    p.add_argument("--quick", action="store_true", help="fewer repeats and sizes: under 2 minutes on 2 cores")
    p.add_argument("--bf16", action="store_true", help="also measure bf16 autocast on cpu (always on cuda)")
    p.add_argument("--json", default=os.path.join("benchmarks", "speed.json"), help="results file to update")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)   # seconds: smoke-sized models
    args = p.parse_args(argv)

    device = pick_device(args.device)
    if device.type == "cpu" or args.threads:
        torch.set_num_threads(args.threads or 2)
    mode = "tiny" if args.tiny else "quick" if args.quick else "full"
    s = SETTINGS[mode]
    if device.type == "cuda":
        s = dict(s, repeats=4 * s["repeats"], sample_repeats=4 * s["sample_repeats"])
    t_start = time.time()
    res = {"meta": {"device": device.type, "device_name": device_name(device), "torch": torch.__version__,
                    "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                    "bf16_flags": list(hardware.cpu_bf16_flags()), "bf16_pays": hardware.bf16_pays(device),
                    "threads": torch.get_num_threads(),
                    "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "command": shlex.join(["python"] + sys.argv), "quick": args.quick, "tiny": args.tiny,
                    **{k: s[k] for k in ("warmup", "rewarm", "repeats", "sample_repeats", "n_images")}},
           "train": {"vqsvae": {}, "sdid": {}}, "sampling": {}, "optimisations": [], "scaling": {}}

    # 1. training throughput, each preset, each path
    for preset, cfgs in presets(args.tiny).items():
        for kind, cfg in zip(("vqsvae", "sdid"), cfgs):
            step = trainer(kind, cfg, device, s["warmup"])
            r = compare(lambda *p: train_ips(step, cfg.batch_size, device, s, *p), device, args.bf16)
            res["optimisations"] += gain_rows(f"{kind} train, {preset}", r)
            measure = lambda *p, **k: train_ips(step, cfg.batch_size, device, s, *p, **k)  # noqa: E731
            add_switch(res, r, "fused-lif", "fused", f"{kind} train, {preset}", measure)
            if kind == "sdid":
                add_switch(res, r, "mean-first", "mean_first", f"{kind} train, {preset}", measure)
            res["train"][kind][preset] = {"T": cfg.T, "batch_size": cfg.batch_size, **r}

    # 2. sampling throughput: untrained cpu-preset SDID + VQ-SVAE
    vq_cfg, sd_cfg = presets(args.tiny)["cpu"]
    torch.manual_seed(0)
    vq, sdid = VQSVAE(vq_cfg).to(device).eval(), SDID(sd_cfg).to(device).eval()
    for key, sampler, steps in (("paper", "paper", 0), ("maskgit12", "maskgit", 12)):
        r = compare(lambda *p: sample_ips(sdid, vq, sampler, steps, device, s, *p), device, args.bf16)
        res["optimisations"] += gain_rows(f"sampling, {key}", r)
        measure = lambda *p, **k: sample_ips(sdid, vq, sampler, steps, device, s, *p, **k)  # noqa: E731
        if sampler == "paper":     # then skip the images with nothing to unmask
            add_switch(res, r, "skip-unchanged", "skip_unchanged", f"sampling, {key}", measure)
        add_switch(res, r, "mean-first", "mean_first", f"sampling, {key}", measure)
        add_switch(res, r, "inference-lif", "inference_fast", f"sampling, {key}", measure)
        if r["optimised_path"].get("skip_unchanged"):   # then ask only for the logits of the tokens drawn
            add_switch(res, r, "where-drawn", "where_drawn", f"sampling, {key}", measure)
        res["sampling"][key] = {"n_images": s["n_images"], **r}

    # 3. how cost grows, on the optimised paths of the cpu-preset SDID
    best = res["train"]["sdid"]["cpu"]["optimised_path"]

    def sdid_ips(cfg):
        return train_ips(trainer("sdid", cfg, device, s["warmup"]), cfg.batch_size, device, s, **best)
    b0 = s["batches"][0]
    res["scaling"]["sdid_train_vs_T"] = {"batch_size": b0, "path": best, "images_per_s": {
        T: sdid_ips(replace(sd_cfg, T=T, batch_size=b0)) for T in s["Ts"]}}
    res["scaling"]["sdid_train_vs_batch"] = {"T": sd_cfg.T, "path": best, "images_per_s": {
        b: sdid_ips(replace(sd_cfg, batch_size=b)) for b in s["batches"]}}
    best = res["sampling"]["maskgit12"]["optimised_path"]
    ips = {st: sample_ips(sdid, vq, "maskgit", st, device, s, **best) for st in s["steps"]}
    res["scaling"]["maskgit_vs_steps"] = {"n_images": s["n_images"], "path": best, "images_per_s": ips,
                                          "seconds": {st: s["n_images"] / v for st, v in ips.items()}}
    res["meta"]["seconds"] = round(time.time() - t_start, 1)

    report(res)
    key = device.type + ("-tiny" if args.tiny else "-quick" if args.quick else "")
    table = {}
    if os.path.exists(args.json):
        with open(args.json) as f:
            table = json.load(f)
    table[key] = res
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(table, f, indent=1)
    print(f"\nwrote {args.json} [{key!r}] in {res['meta']['seconds']:.0f} s")


def report(res):
    m = res["meta"]
    print(f"{m['device_name']} ({m['device']}, {m['cpu_capability']}), torch {m['torch']}, {m['threads']} threads, "
          f"median of {m['repeats']} timed steps after {m['warmup']} warm-up per model, {m['rewarm']} per path"
          f"{' (quick)' if m['quick'] else ''}")
    print("\ntraining, images/s (forward + backward + AdamW)")
    print(f"{'model':<8}{'preset':<7}{'T':>3}{'batch':>6}{'plain':>9}{'optimised':>11}{'speedup':>9}  optimised path")
    for kind, by_preset in res["train"].items():
        for preset, r in by_preset.items():
            print(f"{kind:<8}{preset:<7}{r['T']:>3}{r['batch_size']:>6}{r['plain']:>9.1f}{r['optimised']:>11.1f}"
                  f"{r['speedup']:>8.2f}x  {', '.join(k for k, v in r['optimised_path'].items() if v)}")
    print(f"\nsampling, images/s (untrained cpu-preset SDID + VQ-SVAE, {m['n_images']} images)")
    print(f"{'sampler':<10}{'plain':>9}{'optimised':>11}{'speedup':>9}  optimised path")
    for key, r in res["sampling"].items():
        print(f"{key:<10}{r['plain']:>9.2f}{r['optimised']:>11.2f}{r['speedup']:>8.2f}x  "
              f"{', '.join(k for k, v in r['optimised_path'].items() if v)}")
    print("\neach optimisation alone, images/s")
    print(f"{'optimisation':<15}{'where':<24}{'off':>9}{'on':>9}{'gain':>8}")
    for r in res["optimisations"]:
        print(f"{r['name']:<15}{r['where']:<24}{r['off']:>9.2f}{r['on']:>9.2f}{r['gain']:>7.2f}x")
    sc = res["scaling"]
    print(f"\nSDID (cpu preset) training vs T, batch {sc['sdid_train_vs_T']['batch_size']}: "
          + ", ".join(f"T={k}: {v:.1f}" for k, v in sc["sdid_train_vs_T"]["images_per_s"].items()) + " images/s")
    print(f"SDID (cpu preset) training vs batch, T={sc['sdid_train_vs_batch']['T']}: "
          + ", ".join(f"{k}: {v:.1f}" for k, v in sc["sdid_train_vs_batch"]["images_per_s"].items()) + " images/s")
    print(f"MaskGIT sampling time vs steps, {sc['maskgit_vs_steps']['n_images']} images: "
          + ", ".join(f"{k}: {v:.2f} s" for k, v in sc["maskgit_vs_steps"]["seconds"].items()))


if __name__ == "__main__":
    main()
