"""--val-fraction, --keep best and --patience (issue 32): a stratified, seeded validation split carved from the
training data and recorded; validation error per epoch; the best-validation checkpoint kept and used by
predict/evaluate/export; early stopping with its reason in final.json. The test set never chooses."""

from __future__ import annotations

import json
import math

import pytest
import torch

from lossaug.cli import main
from lossaug.errors import InputError
from lossaug.run.config import TrainConfig, validate_config
from lossaug.run.train import train
from lossaug.run.validation import BEST, Validation, kept_checkpoint, split_validation
from lossaug.use import load_trained

TINY = dict(dataset="mini", train_size=64, model="cnn", width=4, batch_size=16, device="cpu")
CLI = ["train", "--dataset", "mini", "--train-size", "64", "--model", "cnn", "--width", "4", "--batch-size", "16"]


def test_split_is_stratified_seeded_and_disjoint():
    labels = torch.arange(4).repeat_interleave(torch.tensor([10, 10, 5, 2]))
    classes = ("a", "b", "c", "d")
    split = split_validation(labels, classes, 0.2, seed=0)
    assert set(split.train_rows.tolist()).isdisjoint(split.val_rows.tolist())
    assert sorted([*split.train_rows.tolist(), *split.val_rows.tolist()]) == list(range(len(labels)))
    assert split.record["val_counts"] == {"a": 2, "b": 2, "c": 1, "d": 1}  # rounded, at least 1, leaving 1
    assert split.record["train_counts"] == {"a": 8, "b": 8, "c": 4, "d": 1}
    again = split_validation(labels, classes, 0.2, seed=0)
    assert torch.equal(again.val_rows, split.val_rows)
    others = [split_validation(labels, classes, 0.2, seed=s).val_rows for s in range(1, 6)]
    assert any(not torch.equal(o, split.val_rows) for o in others)
    assert "a 8/2" in split.summary()


def test_split_refuses_a_class_of_one():
    labels = torch.tensor([0, 0, 0, 1])
    with pytest.raises(InputError, match="class 'cat' has 1 training example"):
        split_validation(labels, ("dog", "cat"), 0.5, seed=0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(val_fraction=1.0), r"val_fraction must be in \(0, 1\)"),
        (dict(patience=3), "patience chooses on validation error: give --val-fraction"),
        (dict(keep="best", out="x"), "keep best chooses on validation error: give --val-fraction"),
        (dict(keep="best", val_fraction=0.2), "keep best needs out"),
        (dict(val_fraction=0.2, patience=0), "patience must be >= 1"),
        (dict(keep="worst"), "unknown keep 'worst'"),
    ],
)
def test_bad_options_are_one_line_errors(options, message):
    with pytest.raises(InputError, match=message):
        validate_config(TrainConfig(**TINY, **options))


def test_split_seed_applies_to_any_data_with_a_validation_split():
    validate_config(TrainConfig(**TINY, val_fraction=0.2, split_seed=3))
    with pytest.raises(InputError, match="split_seed"):
        validate_config(TrainConfig(**TINY, split_seed=3))


def test_patience_counts_epochs_since_the_best(monkeypatch):
    errors = iter([0.5, 0.4, 0.45, 0.4, 0.3])
    monkeypatch.setattr("lossaug.run.pipeline.evaluate", lambda *args: (next(errors), 1.0))
    validation = Validation(torch.zeros(1), torch.zeros(1), torch.device("cpu"), patience=2, epochs=10)
    metrics: list[dict] = []
    stops = []
    for epoch in range(5):
        measured = validation.measure(None, metrics)
        metrics.append({"epoch": epoch + 1, **measured.record})
        stops.append(measured.stop)
    # best 0.4 at epoch 2; epoch 4's equal 0.4 is no improvement: two epochs without one by epoch 4
    assert stops == [False, False, False, True, False]


def test_a_run_records_validation_keeps_best_and_uses_it(tmp_path, capsys):
    out = tmp_path / "run"
    code = main([*CLI, "--epochs", "3", "--val-fraction", "0.25", "--keep", "best", "--out", str(out)])
    assert code == 0
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["val_fraction"] == 0.25
    assert config["resolved"]["validation"]["val_counts"]["airplane"] == 2
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(0 <= r["val_error"] <= 1 and math.isfinite(r["val_loss"]) for r in records)
    final = json.loads((out / "final.json").read_text())
    assert final["stop_reason"] == "epochs"
    errors = [r["val_error"] for r in records]
    assert final["best_val"] == {"epoch": errors.index(min(errors)) + 1, "val_error": min(errors)}
    best = torch.load(out / BEST, weights_only=True)
    assert best["global_step"] == final["best_val"]["epoch"] * 2  # 44 training images: 2 steps of 16 per epoch
    assert kept_checkpoint(out) == out / BEST
    assert load_trained(out).checkpoint == out / BEST
    capsys.readouterr()
    assert main(["export", str(out), "--out", str(tmp_path / "model.pt")]) == 0
    assert f"using {out / BEST}" in capsys.readouterr().err
    assert load_trained(out / "checkpoint.pt").checkpoint == out / "checkpoint.pt"  # a file is used as given


def test_patience_stops_early_and_says_why(tmp_path):
    # A learning rate this small leaves the validation error where it starts: never better after epoch 1.
    config = TrainConfig(**TINY, epochs=6, lr=1e-9, val_fraction=0.25, patience=2, out=str(tmp_path / "run"))
    result = train(config)
    assert len(result.metrics) == 3
    assert not math.isnan(result.test_error)  # the stopping epoch is tested
    final = json.loads((tmp_path / "run" / "final.json").read_text())
    assert final["stop_reason"] == "patience" and final["epochs"] == 3
    assert final["stop_detail"] == "no better validation error in 2 epochs after epoch 1"
    assert not (tmp_path / "run" / BEST).exists()  # --keep last (the default) keeps no best.pt


def test_without_a_split_nothing_changes(tmp_path):
    result = train(TrainConfig(**TINY, epochs=1, out=str(tmp_path / "run")))
    assert "val_error" not in result.metrics[0]
    final = json.loads((tmp_path / "run" / "final.json").read_text())
    assert final["stop_reason"] == "epochs" and "best_val" not in final
