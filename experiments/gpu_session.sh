#!/usr/bin/env bash
# The GPU work of issues 13 and 21 in ONE device call: the CUDA check, then the GPU protocol, within the tool's
# 600 s per call, keeping in $OUT only what can come back whole (at most 8 files of 16 MiB, names [A-Za-z0-9._-]).
#
#   bash experiments/gpu_session.sh --prepare [ARCHIVE]                       # here, before the call
#   bash experiments/gpu_session.sh ARCHIVE [CHECK_BUDGET] [PROTOCOL_BUDGET]  # on the device: defaults 200 300
#   bash experiments/gpu_session.sh --rehearse [CHECK_BUDGET] [PROTOCOL_BUDGET]   # on the CPU: defaults 120 90
#
# --prepare writes .git_commit (the commit and whether the tree is dirty: the copy on the device has no .git) and
# prints the device call with its carry list. The session runs experiments/gpu_check.py (--budget CHECK_BUDGET),
# then experiments/gpu_protocol.py (--budget PROTOCOL_BUDGET) on the protocol file PROTOCOL (default: issue 20's
# experiments/protocols/gpu-frontier-A.toml; experiments/protocols/gpu-fast-A.toml is issue 13's three arms), each
# under `timeout -k` (budget + 15 s and + 30 s).
# Run directories, checkpoints and the data cache stay in WORK (default runs/gpu-session), outside $OUT. A loop
# refreshes $OUT every REFRESH seconds (15) and once more at the end, each file written beside and renamed, so a
# kill at any moment returns everything finished:
#   gpu_check.json, check.log       the check's record, the last 256 KiB of its output
#   gpu_record.json, protocol.log   the protocol's record (card, torch, commit, seeds), the last 256 KiB of its output
#   summary.json, summary.md        the endpoints of the finished seeds
#   results.tar.gz                  WORK's small files: bench.json and every run's config, metrics and final JSON,
#                                   the protocol's cost_ratio.json, protocol.toml, forest.png and frontier.png; no
#                                   checkpoint
# --rehearse does the same on the CPU (gpu_check.py --rehearse; gpu_protocol.py --tiny, 3 seeds at most) in WORK
# runs/gpu-rehearsal. OUT defaults to WORK/out. Exit status: 0 when nothing failed (a budget's end is a SKIP), 1 when
# a check or the protocol failed, 2 on bad usage or when a part refused its input (e.g. no CUDA).
set -uo pipefail

