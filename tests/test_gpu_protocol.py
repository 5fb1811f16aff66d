"""experiments/gpu_protocol.py: the budget (fake clock: a run or an epoch that would not fit is not started, a seed
it stops is not counted) and the protocol file against the fast_resnet recipe. Its --tiny run on the CPU (record,
summary, deleted checkpoints) is tested through gpu_session.sh --rehearse in test_gpu_scripts.py."""

import dataclasses
import importlib.util
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from lossaug.cli.options import load_protocol_file
from lossaug.compare import config_from_protocol
from lossaug.models import RECIPES
from lossaug.run.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "experiments" / "gpu_protocol.py"


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_protocol", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


gp = load_script()


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


IMAGES = 4 * TrainConfig().batch_size  # 4 steps per epoch at the default batch


def plan(tmp_path, seed, names=("trunk", "baseline", "proposed", "baseline-equal-time")):
    config = TrainConfig(epochs=4, out=str(tmp_path / f"{seed}"))
    return [gp.PlannedRun(name, dataclasses.replace(config, seed=seed, out=f"{config.out}/{name}"), "final.json")
            for name in names]  # fmt: skip


def fake_train(clock, durations, trained):
    def train_one(config, on_step, reporter):
        trained.append((config.seed, Path(config.out).name))
        clock.now += durations[Path(config.out).name]

    return train_one


def test_budget_stops_before_a_run_that_would_not_fit(tmp_path):
    clock, trained = FakeClock(), []
    durations = {"trunk": 10, "baseline": 10, "proposed": 20, "baseline-equal-time": 20}
    budget, times = gp.Budget(100, clock=clock), gp.RunTimes()
    train_one = fake_train(clock, durations, trained)
    # Seed 0: nothing timed yet, every run starts while time is left (60 s of 100).
    assert gp.run_seed(plan(tmp_path, 0), budget, times, IMAGES, train_one=train_one) == durations
    assert budget.left() == 40 and times.estimate(list(durations)) == 60
    # Seed 1 would need 60 s: refused before its trunk, nothing trained.
    with pytest.raises(gp.OutOfBudget, match=r"seed 1, trunk: needs ~60.0 s, 40.0 s of 100 s left"):
        gp.run_seed(plan(tmp_path, 1), budget, times, IMAGES, train_one=train_one)
    assert trained == [(0, name) for name in durations]
    # With 45 s left, the trunk and baseline (20 s) would fit but the seed (60 s) would not: refused before it too.
    clock.now -= 5
    with pytest.raises(gp.OutOfBudget, match="seed 1, trunk"):
        gp.run_seed(plan(tmp_path, 1), budget, times, IMAGES, train_one=train_one)
    # Within a seed (the trunk and baseline done): 39.5 s left cannot cover proposed + equal-time (40 s).
    clock.now = budget.started + 60.5
    with pytest.raises(gp.OutOfBudget, match=r"seed 2, proposed: needs ~40.0 s, 39.5 s of 100 s left"):
        gp.run_seed(plan(tmp_path, 2, ("proposed", "baseline-equal-time")), budget, times, IMAGES, train_one=train_one)
    assert len(trained) == 4


def test_budget_first_seed_runs_until_the_time_is_up_and_skips_finished_runs(tmp_path):
    clock, trained = FakeClock(), []
    durations = {"trunk": 30, "baseline": 30, "proposed": 80, "baseline-equal-time": 50}
    budget, times = gp.Budget(100, clock=clock), gp.RunTimes()
    runs = plan(tmp_path, 0)
    Path(runs[0].config.out).mkdir(parents=True)
    (Path(runs[0].config.out) / "final.json").write_text("{}")  # the trunk finished in an earlier call
    with pytest.raises(gp.OutOfBudget, match="seed 0, baseline-equal-time: the 100 s budget is spent"):
        gp.run_seed(runs, budget, times, IMAGES, train_one=fake_train(clock, durations, trained))
    assert trained == [(0, "baseline"), (0, "proposed")] and "trunk" not in times.seconds


