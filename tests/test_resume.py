"""Issue 19: a run killed with SIGKILL in the middle of a stage continues with --resume from its
last periodic checkpoint (a real subprocess, synthetic KMNIST IDX files, no network)."""
import os
import re
import signal
import subprocess
import sys
import time

import torch

from test_faults import write_datasets

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "spikediff_min", "run_all.py")


def _logged_steps(path):
    """Steps of a checkpoint's logged history (0 if there is none yet); checkpoints are replaced
    atomically, so a read never sees a half-written file."""
    if not path.exists():
        return 0
    ck = torch.load(path, weights_only=True)
    return ck["step"] if ck["history"]["step"] else 0


def test_kill_9_mid_stage_resumes_from_the_periodic_checkpoint(tmp_path):
    write_datasets(tmp_path / "data", n_train=512, n_test=64)
    out = tmp_path / "run"
    cmd = [sys.executable, SCRIPT, "--preset", "smoke", "--dataset", "kmnist", "--data-root", str(tmp_path / "data"),
           "--out", str(out), "--fid-samples", "0", "--energy-samples", "0", "--vq-epochs", "100",
           "--ckpt-every-s", "0.5"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        # wait for a periodic checkpoint that holds logged history (every 10 steps), then kill -9
        while time.time() < deadline and proc.poll() is None and _logged_steps(out / "vq.pt") < 20:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    ck = torch.load(out / "vq.pt", weights_only=True)
    total = 100 * (512 // 64)
    assert not ck["done"] and 20 <= ck["step"] < total         # killed in the middle of the stage
    assert ck["history"]["loss"]                                 # with history to carry over
    r = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    m = re.search(r"VQ-SVAE: resuming from step (\d+) of (\d+)", r.stdout)
    assert m and (int(m.group(1)), int(m.group(2))) == (ck["step"], total)
    end = torch.load(out / "vq.pt", weights_only=True)
    assert end["done"] and end["step"] == total
    n = len(ck["history"]["step"])
    assert end["history"]["step"][:n] == ck["history"]["step"] and end["history"]["loss"][:n] == ck["history"]["loss"]
    assert torch.load(out / "sdid.pt", weights_only=True)["done"]
