#!/usr/bin/env bash
# Issue 6 on a GPU machine: which tokenizer settings lift Fashion-MNIST, trained and scored in
# parallel (each variant is the cpu preset with the overrides named below, SDID 3.5 epochs, paper
# sampler, temperature sweep on 2,000 samples, FID-10k at the best one, reconstruction FID on the
# full test split). Issue 7 beside it: FID-10k of the plain vs the optimised path of the finished
# MNIST cpu run (benchmarks/fid_paths.py).
# Expects (travelling as ignored paths; the Inception file is split to fit the 64 MiB limit):
#   .devcarry/p1/part1 + .devcarry/p2/part2 = the TF-FID Inception weights default_1.pt
#   .devcarry/p2/fashion-mnist/t10k-*, .devcarry/p3/fashion-mnist/train-*
#   .devcarry/p3/mnist-sdid3.5/{vq.pt,sdid.pt}  (the MNIST run of figures/mnist-sdid3.5)
# Writes $OUT/ablation.tar.gz (results.json, figures and a log per variant) and $OUT/fid_paths.json.
set -uo pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
OUT=${OUT:-/tmp/out}; D=/tmp/data; W=/tmp/w
mkdir -p "$D/fashion-mnist" "$W" "/tmp/abl" /tmp/mnist-run
cp .devcarry/p2/fashion-mnist/* .devcarry/p3/fashion-mnist/* "$D/fashion-mnist/"
cp .devcarry/p3/mnist-sdid3.5/* /tmp/mnist-run/
cat "$W/part1" "$W/part2" > "$W/default_1.pt"   # carried in two earlier calls, kept in /tmp
sha256sum "$W/default_1.pt"   # 7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34
export SPIKEDIFF_INCEPTION=$W/default_1.pt
python -c "
from spikediff_min import fid
for ds, root in (('fmnist', '$D'), ('mnist', None)):
    fid.real_statistics(ds, root=root, device='cuda', progress=False)
    fid.real_statistics(ds, n=1280, root=root, device='cuda', progress=False)
print('real statistics cached')"
run() {   # name, then overrides of the cpu preset
  local name=$1; shift
  timeout "${LIMIT:-420}" python spikediff_min/run_all.py --device cuda --dataset fmnist --preset cpu \
    --sdid-epochs 3.5 --data-root "$D" --out "/tmp/runs/$name" --figures "/tmp/abl/$name" --sampler paper \
    --temperatures ${TEMPS:-0.5 0.6 0.7 0.8 0.9} --energy-samples 0 "$@" 2>&1 | tr '\r' '\n' | grep -v "it/s\]" \
    > "/tmp/abl/$name.log"
  echo "$name exit ${PIPESTATUS[0]}"
}
if [ "${ROUND:-1}" = 1 ]; then   # codebook size, VQ epochs, code size
  run k128-vq2.5 &
  run k512-vq2.5 --num-codes 512 &
  run k128-vq4.5 --vq-epochs 4.5 &
  run k512-vq4.5 --num-codes 512 --vq-epochs 4.5 &
  run k1024-vq4.5 --num-codes 1024 --vq-epochs 4.5 &
  run k512-vq4.5-d32 --num-codes 512 --vq-epochs 4.5 --code-dim 32 &
  run k512-vq4.5-sdid7 --num-codes 512 --vq-epochs 4.5 --sdid-epochs 7 &
  timeout "${LIMIT:-420}" python benchmarks/fid_paths.py --run /tmp/mnist-run --overrides '--sdid-epochs 3.5' --device cuda \
    --json "$OUT/fid_paths.json" 2>&1 | tr '\r' '\n' | grep -v "it/s\]" > "$OUT/fid_paths.log" &
  wait
  tail -n 3 "$OUT/fid_paths.log"
else   # round 2: longer VQ training at K = 128 (round 1's winner), fewer steps T, other K, width
  run k128-vq7-sdid3 --vq-epochs 7 --sdid-epochs 3 &
  run k128-vq10 --vq-epochs 10 &
  run t2-vq12-sdid6 --T 2 --vq-epochs 12 --sdid-epochs 6 &
  run k256-vq7-sdid3 --num-codes 256 --vq-epochs 7 --sdid-epochs 3 &
  run k64-vq7-sdid3 --num-codes 64 --vq-epochs 7 --sdid-epochs 3 &
  run w48-vq5-sdid3 --width 48 --vq-epochs 5 --sdid-epochs 3 &
  wait
  # the real test statistics, so a CPU evaluation skips their 10,000 Inception passes (split: 16 MiB per file)
  python -c "
import numpy as np, os
from spikediff_min import fid
b = open(os.path.join(fid.cache_dir_default(), 'fmnist_test_all.npz'), 'rb').read()
for i in range(0, len(b), 15_000_000):
    open('$OUT/fmnist_test_all.npz.%d' % (i // 15_000_000), 'wb').write(b[i:i + 15_000_000])"
fi
python - "/tmp/abl" <<'EOF'
import glob, json, os, sys
print(f"{'variant':18s} {'recon FID':>9s} {'MSE':>7s} {'SSIM':>6s} {'codes':>5s} {'temp':>5s} {'FID-10k':>8s} {'FID-1280':>8s} {'train s':>8s}")
for p in sorted(glob.glob(os.path.join(sys.argv[1], "*", "results.json"))):
    r = json.load(open(p)); rec = r["reconstruction"]
    secs = sum(v["seconds"] or 0 for v in r["training"].values())
    print(f"{os.path.basename(os.path.dirname(p)):18s} {rec.get('fid', float('nan')):9.2f} {rec['mse']:7.4f} "
          f"{rec['ssim']:6.3f} {rec['codes_used']:5d} {r.get('best_temperature', 0):5.2f} {r.get('fid', float('nan')):8.2f} "
          f"{r.get('fid_1280', float('nan')):8.2f} {secs:8.1f}")
    print("   sweep:", " ".join(f"{s['temperature']}:{s['fid']:.1f}" for s in r.get("sweep", [])))
EOF
tar czf "$OUT/ablation.tar.gz" -C /tmp abl && ls -la "$OUT"
