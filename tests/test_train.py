"""Tests of the training application on tiny CPU runs (each a few seconds)."""

import dataclasses
import json
import math

import pytest
import torch

from lossaug.augment import Cutout, RandomCrop
from lossaug.run.train import (
    RunResult,
    TrainConfig,
    balanced_subset,
    build_augment,
    cosine_lr,
    stream_seed,
    train,
    validate_config,
)

TINY = dict(dataset="mini", train_size=256, model="cnn", width=4, epochs=1, batch_size=64, lr=0.05, device="cpu")


@pytest.mark.slow  # ~7 s
def test_train_writes_every_output_file(tmp_path):
    out = tmp_path / "run"
    result = train(TrainConfig(**{**TINY, "epochs": 2}, method="proposed", out=str(out)))
    assert {p.name for p in out.iterdir()} >= {
        "config.json",
        "metrics.jsonl",
        "final.json",
        "checkpoint.pt",
        "curves.png",
    }
    meta = json.loads((out / "config.json").read_text())
    assert meta["config"]["method"] == "proposed" and meta["config"]["train_size"] == 256
    assert {"git_commit", "lossaug_version", "torch_version", "device"} <= meta.keys()
    assert meta["torch_version"] == torch.__version__
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2]
    for key in (
        "train_loss",
        "test_error",
        "seconds",
        "images_per_second",
        "entropy",
        "chosen_score_ratio",
        "fallback_rows",
    ):
        assert key in lines[0], key
    final = json.loads((out / "final.json").read_text())
    assert final["test_error"] == result.test_error and final["epochs"] == 2
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    assert checkpoint["position"]["epoch"] == 2 and checkpoint["global_step"] == 8
    assert all(torch.equal(v, result.model.state_dict()[k]) for k, v in checkpoint["model"].items())
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_result_fields_and_selection_telemetry():
    proposed = train(TrainConfig(**TINY, method="proposed"))
    assert isinstance(proposed, RunResult)
    assert 0 <= proposed.test_error <= 1 and 0 <= proposed.train_error <= 1
    assert proposed.train_loss > 0 and proposed.seconds > 0 and proposed.images_per_second > 0
    assert len(proposed.metrics) == 1 and proposed.out_dir is None
    assert isinstance(proposed.model, torch.nn.Module)
    record = proposed.metrics[0]
    assert 0 < record["entropy"] <= math.log(4) + 1e-6
    assert record["chosen_score_ratio"] > 0.9 and record["fallback_rows"] == 0

    baseline = train(TrainConfig(**TINY, method="baseline"))
    assert baseline.metrics[0]["entropy"] == 0 and baseline.metrics[0]["chosen_score_ratio"] is None


def test_same_seed_same_weights_and_global_rng_untouched():
    state = torch.get_rng_state()
    first = train(TrainConfig(**TINY, method="maxup"))
    assert torch.equal(torch.get_rng_state(), state)
    assert first.metrics[0]["chosen_score_ratio"] >= 1.0  # the max is never below the mean
    second = train(TrainConfig(**TINY, method="maxup"))
    for key, value in first.model.state_dict().items():
        assert torch.equal(value, second.model.state_dict()[key]), key
    other = train(TrainConfig(**TINY, method="maxup", seed=1))
    assert not torch.equal(first.model.state_dict()["net.linear.weight"], other.model.state_dict()["net.linear.weight"])


@pytest.mark.parametrize(
    "change,match",
    [
        (dict(num_candidates=0), "num_candidates must be >= 1, got 0"),
        (dict(method="mixup"), "unknown method 'mixup'"),
        (dict(model="vit"), "unknown model 'vit'"),
        (dict(dataset="imagenet"), "unknown dataset 'imagenet'"),
        (dict(temperature=-1.0), "temperature must be >= 0"),
        (dict(augment="flip,warp"), "unknown augmentation 'warp'"),
        (dict(lr=0.0), "lr > 0"),
        (dict(uniform_mix=2.0), "uniform_mix"),
    ],
)
def test_bad_config_is_a_value_error_naming_the_field(change, match):
    with pytest.raises(ValueError, match=match):
        validate_config(dataclasses.replace(TrainConfig(**TINY), **change))


def test_train_size_larger_than_the_data_is_an_error():
    with pytest.raises(ValueError, match="train_size 9999 exceeds the 5000"):
        train(TrainConfig(**{**TINY, "train_size": 9999}))


def test_method_resolution():
    assert TrainConfig(method="baseline", num_candidates=8).candidates_per_image() == 1
    assert TrainConfig(method="baseline").resolved_temperature() == math.inf
    assert TrainConfig(method="proposed").resolved_temperature() == 1.0
    assert TrainConfig(method="maxup").resolved_temperature() == 0.0
    assert TrainConfig(method="proposed", temperature=0.5).resolved_temperature() == 0.5


def test_settings_build_the_published_augmentations():
    setting_b = build_augment(TrainConfig(dataset="cifar100", setting="B"), fill=(125, 123, 114))
    assert setting_b.augments[1] == RandomCrop(4)
    assert setting_b.augments[2] == Cutout(8, fill=(125, 123, 114))
    assert build_augment(TrainConfig(dataset="cifar10", setting="B")).augments[2].size == 16
    assert len(build_augment(TrainConfig(setting="A")).augments) == 2
    assert build_augment(TrainConfig(augment="crop:2")).augments == (RandomCrop(2),)


def test_audio_freqmask_is_built_for_the_clips_rate():
    """Setting B's frequency mask silences the model's mel channels only at the rate the front end is built for."""
    from lossaug.augment.audio import FreqMask

    for rate in (8000, 16000):
        augment = build_augment(TrainConfig(dataset="fsdd", setting="B"), audio_rate=rate)
        assert [op.sample_rate for op in augment.augments if isinstance(op, FreqMask)] == [rate]


def test_balanced_subset_is_balanced_and_fixed():
    labels = torch.arange(1000) % 10
    subset = balanced_subset(labels, 300, 10)
    assert torch.equal(torch.bincount(labels[subset]), torch.full((10,), 30))
    assert torch.equal(subset, balanced_subset(labels, 300, 10))
    assert len(set(subset.tolist())) == 300


def test_cosine_schedule_and_stream_seeds():
    assert cosine_lr(0, 100, 0) == 1.0 and abs(cosine_lr(50, 100, 0) - 0.5) < 1e-9 and cosine_lr(100, 100, 0) == 0.0
    assert cosine_lr(0, 100, 10) == 0.1 and cosine_lr(9, 100, 10) == 1.0
    seeds = {stream_seed(s, n) for s in range(50) for n in ("init", "order", "augment", "select")}
    assert len(seeds) == 200


def test_host_placement_gives_the_same_run_as_device_placement():
    on_device = train(TrainConfig(**TINY, method="proposed", data_placement="device"))
    on_host = train(TrainConfig(**TINY, method="proposed", data_placement="host"))
    for key, value in on_device.model.state_dict().items():
        assert torch.equal(value, on_host.model.state_dict()[key]), key


def test_tensorboard_logging_writes_event_files(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    train(TrainConfig(**{**TINY, "epochs": 2}, tensorboard="on", out=str(out)))
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("test_error")] == [1, 2]
    assert "entropy" in events.Tags()["scalars"]
