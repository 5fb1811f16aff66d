"""The typed run checkpoint (``checkpoint.RunCheckpoint``): one mapping to and from the file's keys, which older
checkpoints still load through, and the refusal of missing or mistyped fields in the existing words; the save policy
behind one call (``checkpoint.CheckpointSaver``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from lossaug.run.checkpoint import (
    BEST,
    FORMAT,
    NEWEST,
    PREVIOUS,
    RESUME_KEYS,
    CheckpointError,
    CheckpointSaver,
    RunCheckpoint,
    load_checkpoint,
    read_run_checkpoint,
)

# The file's keys in the order runs have written them since classes and inputs were recorded; older readers
# (and ``torch.load`` by hand) rely on these names.
FILE_KEYS = [
    "model",
    "optimizer",
    "scheduler",
    "proxy",
    "random",
    "position",
    "global_step",
    "num_classes",
    "config",
    "schedule",
    "data_fingerprint",
    "init",
    "stale_losses",
    "inputs",
    "classes",
]


def _learner(value: float) -> dict:
    return {
        "model": {"w": torch.full((2,), value), "mean": torch.zeros(1, 3, 1, 1)},
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "params": [0]}]},
        "scheduler": {"last_epoch": 7},
    }


def _full(step: int = 7) -> RunCheckpoint:
    return RunCheckpoint(
        **_learner(1.0),
        proxy=_learner(2.0),
        random=[{"order": torch.arange(4, dtype=torch.uint8), "epoch_stats": None}],
        position={"epoch": 1, "step": 3, "global_step": step, "metrics": [{"epoch": 1, "test_error": 0.5}]},
        global_step=step,
        num_classes=10,
        config={"epochs": 2, "model": "cnn"},
        schedule={"total_steps": 16, "warmup_steps": 0, "trunk_steps": 16, "branch_step": 0},
        data_fingerprint={"train_examples": 256},
        init={"loaded": ["conv.weight"]},
        stale_losses=torch.tensor([0.5, float("inf")]),
        inputs={"kind": "image", "channels": 3, "height": 32, "width": 32},
        classes=["a", "b"],
    )


def _equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(map(_equal, a, b))
    return a == b


def test_a_run_checkpoint_is_written_under_the_files_keys_and_reads_back_equal(tmp_path):
    checkpoint = _full()
    assert list(checkpoint.to_dict()) == FILE_KEYS
    path = CheckpointSaver(tmp_path).save(checkpoint)
    on_disk = load_checkpoint(path)
    assert list(on_disk) == [*FILE_KEYS, "format"] and on_disk["format"] == FORMAT
    assert path == tmp_path / "checkpoint.pt"
    read_path, read = read_run_checkpoint(tmp_path)
    assert read_path == path
    for field in dataclasses.fields(RunCheckpoint):
        assert _equal(getattr(read, field.name), getattr(checkpoint, field.name)), field.name
    assert _equal(read.learner(), _learner(1.0))


def test_a_checkpoint_written_before_the_later_fields_loads_with_them_absent(tmp_path):
    # As runs wrote it before proxy, schedule, fingerprint, init, stale losses, classes and inputs were recorded.
    old = {k: v for k, v in _full(5).to_dict().items() if k in RESUME_KEYS}
    torch.save({**old, "format": FORMAT}, tmp_path / "checkpoint.pt")
    _, read = read_run_checkpoint(tmp_path)
    assert read.global_step == 5 and read.num_classes == 10 and read.config == {"epochs": 2, "model": "cnn"}
    absent = ("proxy", "schedule", "data_fingerprint", "init", "stale_losses", "inputs", "classes")
    assert all(getattr(read, name) is None for name in absent)
    # A reader of the weights alone (--init of a run directory) needs only the model.
    model_only = RunCheckpoint.from_dict({"model": {"w": torch.ones(1)}}, Path("x.pt"), needs=("model",))
    assert model_only.global_step == 0 and model_only.position == {} and model_only.proxy is None


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda p: p.pop("random"), r"checkpoint x\.pt lacks \['random'\]; it is not a complete lossaug training"),
        (lambda p: [p.pop("optimizer"), p.pop("config")], r"x\.pt lacks \['optimizer', 'config'\]"),
        (lambda p: p.pop("model"), r"x\.pt lacks \['model'\]"),
        (lambda p: p.update(global_step="seven"), r"checkpoint x\.pt has global_step 'seven', not an int"),
        (lambda p: p.update(global_step=True), r"has global_step True, not an int"),
        (lambda p: p.update(config="epochs=2"), r"checkpoint x\.pt has a config of type str"),
    ],
    ids=["no-random", "no-optimizer-config", "no-model", "step-text", "step-bool", "config-text"],
)
def test_a_missing_or_mistyped_field_is_refused_naming_it(edit, message):
    payload = _full().to_dict()
    edit(payload)
    with pytest.raises(CheckpointError, match=message):
        RunCheckpoint.from_dict(payload, Path("x.pt"))


def test_a_reader_needing_fewer_fields_is_not_refused_for_the_others():
    payload = _full().to_dict()
    del payload["random"], payload["optimizer"]
    read = RunCheckpoint.from_dict(payload, Path("x.pt"), needs=("model", "config", "num_classes"))
    assert read.num_classes == 10 and read.random == [] and read.optimizer == {}


def test_the_saver_says_when_a_checkpoint_is_due_and_owns_which_files_exist(tmp_path):
    assert [step for step in range(1, 10) if CheckpointSaver(tmp_path, every=3).due(step)] == [3, 6, 9]
    assert not any(CheckpointSaver(tmp_path).due(step) for step in range(1, 10))  # 0: at epoch ends only
    saver = CheckpointSaver(tmp_path, every=3)
    saver.save(_full(1), best=True)
    saver.save(_full(2))
    saver.save(_full(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([BEST, NEWEST, PREVIOUS])  # no temporary file left
    steps = {name: load_checkpoint(tmp_path / name)["global_step"] for name in (NEWEST, PREVIOUS, BEST)}
    assert steps == {NEWEST: 3, PREVIOUS: 2, BEST: 1}
