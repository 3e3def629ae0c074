#!/usr/bin/env bash
# The GPU checks in one short run, for a machine with CUDA (a few minutes on an H100/H200):
#   1. the CUDA tests: CUDA-graph step against the eager step, torch step against numpy;
#   2. bench/throughput.py with its CUDA rows (K = 8, 32, 128 experts; micro-batch 256 and
#      4096; eager and CUDA graph) beside the CPU rows and River's ARF.
# Results go to $OUT (default bench/results/gpu): the table as text and one JSON object per row.
#
#   PYTHON=.venv/bin/python bash bench/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python}
out=${OUT:-bench/results/gpu}
mkdir -p "$out"
"$py" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA device: nothing to check")'
"$py" -m pytest -q -p no:cacheprovider tests/unit/test_driftmoe_neural.py -k "cuda or torch_engine" \
  2>&1 | tee "$out/tests.txt"
"$py" -m bench.throughput --n 20000 --arf-n 2000 --batch 256 4096 --repeats 3 --no-ht \
  --json "$out/throughput.jsonl" 2>&1 | tee "$out/throughput.txt"
