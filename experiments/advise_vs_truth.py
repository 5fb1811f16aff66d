"""Issue 29's check of lossaug advise against its pre-registered ground truth: per held-out speaker (fold) and arm,
advise's verdict (anytime-valid confidence sequence, n seeds) beside the truth's (lossaug compare at n = 8,
95% t-interval, the same arms and compute), and whether advise contradicts it: "better" where the truth says
"worse", or the reverse. An unresolved verdict on either side is not a contradiction.

Reads docs/results/advise/folds/<speaker>/advice.json and docs/results/advise/truth/<speaker>/summary.json, and
for the transfer regime docs/results/advise/transfer/advice.json against the committed n = 12 frontier
docs/results/frontier/transfer/summary.json (folds missing either are listed as not run yet); writes
docs/results/advise/validation.md and validation.json.

    python experiments/advise_vs_truth.py [--root docs/results/advise] [--transfer-truth SUMMARY.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

OPPOSITE = {"better": "worse", "worse": "better"}


def fold_rows(advice: dict, truth: dict, setting: str = "A") -> list[dict]:
    """One row per arm of the advice: its verdict and n beside the truth's equal-compute verdict and n."""
    rows = []
    for arm in advice["arms"]:
        entry = truth.get("equal_compute", {}).get(setting, {}).get(arm["name"], {})
        truth_verdict = entry.get("verdict", "not in the truth")
        rows.append(
            {
                "arm": arm["name"],
                "advise": arm["verdict"],
                "advise_n": arm["n"],
                "advise_delta": arm["delta"],
                "truth": truth_verdict,
                "truth_n": entry.get("n"),
                "truth_delta": entry.get("mean"),
                "contradicts": OPPOSITE.get(arm["verdict"]) == truth_verdict,
            }
        )
    return rows


def _points(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:+.2f}"


def markdown(folds: dict[str, list[dict] | None]) -> str:
    lines = [
        "# lossaug advise against the ground truth (issue 29)",
        "",
        "| fold | arm | advise (n) | Δ advise (pp) | truth (n) | Δ truth (pp) | contradicts |",
        "|---|---|---|---|---|---|---|",
    ]
    for fold, rows in folds.items():
        if rows is None:
            lines.append(f"| {fold} | - | not run yet | - | - | - | - |")
            continue
        for row in rows:
            lines.append(
                f"| {fold} | {row['arm']} | {row['advise']} ({row['advise_n']}) | "
                f"{_points(row['advise_delta'])} | {row['truth']} ({row['truth_n']}) | "
                f"{_points(row['truth_delta'])} | {'YES' if row['contradicts'] else 'no'} |"
            )
    run = [row for rows in folds.values() if rows for row in rows]
    contradictions = sum(row["contradicts"] for row in run)
    lines += [
        "",
        f"Folds compared: {sum(rows is not None for rows in folds.values())} of {len(folds)}; "
        f"contradictions: {contradictions} of {len(run)} arm verdicts.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default="docs/results/advise", help="holds folds/, truth/ and transfer/")
    parser.add_argument(
        "--transfer-truth",
        default="docs/results/frontier/transfer/summary.json",
        help="the transfer regime's ground truth (its committed frontier summary)",
    )
    args = parser.parse_args(argv)
    root = Path(args.root)
    speakers = sorted(p.name for p in (root / "truth").iterdir() if p.is_dir()) if (root / "truth").is_dir() else []
    if not speakers:
        print(f"advise_vs_truth: no truth folds under {root / 'truth'}", file=sys.stderr)
        return 2
    pairs = {s: (root / "folds" / s / "advice.json", root / "truth" / s / "summary.json") for s in speakers}
    pairs["transfer"] = (root / "transfer" / "advice.json", Path(args.transfer_truth))
    folds: dict[str, list[dict] | None] = {}
    for fold, (advice, truth) in pairs.items():
        both = advice.is_file() and truth.is_file()
        folds[fold] = fold_rows(json.loads(advice.read_text()), json.loads(truth.read_text())) if both else None
    (root / "validation.md").write_text(markdown(folds))
    (root / "validation.json").write_text(json.dumps(folds, indent=2) + "\n")
    print(markdown(folds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
