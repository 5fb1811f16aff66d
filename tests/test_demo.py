"""Tests of ``lossaug demo``'s parts: the epoch choice from (fake) step times, the alternation of two ordinary
``train`` runs (order, bit-exact equality with straight runs, failure and signal handling), the ratios and the
ETA. The end-to-end command is in test_cli.py. No assertion depends on how fast this machine is."""

import dataclasses
import json
import math
import os
import signal

import pytest
import torch

from lossaug import demo
from lossaug.demo import (
    Calibration,
    DemoConfig,
    DemoInterrupted,
    Rotation,
    arm_configs,
    choose_epochs,
    median_step_ratio,
    plan_epochs,
    remaining_seconds,
    train_alternating,
)
from lossaug.errors import InputError
from lossaug.run.interrupts import stop_requests
from lossaug.run.train import TrainConfig, train

TIMING_KEYS = ("seconds", "elapsed_seconds", "images_per_second")


def tiny_configs(tmp_path, folder: str = "alt", epochs: int = 2, **changes) -> dict[str, TrainConfig]:
    common = dict(dataset="mini", train_size=256, model="cnn", width=2, epochs=epochs, batch_size=64,
                  num_candidates=2, device="cpu", **changes)  # fmt: skip
    return {arm: TrainConfig(**common, method=arm, out=str(tmp_path / folder / arm)) for arm in demo.ARMS}


def untimed(records) -> list[dict]:
    return [{k: v for k, v in record.items() if k not in TIMING_KEYS} for record in records]


# ---------------------------------------------------------------- plan


def test_choose_epochs_takes_the_most_rounds_that_fit_within_floor_and_ceiling():
    assert choose_epochs(round_seconds=25.0, seconds_left=224.0) == 8  # 8 rounds = 200 s, 9 = 225 s
    assert choose_epochs(25.0, 225.0) == 9
    assert choose_epochs(0.5, 224.0) == demo.MAX_EPOCHS  # a fast machine: the ceiling
    assert choose_epochs(400.0, 224.0) == demo.MIN_EPOCHS  # a slow one: never below the floor
    assert choose_epochs(25.0, -30.0) == demo.MIN_EPOCHS  # the calibration alone ate the budget
    assert choose_epochs(10.0, 100.0, floor=2, ceiling=5) == 5
    with pytest.raises(ValueError):
        choose_epochs(0.0, 100.0)


def test_plan_from_a_fake_calibration_fits_the_budget_and_says_why():
    # The slow CPU the demo is planned for: 7 s per baseline epoch of 39 steps, proposed about 2.5x.
    calibration = Calibration({"baseline": 0.18, "proposed": 0.45}, forward_seconds=0.06, seconds=5.0)
    plan = plan_epochs(DemoConfig(budget=240), calibration, spent=6.0, sizes=(5000, 1000))
    evaluation = 8 * 0.06  # ceil(1000 / 128) batches
    per_round = 39 * (0.18 + 0.45) + 2 * (evaluation + demo.EPOCH_OVERHEAD_SECONDS)
    assert plan.round_seconds == pytest.approx(per_round)
    # the set-ups, plots and a margin of what is left are kept out of the plan
    assert plan.epochs == math.floor((240 - 6.0 - demo.RESERVE_SECONDS) * 0.9 / per_round) == 7
    # what the whole demo should then take, start-up aside: within its budget with room to spare
    assert 6.0 + plan.epochs * per_round + demo.RESERVE_SECONDS < 0.95 * 240
    assert "180 ms/step" in plan.reason and "450 ms/step" in plan.reason and "-> 7 epochs" in plan.reason
    assert plan.calibration is calibration

    slow = Calibration({"baseline": 2.0, "proposed": 5.0}, forward_seconds=0.5, seconds=60.0)
    with pytest.raises(InputError, match="fits 0 epochs per arm, fewer than the 3 that draw curves") as refused:
        plan_epochs(DemoConfig(budget=240), slow, spent=60.0, sizes=(5000, 1000))
    assert "\n" not in str(refused.value) and "--budget " in str(refused.value)


def test_given_epochs_override_the_calibration():
    plan = plan_epochs(DemoConfig(epochs=3), None, spent=0.0, sizes=(5000, 1000))
    assert plan.epochs == 3 and plan.calibration is None and "as given" in plan.reason


def test_demo_config_rejects_bad_values_at_the_boundary():
    for bad in (dict(epochs=0), dict(budget=0), dict(budget=math.inf), dict(width=0), dict(device="tpu")):
        with pytest.raises(InputError):
            DemoConfig(**bad)


