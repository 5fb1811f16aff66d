"""Test error against training time for baseline, proposed, maxup, baseline-equal-time (the CPU protocol) and each
cheaper-selection option (experiments/cheap_options.sh): ``pareto.png``, ``pareto.md``, ``pareto.json``.

Reads only the run directories' result files. Time is each run's median epoch time x epochs (robust to stalls on
a shared machine), as a ratio to the baseline of the same seed; Δ is the paired difference in test error to that
baseline with a 95% t-interval.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lossaug.compare import mean_interval, read_result


def finished_seeds(arm_dir: Path) -> dict[int, dict]:
    """seed -> result of every finished ``seed-N`` run under ``arm_dir``."""
    runs = (d for d in arm_dir.glob("seed-*") if (d / "final.json").exists())
    return {int(d.name.split("-")[1]): read_result(d) for d in runs}


def collect(protocol: Path, options: Path, setting: str) -> dict[str, dict[int, dict]]:
    arms = {d.name: finished_seeds(d) for d in sorted((protocol / f"setting-{setting}").iterdir())}
    for option_dir in sorted(p for p in options.iterdir() if p.is_dir()):
        runs = option_dir / f"setting-{setting}" / "proposed"
        if runs.is_dir():
            arms[f"proposed, {option_dir.name}"] = finished_seeds(runs)
    return arms


def summarize(arms: dict[str, dict[int, dict]]) -> dict[str, dict]:
    baseline = arms["baseline"]
    rows = {}
    for arm, runs in arms.items():
        seeds = sorted(s for s in runs if s in baseline)
        rows[arm] = {
            "seeds": seeds,
            "test_error": mean_interval([runs[s]["test_error"] for s in seeds]),
            "train_error": mean_interval([runs[s]["train_error"] for s in seeds]),
            "diff_to_baseline": mean_interval([runs[s]["test_error"] - baseline[s]["test_error"] for s in seeds]),
            "time_ratio": mean_interval([runs[s]["seconds"] / baseline[s]["seconds"] for s in seeds]),
        }
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--protocol", type=Path, default=Path("docs/results/cpu-protocol"))
    parser.add_argument("--options", type=Path, default=Path("docs/results/cheap-options"))
    parser.add_argument("--setting", default="A")
    parser.add_argument("--out", type=Path, default=Path("docs/results/cheap-options"))
    args = parser.parse_args()
    rows = summarize(collect(args.protocol, args.options, args.setting))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pareto.json").write_text(json.dumps(rows, indent=2) + "\n")

    lines = [f"# Test error against training time, setting {args.setting}", "",
             "| arm | n | time ratio | test error % (mean ± std) | Δ vs baseline, pp (± 95% CI) | train error % |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for arm, row in rows.items():
        te, d, tr, ratio = row["test_error"], row["diff_to_baseline"], row["train_error"], row["time_ratio"]
        lines.append(
            f"| {arm} | {te['n']} | {ratio['mean']:.2f} | {100 * te['mean']:.2f} ± {100 * te['std']:.2f} | "
            f"{100 * d['mean']:+.2f} ± {100 * d['ci95']:.2f} | {100 * tr['mean']:.2f} |"
        )
    (args.out / "pareto.md").write_text("\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    for arm, row in rows.items():
        te, ratio = row["test_error"], row["time_ratio"]
        ax.errorbar(ratio["mean"], 100 * te["mean"], yerr=100 * te["std"], fmt="o", capsize=4, label=arm)
    ax.set_xlabel("training time ÷ baseline's (median epoch time × epochs)")
    ax.set_ylabel("test error % (mean ± std over seeds)")
    ax.set_title(f"CPU protocol, setting {args.setting}: error against cost")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(args.out / "pareto.png", dpi=100)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
