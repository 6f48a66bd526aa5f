#!/usr/bin/env bash
# Create (or update) the CPU virtual environment .venv in the repository root.
#   bash envs/setup.sh        -> package + Snakemake (enough to run the workflow)
#   bash envs/setup.sh dev    -> the same plus pytest, ruff, snakefmt
# torch is installed first and pinned: an unpinned torch pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="workflow"
[ "${1:-}" = "dev" ] && extras="workflow,dev"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==${XRAYFACTORY_TORCH:-2.13.0}"
.venv/bin/python -m pip install -q -e ".[${extras}]"
echo "environment ready: . .venv/bin/activate"
