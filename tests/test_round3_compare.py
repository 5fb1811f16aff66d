"""Issue 31's compare items: no silently wrong experiment (options dropped, runs of other data counted, budgets
that cannot bracket an arm, a branch with no epoch after it) and no verdict the data cannot carry (zero spread,
unresolved break-even, arms near chance), impossible values in run files and enormous numbers refused."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from lossaug.cli import main
from lossaug.compare import CompareConfig, validate_compare
from lossaug.errors import InputError
from lossaug.run.config import TrainConfig

BASE = TrainConfig(
    dataset="mini", train_size=64, model="cnn", width=2, epochs=2, batch_size=32, lr=0.05, device="cpu", out=None
)
TINY = ["--dataset", "mini", "--train-size", "64", "--model", "cnn", "--width", "2", "--device", "cpu"]


# ---------------------------------------------------------------- 1: options compare sets per run


@pytest.mark.parametrize(
    "typed, instead",
    [
        (["--setting", "C"], "--settings"),
        (["--seed", "3"], "--seeds"),
        (["--method", "maxup"], "--arms"),
        (["--setting", "A"], "--settings"),
    ],
)
def test_compare_refuses_a_train_option_it_sets_per_run(typed, instead, tmp_path, capsys):
    code = main(["compare", "--out", str(tmp_path / "c"), "--cost-ratio", "2", "--epochs", "2", *TINY, *typed])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert typed[0] in err and instead in err
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("field, value", [("setting", "C"), ("seed", 3), ("method", "maxup")])
def test_compare_refuses_a_shared_value_of_a_field_set_per_run(field, value, tmp_path):
    """As from a --config file or a library call: the runs would overwrite it."""
    config = CompareConfig(base=dataclasses.replace(BASE, **{field: value}), out=str(tmp_path), cost_ratio=2.0)
    with pytest.raises(InputError, match=f"compare sets {field} per run"):
        validate_compare(config)


def test_a_shared_setting_or_seed_among_the_comparisons_own_is_allowed(tmp_path):
    """A protocol's [train] may repeat its one setting (frontier-transfer-C: setting = "C", settings = ["C"])."""
    base = dataclasses.replace(BASE, setting="C", seed=1)
    validate_compare(CompareConfig(base=base, out=str(tmp_path), settings=("C",), seeds=(1, 2), cost_ratio=2.0))


# ---------------------------------------------------------------- 3: no verdict from a zero sample sd


def _runs(errors, examples=None, classes=None):
    extra = {k: v for k, v in (("test_examples", examples), ("num_classes", classes)) if v is not None}
    return {
        seed: {
            "test_error": error,
            "train_error": 0.01,
            "seconds": 10.0,
            "epochs": 2,
            "device": "cpu",
            "git_commit": "c0ffee",
            "git_dirty": False,
            "dir": f"runs/seed-{seed}",
            **extra,
        }
        for seed, error in errors.items()
    }


def test_a_zero_sample_sd_gives_no_interval_and_no_verdict():
    from lossaug.compare.stats import paired_difference, verdict

    same = paired_difference([2 / 76, 2 / 76])
    assert same.sd == 0 and math.isnan(same.half_width)
    assert verdict(same.mean, same.half_width, 0.005) == "unresolved"


def test_summary_says_why_a_zero_spread_endpoint_is_unresolved_and_states_the_granularity():
    from lossaug.compare import summarize, summary_markdown

    baseline = {0: 30 / 76, 1: 28 / 76}
    proposed = {seed: error + 2 / 76 for seed, error in baseline.items()}  # +2.63 points on both seeds
    results = {"A": {"baseline": _runs(baseline, 76, 10), "proposed": _runs(proposed, 76, 10)}}
    config = CompareConfig(base=BASE, out="x", arms=("baseline", "proposed"), seeds=(0, 1), cost_ratio=2.0)
    summary = summarize(config, results, {"A": {"proposed": {"value": 2.0, "source": "declared"}}})
    endpoint = summary["endpoints"]["A"]["proposed - baseline"]
    assert endpoint["verdict"] == "unresolved" and endpoint["no_spread"] and endpoint["seeds_needed"] is None
    markdown = summary_markdown(summary)
    assert "| +2.63 ± - | [-, -] | 0.00 | unresolved (no spread) |" in markdown
    assert "too coarse to resolve this at this n (76 test examples: one example = 1.32 points)" in markdown
    assert "Test set: 76 test examples: one example = 1.32 points." in markdown


