"""Tests of lossaug compare (tiny arms x settings x seeds, endpoints, provenance, protocols) and lossaug report."""

import dataclasses
import json
import math
import sys
import types
from pathlib import Path

import pytest

import lossaug.compare as compare_module
import lossaug.compare.costs as costs_module
import lossaug.compare.runner as runner_module
from lossaug.cli import load_config_file, main
from lossaug.compare import (
    CompareConfig,
    arm_named,
    config_from_protocol,
    equal_compute_epochs,
    forest_rows,
    mean_interval,
    plan,
    resolve_costs,
    run_compare,
    run_dir,
    summarize,
    summary_markdown,
    trunk_config,
    validate_compare,
)
from lossaug.compare.stats import min_detectable_effect, seeds_needed
from lossaug.run.train import TrainConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
BASE = TrainConfig(
    dataset="mini",
    train_size=64,
    model="cnn",
    width=2,
    epochs=1,
    batch_size=32,
    lr=0.05,
    device="cpu",
    num_candidates=2,
)


def _no_training(*args, **kwargs):
    raise AssertionError("compare trained a run it should not have")


class FakeTrain:
    """Stands in for ``train``: writes the files a run leaves (config.json, metrics.jsonl, final.json and, for a
    trunk, trunk.json) in an instant. A step costs 1 s for the baseline and 2 s with selection; the test error is
    0.5 for the baseline, 0.49 for proposed, 0.495 for maxup, less 0.001 per seed."""

    ERROR = {"baseline": 0.5, "proposed": 0.49, "maxup": 0.495}

    def __init__(self, commit="c0ffee"):
        self.calls, self.commit = [], commit

    def __call__(self, config, reporter=None, resume=False, overwrite=False):
        self.calls.append(config)
        out = Path(config.out)
        out.mkdir(parents=True, exist_ok=True)
        meta = {"config": dataclasses.asdict(config), "git_commit": self.commit, "git_dirty": False}
        (out / "config.json").write_text(json.dumps(meta))
        first = 1
        if config.branch_from is not None:
            first += len((Path(config.branch_from) / "metrics.jsonl").read_text().splitlines())
        last = round(config.epochs * config.stop_at) if config.stop_at else config.epochs
        cost = 1.0 if config.method == "baseline" else 2.0
        lines = [json.dumps({"epoch": e, "seconds": cost}) for e in range(first, last + 1)]
        (out / "metrics.jsonl").write_text("".join(line + "\n" for line in lines))
        if config.stop_at:
            (out / "trunk.json").write_text("{}")
            return
        error = self.ERROR[config.method] - 0.001 * config.seed - 0.0001 * config.epochs
        final = {"test_error": error, "train_error": 0.01, "seconds": 1.0, "device": "cpu", "epochs": config.epochs}
        (out / "final.json").write_text(json.dumps(final))


