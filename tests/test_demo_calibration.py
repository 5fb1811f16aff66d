"""Tests of the demo's plan (issue 32): the calibration's medians, the budget kept with faked step and epoch
times, the re-check after the first epoch, the floor of 3 epochs, and the runs stopped after one round and resumed
with the re-checked epochs. No assertion depends on how fast this machine is."""

import json
from types import SimpleNamespace

import pytest

from lossaug import demo
from lossaug.demo import Calibration, DemoConfig, plan_epochs, replan, train_alternating
from lossaug.demo import calibration as demo_calibration
from lossaug.demo.calibration import FINISH_SECONDS, MIN_EPOCHS, RESERVE_SECONDS
from lossaug.errors import InputError
from lossaug.run.train import TrainConfig

SIZES = (5000, 1000)  # the mini CIFAR-10: 39 steps of 128 per epoch, 8 test batches


def fake_calibration(baseline: float, proposed: float) -> Calibration:
    return Calibration({"baseline": baseline, "proposed": proposed}, forward_seconds=0.06, seconds=10.0)


def test_calibration_is_a_median_of_several_steps_per_arm_after_warm_up(monkeypatch):
    seen = []

    def fake_bench(config):
        seen.append(config)
        timing = {m: SimpleNamespace(step=SimpleNamespace(median=ms)) for m, ms in ((1, 281.0), (4, 941.0))}
        return SimpleNamespace(timing=timing.get, score_forward=SimpleNamespace(median=60.0), seconds=12.0)

    monkeypatch.setattr(demo_calibration, "run_bench", fake_bench)
    calibration = demo.calibrate(DemoConfig(num_candidates=4))
    (config,) = seen
    assert config.repeats >= 7 and config.warmup >= 2  # not one or two timings; the warm-up ones untimed
    assert config.candidate_counts == (1, 4) and config.score_fractions == () and not config.weighted
    assert calibration.step_seconds == {"baseline": 0.281, "proposed": 0.941}
    assert calibration.forward_seconds == 0.06 and calibration.seconds == 12.0


@pytest.mark.parametrize("baseline", [0.05, 0.18, 0.281, 0.5])
@pytest.mark.parametrize("factor", [1.5, 2.5, 3.35])
@pytest.mark.parametrize("budget", [240.0, 600.0])
def test_the_planned_demo_stays_within_its_budget(baseline, factor, budget):
    spent = 20.0  # data and calibration
    config = DemoConfig(budget=budget)
    try:
        plan = plan_epochs(config, fake_calibration(baseline, baseline * factor), spent=spent, sizes=SIZES)
    except InputError:
        return  # fewer than 3 fit: refused (tested below)
    assert MIN_EPOCHS <= plan.epochs <= demo.MAX_EPOCHS
    assert spent + plan.epochs * plan.round_seconds + RESERVE_SECONDS <= budget
    # the first epochs run as calibrated: the re-check keeps the plan within the budget, calibration included
    setup = 3.0
    first = {
        arm: [plan.round_seconds * s / (baseline + baseline * factor)]
        for arm, s in (("baseline", baseline), ("proposed", baseline * factor))
    }
    after_first = spent + setup + plan.round_seconds
    checked = replan(config, plan, first, setup, after_first)
    assert checked.epochs >= plan.epochs or checked.epochs == demo.MAX_EPOCHS
    total = after_first + setup + (checked.epochs - 1) * checked.round_seconds + FINISH_SECONDS
    assert total <= budget and checked.first is plan
    if checked.epochs < demo.MAX_EPOCHS:  # and it uses the budget: one more round would pass its margin
        assert total + checked.round_seconds > budget - 0.1 * (budget - after_first - setup - FINISH_SECONDS)