# ---------------------------------------------------------------- 4: break-even pays only on a resolved gain


def _frontier_summary(x2_offset: float, proposed_offsets: tuple[float, ...]):
    from lossaug.compare import summarize

    seeds = tuple(range(len(proposed_offsets)))
    config = CompareConfig(
        base=BASE, out="x", arms=("baseline", "proposed"), seeds=seeds, budgets=(1.0, 2.0), cost_ratio=1.5
    )
    base = {s: 0.30 + 0.001 * s for s in seeds}
    results = {
        "A": {
            "baseline": _runs(base),
            "baseline-x2": _runs({s: e + x2_offset for s, e in base.items()}),
            "proposed": _runs({s: base[s] + d for s, d in enumerate(proposed_offsets)}),
        }
    }
    return summarize(config, results, {"A": {"proposed": {"value": 1.5, "source": "declared"}}})


@pytest.mark.parametrize("x2_offset", [-0.01, 0.01])  # a falling curve (R* 16) and a rising one (R* any)
def test_break_even_says_unresolved_for_an_unresolved_gain(x2_offset):
    from lossaug.compare import summary_markdown

    summary = _frontier_summary(x2_offset, (-0.10, 0.02, -0.04))  # -4 points ± 15: unresolved
    row = summary["break_even"]["A"]["proposed"]
    assert row["gain"] == pytest.approx(-0.04) and row["gain_verdict"] == "unresolved"
    assert row["status"].startswith("unresolved") and "pays" not in summary_markdown(summary).split("| break-even")[1]


def test_break_even_still_pays_on_a_resolved_gain():
    summary = _frontier_summary(-0.01, (-0.041, -0.039, -0.040))
    row = summary["break_even"]["A"]["proposed"]
    assert row["gain_verdict"] == "better" and row["status"] == "pays"


# ---------------------------------------------------------------- 2: budgets that cannot bracket an arm


def _budgeted(tmp_path, **changes):
    values = dict(
        base=BASE,
        out=str(tmp_path / "cmp"),
        arms=("baseline", "proposed"),
        seeds=(0,),
        budgets=(1.0, 2.0),
        branch_at=0.5,
        cost_ratio=2.4,
    )
    return CompareConfig(**{**values, **changes})


def test_budgets_that_cannot_bracket_an_arm_are_refused_naming_budgets_that_would(tmp_path):
    """The issue's case: R = 2.40 at branch 0.5 puts proposed at 1.70, the curve ends at 1.50 (budget 2)."""
    with pytest.raises(InputError) as refused:
        validate_compare(_budgeted(tmp_path))
    message = str(refused.value)
    assert "cannot bracket proposed (compute 1.70)" in message and "span compute 1.00-1.50" in message
    assert "--budgets 1,2,3 would" in message and "allow_out_of_range" in message
    validate_compare(_budgeted(tmp_path, budgets=(1.0, 2.0, 3.0)))  # as suggested: brackets it
    validate_compare(_budgeted(tmp_path, allow_out_of_range=True))


def test_an_arm_below_the_curve_gets_a_smaller_budget(tmp_path):
    config = _budgeted(tmp_path, budgets=(1.0, 2.0), branch_at=0.0, cost_ratio=0.7)  # proposed at 0.70
    with pytest.raises(InputError, match=r"--budgets 0\.7,1,2 would"):
        validate_compare(config)


def test_a_measured_ratio_out_of_range_is_refused_before_any_training(tmp_path, monkeypatch):
    import lossaug.compare.costs as costs_module
    import lossaug.compare.runner as runner_module

    def fake_bench(config, setting, kinds, log=None):
        return {kind: {"value": 2.4, "source": "bench", "bench": {"device": "cpu"}} for kind in kinds}

    def no_training(*args, **kwargs):
        raise AssertionError("trained before the budgets were checked")

    monkeypatch.setattr(costs_module, "measure_cost_ratios", fake_bench)
    monkeypatch.setattr(runner_module, "train", no_training)
    from lossaug.compare import run_compare

    with pytest.raises(InputError, match="cannot bracket proposed"):
        run_compare(_budgeted(tmp_path, cost_ratio=None))


def test_allow_out_of_range_from_the_command_line_and_a_protocol(tmp_path):
    from lossaug.cli import build_parser
    from lossaug.compare import config_from_protocol

    table = {"out": str(tmp_path), "budgets": [1, 2], "allow_out_of_range": True}
    assert config_from_protocol(table, BASE).allow_out_of_range
    with pytest.raises(InputError, match="allow_out_of_range must be true or false"):
        config_from_protocol({**table, "allow_out_of_range": "yes"}, BASE)
    args = build_parser().parse_args(["compare", "--out", "x", "--allow-out-of-range"])
    assert args.allow_out_of_range