def test_compare_runs_every_arm_and_summarises(tmp_path, monkeypatch):
    fake = FakeTrain()
    monkeypatch.setattr(runner_module, "train", fake)
    monkeypatch.setattr(runner_module, "git_commit", lambda: "c0ffee")
    base = dataclasses.replace(BASE, epochs=10)
    config = CompareConfig(base=base, out=str(tmp_path / "cmp"), settings=("A", "B"), seeds=(0, 1), cost_ratio=2.0)
    summary = run_compare(config)
    assert len(fake.calls) == 16 and all(c.branch_from is None and c.stop_at is None for c in fake.calls)
    for setting in ("A", "B"):
        rows = summary["settings"][setting]
        assert list(rows) == ["baseline", "proposed", "maxup", "baseline-equal-time"]
        for row in rows.values():
            assert row["test_error"]["n"] == 2 and row["diff_to_baseline"]["n"] == 2
        assert rows["baseline"]["diff_to_baseline"]["mean"] == 0
        assert rows["baseline-equal-time"]["epochs"] == [20, 20]  # E * R = 10 * 2, whatever the seconds measured
        assert rows["baseline-equal-time"]["declared_cost"] == 2.0 == rows["proposed"]["declared_cost"]
        assert rows["proposed"]["time_ratio"]["mean"] == 2.0 == rows["baseline-equal-time"]["time_ratio"]["mean"]
        endpoints = summary["endpoints"][setting]
        assert list(endpoints) == ["proposed - baseline", "proposed - baseline-equal-time", "maxup - baseline"]
        assert endpoints["proposed - baseline"]["mean"] == pytest.approx(-0.01)
        assert endpoints["proposed - baseline-equal-time"]["mean"] == pytest.approx(-0.009)
        assert endpoints["maxup - baseline"]["per_seed"] == {0: pytest.approx(-0.005), 1: pytest.approx(-0.005)}
        for e in endpoints.values():
            # every seed the same difference: no spread, so no verdict (issue 31, item 3)
            assert e["n"] == 2 and e["verdict"] == "unresolved" and e["no_spread"]
            assert e["sd"] == pytest.approx(0, abs=1e-12)
    assert summary["cost_ratio"] == {
        "A": {"value": 2.0, "source": "declared"},
        "B": {"value": 2.0, "source": "declared"},
    }
    assert summary["provenance"]["commits"] == {"c0ffee": 16}
    markdown = (tmp_path / "cmp" / "summary.md").read_text()
    for text in (
        "## Setting A",
        "## Setting B",
        "| proposed - baseline-equal-time | 2 | -0.90 ± - |",
        "2.000, declared",
    ):
        assert text in markdown, text
    assert json.loads((tmp_path / "cmp" / "summary.json").read_text())["seeds"] == [0, 1]
    assert (tmp_path / "cmp" / "forest.png").read_bytes()[:4] == b"\x89PNG"

    monkeypatch.setattr(runner_module, "train", _no_training)
    again = run_compare(config)
    # as JSON: a no-spread endpoint's interval is NaN, and NaN != NaN
    assert again["settings"] == summary["settings"] and json.dumps(again["endpoints"]) == json.dumps(
        summary["endpoints"]
    )


def test_branched_compare_trains_one_trunk_per_seed_and_counts_its_time(tmp_path, monkeypatch):
    fake = FakeTrain()
    monkeypatch.setattr(runner_module, "train", fake)
    monkeypatch.setattr(runner_module, "git_commit", lambda: "c0ffee")
    base = dataclasses.replace(BASE, epochs=10)
    config = CompareConfig(base=base, out=str(tmp_path), seeds=(0, 1), branch_at=0.5, cost_ratio=2.0)
    summary = run_compare(config)
    trunks = [c for c in fake.calls if c.stop_at is not None]
    assert [(c.seed, c.method, c.stop_at, c.epochs) for c in trunks] == [
        (0, "baseline", 0.5, 10),
        (1, "baseline", 0.5, 10),
    ]
    arms = [c for c in fake.calls if c.stop_at is None]
    assert len(arms) == 8 and all(
        c.branch_from == str(tmp_path / "setting-A" / "trunk" / f"seed-{c.seed}") for c in arms
    )
    rows = summary["settings"]["A"]
    assert rows["baseline-equal-time"]["epochs"] == [15, 15]  # 5 shared + 5 * 2
    assert rows["proposed"]["declared_cost"] == 1.5 == rows["baseline-equal-time"]["declared_cost"]
    # 5 trunk epochs at 1 s, then 5 at 2 s (proposed) or 10 at 1 s (equal compute), against 10 at 1 s
    assert rows["proposed"]["time_ratio"]["mean"] == 1.5 == rows["baseline-equal-time"]["time_ratio"]["mean"]
    assert summary["design"]["branch_at"] == 0.5 and summary["provenance"]["commits"] == {"c0ffee": 10}
    assert "continues from the baseline's checkpoint at 50% of its steps" in (tmp_path / "summary.md").read_text()
    monkeypatch.setattr(runner_module, "train", _no_training)
    assert json.dumps(run_compare(config)["endpoints"]) == json.dumps(summary["endpoints"])  # NaN != NaN
    unbranched = dataclasses.replace(config, branch_at=0.0)
    with pytest.raises(ValueError, match="holds a run with other options .*branch_from"):
        run_compare(unbranched)


