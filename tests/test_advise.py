"""``lossaug advise``: durations, budgets, the recommendation rule, the sequential loop's stop rules (with the
comparison faked), bad input (one line, exit 2, nothing written) and one tiny real advice, resumed."""

from __future__ import annotations

import dataclasses
import json
import math
import shlex
from pathlib import Path

import pytest

from lossaug.advise import AdviseConfig, ArmVerdict, bracketing_budgets, parse_duration, recommend, run_advise
from lossaug.advise import run as advise_run
from lossaug.advise.report import standalone_command, train_command
from lossaug.cli import build_parser, main
from lossaug.cli.options import config_from_args
from lossaug.compare.arms import arm_named
from lossaug.run.interrupts import TrainingInterrupted
from lossaug.run.rundir import RunLock
from lossaug.run.train import TrainConfig

TINY = ["--dataset", "mini", "--train-size", "32", "--model", "cnn", "--width", "2", "--batch-size", "16"]
BASE = TrainConfig(dataset="mini", train_size=32, model="cnn", width=2, epochs=4, batch_size=16, device="cpu")


def test_durations():
    assert parse_duration("45m") == 2700 and parse_duration("1h30m") == 5400 and parse_duration("90") == 90
    assert parse_duration("2h") == 7200 and parse_duration(" 90s ") == 90 and parse_duration("1.5m") == 90
    for bad in ("soon", "0", "0m", "-5m", "5x", "", "9999h"):
        with pytest.raises(ValueError, match="--time"):
            parse_duration(bad)


def test_budgets_bracket_every_arm():
    config = AdviseConfig(base=BASE, time=60, arms=("proposed", "gated"), branch_at=0.5)
    # proposed at R = 3.2 costs 0.5 + 0.5 * 3.2 = 2.1 baseline runs: x4 (2.5) is the first budget above it
    assert bracketing_budgets(config, {"A": {"proposed": 3.2, "gated": 1.5}}) == (1.0, 2.0, 3.0, 4.0)
    assert bracketing_budgets(config, {"A": {"proposed": 2.0, "gated": 1.5}}) == (1.0, 2.0)
    weighted = AdviseConfig(base=BASE, time=60, arms=("weighted",), branch_at=0.5)
    # weighted at the baseline's compute rounds its epochs to 3: compute (2 + 1 * 4) / 4 = 1.5 > 1 ... and below
    budgets = bracketing_budgets(weighted, {"A": {"weighted": 4.0}})
    assert budgets[0] == 1.0 and budgets[-1] >= 2.0


def _row(name: str, verdict: str, high: float, low: float = -1.0) -> ArmVerdict:
    return ArmVerdict(name, "A", 1.5, (low + high) / 2, low, high, verdict, 8)


def test_recommendation_follows_only_what_the_sequences_resolve():
    arms = [_row("proposed", "better", -0.002), _row("gated", "better", -0.01), _row("weighted", "unresolved", 0.1)]
    assert recommend(arms, []).arm == "gated"  # the sequence furthest below 0
    budgets = [_row("baseline-x2", "better", -0.001), _row("baseline-x3", "better", -0.02)]
    unresolved = [_row("proposed", "unresolved", 0.01)]
    assert recommend(unresolved, budgets).arm == "baseline-x3"  # train longer: resolved better than x1
    assert recommend(unresolved, [_row("baseline-x2", "unresolved", 0.01)]).arm == "baseline"
    assert "distinguishable" in recommend(unresolved, []).reason
    worse = [_row("proposed", "worse", 0.03, 0.01)]
    assert recommend(worse, []).arm == "baseline" and "worse or equivalent" in recommend(worse, []).reason


def _fake_compare(differences: dict[int, float], interrupt_at: int | None = None, clock: list | None = None):
    """A stand-in for compare's runner: gated's difference against the curve per seed, x2 one point better; each
    call moves ``clock[0]`` on by 1000 s."""

    def run_compare(comparison, reporter=None):
        seeds = comparison.seeds
        if clock is not None:
            clock[0] += 1000.0
        if interrupt_at is not None and seeds[-1] == interrupt_at:
            raise TrainingInterrupted(2, None, 3)
        per_seed = {seed: differences[seed] for seed in seeds}
        gated = {"verdict": "unresolved", "compute": 1.2, "per_seed": per_seed}
        budget = {"compute": 1.5, "vs_baseline": {"per_seed": {seed: -0.01 + 0.001 * seed for seed in seeds}}}
        return {"equal_compute": {"A": {"gated": gated}}, "frontier": {"A": {"baseline-x2": budget}}}

    return run_compare


