#!/usr/bin/env bash
# Issue 13's GPU work in ONE device call: the CUDA smoke check, then the GPU protocol, within the device tool's
# 600 s per call. A lent machine has 15 minutes of device time in all (its start included) and goes back after
# 30 s idle, so a second call usually pays for a second start: one call with both, and what is left for a rerun.
#
#   bash experiments/gpu_session.sh ARCHIVE [CHECK_BUDGET] [PROTOCOL_BUDGET]
#   bash experiments/gpu_session.sh data/cifar10-jpeg.tar.xz 210 300        # the defaults: at most ~550 s
#   bash experiments/gpu_session.sh --rehearse                              # on the CPU: toy sizes, minutes
#
# 1. experiments/gpu_check.sh ARCHIVE $OUT/check --budget CHECK_BUDGET (seconds, default 210): one PASS / FAIL /
#    SKIP line per CUDA path, $OUT/check/gpu_check.json.
# 2. experiments/gpu_protocol.py --data ARCHIVE --budget PROTOCOL_BUDGET (default 300) under `timeout -s TERM`
#    (budget + 40 s): paired seeds of gpu-fast-A.toml until the budget is spent, written straight to
#    $OUT/gpu-fast-A (record and summary rewritten after every finished seed, whose checkpoints are then deleted),
#    so a call killed at its limit still brings back every finished seed.
# --rehearse runs both on the CPU (gpu_check.py --rehearse; gpu_protocol.py --tiny, 3 seeds in 90 s at most).
# OUT defaults to runs/gpu-session. Exit status: 0 when both passed, else the first failure's (2: bad usage).
set -uo pipefail

if [[ $# -lt 1 || $1 == -h || $1 == --help ]]; then
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
out=${OUT:-runs/gpu-session}
mkdir -p "$out" || exit 2
python=${PYTHON:-python3}
command -v "$python" >/dev/null 2>&1 || python=python
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 PYTHON=$python

if [[ $1 == --rehearse ]]; then
    check=(bash experiments/gpu_check.sh unused "$out/check" --rehearse --cache-dir "$out/cache")
    protocol_budget=90
    protocol=("$python" experiments/gpu_protocol.py --tiny --budget "$protocol_budget" --max-seeds 3
        --out "$out/gpu-protocol-tiny")
else
    archive=$1 check_budget=${2:-210} protocol_budget=${3:-300}
    if [[ ! -f $archive ]]; then
        echo "gpu_session: data archive $archive not found (copy it into the checkout's data/ folder first)" >&2
        exit 2
    fi
    check=(bash experiments/gpu_check.sh "$archive" "$out/check" --budget "$check_budget")
    protocol=("$python" experiments/gpu_protocol.py --data "$archive" --budget "$protocol_budget"
        --out "$out/gpu-fast-A")
fi

started=$SECONDS
echo "== gpu_check ($(date -u +%H:%M:%S))"
"${check[@]}" 2>&1 | tee "$out/check.log"
check_rc=${PIPESTATUS[0]}
echo "== gpu_protocol after $((SECONDS - started)) s ($(date -u +%H:%M:%S))"
timeout -s TERM $((protocol_budget + 40)) "${protocol[@]}" 2>&1 | tee "$out/protocol.log"
protocol_rc=${PIPESTATUS[0]}
echo "== gpu_session: gpu_check exit $check_rc, gpu_protocol exit $protocol_rc, $((SECONDS - started)) s"
((check_rc != 0)) && exit "$check_rc"
exit "$protocol_rc"
