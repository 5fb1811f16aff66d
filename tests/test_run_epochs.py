"""The run's public epoch API (``open_run`` -> ``Run``): driven by hand it is ``train``, bit for bit; a run closed
without ``finish`` lets go of its directory and resumes from its last epoch."""

import dataclasses

import torch

from lossaug.run.epochs import Stop, open_run
from lossaug.run.train import TrainConfig, train

TIMING_KEYS = ("seconds", "elapsed_seconds", "images_per_second")
TINY = dict(dataset="mini", train_size=256, model="cnn", width=2, epochs=2, batch_size=64, num_candidates=2)


def untimed(records) -> list[dict]:
    return [{k: v for k, v in record.items() if k not in TIMING_KEYS} for record in records]


def test_a_run_driven_step_by_step_is_train(tmp_path):
    config = TrainConfig(**TINY, method="proposed", device="cpu", out=str(tmp_path / "api"))
    steps = []
    with open_run(config) as run:
        assert run.epochs_left == 2
        while run.epochs_left:
            run.start_epoch()
            steps += list(run.steps())
            assert run.end_epoch() is Stop.NONE
        result = run.finish()
    assert steps == [Stop.NONE] * 8  # 256 / 64 per epoch
    straight = train(dataclasses.replace(config, out=str(tmp_path / "train")))
    assert untimed(result.metrics) == untimed(straight.metrics)
    weights = result.model.state_dict()
    assert all(torch.equal(value, weights[name]) for name, value in straight.model.state_dict().items())
    assert {p.name for p in (tmp_path / "api").iterdir()} == {p.name for p in (tmp_path / "train").iterdir()}


def test_a_run_closed_without_finish_resumes_from_its_last_epoch(tmp_path):
    config = TrainConfig(**TINY, method="baseline", device="cpu", out=str(tmp_path / "run"))
    with open_run(config) as run:
        assert run.epoch() is Stop.NONE
    assert not (tmp_path / "run" / "final.json").exists()
    with open_run(config, resume=True) as run:  # the lock was let go: the same directory opens again
        assert run.state.epoch == 1 and run.epochs_left == 1
        assert run.epoch() is Stop.NONE and run.epochs_left == 0
        resumed = run.finish()
    straight = train(dataclasses.replace(config, out=None))
    assert untimed(resumed.metrics) == untimed(straight.metrics)
    assert (tmp_path / "run" / "final.json").exists()