if [[ $# -lt 1 || $1 == -h || $1 == --help ]]; then
    sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0" # the comment above
    exit 2
fi
[[ -n ${OUT:-} ]] && OUT=$(realpath -m "$OUT") # relative to where it was called; ARCHIVE is relative to the checkout
[[ -n ${WORK:-} ]] && WORK=$(realpath -m "$WORK")
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
fail() {
    echo "gpu_session: $*" >&2
    exit 2
}

if [[ $1 == --prepare ]]; then
    archive=${2:-data/cifar10-jpeg.tar.xz}
    [[ -f $archive ]] || fail "data archive $archive not found (mkdir -p data && cp ../shared/data/cifar10-jpeg.tar.xz data/)"
    commit=$(git rev-parse HEAD 2>/dev/null) || fail "--prepare reads the commit from git: run it in the checkout"
    state=clean
    git diff --quiet HEAD -- || state=dirty
    echo "$commit $state" >.git_commit
    echo "wrote .git_commit ($commit $state); the device call:"
    echo "run(carry=[\"$archive\", \".git_commit\"], timeout_s=600, command=\"bash experiments/gpu_session.sh $archive\")"
    exit 0
fi

rehearse=false
[[ $1 == --rehearse ]] && rehearse=true
if $rehearse; then
    check_budget=${2:-120} protocol_budget=${3:-90} work=${WORK:-runs/gpu-rehearsal}
else
    archive=$1 check_budget=${2:-200} protocol_budget=${3:-300} work=${WORK:-runs/gpu-session}
    [[ -f $archive ]] || fail "data archive $archive not found (copy it into the checkout's data/ folder first)"
fi
for budget in "$check_budget" "$protocol_budget"; do
    [[ $budget =~ ^[1-9][0-9]*$ ]] || fail "budgets are whole seconds > 0, got '$budget'"
done
refresh_every=${REFRESH:-15}
[[ $refresh_every =~ ^[1-9][0-9]*$ ]] || fail "REFRESH is whole seconds > 0, got '$refresh_every'"
out=$(realpath -m "${OUT:-$work/out}") work=$(realpath -m "$work")
[[ $work/ == "$out"/* ]] && fail "WORK ($work) must lie outside OUT ($out): what is under OUT comes back"
mkdir -p "$work" "$out" || fail "cannot create $work or $out"
protocol_file=${PROTOCOL:-experiments/protocols/gpu-frontier-A.toml}
[[ -f $protocol_file ]] || fail "PROTOCOL $protocol_file not found"
python=${PYTHON:-python3}
command -v "$python" >/dev/null 2>&1 || python=python
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 PYTHON=$python
if [[ ! -e .git && -z ${LOSSAUG_GIT_COMMIT:-} && ! -s .git_commit ]]; then
    echo "gpu_session: no .git, LOSSAUG_GIT_COMMIT or .git_commit: the records will say git_commit null" \
        "(run --prepare in the checkout and carry .git_commit)" >&2
fi

if $rehearse; then
    protocol_name=gpu-protocol-tiny
    rm -rf "${work:?}/$protocol_name" # a rehearsal of a fresh call, not the continuation of an earlier one
    check=("$python" experiments/gpu_check.py --rehearse --budget "$check_budget" --results "$work/check"
        --cache-dir "$work/cache")
    protocol=("$python" experiments/gpu_protocol.py --protocol "$protocol_file" --tiny --budget "$protocol_budget"
        --max-seeds 3 --out "$work/$protocol_name")
else
    protocol_name=$(basename "$protocol_file" .toml) # an unfinished run left here by an earlier call continues
    check=("$python" experiments/gpu_check.py --data "$archive" --budget "$check_budget" --results "$work/check")
    protocol=("$python" experiments/gpu_protocol.py --protocol "$protocol_file" --data "$archive"
        --budget "$protocol_budget" --out "$work/$protocol_name")
fi

# ---------------------------------------------------------------- what comes back

put() { # put SOURCE NAME: a whole copy of SOURCE as $out/NAME, if SOURCE exists
    [[ -f $1 ]] || return 0
    cp -f "$1" "$out/$2.tmp" && mv -f "$out/$2.tmp" "$out/$2"
}
put_tail() { # put_tail LOG NAME: its last 256 KiB
    [[ -f $1 ]] || return 0
    tail -c 262144 "$1" >"$out/$2.tmp" && mv -f "$out/$2.tmp" "$out/$2"
}
pack() { # WORK's small result files, never a checkpoint or the cache, as $out/results.tar.gz (kept under 15 MiB)
    (cd "$work" && find check "$protocol_name" -type f -size -4M \( -name '*.json' -o -name '*.jsonl' \
        -o -name '*.md' -o -name '*.toml' -o -name forest.png -o -name frontier.png \) 2>/dev/null |
        sort) >"$work/pack.list"
    tar -czf "$out/results.tar.gz.tmp" -C "$work" --ignore-failed-read -T "$work/pack.list" 2>/dev/null
    if (($? <= 1)) && [[ -f $out/results.tar.gz.tmp ]] && (($(stat -c %s "$out/results.tar.gz.tmp") < 15 * 1024 * 1024)); then
        mv -f "$out/results.tar.gz.tmp" "$out/results.tar.gz" # exit 1: a file changed while read; the next pass has it
    else
        rm -f "$out/results.tar.gz.tmp"
    fi
}
refresh() {
    put "$work/check/gpu_check.json" gpu_check.json
    put_tail "$work/check.log" check.log
    put "$work/$protocol_name/gpu_record.json" gpu_record.json
    put "$work/$protocol_name/summary.json" summary.json
    put "$work/$protocol_name/summary.md" summary.md
    put_tail "$work/protocol.log" protocol.log
    pack
}

( # on TERM: the refresh in progress ends first (bash runs the trap after it), a sleep is cut short
    trap 'kill "$nap" 2>/dev/null; exit 0' TERM
    while true; do
        sleep "$refresh_every" &
        nap=$!
        wait "$nap"
        refresh
    done
) &
refresher=$!
trap 'kill "$refresher" 2>/dev/null' EXIT

# ---------------------------------------------------------------- the two parts

meaning() { # meaning NAME EXIT: ok, skip (a budget's end), refused (bad input) or failed
    case $2 in
    0) echo ok ;;
    124 | 137) echo "skip (deadline: killed by timeout)" ;;
    3) [[ $1 == gpu_protocol ]] && echo "skip (deadline: no seed finished in the budget)" || echo failed ;;
    2) echo refused ;;
    *) echo failed ;;
    esac
}

started=$SECONDS
echo "== gpu_check, ${check_budget} s ($(date -u +%H:%M:%S)); WORK $work, OUT $out"
timeout -k 5 -s TERM $((check_budget + 15)) "${check[@]}" 2>&1 | tee "$work/check.log"
check_rc=${PIPESTATUS[0]}
refresh
echo "== gpu_protocol, ${protocol_budget} s, after $((SECONDS - started)) s ($(date -u +%H:%M:%S))"
timeout -k 10 -s TERM $((protocol_budget + 30)) "${protocol[@]}" 2>&1 | tee "$work/protocol.log"
protocol_rc=${PIPESTATUS[0]}
kill "$refresher" 2>/dev/null
wait "$refresher" 2>/dev/null
refresh
check_says=$(meaning gpu_check "$check_rc") protocol_says=$(meaning gpu_protocol "$protocol_rc")
echo "== gpu_session: gpu_check exit $check_rc ($check_says), gpu_protocol exit $protocol_rc ($protocol_says)," \
    "$((SECONDS - started)) s; $out: $(cd "$out" && echo *)"
[[ $check_says == failed || $protocol_says == failed ]] && exit 1
[[ $check_says == refused || $protocol_says == refused ]] && exit 2
exit 0