def test_budget_points_are_labelled_with_name_and_compute():
    from lossaug.compare import budget_label

    assert budget_label("baseline-x2", 1.5) == "baseline-x2 (×1.50)"


# ---------------------------------------------------------------- 5: arms near chance are flagged


def _two_arm_summary(baseline, proposed, classes):
    from lossaug.compare import summarize

    results = {"A": {"baseline": _runs(baseline, 400, classes), "proposed": _runs(proposed, 400, classes)}}
    config = CompareConfig(base=BASE, out="x", arms=("baseline", "proposed"), seeds=(0, 1, 2), cost_ratio=2.0)
    return summarize(config, results, {"A": {"proposed": {"value": 2.0, "source": "declared"}}})


def test_summary_warns_when_an_arm_is_near_chance():
    from lossaug.compare import summary_markdown

    summary = _two_arm_summary({0: 0.70, 1: 0.72, 2: 0.73}, {0: 0.68, 1: 0.71, 2: 0.69}, classes=4)  # chance 75%
    assert summary["test_sets"]["A"]["near_chance"] == ["baseline", "proposed"]
    assert "**Warning: near chance** (75.00% error at 4 classes): baseline, proposed learned little" in (
        summary_markdown(summary)
    )
    learned = _two_arm_summary({0: 0.30, 1: 0.32, 2: 0.31}, {0: 0.29, 1: 0.30, 2: 0.33}, classes=4)
    assert learned["test_sets"]["A"]["near_chance"] == [] and "near chance" not in summary_markdown(learned)


# ---------------------------------------------------------------- 9: finished runs of other data do not count


def _image_folder(root, offset: int) -> None:
    """Two classes of 8x8 RGB PNGs, 16 train and 4 test each; ``offset`` changes every pixel."""
    import numpy as np
    from PIL import Image

    for split, count in (("train", 16), ("test", 4)):
        for label, name in enumerate(("cat", "dog")):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                rng = np.random.default_rng(1000 * offset + 100 * label + i + (50 if split == "test" else 0))
                pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")


