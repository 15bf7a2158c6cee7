"""run_all.py's command line: flags, their checks, the per-dataset recipes and the evaluation
defaults that fit the machine.

- A bad value (a count <= 0, a temperature <= 0, epochs <= 0, a NaN) is refused by argparse in
  one line naming the flag, the value and what it must be (exit code 2). A temperature may be
  START-END, annealed over the sampler's steps (absorbing.temperature_at).
- The cpu preset's per-dataset recipes (CPU_RECIPES) fill the fields the user did not give.
- Evaluation (`resolve_eval`): on a CPU one sampler ("paper") at the dataset's default
  temperature, FID-2k and a reconstruction FID on 2,000 images; `--full-eval` (the default on
  CUDA) is the full protocol: both samplers swept over six temperatures, FID-10k and FID-1280.
  Flags given on the command line win either way.

    args = options.parse_args(["--dataset", "cifar10"])
    options.resolve_eval(args, device)        # fills sampler, temperatures, fid_samples, ...
"""
import argparse
import math
import sys

from . import data
from .vqsvae import RECON_LOSSES, VQ_PRESETS

# The cpu preset's per-dataset recipes, sized to train in about an hour on the 2-core CPU.
# fmnist: measured end to end (README). cifar10: sized from benchmarks/cifar_steps.json (3x32x32
# step times) to the same hour; T=2 for the VQ-SVAE (T=4 costs about 2x per step), the SDID keeps
# the preset's T=4. fmnist's VQ-SVAE trains in fp32 even where bf16 is native: at this recipe, same
# seed, bf16 cost its reconstruction FID-2k 12.7 points (90.56 vs 77.82; fp32 at seed 1: 76.76) on
# an H200 (benchmarks/tokenizer_fmnist_amp.json), and bf16 bought it only 4% speed on a Xeon.
# A flag given on the command line wins.
# mnist: the epochs fill a training budget of 50 minutes on the machine at hand (--train-minutes), half
# per stage, from the step times measured before training: 7 + 6 fixed epochs took 61.0 min on a
# 2-core Xeon and about 31 on a 2-core EPYC with AVX512-BF16, so no fixed count fits both.
# fmnist (2026-12-05): the same 50 minutes, 3/4 of them for its VQ-SVAE, the bound there (reconstruction
# FID 132 -> 73 from 2.5 to 10 epochs, while 5.5 SDID epochs scored no better than 3.5; until then a
# fixed 14 + 3.5 epochs, 31.8 min on the EPYC). Its VQ-SVAE trains at batch 16, not the preset's 128
# (2026-12-07): in about the same CPU time, 5.88 epochs at batch 16 reconstruct at FID-2k 60.60 against
# 98.08 for 7.06 epochs at 128 (64: 86.28, 32: 69.15; benchmarks/README.md, "The tokenizer's batch size");
# at the full budget it gained less: 54.05 against 58.63 (uncalibrated), FID-10k 57.08 calibrated.
CPU_RECIPES = {"mnist": dict(train_minutes=50),
               "fmnist": dict(vq_T=2, vq_amp="off", vq_batch_size=16, train_minutes=50, vq_share=0.75),
               "cifar10": dict(vq_T=2, vq_epochs=3, sdid_epochs=3)}