def test_arm_configs_differ_in_the_method_only(tmp_path):
    configs = arm_configs(DemoConfig(out=str(tmp_path), width=8, num_candidates=3), epochs=5)
    base, proposed = (configs[arm] for arm in demo.ARMS)
    assert (base.method, proposed.method) == ("baseline", "proposed")
    assert base.out == str(tmp_path / "baseline") and proposed.out == str(tmp_path / "proposed")
    assert base.epochs == 5 and base.width == 8 and base.num_candidates == 3 and base.lr == 0.2
    assert dataclasses.replace(base, method="proposed", out=proposed.out) == proposed


def test_calibrate_times_both_arms_with_the_bench_step():
    calibration = demo.calibrate(DemoConfig(width=2, num_candidates=2, device="cpu"))
    assert set(calibration.step_seconds) == set(demo.ARMS)
    assert all(s > 0 for s in calibration.step_seconds.values()) and calibration.forward_seconds > 0


# ---------------------------------------------------------------- alternation


def test_rotation_gives_turns_in_order_and_drops_who_leaves():
    rotation, done, turns = Rotation(["a", "b", "c"]), [], {"c": 3, "a": 3, "b": 1}
    for name in rotation:
        turn = sum(1 for other, _ in done if other == name)
        done.append((name, turn))
        if turn + 1 == turns[name]:
            rotation.leave(name)
    assert done == [("a", 0), ("b", 0), ("c", 0), ("a", 1), ("c", 1), ("a", 2), ("c", 2)]
    assert rotation.taken == ["a", "b", "c", "a", "c", "a", "c"]


def test_rotation_skips_a_name_that_left_before_its_turn_came():
    rotation = Rotation(["a", "b", "c"])
    for _name in rotation:
        if len(rotation.taken) == 1:
            rotation.leave("b")  # left during another's turn: its turn in this round is skipped
        if len(rotation.taken) == 4:
            rotation.leave("a")
            rotation.leave("c")
    assert rotation.taken == ["a", "c", "a", "c"]


@pytest.mark.slow  # ~5 s: four tiny runs
def test_alternating_runs_equal_straight_train_runs_bit_for_bit(tmp_path):
    seen = []
    alternation = train_alternating(tiny_configs(tmp_path), on_epoch=lambda arm, seconds: seen.append(arm))
    # set-up turns, then epoch 1 of each arm, then epoch 2
    assert alternation.taken == ("baseline", "proposed") * 3 and seen == ["baseline", "proposed"] * 2
    for arm, config in tiny_configs(tmp_path, folder="straight").items():
        straight, alternated = train(config), alternation.results[arm]
        assert untimed(alternated.metrics) == untimed(straight.metrics)
        weights = alternated.model.state_dict()
        assert all(torch.equal(value, weights[name]) for name, value in straight.model.state_dict().items())
        assert len(alternation.step_seconds[arm]) == 2 * 4 and all(s > 0 for s in alternation.step_seconds[arm])
        # each arm is an ordinary run directory: the same files and config.json as `lossaug train`'s
        own, other = (tmp_path / folder / arm for folder in ("alt", "straight"))
        assert {p.name for p in own.iterdir()} == {p.name for p in other.iterdir()}
        saved = [json.loads((d / "config.json").read_text()) for d in (own, other)]
        for meta in saved:
            meta.pop("started"), meta["config"].pop("out")
        assert saved[0] == saved[1]
        lines = [untimed(map(json.loads, (d / "metrics.jsonl").read_text().splitlines())) for d in (own, other)]
        assert lines[0] == lines[1]


def test_a_failing_arm_stops_the_other_and_its_error_is_raised(tmp_path):
    configs = tiny_configs(tmp_path)
    configs["proposed"] = dataclasses.replace(configs["proposed"], batch_size=512)  # > its 256 images
    with pytest.raises(InputError, match="batch_size 512"):
        train_alternating(configs)
    assert not (tmp_path / "alt" / "baseline" / "checkpoint.pt").exists()  # stopped before its first epoch


