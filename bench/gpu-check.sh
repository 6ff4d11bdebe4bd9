#!/usr/bin/env bash
# Checks the CUDA path: train, eval, score and sample with --device cuda, with the full
# softmax and the class output layer, and the CUDA sentence log-probabilities against
# the CPU's (max difference below 1e-3 nats); on 2 GPUs or more, 2 ranks summing in
# NCCL against one process.
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

# Ranks on GPUs sum their gradients in NCCL: 2 ranks on 2 GPUs against one process
# that takes both batches a step (--accumulate 2), every parameter within 1e-5.
gpus=$(nvidia-smi --list-gpus 2>/dev/null | wc -l)
if [ "$gpus" -ge 2 ]; then
  small=(--data "$WORK/data" --cell lstm --embed 64 --hidden 64 --layers 1 --dropout 0 --max-steps 20 --device cuda)
  "$ROOT/scale/ranks.sh" 2 29541 "$BIN" train "${small[@]}" --out "$WORK/nccl-two" 2>&1 | grep -E 'ranks|error' || true
  "$BIN" train "${small[@]}" --out "$WORK/nccl-one" --accumulate 2 2>&1 | grep -E 'error' || true
  python3 - "$WORK/nccl-two/last.safetensors" "$WORK/nccl-one/last.safetensors" <<'PY'
import sys
from safetensors.torch import load_file
a, b = load_file(sys.argv[1]), load_file(sys.argv[2])
gap = max(float((a[k] - b[k]).abs().max() / b[k].abs().max().clamp(min=1e-3)) for k in a)
print(f"NCCL, 2 ranks on 2 GPUs against --accumulate 2: largest relative difference {gap:.1e}")
sys.exit(gap > 1e-5)
PY
else
  echo "NCCL: $gpus GPU(s); 2 ranks need 2 GPUs (NCCL refuses two ranks on one), skipped"
fi
echo "gpu-check: passed"