# On a machine without native bf16 (hardware.bf16_pays False: an AVX2 CPU, or AVX512 without its
# BF16 extension) both stages train in fp32, 2.3-3x slower per step than on an AMX Xeon in bf16, so
# the 50 minutes buy a third to a half of the epochs. There these entries override the recipe's:
# mnist: a T=2 VQ-SVAE, 0.225 against 0.558 s per step on a 2-core AVX2 EPYC, so 14.27 epochs instead
# of 5.75 in its 25 minutes: reconstruction FID-2k 8.91 against 10.44, FID-2k 20.02 against 20.79 (same machine,
# seed and budget, calibrated; benchmarks/README.md, "A recipe for CPUs without native bf16"); and a T=2
# SDID, 1.8x cheaper per step than T=4 there, so 8.16 epochs instead of 4.51 in the same SDID time: FID-2k
# 16.72 against 20.02 (first 2,000 samples, calibrated), FID-10k 14.29, every digit within 0.80-1.32x of its
# share (same seed and tokenizer; "The T=2 SDID" there).
FP32_RECIPES = {"mnist": dict(vq_T=2, sdid_T=2)}
# the sampling temperature of the CPU default evaluation. mnist: 1.0 annealed to 0.4 over the steps,
# the best FID-2k measured and every class within 1.5x of its share, where 0.7 held ones at 2.6x
# (benchmarks/README.md, "Mode coverage"); fmnist: the same annealing, FID-2k 113.88 against 123.66
# at the constant 0.6 that won its earlier constant-only sweep (figures/fmnist/results.json,
# 2026-12-03); 0.7 elsewhere is a guess, not a measurement
TEMPERATURE = {"mnist": (1.0, 0.4), "fmnist": (1.0, 0.4)}
# the full protocol's sweep: the constants of the paper's reference code plus the annealed default
FULL_TEMPERATURES = [0.5, 0.6, 0.7, 0.8, 0.9, 1.0, (1.0, 0.4)]
# bf16 must buy at least this training speed-up over fp32 to be picked by measurement: it can cost
# quality (CPU_RECIPES' fmnist note), and on an H200 these small networks gain only 1.04x from it
BF16_MIN_SPEEDUP = 1.2
# --train-minutes: the VQ-SVAE's share of the budget where neither --vq-share nor the recipe sets
# one; the SDID gets the rest (the 7 + 6 epoch MNIST run spent 1,889 s and 1,745 s on them). MNIST at 0.65
# scored worse: FID-2k 27.03 against 20.95 (benchmarks/README.md)
VQ_SHARE = 0.5
FROM_RECIPE = "the cpu recipe for"      # amp_flags' reason for a choice the recipe made
QUICK = dict(sampler="paper", fid_samples=2000, recon_fid_samples=2000)
FULL = dict(sampler="both", fid_samples=10000, recon_fid_samples=None, temperatures=FULL_TEMPERATURES)


def number(kind, low, strict=True, note=""):
    """argparse type: a finite `kind` (int/float) > low (>= low if not strict)."""
    def check(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}")
        if not math.isfinite(v) or (v <= low if strict else v < low):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {low}{note}, got {text}")
        return v
    return check


def fraction(text):
    """argparse type: a number strictly between 0 and 1."""
    v = number(float, 0)(text)
    if v >= 1:
        raise argparse.ArgumentTypeError(f"must be < 1 (a share of the budget), got {text}")
    return v


