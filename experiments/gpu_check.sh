#!/usr/bin/env bash
# CUDA smoke check of lossaug (issues 13, 21): one PASS / FAIL / SKIP line per CUDA path, with its figures,
# everything as JSON under RESULTS_DIR/gpu_check.json. 200 s on one H200 (--budget 200: the checks' estimates add
# up to less); SKIP lines in a few seconds on a machine without CUDA.
#
#   bash experiments/gpu_check.sh ARCHIVE [RESULTS_DIR] [gpu_check.py options...]
#   bash experiments/gpu_check.sh data/cifar10-jpeg.tar.xz runs/gpu-check --only bench,resume_after_sigterm
#
# ARCHIVE is the JPEG CIFAR-10 archive, inside the checkout (the device machine cannot see ../shared): e.g.
# `mkdir -p data && cp ../shared/data/cifar10-jpeg.tar.xz data/` first. RESULTS_DIR defaults to runs/gpu-check/
# (ignored by git); on the device machine run experiments/gpu_session.sh instead, which keeps what comes back from
# $OUT small. The decoded data are cached in data/cache (ignored, kept between calls). The checkout's src/ comes
# first on PYTHONPATH, so lossaug need not be installed; PYTHON picks the interpreter (default python3).
# Exit status: 0 when nothing failed (a check cut off by the budget is a SKIP), 1 when a check failed, 2 on bad
# usage.
set -uo pipefail

if [[ $# -lt 1 || $1 == -h || $1 == --help ]]; then
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
archive=$1
results=${2:-runs/gpu-check}
shift $(($# >= 2 ? 2 : 1))

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
python=${PYTHON:-python3}
command -v "$python" >/dev/null 2>&1 || python=python
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

exec "$python" experiments/gpu_check.py --data "$archive" --results "$results" "$@"
