#!/usr/bin/env bash
# Every GPU speed measurement in one call: ceilings, backprop methods, occlusion and the mask
# beside their peers, a real run end to end, with the targets of docs/PERFORMANCE.md §1 as
# pass/fail (perf/README.md).
#
#   bash perf/gpu.sh                        # --device cuda, under 8 minutes
#   bash perf/gpu.sh --out-dir "$OUT"       # results where the caller collects them
#   bash perf/gpu.sh --device cpu --tiny    # every section in seconds (the tests)
#
# Works from a source checkout without installing the package: the repository root goes on
# PYTHONPATH and the built-in methods are registered from methods/ (bench_common.load_builtins).
# Options: python perf/bench_gpu.py --help.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
cd "$root"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
python="${PYTHON:-$(command -v python3 || command -v python)}"
exec "$python" "$here/bench_gpu.py" "$@"
