#!/usr/bin/env bash
# The project's GPU check: one script, one table. On a machine with an NVIDIA GPU and no network:
#   bash benchmarks/gpu_check.sh --wheels /path/to/wheels   (meant to take < 8 min; not yet timed)
# installs torch 2.13.0 and the package with its gpu extra (deepdrr) into .venv-gpu from that
# folder only, then runs, each timed: the GPU tests (pytest -m gpu), the DRR throughput benchmark
# on CUDA, benchmarks/paper_cost.py at the paper configuration's sizes (the trainers' bf16
# autocast and torch.compile steps as configured), and a synth3d generation at 256 x 256 x 128
# with its peak GPU memory. Writes benchmarks/out/gpu_check/table.md (a summary row per check,
# then each check's own table) and each check's log beside it.
# Make the wheel folder on a machine with network, for the GPU node's Python (3.11):
#   pip download -d wheels torch==2.13.0 setuptools wheel ".[workflow,dev,gpu]"
#   bash benchmarks/gpu_check.sh --device cpu                       (the test suite's run)
# runs the same checks in the current environment on the CPU at reduced sizes (the demo
# configuration, a 32^3 synth3d grid, 32 px DRRs), so the script is known to work before anyone
# spends GPU time on it.
set -uo pipefail
cd "$(dirname "$0")/.."
device=cuda
wheels=""
out=benchmarks/out/gpu_check
while [ $# -gt 0 ]; do
    case "$1" in
        --device) device=$2; shift 2 ;;
        --wheels) wheels=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        *) echo "error: $1: unknown option (--device cuda|cpu, --wheels DIR, --out DIR)" >&2; exit 2 ;;
    esac
done
if [ -n "$wheels" ]; then
    [ -d "$wheels" ] || { echo "error: $wheels: no such folder of wheels" >&2; exit 2; }
    [ -x .venv-gpu/bin/python ] || python3 -m venv .venv-gpu
    .venv-gpu/bin/pip install -q --no-index --find-links "$wheels" \
        "torch==2.13.0" -e ".[workflow,dev,gpu]" || { echo "error: $wheels: install failed" >&2; exit 1; }
    . .venv-gpu/bin/activate
fi
if [ "$device" = cuda ]; then
    paper=(--config config/deepfluoro.yaml)
    large=(--large 256 256 128)
    drr=(--rows 128 256 --views 32)
else
    paper=(--config config/config.yaml --steps 1)
    large=(--large 32 32 32)
    drr=(--ct ../shared/data/pelvis-ct/example_ct.nii.gz --rows 32 --views 2)
fi
mkdir -p "$out"
table="$out/table.md"
gpu=$(python -c "import torch; print(torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA device')")
{
    echo "# GPU check, $(date -u +%F), $gpu, device $device"
    echo
    echo "| check | status | seconds |"
    echo "| --- | --- | --- |"
} > "$table"
failed=0
names=()
check() {  # check NAME COMMAND...: run, time, log, add a row
    local name=$1 start=$SECONDS status=passed
    shift
    names+=("$name")
    echo "== $name" >&2
    if ! "$@" > "$out/$name.log" 2>&1; then
        status=FAILED
        failed=1
        tail -5 "$out/$name.log" >&2
    fi
    echo "| $name | $status | $((SECONDS - start)) |" >> "$table"
}
check gpu-tests python -m pytest -m gpu -rs -q -p no:cacheprovider tests
check drr-throughput python benchmarks/drr_throughput.py --device "$device" "${drr[@]}"
check paper-cost python benchmarks/paper_cost.py --device "$device" "${paper[@]}"
check synth3d-generation python benchmarks/synth3d_generation.py --device "$device" "${large[@]}"
for name in "${names[@]}"; do
    { echo; echo "## $name"; echo; echo '```'; grep -v "^\[" "$out/$name.log" | tail -40; echo '```'; } >> "$table"
done
cat "$table"
exit $failed