def test_a_slow_first_epoch_shortens_the_plan_and_a_fast_one_lengthens_it():
    config = DemoConfig(budget=240)
    plan = plan_epochs(config, fake_calibration(0.15, 0.38), spent=15.0, sizes=SIZES)
    assert plan.epochs == 8  # ~22 s per round estimated
    estimate = plan.round_seconds

    def checked(scale: float):
        first = {"baseline": [0.3 * estimate * scale], "proposed": [0.7 * estimate * scale]}
        spent = 15.0 + 2.0 + estimate * scale
        result = replan(config, plan, first, setup_seconds=2.0, spent=spent)
        # whatever it measured, the rest of the demo is planned within the budget
        assert spent + 2.0 + (result.epochs - 1) * result.round_seconds + FINISH_SECONDS <= 240
        return result

    slow = checked(2.0)  # the machine got twice as busy after the calibration
    assert slow.epochs == 4 and slow.round_seconds == pytest.approx(2 * estimate)
    assert "re-check after epoch 1" in slow.reason and "-> 4 epochs per arm (planned 8)" in slow.reason
    assert "over budget" not in slow.reason
    assert checked(1.0).epochs == plan.epochs
    # the loaded machine: calibrated steps 1,344 / 1,725 ms whose real medians were 281 / 941 ms
    assert checked(0.4).epochs > plan.epochs


def test_never_fewer_than_three_epochs_and_an_over_budget_run_says_so_in_one_line():
    config = DemoConfig(budget=240)
    plan = plan_epochs(config, fake_calibration(0.2, 0.5), spent=15.0, sizes=SIZES)
    result = replan(config, plan, {"baseline": [40.0], "proposed": [100.0]}, setup_seconds=3.0, spent=160.0)
    assert result.epochs == MIN_EPOCHS
    assert "over budget: 3 epochs per arm, the fewest that draw curves" in result.reason
    assert "which fits 1 epoch" in result.reason and "\n" not in result.reason
    # a calibration where 3 epochs cannot fit at all is refused before training, saying what fits and what would
    with pytest.raises(InputError) as refused:
        plan_epochs(config, fake_calibration(0.9, 2.2), spent=15.0, sizes=SIZES)
    message = str(refused.value)
    assert "the 240 s budget fits 1 epoch per arm, fewer than the 3 that draw curves" in message
    assert "pass --budget 440 for 3" in message and "\n" not in message
    assert plan_epochs(DemoConfig(budget=440), fake_calibration(0.9, 2.2), spent=15.0, sizes=SIZES).epochs == 3
    with pytest.raises(ValueError):
        replan(config, plan, {"baseline": [], "proposed": [1.0]}, setup_seconds=3.0, spent=100.0)


def tiny_configs(tmp_path, epochs: int) -> dict[str, TrainConfig]:
    common = dict(
        dataset="mini",
        train_size=256,
        model="cnn",
        width=2,
        epochs=epochs,
        batch_size=64,
        num_candidates=2,
        device="cpu",
    )
    return {arm: TrainConfig(**common, method=arm, out=str(tmp_path / arm)) for arm in demo.ARMS}


@pytest.mark.slow  # ~5 s: two tiny runs, stopped and resumed
def test_runs_stop_after_one_round_and_resume_with_the_rechecked_epochs(tmp_path):
    first = train_alternating(tiny_configs(tmp_path, epochs=5), rounds=1)
    assert first.results == {} and first.taken == ("baseline", "proposed") * 2
    assert all(len(first.epoch_seconds[arm]) == 1 and first.setup_seconds[arm] > 0 for arm in demo.ARMS)
    assert all(len(first.step_seconds[arm]) == 4 for arm in demo.ARMS)  # one epoch of 256 / 64
    seen = []
    with pytest.warns(UserWarning, match="changed epochs: 5 -> 3"):
        rest = train_alternating(tiny_configs(tmp_path, epochs=3), resume=True, on_epoch=lambda a, s: seen.append(a))
    assert seen == ["baseline", "proposed"] * 2  # epochs 2 and 3 only
    for arm in demo.ARMS:
        assert [m["epoch"] for m in rest.results[arm].metrics] == [1, 2, 3]
        assert json.loads((tmp_path / arm / "config.json").read_text())["config"]["epochs"] == 3
        lines = (tmp_path / arm / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]
        assert (tmp_path / arm / "final.json").exists()