def test_statistics_helpers():
    stats = mean_interval([0.1, 0.2, 0.3])
    assert stats["n"] == 3 and math.isclose(stats["mean"], 0.2) and math.isclose(stats["std"], 0.1)
    assert stats["ci95"] == pytest.approx(4.303 * 0.1 / math.sqrt(3), rel=1e-4)
    assert math.isnan(mean_interval([0.5])["std"])


def test_equal_compute_epochs_count_post_branch_steps_at_the_cost_ratio():
    assert equal_compute_epochs(100, 1.84) == 184  # from the start: E * R
    assert equal_compute_epochs(100, 1.84, branch_at=0.5) == 142  # 50 shared + 50 * 1.84 (the 142)
    assert equal_compute_epochs(10, 1.25) == 13  # 12.5 rounds half up, not to even
    assert equal_compute_epochs(2, 2.0, branch_at=0.5) == 3
    config = CompareConfig(base=dataclasses.replace(BASE, epochs=100), out="x", branch_at=0.5)

    def compute(arm, ratios):  # the arm's compute in baseline runs; None while a ratio it needs is unknown
        return arm_named(arm).compute(config.base.epochs, config.branch_at, ratios)

    assert compute("baseline", {}) == 1.0 and compute("proposed", {}) is None
    assert compute("proposed", {"proposed": 1.84}) == pytest.approx(1.42)
    assert compute("baseline-equal-time", {"proposed": 1.84}) == 1.42


def test_branch_runs_continue_from_the_trunk(tmp_path):
    config = CompareConfig(base=BASE, out=str(tmp_path), settings=("B",), seeds=(3,), branch_at=0.5, cost_ratio=2.0)
    ratios = {"B": {"proposed": 2.0}}
    runs = {spec.arm: spec.config for spec in plan(config, ratios)}
    trunk = trunk_config(config, "B", 3)
    assert runs[None] == trunk
    assert (trunk.method, trunk.setting, trunk.seed, trunk.stop_at, trunk.epochs) == ("baseline", "B", 3, 0.5, 1)
    assert trunk.out == str(tmp_path / "setting-B" / "trunk" / "seed-3") and trunk.branch_from is None
    equal = runs["baseline-equal-time"]
    assert (equal.method, equal.epochs, equal.branch_from) == ("baseline", 2, trunk.out)  # 0.5 + 0.5 * 2 = 1.5 -> 2
    proposed = runs["proposed"]
    assert (proposed.method, proposed.epochs, proposed.stop_at, proposed.branch_from) == (
        "proposed",
        1,
        None,
        trunk.out,
    )
    assert proposed.out == str(run_dir(config, "B", "proposed", 3))
    start = {spec.arm: spec.config for spec in plan(dataclasses.replace(config, branch_at=0.0), ratios)}["proposed"]
    assert start.branch_from is None and start.stop_at is None


def _runs(errors, commit="c0ffee", dirty=False):
    return {
        seed: {
            "test_error": error,
            "train_error": 0.01,
            "seconds": 10.0,
            "epochs": 1,
            "device": "cpu",
            "git_commit": commit,
            "git_dirty": dirty,
            "dir": f"runs/{commit}/seed-{seed}",
        }
        for seed, error in errors.items()
    }


