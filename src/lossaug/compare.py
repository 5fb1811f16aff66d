"""``lossaug compare``: arms x settings x seeds, run one after another into one directory, then summarised.

Arms are ``baseline``, ``proposed``, ``maxup`` and ``baseline-equal-time``: the baseline given as many epochs as
the proposed run of the same setting and seed took in measured training time (the first question a skeptical
engineer asks). Every arm gets the same data, model, optimiser and seed; only the method (and, for the
equal-time arm, the epoch count) differs. Finished runs (``final.json`` present) are read back, not rerun;
interrupted ones resume from their checkpoint.

The summary gives, per setting and arm: n, mean and sample std of test and train error, the paired difference to
the baseline of the same seed with a 95% t-interval, and the wall-clock ratio to the baseline.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lossaug.checkpoint import has_checkpoint
from lossaug.progress import Reporter
from lossaug.train import SETTINGS, TrainConfig, train, validate_config

ARMS = ("baseline", "proposed", "maxup", "baseline-equal-time")
# Two-sided 95% quantiles of Student's t by degrees of freedom (n - 1); 1.96 beyond the table.
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 20: 2.086, 30: 2.042}  # fmt: skip


@dataclass(frozen=True)
class CompareConfig:
    """``base`` holds everything the arms share (its ``method``, ``setting``, ``seed`` and ``out`` are set per
    run); ``out`` is the comparison's directory."""

    base: TrainConfig
    out: str
    arms: tuple[str, ...] = ARMS
    settings: tuple[str, ...] = ("A",)
    seeds: tuple[int, ...] = (0, 1, 2)


def validate_compare(config: CompareConfig) -> None:
    for arm in config.arms:
        if arm not in ARMS:
            raise ValueError(f"unknown arm {arm!r}; choose from {list(ARMS)}")
    for setting in config.settings:
        if setting not in SETTINGS:
            raise ValueError(f"unknown setting {setting!r}; choose from {list(SETTINGS)}")
    if not config.seeds or len(set(config.seeds)) != len(config.seeds):
        raise ValueError(f"seeds must be distinct and non-empty, got {list(config.seeds)}")
    if "baseline-equal-time" in config.arms and not {"baseline", "proposed"} <= set(config.arms):
        raise ValueError("arm 'baseline-equal-time' needs the arms 'baseline' and 'proposed' (it is sized from them)")
    validate_config(config.base)


def t_quantile(df: int) -> float:
    """Two-sided 95% quantile of Student's t with ``df`` degrees of freedom (conservative between table rows)."""
    if df < 1:
        return math.nan
    return T_975[max(k for k in T_975 if k <= df)]  # the nearest tabulated df below: a wider interval


def mean_interval(values: Sequence[float]) -> dict:
    """n, mean, sample std and the 95% t-interval half-width of ``values``."""
    n = len(values)
    mean = statistics.fmean(values) if n else math.nan
    std = statistics.stdev(values) if n > 1 else math.nan
    return {"n": n, "mean": mean, "std": std, "ci95": t_quantile(n - 1) * std / math.sqrt(n) if n > 1 else math.nan}


def run_dir(config: CompareConfig, setting: str, arm: str, seed: int) -> Path:
    return Path(config.out) / f"setting-{setting}" / arm / f"seed-{seed}"


def read_result(directory: Path) -> dict:
    """A finished run's results. ``seconds`` is the median epoch time x epochs: on a shared machine a few epochs
    can stall for tens of seconds (seen here: 34 s against 0.47 s), and the sum would charge that to the method;
    ``seconds_total`` keeps the plain sum."""
    final = json.loads((directory / "final.json").read_text())
    meta = json.loads((directory / "config.json").read_text())
    epoch_seconds = [json.loads(line)["seconds"] for line in (directory / "metrics.jsonl").read_text().splitlines()]
    return {
        **final,
        "seconds_total": final["seconds"],
        "seconds": statistics.median(epoch_seconds) * len(epoch_seconds),
        "epochs": meta["config"]["epochs"],
        "dir": str(directory),
    }


def _check_same_config(config: TrainConfig, out: Path) -> None:
    """A run found in ``out`` must have been made with ``config``: otherwise its results would be reported under
    a configuration that did not produce them."""
    # Fields the saved run predates take their defaults; where things live (out, cache, data path) may differ.
    saved = {**dataclasses.asdict(TrainConfig()), **json.loads((out / "config.json").read_text())["config"]}
    ignored = ("out", "cache_dir", "data")
    changed = [f"{k}: {saved[k]!r} -> {v!r}" for k, v in dataclasses.asdict(config).items()
               if k not in ignored and saved[k] != v]  # fmt: skip
    if changed:
        raise ValueError(f"{out} holds a run with other options ({'; '.join(changed)}); use another --out")


def _run_arm(config: TrainConfig, reporter: Reporter | None) -> dict:
    out = Path(config.out)
    if (out / "config.json").exists():
        _check_same_config(config, out)
    if (out / "final.json").exists():
        if reporter is not None:
            reporter.log(f"done already: {out}")
        return read_result(out)
    train(config, reporter=reporter, resume=has_checkpoint(out))
    return read_result(out)


