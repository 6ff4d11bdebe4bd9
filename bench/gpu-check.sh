#!/usr/bin/env bash
# Checks the CUDA path: train, eval, score and sample with --device cuda, with the full
# softmax and the class output layer, and the CUDA sentence log-probabilities against
# the CPU's (max difference below 1e-3 nats).
#   bash bench/gpu-check.sh [path/to/rnnlm]
set -euo pipefail
BIN=${1:-target/release/rnnlm}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/data"
cp "$ROOT/datasets/brown/train.txt" "$WORK/data/"
head -n 500 "$ROOT/datasets/brown/valid.txt" > "$WORK/data/valid.txt"
head -n 2000 "$ROOT/datasets/brown/test.txt" > "$WORK/test.txt"

nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
for run in lstm:full lstm:class gru:full rnn:full; do
  cell=${run%:*}; softmax=${run#*:}
  tie=""; [ "$cell" = lstm ] && tie="--tie"
  "$BIN" train --data "$WORK/data" --out "$WORK/$cell" --cell "$cell" --embed 256 --hidden 256 \
    --layers 2 $tie --softmax "$softmax" --epochs 1 --time-limit 30 --device cuda 2>&1 | grep -E 'epoch|device|cutoffs'
  "$BIN" eval --model "$WORK/$cell" --data "$WORK/test.txt" --device cuda
  "$BIN" score --model "$WORK/$cell" --format text --input "$WORK/test.txt" --output "$WORK/$cell.cuda.tsv" --device cuda
  "$BIN" score --model "$WORK/$cell" --format text --input "$WORK/test.txt" --output "$WORK/$cell.cpu.tsv" --device cpu
  "$BIN" sample --model "$WORK/$cell" --count 100 --max-len 50 --device cuda > /dev/null
  paste "$WORK/$cell.cuda.tsv" "$WORK/$cell.cpu.tsv" | awk -F'\t' -v cell="$cell $softmax" '
    NR > 1 { d = $1 - $7; if (d < 0) d = -d; if (d > worst) worst = d; n++ }
    END { printf "%s: %d sentences, max |cuda - cpu| = %.5f nats\n", cell, n, worst; exit (worst >= 1e-3) }'
  rm -rf "${WORK:?}/$cell"
done
echo "gpu-check: passed"
