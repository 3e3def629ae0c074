#!/usr/bin/env bash
# The learner tests again under every other OpenBLAS kernel this CPU can run, so a result
# that holds only for the kernel OpenBLAS happened to pick fails here on any machine.
set -euo pipefail
PY=${PY:-.venv/bin/python}
TESTS=(tests/unit/test_learners.py tests/unit/test_driftmoe_ht.py tests/unit/test_driftmoe_neural.py
       tests/unit/test_features.py tests/unit/test_river_adapter.py tests/unit/test_runtime_guarantees.py)
kernels=(Prescott)
grep -qw avx2 /proc/cpuinfo && kernels+=(Haswell)
grep -qw avx512f /proc/cpuinfo && kernels+=(SkylakeX)
# the main run already used the kernel in effect: skip it here
current=$("$PY" -c 'import numpy; from threadpoolctl import threadpool_info; print(next((i.get("architecture") or "" for i in threadpool_info() if i["internal_api"] == "openblas"), ""))')
for k in "${kernels[@]}"; do
  if [ "${k,,}" = "${current,,}" ]; then echo "== $k: the main run's kernel, done =="; continue; fi
  echo "== learner tests with OPENBLAS_CORETYPE=$k =="
  OPENBLAS_CORETYPE=$k "$PY" -m pytest -q -p no:cacheprovider "${TESTS[@]}" "$@"
done
