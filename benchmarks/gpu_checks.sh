#!/usr/bin/env bash
# The GPU checks as one prepared run, for a machine with Python 3.12, a CUDA torch and transformers but no
# nnsight (carried as wheels in build/gpu-wheels; see benchmarks/README.md):
#   1. benchmarks/gpu.py on a random Llama-3-8B-shaped model in bf16 (timings against bare HF, peak memory);
#   2. benchmarks/device_check.py (no host sync per edit, edits cast once, SAE/GCG/probe on the device);
#   3. the unit tests on the device (`pytest --device cuda --backend nnsight`; TransformerLens and sae-lens
#      are not installed there, so the TL backend and the SAE tests are left out).
# Results go to $OUT (default benchmarks/results). Dry run on CPU: SHAPE=tiny DEVICE=cpu PYTHON=.venv/bin/python bash benchmarks/gpu_checks.sh
set -u
PY=${PYTHON:-python3}
OUT=${OUT:-benchmarks/results}
SHAPE=${SHAPE:-8b}
DEVICE=${DEVICE:-cuda}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
if ls build/gpu-wheels/*.whl >/dev/null 2>&1 && ! "$PY" -c "import nnsight" 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/steerlab-site build/gpu-wheels/*.whl
  export PYTHONPATH=/tmp/steerlab-site:$PWD
fi
{ command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  "$PY" -c "import sys, torch, transformers, nnsight; print(sys.version.split()[0], torch.__version__, \
transformers.__version__, nnsight.__version__)"; } 2>&1 | tee "$OUT/gpu_env.txt"
timeout 230 "$PY" benchmarks/gpu.py --shape "$SHAPE" --device "$DEVICE" --out "$OUT/gpu-$SHAPE.json" 2>&1 \
  | tee "$OUT/gpu-$SHAPE.txt"
timeout 80 "$PY" benchmarks/device_check.py --device "$DEVICE" 2>&1 | tee "$OUT/device_check.txt"
timeout 150 "$PY" -m pytest -q -p no:cacheprovider --device "$DEVICE" --backend nnsight -m "not slow" \
  tests/test_backends.py tests/test_interventions.py tests/test_architectures.py tests/test_tasks.py \
  tests/test_sweeps.py tests/test_extraction.py tests/test_metrics.py tests/test_vectors.py tests/test_scale.py \
  tests/test_bipo.py tests/test_methods_linear.py tests/test_robustness_adversarial.py tests/test_robustness_ood.py \
  tests/test_models.py::test_nnsight_leaves_the_model_where_it_was_put 2>&1 | tee "$OUT/pytest_$DEVICE.txt"