def test_endpoints_and_verdicts_from_constructed_results():
    seeds = range(12)
    baseline = {s: 0.50 + 0.01 * (s % 3) for s in seeds}
    proposed = {s: baseline[s] - 0.005 + 0.001 * (-1) ** s for s in seeds}  # 0.5 points better, sd 0.1
    equal = {s: proposed[s] + 0.0005 * (-1) ** (s // 2) for s in seeds}  # within ±0.1 of proposed
    maxup = {s: baseline[s] + 0.02 * (-1) ** s for s in seeds}  # ±2 points: unresolved
    results = {
        "A": {
            "baseline": _runs(baseline),
            "proposed": _runs(proposed),
            "maxup": _runs(maxup),
            "baseline-equal-time": _runs(equal),
        }
    }
    config = CompareConfig(base=BASE, out="x", seeds=tuple(seeds), cost_ratio=2.0)
    summary = summarize(config, results, {"A": {"proposed": {"value": 2.0, "source": "declared"}}})
    endpoints = summary["endpoints"]["A"]
    names = ("proposed - baseline", "proposed - baseline-equal-time", "maxup - baseline")
    better, equivalent, unresolved = (endpoints[name] for name in names)
    assert better["verdict"] == "better" and better["mean"] == pytest.approx(-0.005) and better["better_in"] == 12
    assert better["n"] == 12 and better["sd"] == pytest.approx(0.001 * math.sqrt(12 / 11))
    assert better["min_detectable_effect"] == pytest.approx(min_detectable_effect(better["sd"], 12))
    assert better["seeds_needed"] == seeds_needed(better["sd"]) == 3
    assert equivalent["verdict"] == "equivalent within ±δ" and equivalent["high"] < 0.005
    assert unresolved["verdict"] == "unresolved" and unresolved["seeds_needed"] > 12
    assert (endpoints["proposed - baseline"]["treatment"], endpoints["proposed - baseline"]["control"]) == (
        "proposed",
        "baseline",
    )
    assert summary["provenance"] == {"commits": {"c0ffee": 48}, "dirty": False, "mixed_allowed": False}
    markdown = summary_markdown(summary)
    assert "| proposed - baseline | 12 | -0.50 ± 0.07 | [-0.57, -0.43] | 0.10 | better | 12/12 |" in markdown
    assert "equivalent within ±δ (δ = 0.5 points)" in markdown and "| maxup - baseline | 12 |" in markdown
    assert "Commits: c0ffee (48 runs); uncommitted changes in the tree: no." in markdown
    label, mean, half = forest_rows(summary)[0]
    assert label == "A: proposed - baseline" and mean == pytest.approx(-0.5) and half == pytest.approx(0.0664, abs=1e-4)


def test_summary_refuses_runs_of_several_commits_unless_allowed():
    results = {
        "A": {
            "baseline": _runs({0: 0.5, 1: 0.6}, commit="aaa"),
            "proposed": _runs({0: 0.4, 1: 0.5}, commit="bbb", dirty=True),
        }
    }
    config = CompareConfig(base=BASE, out="x", arms=("baseline", "proposed"), seeds=(0, 1))
    with pytest.raises(ValueError, match=r"runs come from 2 git commits: aaa \(2 runs, .*\); bbb \(2 runs"):
        summarize(config, results)
    summary = summarize(dataclasses.replace(config, allow_mixed_commits=True), results)
    assert summary["provenance"] == {"commits": {"aaa": 2, "bbb": 2}, "dirty": True, "mixed_allowed": True}
    assert "Commits: aaa (2 runs), bbb (2 runs); uncommitted changes in the tree: yes." in summary_markdown(summary)


def test_compare_refuses_to_add_runs_of_another_commit_before_training(tmp_path, monkeypatch):
    config = CompareConfig(base=BASE, out=str(tmp_path), arms=("baseline",), seeds=(0,))
    directory = run_dir(config, "A", "baseline", 0)
    directory.mkdir(parents=True)
    (spec,) = plan(config)
    saved = {"config": dataclasses.asdict(spec.config), "git_commit": "deadbeef"}
    (directory / "config.json").write_text(json.dumps(saved))
    monkeypatch.setattr(runner_module, "train", _no_training)
    monkeypatch.setattr(runner_module, "git_commit", lambda: "cafe")
    with pytest.raises(
        ValueError, match=r"2 git commits: cafe \(1 runs, e.g. runs this command trains now\); deadbeef"
    ):
        run_compare(config)


def test_cost_ratio_is_measured_once_and_kept(tmp_path, monkeypatch):
    calls = []

    def fake_bench(config, setting, kinds, log=None):
        calls.append(setting)
        return {kind: {"value": 1.9, "source": "bench", "bench": {"device": "cpu"}} for kind in kinds}

    monkeypatch.setattr(costs_module, "measure_cost_ratios", fake_bench)
    config = CompareConfig(base=BASE, out=str(tmp_path), settings=("A", "B"))
    assert resolve_costs(config)["B"]["proposed"]["value"] == 1.9 and calls == ["A", "B"]
    assert resolve_costs(config)["A"]["proposed"]["source"] == "bench" and calls == ["A", "B"]  # read back, not rerun
    declared = resolve_costs(dataclasses.replace(config, cost_ratio=2.5))
    assert declared["A"] == {"proposed": {"value": 2.5, "source": "declared"}}
    assert resolve_costs(dataclasses.replace(config, arms=("baseline", "proposed"))) == {}


def test_cost_ratio_is_benched_on_the_comparisons_model_and_m(tmp_path, monkeypatch):
    import lossaug.bench

    seen = []

    class Result:
        def timing(self, num_candidates):
            return types.SimpleNamespace(ratio={1: 1.0, 2: 1.7}[num_candidates])

        def to_json(self):
            return {"device": "cpu"}

    def fake_run_bench(config, log=None):
        seen.append(config)
        return Result()

    monkeypatch.setattr(lossaug.bench, "run_bench", fake_run_bench)
    config = CompareConfig(base=dataclasses.replace(BASE, batch_size=8, score_chunk=16), out=str(tmp_path))
    assert compare_module.measure_cost_ratios(config, "B", ("proposed",)) == {
        "proposed": {"value": 1.7, "source": "bench", "bench": {"device": "cpu"}}
    }
    (bench,) = seen
    assert (bench.model, bench.width, bench.batch_size, bench.candidate_counts) == ("cnn", 2, 8, (1, 2))
    assert (bench.setting, bench.device, bench.score_chunk) == ("B", "cpu", 16)
    proxy = dataclasses.replace(config, base=dataclasses.replace(BASE, proxy_model="cnn"))
    with pytest.raises(ValueError, match=r"not \{'proxy_model': 'cnn'\}; declare the cost ratio"):
        compare_module.measure_cost_ratios(proxy, "A", ("proposed",))


@pytest.mark.parametrize(
    "change,match",
    [
        (dict(arms=("baseline", "mixup")), "unknown arm 'mixup'"),
        (dict(settings=("D",)), "unknown setting 'D'"),
        (dict(seeds=(1, 1)), "distinct"),
        (dict(arms=("baseline-equal-time",)), "needs the arms 'baseline' and 'proposed'"),
        (dict(branch_at=1.0), r"branch_at must be in \[0, 1\), got 1.0"),
        (dict(branch_at=-0.1), r"branch_at must be in \[0, 1\), got -0.1"),
        (dict(cost_ratio=0.0), "cost_ratio must be a finite number > 0, got 0.0"),
        (dict(margin=0.5 * 100), r"margin must be in \(0, 1\) as a fraction .* got 50.0"),
        (dict(base=dataclasses.replace(BASE, stop_at=0.5, out="x")), "compare sets stop_at per run .* got stop_at=0.5"),
    ],
)
def test_bad_compare_config(change, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        validate_compare(CompareConfig(**{"base": BASE, "out": str(tmp_path), **change}))


@pytest.mark.parametrize(
    "name,arms,setting,branch_at,cost_ratio",
    [
        ("cpu-branch-A", ("baseline", "proposed", "baseline-equal-time"), "A", 0.5, 1.94),  # amended: see the file
        ("cpu-start-A", ("baseline", "proposed", "baseline-equal-time"), "A", 0.0, 1.94),  # amended before any result
        ("cpu-branch-B", ("baseline", "proposed", "baseline-equal-time"), "B", 0.5, None),
    ],
)
def test_committed_protocols(name, arms, setting, branch_at, cost_ratio):
    path = ROOT / "experiments" / "protocols" / f"{name}.toml"
    base = TrainConfig(**load_config_file(path))
    config = config_from_protocol(tomllib.loads(path.read_text())["compare"], base)
    assert (config.arms, config.settings, config.seeds) == (arms, (setting,), tuple(range(12)))
    assert (config.branch_at, config.cost_ratio, config.margin) == (branch_at, cost_ratio, 0.005)
    assert config.out == f"docs/results/power/{name}" and not config.allow_mixed_commits
    assert (base.dataset, base.data, base.cache_dir, base.train_size) == (
        "folder",
        "../shared/data/cifar10-jpeg.tar.xz",
        "data/cache",
        1000,
    )
    assert (base.model, base.width, base.epochs, base.batch_size, base.lr, base.num_candidates, base.device) == (
        "preact_resnet18",
        8,
        100,
        64,
        0.05,
        4,
        "cpu",
    )
    assert base.eval_every == 100
    validate_compare(config)


@pytest.mark.parametrize(
    "table,match",
    [
        ({"out": "x", "seed": [1]}, r"unknown key\(s\) \['seed'\]"),
        ({"arms": ["baseline"]}, "needs out, a directory; got None"),
        ({"out": "x", "seeds": "0,1"}, "seeds must be a list of int, got '0,1'"),
        ({"out": "x", "cost_ratio": "fast"}, "cost_ratio .* must be a number, got 'fast'"),
        ({"out": "x", "allow_mixed_commits": "yes"}, "must be true or false, got 'yes'"),
    ],
)
def test_bad_protocol_tables(table, match):
    with pytest.raises(ValueError, match=match):
        config_from_protocol(table, BASE)


TINY_PROTOCOL = """
[compare]
out = "{out}"
arms = ["baseline", "proposed"]
seeds = [0]
cost_ratio = 2.5
margin_points = 0.3

[train]
dataset = "mini"
train_size = 64
model = "cnn"
width = 2
epochs = 1
batch_size = 32
device = "cpu"
num_candidates = 2
cache_dir = "{cache}"
"""


def test_protocol_command_runs_the_file_and_takes_no_other_option(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(runner_module, "train", FakeTrain())
    monkeypatch.setattr(runner_module, "git_commit", lambda: "c0ffee")
    out = tmp_path / "cmp"
    protocol = tmp_path / "p.toml"
    protocol.write_text(TINY_PROTOCOL.format(out=out, cache=tmp_path / "cache"))
    assert main(["compare", "--protocol", str(protocol), "--seeds", "0", "--lr", "0.2"]) == 2
    assert "takes no other options, got --lr" in capsys.readouterr().err
    assert main(["compare", "--protocol", str(protocol), "--seeds", "0,1"]) == 2
    assert "--seeds 1 not in the seeds of" in capsys.readouterr().err
    assert main(["compare", "--protocol", str(protocol), "--seeds", "0"]) == 0  # a worker's share: all of it here
    assert main(["compare", "--protocol", str(protocol)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["design"]["margin"] == pytest.approx(0.003) and summary["seeds"] == [0]
    assert summary["base_config"]["lr"] == TrainConfig().lr  # nothing but the file set the options
    assert (out / "protocol.toml").read_text() == protocol.read_text()
    protocol.write_text("[compare]\nout = 'x'\n")
    assert main(["compare", "--protocol", str(protocol)]) == 2
    assert "must hold a [compare] and a [train] table only, got ['compare']" in capsys.readouterr().err


def test_compare_command_options(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(runner_module, "train", FakeTrain())
    monkeypatch.setattr(runner_module, "git_commit", lambda: "c0ffee")
    out = tmp_path / "cmp"
    options = "--arms baseline,proposed,baseline-equal-time --seeds 3 --dataset mini --model cnn --width 2 --epochs 4"
    compare = "--device cpu --margin 0.3 --branch-at 0.5 --cost-ratio 1.5"
    argv = ["compare", *options.split(), *compare.split(), "--cache-dir", str(tmp_path)]
    assert main([*argv, "--out", str(out)]) == 0
    assert "| proposed | 1 |" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["design"]["margin"] == pytest.approx(0.003) and summary["design"]["branch_at"] == 0.5
    assert summary["cost_ratio"] == {"A": {"value": 1.5, "source": "declared"}}
    assert summary["settings"]["A"]["baseline-equal-time"]["epochs"] == [5]  # 2 + 2 * 1.5
    assert main([*argv, "--branch-at", "1.5", "--out", str(tmp_path / "bad")]) == 2
    assert "branch_at must be in [0, 1), got 1.5" in capsys.readouterr().err
    assert main(argv) == 2
    assert "lossaug compare needs --out DIR" in capsys.readouterr().err


def test_compare_refuses_to_reuse_runs_made_with_other_options(tmp_path, monkeypatch):
    monkeypatch.setattr(runner_module, "train", FakeTrain())
    monkeypatch.setattr(runner_module, "git_commit", lambda: "c0ffee")
    config = CompareConfig(base=BASE, out=str(tmp_path / "cmp"), arms=("baseline",), seeds=(0,))
    run_compare(config)
    changed = dataclasses.replace(config, base=dataclasses.replace(BASE, lr=0.2))
    with pytest.raises(ValueError, match=r"holds a run with other options \(lr: 0.05 -> 0.2\)"):
        run_compare(changed)


@pytest.mark.slow  # ~6 s: a real compare
def test_report_reader_and_command_on_a_real_run(tmp_path, capsys):
    from lossaug.plots import read_run
    from lossaug.run.train import train

    out = tmp_path / "run"
    train(dataclasses.replace(BASE, epochs=3, eval_every=2, out=str(out)))
    label, records = read_run(out)
    assert label.startswith("proposed A seed 0")
    assert [math.isnan(r["test_error"]) for r in records] == [True, False, False]
    assert main(["report", str(out), "--out", str(tmp_path / "r.png")]) == 0
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err


@pytest.mark.slow  # ~5 s: trunk and branches trained
def test_branch_at_end_to_end_on_cpu(tmp_path, capsys, monkeypatch):
    out = tmp_path / "cmp"
    compare = "--branch-at 0.5 --cost-ratio 2 --arms baseline,proposed,baseline-equal-time --seeds 0"
    options = "--dataset mini --train-size 128 --model cnn --width 4 --batch-size 32 --epochs 2 --device cpu"
    argv = ["compare", *compare.split(), *options.split(), "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    trunk = out / "setting-A" / "trunk" / "seed-0"
    assert (trunk / "trunk.json").exists() and not (trunk / "final.json").exists()
    summary = json.loads((out / "summary.json").read_text())
    rows = summary["settings"]["A"]
    assert rows["baseline-equal-time"]["epochs"] == [3]  # 1 shared epoch + 1 epoch at R = 2
    for arm in ("baseline", "proposed", "baseline-equal-time"):
        saved = json.loads((out / "setting-A" / arm / "seed-0" / "config.json").read_text())
        assert saved["config"]["branch_from"] == str(trunk)
    assert summary["provenance"]["commits"] == {saved["git_commit"] or "unknown": 4}  # three arms and the trunk
    assert set(summary["endpoints"]["A"]) == {"proposed - baseline", "proposed - baseline-equal-time"}
    assert (out / "forest.png").read_bytes()[:4] == b"\x89PNG"
    monkeypatch.setattr(runner_module, "train", _no_training)
    assert main(argv) == 0  # everything read back, trunk included
