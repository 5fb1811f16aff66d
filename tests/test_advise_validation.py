"""experiments/advise_vs_truth.py (advise's verdicts beside the ground truth's per fold, contradictions flagged:
better against worse, either way) and truth_table.py (the folds side by side); folds not run yet listed."""

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_script(name: str = "advise_vs_truth"):
    """experiments/<name>.py as a module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _write(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload))


def test_contradictions_are_flagged_and_missing_folds_listed(tmp_path):
    arms = [
        {"name": "proposed", "verdict": "better", "n": 6, "delta": -0.01},
        {"name": "gated", "verdict": "unresolved", "n": 6, "delta": 0.004},
        {"name": "weighted-equal-time", "verdict": "worse", "n": 6, "delta": 0.02},
    ]
    truth = {
        "equal_compute": {
            "A": {
                "proposed": {"verdict": "worse", "n": 8, "mean": 0.01},
                "gated": {"verdict": "better", "n": 8, "mean": -0.01},
                "weighted-equal-time": {"verdict": "worse", "n": 8, "mean": 0.03},
            }
        }
    }
    _write(tmp_path / "folds" / "theo" / "advice.json", {"arms": arms})
    _write(tmp_path / "truth" / "theo" / "summary.json", truth)
    _write(tmp_path / "truth" / "lucas" / "summary.json", truth)
    assert load_script().main(["--root", str(tmp_path)]) == 0
    saved = json.loads((tmp_path / "validation.json").read_text())
    assert saved["lucas"] is None  # no advice there yet
    assert [row["contradicts"] for row in saved["theo"]] == [True, False, False]  # unresolved contradicts nothing
    text = (tmp_path / "validation.md").read_text()
    assert "| lucas | - | not run yet" in text and "contradictions: 1 of 3" in text


def test_truth_table_reads_each_fold_and_lists_those_not_run(tmp_path):
    entry = {"mean": -0.012, "half_width": 0.005, "verdict": "better", "n": 8}
    summary = {
        "equal_compute": {"A": {"proposed": entry, "gated": {"verdict": "out of range"}}},
        "endpoints": {"A": {"weighted-equal-time - weighted-uniform-equal-time": {**entry, "verdict": "unresolved"}}},
    }
    _write(tmp_path / "theo" / "summary.json", summary)
    (tmp_path / "lucas").mkdir()
    shifted = {**entry, "per_seed": {"0": -0.01, "1": -0.02}}
    _write(tmp_path / "zed" / "summary.json", {"equal_compute": {"A": {"proposed": shifted}}})
    _write(
        tmp_path / "yan" / "summary.json", {"equal_compute": {"A": {"proposed": {**shifted, "per_seed": {"0": -0.03}}}}}
    )
    assert load_script("truth_table").main(["--root", str(tmp_path)]) == 0
    text = (tmp_path / "truth.md").read_text()
    assert "| theo | -1.20 ± 0.50 better (n 8) | out of range | - | - | -1.20 ± 0.50 unresolved (n 8) |" in text
    assert "| lucas | not run yet |" in text
    assert "| pooled (3 folds; exploratory) | -2.00 ± 2.48 unresolved (n 3) |" in text  # zed's and yan's seeds