def equal_time_epochs(base_epochs: int, baseline_seconds: float, proposed_seconds: float) -> int:
    """Epochs of baseline training that take as long as the proposed run did (at least ``base_epochs``)."""
    return max(base_epochs, round(base_epochs * proposed_seconds / baseline_seconds))


def run_compare(config: CompareConfig, reporter: Reporter | None = None) -> dict:
    """Run every (setting, seed, arm) not yet finished, then write and return the summary."""
    validate_compare(config)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, dict[int, dict]]] = {}
    order = [arm for arm in ARMS if arm in config.arms]  # equal-time last: it needs baseline and proposed
    for setting in config.settings:
        results[setting] = {arm: {} for arm in order}
        for seed in config.seeds:
            for arm in order:
                method, epochs = arm, config.base.epochs
                if arm == "baseline-equal-time":
                    method = "baseline"
                    epochs = equal_time_epochs(
                        config.base.epochs,
                        results[setting]["baseline"][seed]["seconds"],
                        results[setting]["proposed"][seed]["seconds"],
                    )
                arm_config = dataclasses.replace(
                    config.base, method=method, setting=setting, seed=seed, epochs=epochs,
                    out=str(run_dir(config, setting, arm, seed)),
                )  # fmt: skip
                if reporter is not None:
                    reporter.log(f"== setting {setting}, seed {seed}, arm {arm} ({epochs} epochs)")
                results[setting][arm][seed] = _run_arm(arm_config, reporter)
    summary = summarize(config, results)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "summary.md").write_text(summary_markdown(summary))
    return summary


def summarize(config: CompareConfig, results: dict[str, dict[str, dict[int, dict]]]) -> dict:
    """Per setting and arm: error statistics, paired differences to the baseline and time ratios."""
    settings = {}
    for setting, arms in results.items():
        baseline = arms.get("baseline", {})
        rows = {}
        for arm, runs in arms.items():
            seeds = sorted(runs)
            paired = [s for s in seeds if s in baseline]
            rows[arm] = {
                "seeds": seeds,
                "epochs": [runs[s]["epochs"] for s in seeds],
                "test_error": mean_interval([runs[s]["test_error"] for s in seeds]),
                "train_error": mean_interval([runs[s]["train_error"] for s in seeds]),
                "seconds": mean_interval([runs[s]["seconds"] for s in seeds]),
                "diff_to_baseline": mean_interval([runs[s]["test_error"] - baseline[s]["test_error"] for s in paired]),
                "time_ratio": mean_interval([runs[s]["seconds"] / baseline[s]["seconds"] for s in paired]),
                "per_seed": {
                    s: {k: runs[s][k] for k in ("test_error", "train_error", "seconds", "epochs")} for s in seeds
                },  # fmt: skip
            }
        settings[setting] = rows
    base = dataclasses.asdict(config.base)
    for name in ("method", "setting", "seed", "out"):
        base.pop(name)
    devices = sorted({run["device"] for arms in results.values() for runs in arms.values() for run in runs.values()})
    return {
        "base_config": base,
        "arms": list(config.arms),
        "seeds": list(config.seeds),
        "settings": settings,
        "device": ", ".join(devices),
    }


def _pct(stats: dict, key: str = "std") -> str:
    if stats["n"] == 0 or math.isnan(stats["mean"]):
        return "-"
    spread = stats[key]
    return f"{100 * stats['mean']:.2f} ± {100 * spread:.2f}" if not math.isnan(spread) else f"{100 * stats['mean']:.2f}"


def summary_markdown(summary: dict) -> str:
    """The summary as Markdown tables, one per setting."""
    base = summary["base_config"]
    data = " ".join(str(part) for part in (base["dataset"], base["data"]) if part)
    subset = f" (train_size {base['train_size']})" if base["train_size"] else ""
    lines = [
        "# lossaug compare",
        "",
        f"Model {base['model']} (width {base['width']}), data {data}{subset}, {base['epochs']} epochs, "
        f"batch {base['batch_size']}, lr {base['lr']}, M = {base['candidates']}; device: {summary['device']}.",
        "",
        "Errors in %: mean ± sample std over seeds; Δ is the paired difference to the baseline of the same seed, "
        "± the 95% t-interval half-width (negative = better than baseline). Time ratio: training wall-clock ÷ the "
        "baseline's, same seed, each taken as median epoch time × epochs (robust to stalls on a shared machine).",
    ]
    for setting, rows in summary["settings"].items():
        lines += ["", f"## Setting {setting}", "",
                  "| arm | n | epochs | test error % | train error % | Δ test error vs baseline (pp) | time ratio |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for arm, row in rows.items():
            epochs = sorted(set(row["epochs"]))
            delta = row["diff_to_baseline"]
            delta_text = "-" if arm == "baseline" else _pct(delta, "ci95")
            ratio = row["time_ratio"]
            ratio_text = f"{ratio['mean']:.2f}" if ratio["n"] else "-"
            lines.append(
                f"| {arm} | {row['test_error']['n']} | {', '.join(map(str, epochs))} | {_pct(row['test_error'])} "
                f"| {_pct(row['train_error'])} | {delta_text} | {ratio_text} |"
            )
    return "\n".join(lines) + "\n"
