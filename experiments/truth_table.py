"""Issue 29's ground truth read across its six folds (one held-out speaker each): per fold, each arm against the
baseline curve at its compute (lossaug compare's equal-compute endpoint) and the weighting's own share
(weighted-equal-time - weighted-uniform-equal-time), mean ± 95% t half-width in points, verdict and n, as committed
in docs/results/advise/truth/<speaker>/summary.json; then, exploratory (not pre-registered), the per-seed
differences of all finished folds pooled (n = 8 per fold, a 95% t-interval over the pooled pairs, whose spread
includes the folds' differences). Writes truth.md beside them; folds without a summary are listed as not run yet.

    python experiments/truth_table.py [--root docs/results/advise/truth]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lossaug.compare import stats

ARMS = ("proposed", "gated", "weighted-equal-time", "weighted-uniform-equal-time")
SHARE = "weighted-equal-time - weighted-uniform-equal-time"


def _cell(entry: dict | None) -> str:
    if not entry or entry.get("mean") is None:
        return "-" if not entry else entry.get("verdict", "-")
    return f"{100 * entry['mean']:+.2f} ± {100 * entry['half_width']:.2f} {entry['verdict']} (n {entry['n']})"


def fold_cells(summary: dict, setting: str = "A") -> list[str]:
    """The row of one fold: each arm against the curve, then the weighting's share."""
    equal = summary.get("equal_compute", {}).get(setting, {})
    share = summary.get("endpoints", {}).get(setting, {}).get(SHARE)
    return [_cell(equal.get(arm)) for arm in ARMS] + [_cell(share)]


def _per_seed(summary: dict, setting: str = "A") -> list[dict | None]:
    """Each column's per-seed differences in one fold (None where the fold has none)."""
    equal = summary.get("equal_compute", {}).get(setting, {})
    share = summary.get("endpoints", {}).get(setting, {}).get(SHARE)
    return [equal.get(arm, {}).get("per_seed") for arm in ARMS] + [share and share.get("per_seed")]


def pooled_cells(summaries: list[dict], margin: float = 0.01) -> list[str]:
    """Each column's differences of every fold pooled: mean ± 95% t half-width, verdict against ±``margin``, n."""
    columns: list[list[float]] = [[] for _ in range(len(ARMS) + 1)]
    for summary in summaries:
        for column, per_seed in zip(columns, _per_seed(summary), strict=True):
            column.extend((per_seed or {}).values())
    cells = []
    for values in columns:
        pooled = stats.paired_difference(values)
        verdict = stats.verdict(pooled.mean, pooled.half_width, margin)
        cells.append(_cell({"mean": pooled.mean, "half_width": pooled.half_width, "verdict": verdict, "n": pooled.n}))
    return cells


def table(root: Path) -> str:
    header = "| fold | " + " | ".join(f"{arm} vs curve" for arm in ARMS) + " | weighting's share |"
    lines = [
        "# Ground truth of issue 29: six held-out speakers",
        "",
        "Δ in points (negative: the arm better), mean ± "
        "95% t half-width over seeds, verdict against ±1 point, n seeds.",
        "",
        header,
        "|---" * (len(ARMS) + 2) + "|",
    ]
    summaries = []
    for fold in sorted(p.name for p in root.iterdir() if p.is_dir()):
        path = root / fold / "summary.json"
        if path.is_file():
            summaries.append(json.loads(path.read_text()))
        cells = fold_cells(summaries[-1]) if path.is_file() else ["not run yet"] + [""] * len(ARMS)
        lines.append(f"| {fold} | " + " | ".join(cells) + " |")
    if len(summaries) > 1:
        lines.append(f"| pooled ({len(summaries)} folds; exploratory) | " + " | ".join(pooled_cells(summaries)) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default="docs/results/advise/truth")
    root = Path(parser.parse_args(argv).root)
    if not root.is_dir():
        print(f"truth_table: no folder {root}", file=sys.stderr)
        return 2
    text = table(root)
    (root / "truth.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
