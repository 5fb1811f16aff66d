#!/usr/bin/env bash
# Run pre-registered compare protocols (experiments/protocols/*.toml), one after another, from the repository root
# (the protocols' paths are relative to it). Each writes OUT/summary.md, summary.json and forest.png, and a copy of
# itself as OUT/protocol.toml. Re-running resumes: finished runs are read back, interrupted ones continue from their
# checkpoint, and the cost ratio measured by the first run (OUT/cost_ratio.json) is kept.
# Usage: experiments/run_protocols.sh [PROTOCOL.toml ...]
#   default: cpu-branch-A, cpu-start-A, cpu-branch-B (issue 12's order: protocol 1 must finish first)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$#" -eq 0 ]; then
  set -- experiments/protocols/cpu-branch-A.toml experiments/protocols/cpu-start-A.toml \
    experiments/protocols/cpu-branch-B.toml
fi
for protocol in "$@"; do
  echo "== lossaug compare --protocol $protocol" >&2
  lossaug compare --protocol "$protocol"
done