@pytest.fixture
def fake_loop(monkeypatch):
    monkeypatch.setattr(advise_run, "_time_epoch", lambda config, scratch, reporter: (0.01, 0.01))

    def install(differences, interrupt_at=None, clock=None):
        monkeypatch.setattr(advise_run, "run_compare", _fake_compare(differences, interrupt_at, clock))

    return install


def _config(tmp_path: Path, **change) -> AdviseConfig:
    values = dict(base=BASE, time=3600, out=str(tmp_path / "advice"), arms=("gated",), cost_ratios={"gated": 1.4})
    return AdviseConfig(**{**values, **change})


def test_stops_when_every_arm_is_resolved(tmp_path, fake_loop):
    fake_loop({seed: 0.05 + 0.001 * (seed % 3) for seed in range(30)})  # gated 5 points worse than the curve
    advice = run_advise(_config(tmp_path)).record
    assert advice["stopped_because"] == "resolved" and advice["arms"][0]["verdict"] == "worse"
    assert 4 <= len(advice["seeds"]) < 30 and advice["recommendation"]["arm"] == "baseline-x2"
    saved = json.loads((tmp_path / "advice" / "advice.json").read_text())
    assert set(saved) >= {"recommendation", "arms", "seeds", "stopped_because", "seconds"}
    assert set(saved["recommendation"]) >= {"arm", "command"} and "--epochs" in saved["recommendation"]["command"]
    assert set(saved["arms"][0]) >= {"name", "compute", "delta", "low", "high", "verdict", "n"}
    assert (tmp_path / "advice" / "advice.md").read_text().startswith("# lossaug advise")


def test_stops_at_max_seeds_and_on_interrupt(tmp_path, fake_loop):
    noise = {seed: (-1) ** seed * 0.02 for seed in range(30)}  # no effect: stays unresolved
    fake_loop(noise)
    advice = run_advise(_config(tmp_path, max_seeds=3)).record
    assert advice["stopped_because"] == "max seeds" and advice["seeds"] == [0, 1, 2]
    assert advice["recommendation"]["arm"] == "baseline" and advice["arms"][0]["low"] is None  # unbounded
    fake_loop(noise, interrupt_at=3)
    stopped = run_advise(_config(tmp_path / "again", max_seeds=6))
    assert stopped.interrupted is not None and stopped.record["stopped_because"] == "interrupted"
    assert stopped.record["seeds"] == [0, 1, 2]  # the seeds finished before the signal


def test_stops_when_the_next_seed_would_not_fit(tmp_path, fake_loop, monkeypatch):
    now = [0.0]
    fake_loop({seed: (-1) ** seed * 0.02 for seed in range(30)}, clock=now)
    monkeypatch.setattr(advise_run, "_seed_finished", lambda *args: False)
    monkeypatch.setattr(advise_run, "_seed_seconds", lambda config, calibration: 1000.0)
    advice = run_advise(_config(tmp_path, time=2500), clock=lambda: now[0]).record  # 2 seeds of 1000 s fit, not 3
    assert advice["stopped_because"] == "time" and len(advice["seeds"]) == 2


def test_the_seed_estimate_follows_the_seeds_trained_not_a_pessimistic_calibration(tmp_path, fake_loop, monkeypatch):
    # A calibration on a busy machine said 5000 s per seed; seeds then take 1000 s: the advice uses its time.
    now = [0.0]
    fake_loop({seed: (-1) ** seed * 0.02 for seed in range(30)}, clock=now)
    monkeypatch.setattr(advise_run, "_seed_finished", lambda *args: False)
    monkeypatch.setattr(advise_run, "_seed_seconds", lambda config, calibration: 5000.0)
    advice = run_advise(_config(tmp_path, time=6000), clock=lambda: now[0]).record
    assert advice["stopped_because"] == "time" and len(advice["seeds"]) == 6