def test_compare_refuses_finished_runs_of_other_data_and_keeps_those_of_the_same_data(tmp_path, capsys):
    import shutil

    for name, offset in (("x", 0), ("y", 1)):
        _image_folder(tmp_path / name, offset)
    shutil.copytree(tmp_path / "x", tmp_path / "x-moved")  # the same data elsewhere
    out = tmp_path / "cmp"
    common = [
        "compare",
        "--out",
        str(out),
        "--dataset",
        "folder",
        "--model",
        "cnn",
        "--width",
        "2",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--device",
        "cpu",
        "--arms",
        "baseline",
        "--seeds",
        "0",
        "--cost-ratio",
        "2",
    ]
    assert main([*common, "--data", str(tmp_path / "x")]) == 0
    capsys.readouterr()
    run = out / "setting-A" / "baseline" / "seed-0"
    final = json.loads((run / "final.json").read_text())
    assert (final["test_examples"], final["num_classes"]) == (8, 2)  # item 3's granularity, item 5's chance
    assert json.loads((run / "config.json").read_text())["resolved"]["data_fingerprint"]["count"] == 32
    assert main([*common, "--data", str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "baseline/seed-0" in err and "data fingerprint" in err and "images_sha256" in err
    assert main([*common, "--data", str(tmp_path / "x-moved")]) == 0
    assert "done already" in capsys.readouterr().err


# ---------------------------------------------------------------- 17: a branch point with no epoch after it


def test_a_branch_point_that_leaves_an_arm_less_than_one_epoch_is_refused(tmp_path, capsys):
    code = main(
        [
            "compare",
            "--out",
            str(tmp_path / "c"),
            "--epochs",
            "1",
            "--branch-at",
            "0.8",
            "--cost-ratio",
            "2",
            "--arms",
            "baseline,proposed",
            "--seeds",
            "0",
            *TINY,
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "0.2 epochs after the branch (less than one)" in err
    assert not (tmp_path / "c").exists()
    validate_compare(CompareConfig(base=BASE, out=str(tmp_path), branch_at=0.5, cost_ratio=2.0))  # 1 epoch after


# ---------------------------------------------------------------- 13: impossible values in run files


def _finished_run(directory, final=None, seconds=1.0):
    import json

    directory.mkdir(parents=True)
    values = {"test_error": 0.3, "train_error": 0.1, "seconds": 2.0, "epochs": 2, "device": "cpu", **(final or {})}
    (directory / "final.json").write_text(json.dumps(values))
    (directory / "config.json").write_text(json.dumps({"config": {"epochs": 2}, "git_commit": "c0ffee"}))
    records = [{"epoch": epoch, "seconds": seconds} for epoch in (1, 2)]
    (directory / "metrics.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    return directory


@pytest.mark.parametrize(
    "final, seconds, file",
    [
        ({"test_error": 3.5}, 1.0, "final.json"),
        ({"test_error": -5}, 1.0, "final.json"),
        ({"test_error": float("nan")}, 1.0, "final.json"),  # was "paired differences must not be NaN", no file
        ({"train_error": 1e308}, 1.0, "final.json"),
        ({"seconds": float("inf")}, 1.0, "final.json"),
        ({"epochs": 10**400}, 1.0, "final.json"),
        ({}, -1, "metrics.jsonl"),
        ({}, 1e308, "metrics.jsonl"),
        ({}, float("inf"), "metrics.jsonl"),
        ({}, float("nan"), "metrics.jsonl"),
    ],
)
def test_impossible_values_in_run_files_are_refused_naming_the_file(final, seconds, file, tmp_path):
    from lossaug.compare import read_result

    run = _finished_run(tmp_path / "run", final, seconds)
    with pytest.raises(InputError, match=rf"{file}.* \(expected a finite number in \["):
        read_result(run)


# ---------------------------------------------------------------- 22: enormous numbers bounded at validation


@pytest.mark.parametrize(
    "changes, match",
    [
        (dict(cost_ratio=1e300), "cost_ratio must be at most 1000"),
        (dict(budgets=(1e308, 1.0)), "budgets must be at most 1000"),
        (dict(cost_ratios={"gated": 1e308}, arms=("baseline", "gated")), "cost ratio of 'gated' must be at most"),
    ],
)
def test_enormous_ratios_and_budgets_are_refused_at_validation(changes, match, tmp_path):
    config = CompareConfig(**{"base": BASE, "out": str(tmp_path), "cost_ratio": 2.0, **changes})
    with pytest.raises(InputError, match=match):
        validate_compare(config)


def test_an_enormous_saved_cost_ratio_is_refused_naming_the_file(tmp_path):
    import json

    from lossaug.compare import resolve_costs

    (tmp_path / "cost_ratio.json").write_text(json.dumps({"A": {"value": 1e308, "source": "bench"}}))
    with pytest.raises(InputError, match=r"cost_ratio.json entry 'A' has value 1e\+308, not a cost ratio"):
        resolve_costs(CompareConfig(base=BASE, out=str(tmp_path)))  # baseline-equal-time needs R


def test_an_enormous_cost_ratio_on_the_command_line_is_one_line(tmp_path, capsys):
    code = main(["compare", "--out", str(tmp_path / "c"), "--cost-ratio", "1e300", "--epochs", "2", *TINY])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "cost_ratio must be at most 1000" in err


# ---------------------------------------------------------------- 25: messages that say what a user needs


@pytest.mark.parametrize(
    "typed, canonical", [("gated-0.50", "gated-0.5"), ("baseline-x2.0", "baseline-x2"), ("proposed-m08", "proposed-m8")]
)
def test_an_arm_written_another_way_is_named_as_it_should_be(typed, canonical):
    from lossaug.compare import arm_named

    with pytest.raises(InputError, match=f"unknown arm '{typed}'; did you mean '{canonical}'"):
        arm_named(typed)


@pytest.mark.parametrize("budgets", ["-1,1", "-0.5", "-1e300,1"])
def test_negative_budgets_parse_and_are_refused_by_validation(budgets, tmp_path, capsys):
    code = main(
        ["compare", "--out", str(tmp_path / "c"), "--cost-ratio", "2", "--epochs", "2", "--budgets", budgets, *TINY]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "budgets must be distinct finite numbers > 0" in err, err


def test_a_negative_cost_ratio_is_refused_by_validation_not_argparse(tmp_path, capsys):
    code = main(["compare", "--out", str(tmp_path / "c"), "--cost-ratio", "-1e300", "--epochs", "2", *TINY])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "cost_ratio must be a finite number > 0, got -1e+300" in err, err
