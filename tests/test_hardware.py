"""hardware.py: the bf16 decision follows the CPU flags, never an assumption."""
import torch

from spikediff_min import hardware


def _with_flags(monkeypatch, flags):
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset(flags))


def test_avx2_only_cpu_keeps_fp32(monkeypatch):
    _with_flags(monkeypatch, {"sse4_2", "avx", "avx2", "fma"})
    assert hardware.cpu_bf16_flags() == ()
    assert hardware.bf16_pays("cpu") is False
    assert "no native bf16 (AVX2," in hardware.describe("cpu")


def test_avx512_without_bf16_keeps_fp32_and_says_which_cpu(monkeypatch):
    # an Intel Xeon of 2026-12-07: AVX512F and VNNI, but neither AVX512-BF16 nor AMX
    _with_flags(monkeypatch, {"avx2", "avx512f", "avx512_vnni"})
    assert hardware.bf16_pays("cpu") is False
    assert "no native bf16 (AVX512F, no AVX512-BF16 or AMX)" in hardware.describe("cpu")


def test_avx512_bf16_or_amx_cpu_uses_bf16(monkeypatch):
    for flags in ({"avx2", "avx512f", "avx512_bf16"}, {"avx2", "amx_tile", "amx_bf16"}):
        _with_flags(monkeypatch, flags)
        assert hardware.bf16_pays("cpu") is True
        assert "bf16 autocast pays" in hardware.describe("cpu")


def test_mps_and_missing_cuda_never_bf16(monkeypatch):
    _with_flags(monkeypatch, {"avx512_bf16"})
    assert hardware.bf16_pays("mps") is False
    if not torch.cuda.is_available():
        assert hardware.bf16_pays("cuda") is False


def test_real_flags_parse_as_a_set():
    flags = hardware.cpu_flags()
    assert isinstance(flags, frozenset)
    assert all(" " not in f for f in flags)


def test_pick_amp_takes_bf16_only_when_clearly_faster(monkeypatch):
    from spikediff_min import plan
    from spikediff_min.sdid import config_from_preset
    cfg = config_from_preset("smoke")
    # fp32 takes 0.7 s/step each time; bf16 must be at least 1.2x faster (0.7 / 1.2 = 0.583)
    for bf16_s, want in ((0.5, True), (0.58, True), (0.6, False), (0.65, False), (0.9, False)):
        monkeypatch.setattr(plan, "train_step_seconds", lambda stage, c, shape, dev: bf16_s if c.amp else 0.7)
        amp, secs = plan.pick_amp("sdid", cfg, (1, 28, 28), "cpu")
        assert amp is want and secs == {"fp32": 0.7, "bf16": bf16_s}
    assert cfg.amp is False                                # the config passed in is not changed


