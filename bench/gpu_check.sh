#!/usr/bin/env bash
# The GPU readiness check (bench/gpu_check.py): one command, at most five minutes, the report
# written section by section to $OUT (the device tool's folder) or bench/.cache/gpu_check/.
#
#   bash bench/gpu_check.sh --prepare   # here, once: wheels and the tokenizer into .gpu/ (git-ignored)
#   bash bench/gpu_check.sh             # on a bare GPU machine (carry .gpu), or here: the CPU subset
#
# On a machine with the project's venv (.venv) it runs there. Elsewhere (a lent GPU: Python 3.12
# with torch, transformers and accelerate, but no prefcurate, duckdb, prefect, datasets or pydantic)
# the carried wheels go to a folder of their own, and the package is laid out as it installs (each
# root folder where its import name puts it) in a scratch folder the check runs from.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
REPORT=${OUT:-$ROOT/bench/.cache/gpu_check}
BUDGET_S=${GPU_CHECK_BUDGET_S:-290}
started=$(date +%s)

if [ "${1:-}" = "--prepare" ]; then
    exec .venv/bin/python bench/gpu_prepare.py
fi

if [ -x .venv/bin/python ] && [ -z "${GPU_CHECK_PYTHON:-}" ]; then
    PY=$ROOT/.venv/bin/python
    RUN_DIR=$ROOT
else
    PY=${GPU_CHECK_PYTHON:-python3}  # GPU_CHECK_PYTHON: try the bare-machine path with another Python
    SCRATCH=${TMPDIR:-/tmp}/prefcurate-gpu-check
    rm -rf "$SCRATCH" && mkdir -p "$SCRATCH/site"
    if compgen -G ".gpu/wheels/*.whl" >/dev/null; then
        $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SCRATCH/site" .gpu/wheels/*.whl \
            || { echo "gpu_check: the carried wheels did not install" >&2; exit 1; }
    else
        echo "gpu_check: no .gpu/wheels here: run 'bash bench/gpu_check.sh --prepare' where the venv is, and carry .gpu" >&2
    fi
    $PY scripts/installed_tree.py "$SCRATCH/tree" --with tests bench
    export PYTHONPATH="$SCRATCH/tree:$SCRATCH/site${PYTHONPATH:+:$PYTHONPATH}"
    RUN_DIR=$SCRATCH/tree
fi
[ -d "$ROOT/.gpu/tokenizer" ] && export PREFCURATE_TOKENIZER_DIR="$ROOT/.gpu/tokenizer"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

left=$(( BUDGET_S - ($(date +%s) - started) ))
cd "$RUN_DIR" && exec timeout --kill-after=10 $(( left + 10 )) "$PY" bench/gpu_check.py --report "$REPORT" --budget-s "$left"
