#!/usr/bin/env bash
# The side virtual environment for benchmarks/trace_vs_circuit_tracer.py: circuit-tracer pins transformers <= 4.57
# and its own nnsight, so it can never be a dependency of ours; it runs here, in its own venv, and the benchmark
# compares the files both sides write.
#
#     bash benchmarks/make_circuit_tracer_venv.sh [VENV]     # default: benchmarks/.circuit-tracer-venv
set -euo pipefail
venv="${1:-$(dirname "$0")/.circuit-tracer-venv}"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet torch==2.13.0          # the CPU build (a looser spec pulls CUDA's)
# circuit-tracer 0.5.0 does not pin nnsight, and nnsight 0.8 moved the tracer it imports; its repository pins 0.6.1.
"$venv/bin/pip" install --quiet "circuit-tracer==0.5.0" "nnsight==0.6.1"
"$venv/bin/python" -c "import circuit_tracer, transformers; print('circuit-tracer', circuit_tracer.__file__, 'transformers', transformers.__version__)"
