#!/usr/bin/env bash
# The GPU suite on a fresh machine with one GPU, in one command:
#
#   bash bench/gpu.sh                      # install into .venv-gpu, run every section, write gpu-results.md
#   bash bench/gpu.sh --sections sft,eval  # arguments after the options go to bench/gpu.py
#   bash bench/gpu.sh --dry-run            # print the install command, check the recipes; no GPU needed
#   bash bench/gpu.sh --check-install      # resolve the GPU install against PyPI without installing it
#
# It installs posttrain with its `gpu` extra (pyproject.toml: vllm, liger-kernel, bitsandbytes,
# in versions that resolve with posttrain's torch / transformers / TRL bounds; PyPI's CUDA build
# of torch) and, where it builds, flash-attn (optional: a failed build is reported and the
# flash-attention rows are skipped). Then bench/gpu.py runs the sections and writes the figures
# to one file (OUT, default gpu-results.md, and a .json beside it).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv-gpu}
OUT=${OUT:-gpu-results.md}
PYTHON=${PYTHON:-python3}
mode=run
if [ "${1:-}" = "--dry-run" ]; then mode=dry-run; shift; fi
if [ "${1:-}" = "--check-install" ]; then mode=check; shift; fi

install_command="$PYTHON -m venv $VENV && $VENV/bin/pip install -e '.[gpu]'"
flash_command="$VENV/bin/pip install flash-attn --no-build-isolation"

case "$mode" in
dry-run)
    echo "install: $install_command"
    echo "optional: $flash_command"
    echo "run: $VENV/bin/python bench/gpu.py --out $OUT $*"
    # the recipes, with whatever Python runs this (the project's .venv on a CPU machine)
    py=${DRY_RUN_PYTHON:-.venv/bin/python}
    [ -x "$py" ] || py=$PYTHON
    "$py" bench/gpu.py --dry-run "$@"
    ;;
check)
    "$PYTHON" -m venv "$VENV-check"
    "$VENV-check/bin/pip" install -q --upgrade pip
    "$VENV-check/bin/pip" install --dry-run --ignore-installed --quiet --report "$VENV-check/report.json" -e '.[gpu]'
    "$VENV-check/bin/python" - "$VENV-check/report.json" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
names = {"torch", "transformers", "trl", "vllm", "deepspeed", "peft", "liger-kernel", "bitsandbytes"}
chosen = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in report["install"]}
print("the GPU install resolves to: " + ", ".join(f"{n}=={chosen[n]}" for n in sorted(names) if n in chosen))
EOF
    ;;
run)
    if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
        echo "bench/gpu.sh: no GPU here (nvidia-smi finds none); try --dry-run" >&2
        exit 2
    fi
    [ -x "$VENV/bin/python" ] || eval "$install_command"
    "$VENV/bin/python" -c "import flash_attn" 2>/dev/null || eval "$flash_command" ||
        echo "bench/gpu.sh: flash-attn did not build; its rows are skipped" >&2
    nvidia-smi -L
    "$VENV/bin/python" bench/gpu.py --out "$OUT" "$@"
    ;;
esac