def test_a_signal_stops_both_arms_and_leaves_resumable_runs(tmp_path):
    finished: list[str] = []

    def interrupt(arm: str, seconds: float) -> None:
        finished.append(arm)
        if finished == ["baseline"]:  # one SIGINT, after the baseline's first epoch (a second one would be Ctrl-C
            os.kill(os.getpid(), signal.SIGINT)  # pressed twice: a KeyboardInterrupt at once)

    configs = tiny_configs(tmp_path, epochs=3)
    with pytest.raises(DemoInterrupted) as stop:
        train_alternating(configs, on_epoch=interrupt)
    assert stop.value.exit_code == 130 and "lossaug train --resume" in str(stop.value)
    assert finished.count("baseline") == 1  # the signal stopped the rotation: no arm began another turn
    resumed = train(configs["baseline"], resume=True)
    straight = train(dataclasses.replace(configs["baseline"], out=None))
    assert untimed(resumed.metrics) == untimed(straight.metrics)


class _SignalAtStep:
    """A reporter that sends one SIGINT from the progress of the second step of ``title``'s epoch, then counts the
    steps that still advance, and keeps the logged lines."""

    def __init__(self, title: str):
        self.title, self.current, self.steps, self.sent, self.after, self.lines = title, "", 0, False, 0, []

    def start(self, title: str, total: int) -> None:
        self.current, self.steps = title, 0

    def advance(self, count: int, info: str = "") -> None:
        if not info:  # the epoch start's advance past the steps done: not a step
            return
        self.steps += 1
        if self.sent:
            self.after += 1
        elif self.current.startswith(self.title) and self.steps == 2:
            self.sent = True
            os.kill(os.getpid(), signal.SIGINT)

    def finish(self, line: str) -> None:
        self.lines.append(line)

    def log(self, line: str) -> None:
        self.lines.append(line)


def test_a_signal_during_an_epoch_stops_after_that_step_and_keeps_the_last_finished_epoch(tmp_path):
    configs = tiny_configs(tmp_path, epochs=3)
    reporter = _SignalAtStep("baseline epoch 2/3")
    with pytest.raises(DemoInterrupted) as stop:
        train_alternating(configs, reporter)
    assert reporter.sent and reporter.after == 0 and stop.value.exit_code == 130  # no step after the signal's
    for arm in configs:  # each run keeps the checkpoint of its first epoch; the baseline's second was left
        assert len((tmp_path / "alt" / arm / "metrics.jsonl").read_text().splitlines()) == 1
    log = _SignalAtStep("never")
    resumed = train(configs["baseline"], reporter=log, resume=True)
    assert any("resume at epoch 2 step 0" in line for line in log.lines), log.lines
    straight = train(dataclasses.replace(configs["baseline"], out=None))
    assert untimed(resumed.metrics) == untimed(straight.metrics)


def test_the_first_signal_calls_on_request_once_and_a_second_sigint_interrupts():
    calls: list[int] = []
    with pytest.raises(KeyboardInterrupt), stop_requests(on_request=lambda: calls.append(1)) as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)  # a repeated request changes nothing
        assert calls == [1] and stop.signum == signal.SIGTERM
        os.kill(os.getpid(), signal.SIGINT)
    assert calls == [1]


# ---------------------------------------------------------------- ratios and ETA


def test_median_step_ratio_ignores_a_slow_stretch():
    steps = {"baseline": [0.1, 0.1, 0.1, 0.1, 3.0], "proposed": [0.25, 0.25, 0.25, 9.0, 9.0]}
    assert median_step_ratio(steps) == pytest.approx({"baseline": 1.0, "proposed": 2.5})
    with pytest.raises(ValueError):
        median_step_ratio({"baseline": [], "proposed": [1.0]})


def test_remaining_seconds_from_the_finished_epochs():
    assert remaining_seconds({"baseline": [7.0, 9.0], "proposed": [20.0, 20.0]}, epochs=5) == 3 * 8.0 + 3 * 20.0
    assert remaining_seconds({"baseline": [8.0, 8.0], "proposed": [20.0]}, epochs=2) == 20.0
    assert remaining_seconds({"baseline": [8.0], "proposed": []}, epochs=2) == 8.0 + 2 * 8.0
    assert math.isnan(remaining_seconds({"baseline": [], "proposed": []}, epochs=2))


def test_eta_line_after_each_round_but_the_last():
    lines, now = [], iter(range(100, 200, 10))
    eta = demo._Eta(epochs=3, log=lines.append, started=40.0, clock=lambda: next(now))
    for arm, seconds in [("baseline", 10.0), ("proposed", 25.0)] * 3:
        eta(arm, seconds)
    assert len(lines) == 2  # after rounds 1 and 2; round 3 is the last
    assert lines[0] == "demo: epoch 1/3 of both arms done, 1:00 elapsed, about 1:10 left"