def test_epoch_guard_stops_at_the_start_of_an_epoch_that_would_not_fit():
    clock = FakeClock()
    budget = gp.Budget(10, clock=clock)
    guard = gp.EpochGuard(budget, steps_per_epoch=4, last_step=16, later=0.0, what="seed 0, baseline")
    for step in range(1, 5):  # epoch 1: no pace known yet, only the deadline
        guard(step, None)
        clock.now += 0.5
    clock.now += 1.0  # epoch 1 took 3 s; epochs 2-4 would take 9 s of the 7 s left
    with pytest.raises(gp.OutOfBudget, match=r"seed 0, baseline, epoch 2: needs ~9.0 s, 7.0 s"):
        guard(5, None)
    # The same with 2 s per epoch fits (6 s), and the rest of the seed counts too.
    clock = FakeClock()
    budget = gp.Budget(10, clock=clock)
    for later, fits in ((0.0, True), (5.0, False)):
        guard = gp.EpochGuard(budget, 4, 16, later, "run")
        guard(1, None)
        clock.now += 2.0
        if fits:
            guard(5, None)
        else:
            with pytest.raises(gp.OutOfBudget, match="epoch 2: needs ~11.0 s"):
                guard(5, None)
    clock.now = budget.started + 10.0  # mid-epoch steps check only the deadline
    with pytest.raises(gp.OutOfBudget, match="run, step 6: the 10 s budget is spent"):
        guard(6, None)


def test_last_step_of_a_trunk_and_of_an_arm():
    assert gp.last_step(TrainConfig(epochs=10, stop_at=0.5, out="x"), 97) == 485
    assert gp.last_step(TrainConfig(epochs=3, stop_at=0.5, out="x"), 3) == 5  # ceil, as train's stop step
    assert gp.last_step(TrainConfig(epochs=15), 97) == 1455


def test_a_seed_the_budget_stops_is_not_counted(tmp_path, monkeypatch):
    summarised = []

    def run_seed(runs, budget, times, spe, *, reporter=None):
        if runs[0].config.seed == 2:
            raise gp.OutOfBudget("seed 2, trunk: needs ~5 s")
        return {run.name: 1.0 for run in runs}

    def run_compare(config, reporter=None):
        summarised.append(config.seeds)
        per_seed = {s: {"seconds": 2.0, "epochs": 2} for s in config.seeds}
        return {"settings": {"A": {"baseline": {"per_seed": per_seed}}}}

    monkeypatch.setattr(gp, "run_seed", run_seed)
    monkeypatch.setattr(gp, "run_compare", run_compare)
    monkeypatch.setattr(gp, "training_images", lambda base, log: 128)
    args = gp.argparse.Namespace(protocol=str(gp.PROTOCOL), tiny=True, out=str(tmp_path), branch_at=None,
                                 cost_ratio=None, margin=None, maxup=False, data=None, cache_dir=None, epochs=None,
                                 max_seeds=4)  # fmt: skip
    config, _ = gp.protocol_config(args)
    record = gp.Record(tmp_path / "gpu_record.json", {})
    summary = gp.run_protocol(config, gp.Budget(60), record, gp.ConsoleReporter(io.StringIO()))
    assert summarised == [(0,), (0, 1)] and summary["settings"]["A"]["baseline"]["per_seed"].keys() == {0, 1}
    saved = json.loads(record.path.read_text())
    assert saved["seeds_completed"] == [0, 1] and saved["unfinished_seed"] == 2
    assert saved["stopped"].startswith("seed 2, trunk") and set(saved["run_wall_seconds"]) == {"0", "1"}


def test_protocol_file_is_the_fast_resnet_recipe_on_the_full_data():
    table, base = load_protocol_file(gp.PROTOCOL)
    config = config_from_protocol(table, base)
    assert {k: getattr(base, k) for k in RECIPES["fast_resnet"]} == RECIPES["fast_resnet"]
    assert (base.model, base.width, base.dataset, base.setting, base.num_candidates, base.device) == (
        "fast_resnet", 64, "folder", "A", 4, "cuda")  # fmt: skip
    assert base.data == "data/cifar10-jpeg.tar.xz" and base.cache_dir == "data/cache"
    assert config.arms == ("baseline", "proposed", "baseline-equal-time") and config.settings == ("A",)
    assert (config.branch_at, config.cost_ratio, config.margin) == (0.5, None, 0.005)  # R measured by bench
    assert config.seeds == tuple(range(len(config.seeds))) and len(config.seeds) >= 10
    ignored = subprocess.run(["git", "check-ignore", "-q", base.data], cwd=ROOT, check=False)
    assert ignored.returncode in (0, 128)  # 0: git-ignored, so it can travel only as a carried path; 128: no git