@pytest.mark.parametrize(
    "options,message",
    [
        (["--time", "0"], "--time"),
        (["--time", "soon"], "--time 'soon' is not a duration"),
        (["--time", "5m", "--arms", "nosuch"], "unknown arm 'nosuch'"),
        (["--time", "5m", "--arms", "baseline-x2"], "advise runs the baseline"),
        (["--time", "5m", "--epochs", "1"], "too few to branch"),
        (["--time", "5m", "--method", "proposed"], "use --arms"),
        (["--time", "5m", "--setting", "B"], "use --settings"),
        (["--time", "1s", "--epochs", "2", "--cost-ratio", "2"], "one seed takes about"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, options, message):
    out = tmp_path / "advice"
    assert main(["advise", *TINY, "--out", str(out), "--arms", "proposed", *options]) == 2
    lines = capsys.readouterr().err.strip().splitlines()  # calibration's progress lines may come first
    assert lines[-1].startswith("lossaug: error:") and message in lines[-1]
    assert sum("error" in line for line in lines) == 1 and not out.exists()


@pytest.mark.slow
def test_a_tiny_real_advice_resumes_and_refuses_another_request(tmp_path, capsys):
    out = tmp_path / "advice"
    command = [
        "advise",
        *TINY,
        "--epochs",
        "2",
        "--arms",
        "gated",
        "--cost-ratios",
        "gated=1.2",
        "--time",
        "20m",
        "--out",
        str(out),
        "--max-seeds",
        "2",
    ]
    assert main(command) == 0
    advice = json.loads((out / "advice.json").read_text())
    assert advice["seeds"] == [0, 1] and advice["budgets_run"] == [1.0, 2.0] and math.isfinite(advice["seconds"])
    assert (out / "frontier.png").is_file() and (out / "summary.json").is_file() and (out / "advice.md").is_file()
    first = (out / "setting-A" / "gated" / "seed-0" / "final.json").stat().st_mtime_ns
    assert main(command) == 0  # the same command continues: its finished seeds are read back, not trained again
    assert json.loads((out / "advice.json").read_text())["seeds"] == [0, 1]
    assert (out / "setting-A" / "gated" / "seed-0" / "final.json").stat().st_mtime_ns == first
    capsys.readouterr()
    with RunLock(out):  # another advice training in the same folder: refused in one line, nothing touched
        assert main(command) == 2
    assert "is in use by process" in capsys.readouterr().err
    assert json.loads((out / "advice.json").read_text())["seeds"] == [0, 1]
    assert main([*command, "--margin", "1"]) == 2
    assert "holds an advice asked with other options (margin)" in capsys.readouterr().err


def test_help_names_every_option_of_the_advice_and_an_example(capsys):
    with pytest.raises(SystemExit):
        main(["advise", "--help"])
    text = capsys.readouterr().out
    for option in ("--time", "--arms", "--settings", "--margin", "--max-seeds", "--branch-at", "--cost-ratios"):
        assert option in text
    assert "example: lossaug advise" in text and "%%" not in text and "anytime-valid 95% confidence" in text


def _parsed(words: list[str]) -> TrainConfig:
    """The config ``lossaug train`` builds from ``words`` (``lossaug train ...``)."""
    assert words[:2] == ["lossaug", "train"]
    return config_from_args(build_parser().parse_args(words[1:]))


@pytest.mark.parametrize("arm", ["proposed", "gated", "weighted-equal-time", "baseline-x2"])
def test_the_command_is_the_recipe_measured_a_trunk_then_the_arm_from_it(arm):
    config = AdviseConfig(base=BASE, time=60, arms=("proposed",), branch_at=0.5)
    ratios = {"proposed": 2.0, "gated": 1.4, "weighted": 4.0}
    first, second = (shlex.split(part) for part in train_command(config, arm, "A", ratios).split(" && "))
    trunk, branch, spec = _parsed(first), _parsed(second), arm_named(arm)
    assert (trunk.method, trunk.stop_at, trunk.epochs, trunk.branch_from) == ("baseline", 0.5, BASE.epochs, None)
    assert (branch.branch_from, branch.stop_at, branch.method) == (trunk.out, None, spec.method)
    assert branch.epochs == spec.epochs(BASE.epochs, 0.5, ratios)  # the compute the comparison gave it
    changed = {"out", "cache_dir", "stop_at", "branch_from", "epochs", "method", *dict(spec.options)}
    for run in (trunk, branch):
        same = {f.name for f in dataclasses.fields(TrainConfig)} - changed
        assert {name: getattr(run, name) for name in same} == {name: getattr(BASE, name) for name in same}
    assert all(getattr(branch, name) == value for name, value in spec.options)
    alone = _parsed(shlex.split(standalone_command(config, arm, "A", ratios)))
    assert alone.branch_from is None and alone.stop_at is None and alone.method == spec.method


def test_the_baseline_is_one_plain_run():
    config = AdviseConfig(base=BASE, time=60, arms=("proposed",), branch_at=0.5)
    command = train_command(config, "baseline", "A", {"proposed": 2.0})
    assert "&&" not in command and _parsed(shlex.split(command)).epochs == BASE.epochs
