#!/usr/bin/env bash
# The project's GPU check: one script, one table (meant to take < 8 min). Two ways to run it on
# a machine with an NVIDIA GPU and no network:
#   bash benchmarks/gpu_check.sh --wheels DIR     a bare GPU node: installs torch 2.13.0 and the
#       package with its gpu extra (deepdrr) into .venv-gpu from DIR only, made where there is
#       network for the node's Python: pip download -d DIR torch==2.13.0 setuptools wheel ".[workflow,dev,gpu]"
#   bash benchmarks/gpu_check.sh --bundle DIR     python3 already holds a CUDA torch (a lent
#       machine with its own PyTorch): installs DIR/wheels without their dependencies into a
#       folder on PYTHONPATH, reads X-ray spectra from DIR/cache and runs the package from this
#       checkout; DIR made by benchmarks/gpu_bundle.py (no deepdrr: its stack is too large)
# Then it runs, each timed and stopped after --limit seconds (default 120; twice that for the
# GPU tests, which compile and train networks): the GPU tests (pytest -m gpu), the DRR
# throughput benchmark on CUDA, benchmarks/paper_cost.py at the paper configuration's sizes
# (the trainers' bf16 autocast and torch.compile steps as configured), and a synth3d
# generation at 256 x 256 x 128 with its peak GPU memory. Writes
# benchmarks/out/gpu_check/table.md (a summary row per check, then each check's own table) and
# each check's log beside it. --shared DIR: the shared data folder (default ../shared; the demo CT).
#   bash benchmarks/gpu_check.sh --device cpu     (the test suite's run)
# runs the same checks in the current environment on the CPU at reduced sizes (the demo
# configuration, a 32^3 synth3d grid, 32 px DRRs), so the script is known to work before anyone
# spends GPU time on it.
set -uo pipefail
cd "$(dirname "$0")/.."
device=cuda
wheels=""
bundle=""
shared=../shared
limit=""
out=benchmarks/out/gpu_check
usage="--device cuda|cpu, --wheels DIR, --bundle DIR, --shared DIR, --limit S, --out DIR"
while [ $# -gt 0 ]; do
    case "$1" in
        --device) device=$2; shift 2 ;;
        --wheels) wheels=$2; shift 2 ;;
        --bundle) bundle=$2; shift 2 ;;
        --shared) shared=$2; shift 2 ;;
        --limit) limit=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        *) echo "error: $1: unknown option ($usage)" >&2; exit 2 ;;
    esac
done
for dir in $wheels ${bundle:+$bundle/wheels}; do
    [ -d "$dir" ] || { echo "error: $dir: no such folder of wheels" >&2; exit 2; }
done
ct="$shared/data/pelvis-ct/example_ct.nii.gz"
[ -f "$ct" ] || { echo "error: $shared: no demo CT at $ct (--shared DIR)" >&2; exit 2; }
if [ -n "$wheels" ]; then
    [ -x .venv-gpu/bin/python ] || python3 -m venv .venv-gpu
    .venv-gpu/bin/pip install -q --no-index --find-links "$wheels" \
        "torch==2.13.0" -e ".[workflow,dev,gpu]" || { echo "error: $wheels: install failed" >&2; exit 1; }
    . .venv-gpu/bin/activate
fi
if [ -n "$bundle" ]; then
    site="${TMPDIR:-/tmp}/xrayfactory-gpu-site"
    rm -rf "$site"
    python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" "$bundle"/wheels/*.whl \
        || { echo "error: $bundle: install failed" >&2; exit 1; }
    export PYTHONPATH="$PWD/workflow:$site${PYTHONPATH:+:$PYTHONPATH}"
    export XRAYFACTORY_CACHE="$bundle/cache"
fi
export XRAYFACTORY_SHARED="$shared"
if [ "$device" = cuda ]; then
    paper=(--config config/deepfluoro.yaml --steps 20)
    large=(--large 256 256 128)
    drr=(--rows 128 256 --views 32)
    limit=${limit:-120}
    test_limit=$((2 * limit))  # the tests compile networks (torch.compile) and train
else
    paper=(--config config/config.yaml --steps 1)
    large=(--large 32 32 32)
    drr=(--ct "$ct" --rows 32 --views 2)
    limit=${limit:-900}
    test_limit=$limit
fi
mkdir -p "$out"
table="$out/table.md"
gpu=$(python3 -c "import torch; print(torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA device', end=f', torch {torch.__version__}')")
{
    echo "# GPU check, $(date -u +%F), $gpu, device $device"
    echo
    echo "| check | status | seconds |"
    echo "| --- | --- | --- |"
} > "$table"
failed=0
names=()
check() {  # check NAME LIMIT COMMAND...: run (at most LIMIT s), time, log, add a row
    local name=$1 most=$2 start=$SECONDS status=passed rc=0
    shift 2
    names+=("$name")
    echo "== $name" >&2
    timeout "$most" "$@" > "$out/$name.log" 2>&1 || rc=$?
    if [ "$rc" = 124 ]; then
        status="STOPPED after $most s"
    elif [ "$rc" != 0 ]; then
        status=FAILED
    fi
    if [ "$rc" != 0 ]; then
        failed=1
        tail -5 "$out/$name.log" >&2
    fi
    echo "| $name | $status | $((SECONDS - start)) |" >> "$table"
}
mapfile -t gpu_tests < <(grep -rl "pytest.mark.gpu" tests | sort)
check gpu-tests "$test_limit" python3 -m pytest -m gpu -v -rs --tb=short --durations=0 \
    -p no:cacheprovider "${gpu_tests[@]}"
check drr-throughput "$limit" python3 benchmarks/drr_throughput.py --device "$device" "${drr[@]}"
check paper-cost "$limit" python3 benchmarks/paper_cost.py --device "$device" "${paper[@]}"
check synth3d-generation "$limit" python3 benchmarks/synth3d_generation.py --device "$device" "${large[@]}"
for name in "${names[@]}"; do
    { echo; echo "## $name"; echo; echo '```'; grep -v "^\[" "$out/$name.log" | tail -40; echo '```'; } >> "$table"
done
cat "$table"
exit $failed