def test_choose_amp_per_stage(monkeypatch):
    from spikediff_min import plan
    from spikediff_min.run_all import choose_amp
    from spikediff_min.sdid import config_from_preset as sdid_config
    from spikediff_min.vqsvae import config_from_preset as vq_config
    # native bf16, bf16 faster for the VQ-SVAE only (what an AVX512-BF16 Xeon without AMX measured)
    _with_flags(monkeypatch, {"avx512_bf16"})
    monkeypatch.setattr(plan, "train_step_seconds",
                        lambda stage, c, shape, dev: {"vq": (0.54, 0.42), "sdid": (0.62, 0.75)}[stage][c.amp])
    vq, sd, results = vq_config("smoke"), sdid_config("smoke"), {}
    measured = choose_amp(vq, sd, (1, 28, 28), "cpu", {}, results)
    assert (vq.amp, sd.amp) == (True, False) and measured == {"vq": 0.42, "sdid": 0.62}
    assert results["amp"]["sdid"]["s_per_step"] == {"fp32": 0.62, "bf16": 0.75}
    # a finished stage keeps the amp it trained with, untimed; the unfinished one is measured
    vq, sd, results = vq_config("smoke"), sdid_config("smoke"), {}
    assert choose_amp(vq, sd, (1, 28, 28), "cpu", {}, results, trained={"vq": False}) == {"sdid": 0.62}
    assert (vq.amp, sd.amp) == (False, False) and "finished" in results["amp"]["vq"]["why"]
    # a flag wins and nothing is measured; no native bf16: fp32, nothing measured
    monkeypatch.setattr(plan, "train_step_seconds", lambda *a: 1 / 0)
    for flag, flags, want in ((True, {"avx512_bf16"}, True), (False, {"avx512_bf16"}, False), (None, {"avx2"}, False)):
        _with_flags(monkeypatch, flags)
        vq, sd = vq_config("smoke"), sdid_config("smoke")
        stage_flags = {s: (flag, "--amp") for s in ("vq", "sdid")}
        assert choose_amp(vq, sd, (1, 28, 28), "cpu", stage_flags, {}) == {} and vq.amp is sd.amp is want
    # one stage fixed by its flag (or the recipe), the other measured
    _with_flags(monkeypatch, {"avx512_bf16"})
    monkeypatch.setattr(plan, "train_step_seconds", lambda stage, c, shape, dev: 0.2 if c.amp else 0.5)
    vq, sd, results = vq_config("smoke"), sdid_config("smoke"), {}
    assert choose_amp(vq, sd, (1, 28, 28), "cpu", {"vq": (False, "the cpu recipe for fmnist")}, results) == {"sdid": 0.2}
    assert (vq.amp, sd.amp) == (False, True) and results["amp"]["vq"]["why"] == "the cpu recipe for fmnist"
    # ... but a finished stage reports the amp it trained with (a run from before the recipe said fp32)
    vq, sd, results = vq_config("smoke"), sdid_config("smoke"), {}
    choose_amp(vq, sd, (1, 28, 28), "cpu", {"vq": (False, "the cpu recipe for fmnist")}, results, trained={"vq": True})
    assert vq.amp is True and "finished" in results["amp"]["vq"]["why"]


def test_amp_flags_stage_flag_then_recipe_then_amp():
    from spikediff_min import options
    flags = lambda *argv: options.amp_flags(options.parse_args(list(argv)))
    assert flags() == {"vq": (None, None), "sdid": (None, None)}                # measured by choose_amp
    assert flags("--dataset", "fmnist")["vq"] == (False, "the cpu recipe for fmnist")
    assert flags("--dataset", "fmnist")["sdid"] == (None, None)
    assert flags("--dataset", "fmnist", "--preset", "gpu")["vq"] == (None, None)  # recipes are the cpu preset's
    assert flags("--dataset", "fmnist", "--amp", "on") == {"vq": (True, "--amp"), "sdid": (True, "--amp")}
    assert flags("--dataset", "fmnist", "--amp", "off", "--vq-amp", "on")["vq"] == (True, "--vq-amp")
    assert flags("--sdid-amp", "off") == {"vq": (None, None), "sdid": (False, "--sdid-amp")}


def test_plan_of_a_finished_stage_counts_its_checkpoint_steps():
    # run_all loads only the 10,000-image test split once both stages are done: the plan must then
    # report the steps the checkpoint took (6093 here), not 13.02 epochs of that smaller stand-in
    from spikediff_min import options, plan
    from spikediff_min.run_all import configs
    args = options.resolve_eval(options.parse_args(["--fid-samples", "0"]), torch.device("cpu"))
    vq, sd = configs(args, 1)
    vq.epochs, sd.epochs = 13.02, 15.59
    rows = plan.stage_rows(args, vq, sd, (1, 28, 28), 10000, 10000,
                           {"vq": (6093, True), "sdid": (7296, True)}, "cpu")
    assert "13.02 epochs = 6093 steps" in rows[0][1] and "finished" in rows[0][1] and rows[0][2] == 0
    assert "15.59 epochs = 7296 steps" in rows[1][1]
