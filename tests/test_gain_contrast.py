"""experiments/gain_contrast.py (issue 24's answer): the difference of per-seed gains, paired by seed, against a
hand computation on constructed runs; its verdicts; one-line errors for a missing arm or too few common seeds."""

import importlib.util
import json
import statistics
import sys
from pathlib import Path

import pytest

from lossaug.compare.stats import t_quantile

ROOT = Path(__file__).resolve().parents[1]


def load_script():
    spec = importlib.util.spec_from_file_location("gain_contrast", ROOT / "experiments" / "gain_contrast.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


gain_contrast = load_script()


def write_runs(comparison: Path, setting: str, errors: dict[str, dict[int, float]]) -> None:
    """errors: arm -> seed -> test error as a fraction, written as final.json files."""
    for arm, by_seed in errors.items():
        for seed, error in by_seed.items():
            run = comparison / f"setting-{setting}" / arm / f"seed-{seed}"
            run.mkdir(parents=True)
            (run / "final.json").write_text(json.dumps({"test_error": error, "epochs": 30}))


def test_difference_of_gains_matches_hand_computation(tmp_path):
    new, reference = tmp_path / "new", tmp_path / "ref"
    # gains (points): new -1.0, -2.0, -1.5 (seed 3 lacks a control: dropped); reference -0.5, +0.5, -0.5, -1.0
    write_runs(new, "C", {"baseline": {0: 0.30, 1: 0.32, 2: 0.31},
                          "proposed": {0: 0.29, 1: 0.30, 2: 0.295, 3: 0.20}})  # fmt: skip
    write_runs(reference, "A", {"baseline": {0: 0.25, 1: 0.26, 2: 0.27, 5: 0.2},
                                "proposed": {0: 0.245, 1: 0.265, 2: 0.265, 5: 0.19}})  # fmt: skip
    assert gain_contrast.main(["--new", f"{new}:C", "--reference", f"{reference}:A", "--out", str(tmp_path)]) == 0
    row = json.loads((tmp_path / "contrast.json").read_text())["rows"][0]
    d = [-1.0 - -0.5, -2.0 - 0.5, -1.5 - -0.5]
    assert row["seeds"] == [0, 1, 2]
    assert row["difference"]["mean"] == pytest.approx(statistics.fmean(d))
    half = t_quantile(0.975, 2) * statistics.stdev(d) / 3**0.5
    assert row["difference"]["half_width"] == pytest.approx(half)
    assert row["gain_new"]["mean"] == pytest.approx(-1.5)
    assert row["gain_reference"]["mean"] == pytest.approx(-0.5 / 3)
    assert row["verdict"] == ("gains more" if statistics.fmean(d) + half < 0 else "no difference shown")
    assert "| proposed | 3 |" in (tmp_path / "contrast.md").read_text()


VERDICT_CASES = [(-1.0, "gains more"), (1.0, "gains less"), (0.0, "no difference shown")]


@pytest.mark.parametrize(("shift", "expected"), VERDICT_CASES)
def test_verdicts(shift, expected):
    reference = {0: -0.2, 1: 0.1, 2: -0.3, 3: 0.0}
    new = {s: g + shift + 0.05 * s for s, g in reference.items()}
    assert gain_contrast.contrast(new, reference, "proposed").verdict == expected


def test_bad_input_is_one_line_exit_2(tmp_path, capsys):
    write_runs(tmp_path / "new", "C", {"baseline": {0: 0.3}, "proposed": {0: 0.29}})
    write_runs(tmp_path / "ref", "A", {"baseline": {0: 0.3}, "proposed": {0: 0.29}})
    args = ["--new", f"{tmp_path / 'new'}:C", "--reference", f"{tmp_path / 'ref'}:A", "--out", str(tmp_path / "o")]
    assert gain_contrast.main(args) == 2
    assert "1 seed(s) finished in both" in capsys.readouterr().err
    assert gain_contrast.main([*args, "--arms", "gated"]) == 2
    assert "gated: no such arm directory" in capsys.readouterr().err
    assert gain_contrast.main(["--new", "nocolon", *args[2:]]) == 2
    assert "COMPARISON_DIR:SETTING" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # nothing written on bad input