def test_options_override_the_protocol_and_are_recorded(tmp_path):
    args = gp.argparse.Namespace(protocol=str(gp.PROTOCOL), tiny=False, out=str(tmp_path), branch_at=0.25,
                                 cost_ratio=1.7, margin=0.3, maxup=True, data="elsewhere.tar.xz", cache_dir=None,
                                 epochs=12, max_seeds=3)  # fmt: skip
    config, overrides = gp.protocol_config(args)
    assert config.arms[-1] == "maxup" and config.seeds == (0, 1, 2) and config.out == str(tmp_path)
    assert (config.branch_at, config.cost_ratio, config.margin) == (0.25, 1.7, 0.003)
    assert (config.base.data, config.base.epochs, config.base.model) == ("elsewhere.tar.xz", 12, "fast_resnet")
    assert set(overrides) == {"out", "branch_at", "cost_ratio", "margin_points", "arms", "data", "epochs"}


def test_no_seed_within_the_budget_is_its_own_exit_status(tmp_path, capsys):
    # gpu_session.sh reads 3 as a SKIP (the budget was too short), 1 as a failure (a traceback exits 1 too).
    assert gp.main(["--tiny", "--budget", "0.001", "--out", str(tmp_path)]) == gp.NO_SEED_EXIT == 3
    assert "no seed finished within the 0.001 s budget" in capsys.readouterr().err
    assert json.loads((tmp_path / "gpu_record.json").read_text())["seeds_completed"] == []


FRONTIER = ROOT / "experiments" / "protocols" / "gpu-frontier-A.toml"


def test_the_gpu_frontier_is_the_frontier_design_on_the_gpu_recipe():
    """gpu-frontier-A.toml (gpu_session.sh's default): gpu-fast-A's [train] table, frontier-transfer's arms."""
    table, base = load_protocol_file(FRONTIER)
    assert base == load_protocol_file(gp.PROTOCOL)[1]
    config = config_from_protocol(table, base)
    frontier = config_from_protocol(*load_protocol_file(ROOT / "experiments" / "protocols" / "frontier-transfer.toml"))
    assert (config.arms, config.budgets, config.branch_at) == (frontier.arms, frontier.budgets, frontier.branch_at)
    assert config.cost_ratio is None and not config.cost_ratios  # every R benched on the device


def test_a_frontier_seed_runs_every_planned_arm_from_one_trunk(tmp_path):
    args = gp.argparse.Namespace(protocol=str(FRONTIER), tiny=False, out=str(tmp_path), branch_at=None,
                                 cost_ratio=None, margin=None, maxup=False, data=None, cache_dir=None, epochs=None,
                                 max_seeds=None)  # fmt: skip
    config, _ = gp.protocol_config(args)
    runs = gp.seed_runs(config, 3, {"proposed": 2.0, "gated": 1.3, "weighted": 4.0})
    epochs = {run.name: run.config.epochs for run in runs}
    assert epochs == {"trunk": 10, "baseline": 10, "baseline-x1.5": 13, "baseline-x2": 15, "baseline-x3": 20,
                      "proposed": 10, "gated": 10, "weighted": 6, "weighted-equal-time": 8}  # fmt: skip
    by_name = {run.name: run.config for run in runs}
    assert by_name["gated"].score_fraction == 0.25 and by_name["weighted"].method == "weighted"
    assert runs[0].done_file == "trunk.json" and {run.done_file for run in runs[1:]} == {"final.json"}
    assert all(run.config.seed == 3 and run.config.branch_from == runs[0].config.out for run in runs[1:])


def test_a_weighted_runs_epoch_has_m_times_the_steps(tmp_path):
    """Its steps take B/M images: the guard's epoch edges and last step follow its own images per step."""
    runs = plan(tmp_path, 0, ("baseline", "weighted"))
    runs[1] = dataclasses.replace(runs[1], config=dataclasses.replace(runs[1].config, method="weighted"))
    guards = {}

    def train_one(config, on_step, reporter):
        guards[Path(config.out).name] = (on_step.steps_per_epoch, on_step.last_step)

    gp.run_seed(runs, gp.Budget(100, clock=FakeClock()), gp.RunTimes(), IMAGES, train_one=train_one)
    assert guards == {"baseline": (4, 16), "weighted": (16, 64)}  # M = 4
