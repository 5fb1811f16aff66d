"""Tests of lossaug compare (tiny arms x settings x seeds) and lossaug report."""

import json
import math

import pytest

import lossaug.compare as compare_module
from lossaug.cli import main
from lossaug.compare import CompareConfig, equal_time_epochs, mean_interval, run_compare, validate_compare
from lossaug.train import TrainConfig

BASE = TrainConfig(dataset="mini", train_size=64, model="cnn", width=2, epochs=1, batch_size=32, lr=0.05,
                   device="cpu", candidates=2)  # fmt: skip


def test_compare_runs_every_arm_and_summarises(tmp_path, monkeypatch):
    config = CompareConfig(base=BASE, out=str(tmp_path / "cmp"), settings=("A", "B"), seeds=(0, 1))
    summary = run_compare(config)
    for setting in ("A", "B"):
        rows = summary["settings"][setting]
        assert list(rows) == ["baseline", "proposed", "maxup", "baseline-equal-time"]
        for row in rows.values():
            assert row["test_error"]["n"] == 2 and row["diff_to_baseline"]["n"] == 2
            assert 0 <= row["test_error"]["mean"] <= 1
        assert rows["baseline"]["diff_to_baseline"]["mean"] == 0
        proposed, baseline = rows["proposed"]["per_seed"], rows["baseline"]["per_seed"]
        for seed in (0, 1):
            expected = equal_time_epochs(1, baseline[seed]["seconds"], proposed[seed]["seconds"])
            assert rows["baseline-equal-time"]["per_seed"][seed]["epochs"] == expected
    markdown = (tmp_path / "cmp" / "summary.md").read_text()
    assert "## Setting A" in markdown and "## Setting B" in markdown and "baseline-equal-time" in markdown
    assert json.loads((tmp_path / "cmp" / "summary.json").read_text())["seeds"] == [0, 1]

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(compare_module, "train", no_training)
    assert run_compare(config)["settings"] == summary["settings"]


def test_statistics_helpers():
    stats = mean_interval([0.1, 0.2, 0.3])
    assert stats["n"] == 3 and math.isclose(stats["mean"], 0.2) and math.isclose(stats["std"], 0.1)
    assert math.isclose(stats["ci95"], 4.303 * 0.1 / math.sqrt(3))
    assert math.isnan(mean_interval([0.5])["std"])
    assert equal_time_epochs(10, 5.0, 10.0) == 20 and equal_time_epochs(10, 5.0, 4.0) == 10


@pytest.mark.parametrize(
    "change,match",
    [
        (dict(arms=("baseline", "mixup")), "unknown arm 'mixup'"),
        (dict(settings=("C",)), "unknown setting 'C'"),
        (dict(seeds=(1, 1)), "distinct"),
        (dict(arms=("baseline-equal-time",)), "needs the arms 'baseline' and 'proposed'"),
    ],
)
def test_bad_compare_config(change, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        validate_compare(CompareConfig(base=BASE, out=str(tmp_path), **change))


def test_compare_and_report_commands(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LOSSAUG_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "cmp"
    argv = ["compare", "--arms", "baseline,proposed", "--seeds", "3", "--dataset", "mini", "--train-size", "64",
            "--model", "cnn", "--width", "2", "--epochs", "1", "--batch-size", "32", "--device", "cpu",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    assert "| proposed | 1 |" in capsys.readouterr().out
    runs = [str(out / "setting-A" / arm / "seed-3") for arm in ("baseline", "proposed")]
    assert main(["report", *runs, "--out", str(tmp_path / "r.png")]) == 0
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err


def test_gpu_protocol_script_runs_tiny_on_cpu(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "experiments" / "gpu_protocol.py"
    out = tmp_path / "gpu"
    done = subprocess.run([sys.executable, str(script), "--tiny", "--budget", "0", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    record = json.loads((out / "gpu_record.json").read_text())
    assert record["seeds_completed"] == [0] and set(record["epoch_seconds"]) == {"baseline", "proposed"}
    assert (out / "summary.md").exists()


def test_t_quantile_is_conservative_between_table_rows():
    from lossaug.compare import t_quantile

    assert t_quantile(2) == 4.303 and t_quantile(16) == 2.131 and t_quantile(100) == 2.042
    assert math.isnan(t_quantile(0))


def test_compare_refuses_to_reuse_runs_made_with_other_options(tmp_path):
    config = CompareConfig(base=BASE, out=str(tmp_path / "cmp"), arms=("baseline",), seeds=(0,))
    run_compare(config)
    changed = CompareConfig(base=BASE.__class__(**{**BASE.__dict__, "lr": 0.2}), out=config.out, arms=("baseline",),
                            seeds=(0,))  # fmt: skip
    with pytest.raises(ValueError, match=r"holds a run with other options \(lr: 0.05 -> 0.2\)"):
        run_compare(changed)


def test_report_reader_marks_epochs_without_evaluation(tmp_path):
    from lossaug.plots import read_run
    from lossaug.train import train

    out = tmp_path / "run"
    train(TrainConfig(**{**BASE.__dict__, "epochs": 3, "eval_every": 2, "out": str(out)}))
    label, records = read_run(out)
    assert label.startswith("proposed A seed 0")
    assert [math.isnan(r["test_error"]) for r in records] == [True, False, False]