def temperature(text):
    """A sampling temperature for the command line: '0.7' -> 0.7 (the paper's constant), '1.0-0.7'
    -> (1.0, 0.7), annealed from the first step to the last (absorbing.temperature_at)."""
    try:
        parts = [float(p) for p in text.split("-")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or any(not math.isfinite(p) or p <= 0 for p in parts):
        raise argparse.ArgumentTypeError(f"{text!r} is not a temperature. Fix: a number > 0 such as 0.7, "
                                         f"or START-END such as 1.0-0.7 to anneal it over the steps")
    return parts[0] if len(parts) == 1 else tuple(parts)


def sweep_settings(samplers, temperatures):
    """The (sampler, temperature) pairs the evaluation scores; an annealed temperature only goes to
    the paper sampler (the MaskGIT sampler takes one temperature)."""
    return [(s, t) for s in samplers for t in temperatures if s == "paper" or not isinstance(t, tuple)]


def show_temperature(temp):
    """0.7 -> '0.7'; (1.0, 0.4) -> '1.0-0.4', as the flag takes it."""
    return "-".join(map(str, temp)) if isinstance(temp, tuple) else str(temp)


class Parser(argparse.ArgumentParser):
    def error(self, message):
        """One line (argparse prints the whole usage block first), exit code 2."""
        print(f"error: {message}. Fix: see python spikediff_min/run_all.py --help", file=sys.stderr)
        sys.exit(2)


POS_INT, POS_FLOAT, COUNT0 = number(int, 0), number(float, 0), number(int, 0, False, " (0 skips it)")


def parse_args(argv=None, description=None):
    p = Parser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    def flags(r):
        return " ".join(f"--{k.replace('_', '-')} {v}" for k, v in r.items())
    recipes = "; ".join(f"{d}: {flags(r)}" + (f", and {flags(FP32_RECIPES[d])} where the hardware has no native bf16"
                                              if d in FP32_RECIPES else "") for d, r in CPU_RECIPES.items())
    p.add_argument("--dataset", default="mnist", choices=data.DATASETS, help="which dataset (default mnist, embedded)")
    p.add_argument("--preset", default="cpu", choices=sorted(VQ_PRESETS),
                   help="paper: the paper's settings, the GPU-sized setting (T=16, 100 + 200 epochs); cpu: sized "
                        f"for a 2-core CPU in about 1 h ({recipes}); gpu: the cpu preset's networks with batch 256 and "
                        "16 + 16 epochs, minutes on one GPU; smoke: seconds, for tests")
    p.add_argument("--out", help="folder for checkpoints, tokens and samples (default runs/<dataset>-<preset>)")
    p.add_argument("--figures", help="folder for figures and results.json (default figures/<dataset>; "
                                     "<out>/figures for the smoke preset or when --out is given)")
    p.add_argument("--data-root", help="folder holding one subfolder per dataset (mnist/, fashion-mnist/, ...)")
    p.add_argument("--device", help="cpu, cuda, cuda:N or mps (default: cuda > mps > cpu)")
    p.add_argument("--resume", action="store_true", help="continue an unfinished checkpoint in --out")
    p.add_argument("--ckpt-every-s", type=POS_FLOAT, default=120.0,
                   help="seconds between periodic checkpoints within a stage (default 120); a killed run "
                        "resumes from the last one with --resume")
    p.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    p.add_argument("--seed", type=number(int, 0, False), default=0, help="random seed for training and sampling")
    e = p.add_argument_group("evaluation (defaults: CPU-sized on a CPU, the full protocol on CUDA)")
    e.add_argument("--full-eval", action=argparse.BooleanOptionalAction, default=None,
                   help="the full protocol: --sampler both, --temperatures "
                        f"{' '.join(map(show_temperature, FULL_TEMPERATURES))}, FID-10k, FID-1280 and a reconstruction FID "
                        "on the whole test split (default on CUDA). Without it: --sampler paper at the dataset's "
                        f"temperature ({', '.join(f'{k} {show_temperature(v)}' for k, v in TEMPERATURE.items())}, "
                        "measured best; "
                        "0.7 for the others, not measured), FID-2k, reconstruction FID on 2,000 images")
    e.add_argument("--fid-samples", type=COUNT0, help="samples for the headline FID (0 skips FID)")
    e.add_argument("--fid-real", type=POS_INT, help="real test images for FID statistics (default: the full test split)")
    e.add_argument("--recon-fid-samples", type=POS_INT,
                   help="test images whose reconstructions are scored by FID")
    e.add_argument("--sweep-samples", type=POS_INT, default=2000, help="samples per setting in a temperature sweep")
    e.add_argument("--temperatures", type=temperature, nargs="+",
                   help="sampling temperatures (> 0); START-END (e.g. 1.0-0.7) anneals it from the first "
                        "step to the last (paper sampler only); with one setting there is no sweep")
    e.add_argument("--sampler", choices=["paper", "maskgit", "both"],
                   help="paper: unmask w.p. 1/t over all steps; maskgit: confidence order; both: sweep both")
    e.add_argument("--maskgit-steps", type=POS_INT, default=12, help="steps of the MaskGIT sampler")
    e.add_argument("--calibrate", action=argparse.BooleanOptionalAction, default=None,
                   help="ours, not the paper: map decoded pixels through a monotone 256-level lookup table "
                        "fitted on training reconstructions (calibrate.py), so reconstructions and samples get the "
                        "data's intensity histogram; FIDs are reported with and without it. Elementwise, after the "
                        "decoder's output, no synaptic operation: the generator stays spiking. Default on, except "
                        "for the paper preset")
    e.add_argument("--calibrate-n", type=POS_INT, default=10000,
                   help="training images whose reconstructions fit the calibration table (default 10000)")
    e.add_argument("--energy-samples", type=COUNT0, default=100,
                   help="images for the energy estimate (reconstructed and generated; 0 skips it)")
    g = p.add_argument_group("overrides of the preset (both stages unless named)")
    g.add_argument("--T", type=POS_INT, help="SNN time steps")
    g.add_argument("--vq-T", type=POS_INT, help="SNN time steps of the VQ-SVAE only (wins over --T)")
    g.add_argument("--sdid-T", type=POS_INT, help="SNN time steps of the SDID only (wins over --T); the SDID sees "
                                                  "tokens, so its T need not match the VQ-SVAE's")
    g.add_argument("--batch-size", type=POS_INT, help="batch size")
    g.add_argument("--vq-batch-size", type=POS_INT,
                   help="batch size of the VQ-SVAE only (wins over --batch-size); the cpu preset's fmnist recipe "
                        f"sets {CPU_RECIPES['fmnist']['vq_batch_size']}: on 2 cores a small batch costs little more "
                        "per image and buys many more optimizer steps (benchmarks/README.md)")
    g.add_argument("--lr", type=POS_FLOAT, help="AdamW learning rate")
    g.add_argument("--vq-epochs", type=POS_FLOAT, help="VQ-SVAE epochs (fractions allowed)")
    g.add_argument("--sdid-epochs", type=POS_FLOAT, help="SDID epochs (fractions allowed)")
    g.add_argument("--train-minutes", type=number(float, 0, False, " (0 turns it off)"),
                   help="ours: a training budget; each stage without an --*-epochs flag trains for the epochs "
                        "that fill its share (--vq-share) at the step time measured on this machine before "
                        "training (a stage with a checkpoint in --out keeps its epochs). The cpu preset's "
                        "mnist and fmnist recipes set 50; 0 turns it off")
    g.add_argument("--vq-share", type=fraction,
                   help=f"ours: the VQ-SVAE's share of --train-minutes, the SDID gets the rest (default "
                        f"{VQ_SHARE:g}; the cpu preset's fmnist recipe sets {CPU_RECIPES['fmnist']['vq_share']:g}, "
                        "its tokenizer being the bound)")
    g.add_argument("--num-codes", type=number(int, 1), help="codebook size K (>= 2)")
    g.add_argument("--code-dim", type=POS_INT, help="VQ-SVAE codebook vector size D")
    g.add_argument("--width", type=POS_INT, help="VQ-SVAE encoder width (the decoder mirrors it)")
    g.add_argument("--mid-blocks", type=number(int, 0, False),
                   help="ours, not the paper: spiking 3x3 Conv-BN-LIF blocks added at the 7x7 token grid in the "
                        "VQ-SVAE's encoder and decoder, for wider context per token (0 = the paper)")
    g.add_argument("--dec-blocks", type=number(int, 0, False),
                   help="ours, not the paper: spiking 3x3 Conv-BN-LIF blocks added to the VQ-SVAE's decoder after "
                        "its first upsampling (14x14 for 28x28 images), each OR-joined with its input: more decoder "
                        "capacity (0 = the paper; 1 scored far worse: benchmarks/README.md)")
    g.add_argument("--recon-loss", choices=RECON_LOSSES,
                   help="ours, not the paper: the VQ-SVAE decoder's loss, mse (the paper, default) or l1 "
                        "(scored worse: benchmarks/README.md)")
    g.add_argument("--dilations", type=POS_INT, nargs=5, metavar="D",
                   help="ours, not the paper: the dilation of each of the SDID's five 3x3 blocks, e.g. 1 1 2 3 1 "
                        "for a wider view of the token grid with the same multiply-adds (default 1 1 1 1 1 = the paper)")
    g.add_argument("--adv-weight", type=number(float, 0, False),
                   help="ours, not the paper: weight of the VQ-SVAE's adversarial term from a training-only "
                        "critic (critic.py, VQGAN-style; 0 = off = the paper). The critic never runs when images are "
                        "generated, so the generator stays spiking")
    g.add_argument("--amp", choices=["on", "off"],
                   help="bf16 autocast for both stages (default: where the hardware has native bf16, "
                        "hardware.bf16_pays: CUDA with bf16, CPUs with AMX/AVX512-BF16, each stage uses bf16 where "
                        f"its training step measured at least {BF16_MIN_SPEEDUP}x faster here, as bf16 can cost "
                        "quality; fp32 elsewhere); an execution detail, not saved as part of the model")
    g.add_argument("--vq-amp", choices=["on", "off"], help="bf16 autocast of the VQ-SVAE only (wins over --amp)")
    g.add_argument("--sdid-amp", choices=["on", "off"], help="bf16 autocast of the SDID only (wins over --amp)")
    g.add_argument("--neuron", choices=["lif", "relu"], help="relu: the ANN twin, with T = 1 unless --T is given")
    p.set_defaults(native_bf16=None)     # run_all.run sets it from the device (with_recipe)
    args = p.parse_args(argv)
    if args.neuron == "relu" and args.T is None:
        args.T = 1
    return args


def with_recipe(args):
    """args with the cpu preset's recipe for its dataset filled in where no flag was given (a
    stage's own flag, or the flag for both stages: --T for vq_T and sdid_T, --amp for vq_amp,
    --batch-size for vq_batch_size). Where args.native_bf16 is False (run_all.run sets it from
    hardware.bf16_pays), FP32_RECIPES' entries win over CPU_RECIPES'; unset (None), the recipe is
    CPU_RECIPES'."""
    recipe = {}
    if args.preset == "cpu":
        fp32 = FP32_RECIPES.get(args.dataset, {}) if getattr(args, "native_bf16", None) is False else {}
        recipe = {**CPU_RECIPES.get(args.dataset, {}), **fp32}
    both = {"vq_T": "T", "sdid_T": "T", "vq_amp": "amp", "sdid_amp": "amp", "vq_batch_size": "batch_size"}
    return argparse.Namespace(**{**vars(args), **{k: v for k, v in recipe.items() if getattr(args, k) is None
                                                  and getattr(args, both.get(k, k)) is None}})


def amp_flags(args):
    """Per stage, the bf16 choice the flags and the recipe make: {"vq": (True/False/None, why), ...};
    None leaves it to run_all.choose_amp (measured where the hardware has native bf16)."""
    full, flags = with_recipe(args), {}
    for stage in ("vq", "sdid"):
        own, value = getattr(args, f"{stage}_amp"), getattr(full, f"{stage}_amp") or args.amp
        why = (f"--{stage}-amp" if own else "--amp" if args.amp else
               f"{FROM_RECIPE} {args.dataset}" if value else None)
        flags[stage] = (None if value is None else value == "on", why)
    return flags


def resolve_eval(args, device):
    """Fill the evaluation flags the user left out: FULL on CUDA or with --full-eval, else QUICK;
    --calibrate on except for the paper preset."""
    if args.full_eval is None:
        args.full_eval = device.type == "cuda"
    if args.calibrate is None:
        args.calibrate = args.preset != "paper"
    for k, v in (FULL if args.full_eval else {**QUICK, "temperatures": [TEMPERATURE.get(args.dataset, 0.7)]}).items():
        if getattr(args, k) is None:
            setattr(args, k, list(v) if isinstance(v, list) else v)
    return args


def fid_label(n):
    """'FID-2k' for 2,000 samples, 'FID-10k', 'FID-1280', 'FID-12': the sample count in the name."""
    return f"FID-{n // 1000}k" if n >= 1000 and n % 1000 == 0 else f"FID-{n}"

