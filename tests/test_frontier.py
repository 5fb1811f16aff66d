"""The frontier of lossaug compare on constructed numbers: arms at their budgets, interpolation in log compute,
out of range, best reachable, break-even, cost ratios per step kind, and the summary recomputed exactly from the
runs' final.json files."""

import dataclasses
import json
import math
from pathlib import Path

import pytest

import lossaug.compare.costs as costs_module
import lossaug.compare.runner as runner_module
from lossaug.compare import (
    CompareConfig,
    arm_named,
    break_even_ratio,
    config_from_protocol,
    forest_rows,
    interpolate_log,
    needed_kinds,
    plan,
    planned_arms,
    resolve_costs,
    run_compare,
    summarize,
    summary_markdown,
    validate_compare,
)
from lossaug.run.train import TrainConfig

BASE = TrainConfig(dataset="mini", train_size=64, model="cnn", width=2, epochs=30, batch_size=32, lr=0.05,
                   device="cpu", num_candidates=4)  # fmt: skip
RATIOS = {"proposed": 2.0, "gated": 1.3, "weighted": 4.0, "gated-0.5": 4.5}
BUDGETS = (1.0, 1.5, 2.0, 3.0)
ARMS = ("baseline", "proposed", "gated", "gated-0.5", "weighted", "weighted-equal-time", "maxup", "baseline-equal-time")


def test_interpolation_is_linear_in_log_compute_and_never_extrapolates():
    curve = [(1.0, 0.30), (2.0, 0.26), (4.0, 0.25)]
    assert interpolate_log(curve, 1.0) == 0.30 and interpolate_log(curve, 2.0) == 0.26
    assert interpolate_log(curve, math.sqrt(2)) == pytest.approx(0.28)  # halfway in log, not at 1.5
    assert interpolate_log(curve, 2 * math.sqrt(2)) == pytest.approx(0.255)
    assert interpolate_log(curve, 0.99) is None and interpolate_log(curve, 4.01) is None
    assert interpolate_log([(1.5, 0.2)], 1.5) == 0.2 and interpolate_log([], 1.0) is None


def test_break_even_ratio():
    slope = -0.02 / math.log(2)  # 2 points per doubling of compute
    # a 2-point gain is what the baseline gets from twice the compute: c* = 2, R* = (2 - F) / (1 - F)
    assert break_even_ratio(-0.02, slope, branch_at=0.0, tail=1.0) == pytest.approx(2.0)
    assert break_even_ratio(-0.02, slope, branch_at=0.5, tail=0.5) == pytest.approx(3.0)
    assert break_even_ratio(0.001, slope, 0.5, 0.5) is None  # no gain: no ratio pays
    assert break_even_ratio(-0.01, 0.0, 0.5, 0.5) == math.inf  # a flat baseline: any ratio pays


def test_arms_epochs_and_compute_from_e_f_and_each_kinds_ratio():
    expected = {  # name: (epochs, compute) at E = 30, F = 0.5
        "baseline": (30, 1.0),
        "baseline-x1.5": (38, 38 / 30),  # 15 + 15 * 1.5 = 37.5, rounded half up
        "baseline-x3": (60, 2.0),
        "proposed": (30, 1.5),
        "gated": (30, 1.15),
        "maxup": (30, 1.5),  # priced at the proposed step's R
        "weighted": (19, 31 / 30),  # the baseline's compute: 15 + 15 / 4 = 18.75 -> 19; 15 + 4 * 4 priced
        "weighted-equal-time": (23, 47 / 30),  # the proposed arm's: 15 + 15 * 2 / 4 = 22.5 -> 23
        "weighted-uniform-equal-time": (23, 47 / 30),  # the same step and budget, uniform weights
        "baseline-equal-time": (45, 1.5),
    }
    for name, (epochs, compute) in expected.items():
        arm = arm_named(name)
        assert arm.epochs(30, 0.5, RATIOS) == epochs, name
        assert arm.compute(30, 0.5, RATIOS) == pytest.approx(compute), name
    assert arm_named("weighted").epochs(30, 0.5, {}) is None and arm_named("gated").compute(30, 0.5, {}) is None
    assert dict(arm_named("gated").options) == {"score_fraction": 0.25}
    uniform = arm_named("weighted-uniform-equal-time")
    assert (uniform.method, uniform.step, dict(uniform.options)) == ("weighted", "weighted", {"temperature": math.inf})
    assert (
        dict(arm_named("gated-0.5").options) == {"score_fraction": 0.5} and arm_named("gated-0.5").step == "gated-0.5"
    )
    for bad in ("baseline-x0", "baseline-x1", "baseline-x1.50", "gated-2", "gated-q", "mixup"):
        with pytest.raises(ValueError, match=f"unknown arm '{bad}'"):
            arm_named(bad)


def test_plan_generates_the_budget_arms_in_report_order():
    config = CompareConfig(base=BASE, out="cmp", arms=("proposed", "weighted", "gated"), budgets=(3, 1, 1.5),
                           seeds=(0,), branch_at=0.5, cost_ratio=2.0, cost_ratios={"weighted": 4.0})  # fmt: skip
    validate_compare(config)
    specs = plan(config, {"A": {"proposed": 2.0, "weighted": 4.0}})
    assert [s.arm for s in specs] == [None, "baseline", "baseline-x1.5", "baseline-x3", "proposed", "gated", "weighted"]
    by_arm = {s.arm: s.config for s in specs}
    assert [by_arm[a].epochs for a in ("baseline", "baseline-x1.5", "baseline-x3")] == [30, 38, 60]
    assert (by_arm["gated"].method, by_arm["gated"].score_fraction, by_arm["gated"].epochs) == ("proposed", 0.25, 30)
    assert (by_arm["weighted"].method, by_arm["weighted"].epochs) == ("weighted", 19)
    assert all(c.branch_from == str(Path("cmp/setting-A/trunk/seed-0")) for a, c in by_arm.items() if a)
    assert {s.arm for s in plan(config) if s.config is None} == {"weighted"}  # before its R is known
    assert needed_kinds(config) == ["proposed", "gated", "weighted"]  # the frontier places every arm
    assert needed_kinds(dataclasses.replace(config, budgets=(), arms=("baseline", "proposed", "weighted"))) == [
        "weighted"
    ]  # without budgets, only what sizes epochs


@pytest.mark.parametrize(
    "change,match",
    [
        (dict(arms=("proposed",), budgets=(1.5, 2)), "budgets need the baseline"),
        (dict(budgets=(1, 0)), "budgets must be distinct finite numbers > 0"),
        (dict(budgets=(1, 1)), "budgets must be distinct"),
        (dict(cost_ratios={"proposed": 2.0}), "is cost_ratio, not cost_ratios"),
        (dict(cost_ratios={"maxup": 2.0}), "'maxup' is not a step kind"),
        (dict(cost_ratios={"gated": -1.0}), "cost ratio of 'gated' must be a finite number > 0"),
        (dict(arms=("baseline", "weighted-equal-time")), "needs the arms 'proposed'"),
        (dict(arms=("baseline", "weighted"), base=dataclasses.replace(BASE, batch_size=30)), "multiple"),
    ],
)
def test_bad_frontier_config(change, match):
    with pytest.raises(ValueError, match=match):
        validate_compare(CompareConfig(**{"base": BASE, "out": "x", "arms": ("baseline", "proposed"), **change}))


def test_protocol_budgets_and_cost_ratio_per_kind():
    table = {"out": "x", "arms": ["baseline", "proposed", "gated"], "budgets": [1, 1.5, 2],
             "cost_ratio": {"proposed": "bench", "gated": 1.3, "weighted": 4}}  # fmt: skip
    config = config_from_protocol(table, BASE)
    assert config.budgets == (1.0, 1.5, 2.0) and config.cost_ratio is None
    assert config.cost_ratios == {"gated": 1.3, "weighted": 4.0}
    assert config_from_protocol({**table, "cost_ratio": {"proposed": 2}}, BASE).cost_ratio == 2.0
    with pytest.raises(ValueError, match="budgets must be a list of float"):
        config_from_protocol({**table, "budgets": "1,2"}, BASE)


def test_costs_are_declared_or_benched_once_per_setting_and_kept(tmp_path, monkeypatch):
    calls = []

    def fake_bench(config, setting, kinds, log=None):
        calls.append((setting, tuple(kinds)))
        return {
            kind: {"value": {"proposed": 2.1, "weighted": 3.8}[kind], "source": "bench", "bench": {}} for kind in kinds
        }

    monkeypatch.setattr(costs_module, "measure_cost_ratios", fake_bench)
    config = CompareConfig(base=BASE, out=str(tmp_path), arms=("baseline", "proposed", "gated", "weighted"),
                           budgets=(1, 2), cost_ratios={"gated": 1.3})  # fmt: skip
    costs = resolve_costs(config)
    assert calls == [("A", ("proposed", "weighted"))]  # one bench for the kinds not declared
    assert costs["A"] == {"proposed": {"value": 2.1, "source": "bench", "bench": {}},
                          "gated": {"value": 1.3, "source": "declared"},
                          "weighted": {"value": 3.8, "source": "bench", "bench": {}}}  # fmt: skip
    saved = json.loads((tmp_path / "cost_ratio.json").read_text())
    assert saved["A"]["value"] == 2.1 and saved["A:weighted"]["value"] == 3.8  # the proposed R where it always was
    assert resolve_costs(config) == costs and len(calls) == 1  # read back, not benched again


def test_bench_rows_give_each_kinds_ratio():
    class Result:
        def timing(self, m):
            return type("T", (), {"ratio": {1: 1.0, 4: 2.2}[m]})

        def options(self):
            gated = {"option": "score_fraction 0.25", "M": 4, "ratio": 1.35, "measured": True}
            return [gated, {"option": "weighted", "M": 4, "ratio": 0.98, "ratio_per_image": 3.92, "measured": True}]

    assert costs_module._measured(Result(), "proposed", 4) == 2.2
    assert costs_module._measured(Result(), "gated", 4) == 1.35
    assert costs_module._measured(Result(), "weighted", 4) == 3.92  # per distinct image: a step takes B/M
    with pytest.raises(ValueError, match="did not time 'score_fraction 0.5'"):
        costs_module._measured(Result(), "gated-0.5", 4)


def _curve_error(compute, seed):
    """The constructed baseline: 30% less 2 points per doubling of compute, a per-seed offset."""
    return 0.30 - 0.02 * math.log2(compute) + 0.001 * seed


SHIFT = {"proposed": -0.003, "gated": 0.002, "weighted": 0.0, "maxup": None, "gated-0.5": 0.0}


def _constructed(seeds=range(6)):
    others = {kind: value for kind, value in RATIOS.items() if kind != "proposed"}
    config = CompareConfig(base=BASE, out="x", arms=ARMS, seeds=tuple(seeds), budgets=BUDGETS, branch_at=0.5,
                           cost_ratio=2.0, cost_ratios=others)  # fmt: skip
    results = {"A": {}}
    for spec in plan(config, {"A": RATIOS}):
        if spec.arm is None:
            continue
        arm, seed = arm_named(spec.arm), spec.seed
        compute = arm.compute(30, 0.5, RATIOS)
        wiggle = 0.0005 * (-1) ** seed
        if not arm.selects:
            error = _curve_error(compute, seed)
        elif spec.arm == "weighted-equal-time":
            error = 0.27 + 0.001 * seed + wiggle  # below every budget: 0.28 at x3
        elif spec.arm == "maxup":
            error = _curve_error(1.0, seed) + 0.001 + wiggle  # worse than the baseline x1
        else:
            error = _curve_error(compute, seed) + SHIFT[spec.arm] + wiggle
        results["A"].setdefault(spec.arm, {})[seed] = {"test_error": error, "train_error": 0.01, "seconds": 1.0,
                                                        "epochs": spec.config.epochs, "device": "cpu",
                                                        "git_commit": "c0ffee", "git_dirty": False}  # fmt: skip
    costs = {"A": {kind: {"value": value, "source": "declared"} for kind, value in RATIOS.items()}}
    return config, summarize(config, results, costs)


def test_equal_compute_interpolates_between_the_bracketing_budgets_and_refuses_out_of_range():
    _, summary = _constructed()
    rows = summary["equal_compute"]["A"]
    proposed, gated = rows["proposed"], rows["gated"]
    assert proposed["compute"] == 1.5 and proposed["bracket"] == ["baseline-x2", "baseline-x2"]  # a budget exactly
    assert proposed["mean"] == pytest.approx(-0.003) and proposed["verdict"] == "better" and proposed["n"] == 6
    assert gated["bracket"] == ["baseline", "baseline-x1.5"] and gated["compute"] == pytest.approx(1.15)
    assert gated["mean"] == pytest.approx(0.002) and gated["verdict"] == "worse"  # the curve is exact in log
    assert rows["weighted"]["verdict"] == "equivalent within ±δ" and rows["weighted"]["mean"] == pytest.approx(0)
    out = rows["gated-0.5"]  # 0.5 + 0.5 * 4.5 = 2.75 > x3's 2.0
    assert out == {"compute": 2.75, "range": [1.0, 2.0], "verdict": "out of range"}
    assert summary["design"]["budgets"] == list(BUDGETS)
    assert summary["arms"][-3:] == ["baseline-x1.5", "baseline-x2", "baseline-x3"]
    labels = [label for label, _, _ in forest_rows(summary)]
    assert "A: proposed - baseline at ×1.50" in labels and not any("gated-0.5 - baseline at" in x for x in labels)


def test_best_reachable_is_the_lowest_budget_of_the_same_seed():
    _, summary = _constructed()
    rows = summary["best_reachable"]["A"]
    assert set(rows["proposed"]["best_budget"].values()) == {"baseline-x3"}
    assert rows["proposed"]["mean"] == pytest.approx(0.02 - 0.02 * math.log2(1.5) - 0.003)
    assert rows["proposed"]["verdict"] == "worse" and rows["proposed"]["below_best_in"] == 0
    assert rows["weighted-equal-time"]["mean"] == pytest.approx(-0.01)
    assert rows["weighted-equal-time"]["verdict"] == "better" and rows["weighted-equal-time"]["below_best_in"] == 6


def test_break_even_from_the_local_slope_and_the_gain_at_x1():
    _, summary = _constructed()
    rows = summary["break_even"]["A"]
    proposed = rows["proposed"]
    assert proposed["slope_between"] == ["baseline", "baseline-x1.5"]
    assert proposed["slope"] == pytest.approx(-0.02 / math.log(2))  # 2 points per doubling
    gain = -0.02 * math.log2(1.5) - 0.003
    assert proposed["gain"] == pytest.approx(gain)
    assert proposed["break_even_ratio"] == pytest.approx((2 ** (-gain / 0.02) - 0.5) / 0.5)
    assert proposed["measured_ratio"] == 2.0 and proposed["status"] == "pays"  # as equal compute says: better
    assert rows["gated"]["status"] == "does not pay" and rows["gated"]["break_even_ratio"] < 1.3
    assert rows["maxup"]["break_even_ratio"] is None and rows["maxup"]["status"] == "no gain over ×1"
    weighted = rows["weighted"]  # 19 epochs: its tail is 4/30 of E, not 1 - F
    assert weighted["break_even_ratio"] == pytest.approx((2 ** (-weighted["gain"] / 0.02) - 0.5) / (19 / 30 - 0.5))


def test_frontier_table_and_markdown():
    _, summary = _constructed()
    table = summary["frontier"]["A"]
    assert table["baseline-x3"]["compute"] == 2.0 and table["baseline-x3"]["epochs"] == [60]
    assert table["proposed"]["vs_baseline"]["mean"] == pytest.approx(-0.02 * math.log2(1.5) - 0.003)
    markdown = summary_markdown(summary)
    for text in ("| frontier | compute |", "| baseline-x1.5 | 1.27 | 38 |", "| gated-0.5 | 2.75 | budgets 1.00–2.00 |",
                 "out of range", "| equal compute |", "| best reachable |", "| break-even |", "| pays |",
                 "Cost ratio R of weighted (per image), setting A: 4.000, declared; weighted gets"):  # fmt: skip
        assert text in markdown, text


def test_without_budgets_there_is_no_frontier():
    config, summary = _constructed()
    assert all(summary[key]["A"] for key in ("frontier", "equal_compute", "best_reachable", "break_even"))
    results = {"A": {arm: {s: {**summary["settings"]["A"][arm]["per_seed"][s], "device": "cpu"} for s in range(6)}
                     for arm in ("baseline", "proposed")}}  # fmt: skip
    plain = summarize(dataclasses.replace(config, arms=("baseline", "proposed"), budgets=()), results)
    assert not any(plain[key]["A"] for key in ("frontier", "equal_compute", "best_reachable", "break_even"))
    assert "frontier" not in summary_markdown(plain).lower()


class FakeTrain:
    """Writes the files a run leaves; test error falls 2 points per doubling of epochs after the branch and
    selection takes 0.3 points off, gating at Q takes 0.1 points back."""

    def __init__(self):
        self.calls = []

    def __call__(self, config, reporter=None, resume=False, overwrite=False):
        self.calls.append(config)
        out = Path(config.out)
        out.mkdir(parents=True, exist_ok=True)
        meta = {"config": dataclasses.asdict(config), "git_commit": "c0ffee", "git_dirty": False}
        (out / "config.json").write_text(json.dumps(meta))
        first = (
            1
            if config.branch_from is None
            else 1 + len((Path(config.branch_from) / "metrics.jsonl").read_text().splitlines())
        )
        last = round(config.epochs * config.stop_at) if config.stop_at else config.epochs
        (out / "metrics.jsonl").write_text("".join(json.dumps({"epoch": e, "seconds": 1.0}) + "\n"
                                                   for e in range(first, last + 1)))  # fmt: skip
        if config.stop_at:
            (out / "trunk.json").write_text("{}")
            return
        error = 0.30 - 0.02 * math.log2(config.epochs / 30) - 0.0007 * config.seed
        error -= 0.003 if config.method != "baseline" else 0.0
        error += 0.001 if config.score_fraction != 1 else 0.0
        final = {"test_error": error, "train_error": 0.01, "seconds": 1.0, "device": "cpu", "epochs": config.epochs}
        (out / "final.json").write_text(json.dumps(final))


def test_frontier_summary_is_recomputed_exactly_from_the_runs_final_json(tmp_path, monkeypatch):
    fake = FakeTrain()
    monkeypatch.setattr(runner_module, "train", fake)
    monkeypatch.setattr(runner_module, "git_commit", lambda: "c0ffee")
    config = CompareConfig(base=BASE, out=str(tmp_path), arms=("baseline", "proposed", "gated", "weighted"),
                           seeds=(0, 1, 2), budgets=BUDGETS, branch_at=0.5, cost_ratio=2.0,
                           cost_ratios={"gated": 1.3, "weighted": 4.0})  # fmt: skip
    summary = run_compare(config)
    assert len(fake.calls) == 3 * (1 + 7)  # a trunk and seven arms per seed
    finals = {(arm, seed): json.loads((tmp_path / "setting-A" / arm / f"seed-{seed}" / "final.json").read_text())
              for arm in summary["arms"] for seed in (0, 1, 2)}  # fmt: skip
    for seed in (0, 1, 2):
        low, high = finals["baseline", seed]["test_error"], finals["baseline-x1.5", seed]["test_error"]
        t = math.log(1.15) / math.log(38 / 30)
        expected = finals["gated", seed]["test_error"] - (low + t * (high - low))
        assert summary["equal_compute"]["A"]["gated"]["per_seed"][seed] == expected  # exact, from final.json
        best = min(finals[b, seed]["test_error"] for b in ("baseline", "baseline-x1.5", "baseline-x2", "baseline-x3"))
        assert (
            summary["best_reachable"]["A"]["proposed"]["per_seed"][seed]
            == finals["proposed", seed]["test_error"] - best
        )
    assert summary["cost_ratios"]["A"] == {"proposed": {"value": 2.0, "source": "declared"},
                                           "gated": {"value": 1.3, "source": "declared"},
                                           "weighted": {"value": 4.0, "source": "declared"}}  # fmt: skip
    assert (tmp_path / "frontier.png").read_bytes()[:4] == b"\x89PNG"
    saved = (tmp_path / "summary.json").read_text()
    monkeypatch.setattr(runner_module, "train", lambda *a, **k: pytest.fail("trained a finished run"))
    run_compare(config)  # everything read back from the run directories
    assert (tmp_path / "summary.json").read_text() == saved


def test_plots_are_skipped_without_matplotlib(tmp_path, monkeypatch):
    import builtins

    from lossaug.compare import write_forest, write_frontier

    _, summary = _constructed()
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.warns(UserWarning, match="frontier.png not written"):
        assert write_frontier(summary, tmp_path / "frontier.png") is None
    with pytest.warns(UserWarning, match="forest.png not written"):
        assert write_forest(summary, tmp_path / "forest.png") is None
    assert not list(tmp_path.iterdir())


def test_budgets_option_of_the_compare_command(tmp_path, capsys, monkeypatch):
    from lossaug.cli import main

    monkeypatch.setattr(runner_module, "train", FakeTrain())
    monkeypatch.setattr(runner_module, "git_commit", lambda: "c0ffee")
    argv = ["compare", "--arms", "baseline,proposed", "--budgets", "1,2", "--seeds", "0,1", "--dataset", "mini",
            "--model", "cnn", "--width", "2", "--epochs", "4", "--device", "cpu", "--branch-at", "0.5",
            "--cost-ratio", "1.5", "--cache-dir", str(tmp_path), "--out", str(tmp_path / "c")]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "| equal compute |" in out and "frontier.png" in out
    summary = json.loads((tmp_path / "c" / "summary.json").read_text())
    assert summary["arms"] == ["baseline", "proposed", "baseline-x2"] and summary["design"]["budgets"] == [1.0, 2.0]
    assert summary["settings"]["A"]["baseline-x2"]["epochs"] == [6, 6]  # 2 shared + 2 * 2
    assert summary["equal_compute"]["A"]["proposed"]["bracket"] == ["baseline", "baseline-x2"]
    protocol = tmp_path / "p.toml"
    protocol.write_text(f"[compare]\nout = '{tmp_path / 'p'}'\n\n[train]\ndataset = 'mini'\n")
    assert main(["compare", "--protocol", str(protocol), "--budgets", "1,2"]) == 2
    assert "takes no other options, got --budgets" in capsys.readouterr().err


def test_the_frontier_transfer_protocol():
    from lossaug.cli.options import load_protocol_file
    from lossaug.compare import planned_arms

    root = Path(__file__).resolve().parents[1] / "experiments" / "protocols"
    table, base = load_protocol_file(root / "frontier-transfer.toml")
    config = config_from_protocol(table, base)
    validate_compare(config)
    _, transfer = load_protocol_file(root / "transfer-A.toml")
    assert base == transfer  # transfer-A's data, weights and recipe
    assert config.out == "docs/results/frontier/transfer" and config.seeds == tuple(range(12))
    assert (config.branch_at, config.budgets, config.margin) == (0.5, (1.0, 1.5, 2.0, 3.0), 0.005)
    assert config.cost_ratio is None and config.cost_ratios == {}  # every kind benched at the start
    names = [arm.name for arm in planned_arms(config)]
    assert names == ["baseline", "baseline-x1.5", "baseline-x2", "baseline-x3", "proposed", "gated", "weighted",
                     "weighted-equal-time"]  # fmt: skip
    specs = {spec.arm: spec.config for spec in plan(config, {"A": {"proposed": 2.0, "gated": 1.3, "weighted": 4.0}})}
    assert [specs[a].epochs for a in names] == [30, 38, 45, 60, 30, 30, 19, 23]
    assert specs["gated"].score_fraction == 0.25 and specs["weighted"].method == "weighted"


def test_one_bench_times_the_cheap_modes_the_arms_need():
    config = CompareConfig(base=BASE, out="x", arms=("baseline", "gated", "gated-0.5", "weighted"))
    bench = costs_module._bench_config(config, "B", ["proposed", "gated", "gated-0.5", "weighted"])
    assert (bench.candidate_counts, bench.setting, bench.score_fractions, bench.weighted) == (
        (1, 4),
        "B",
        (0.25, 0.5),
        True,
    )
    plain = costs_module._bench_config(config, "A", ["proposed"])
    assert (plain.score_fractions, plain.weighted) == ((), False)  # nothing timed that no arm needs


def test_an_m_sweep_is_arms_named_by_their_m_each_priced_by_its_own_ratio():
    """proposed-mM: the proposed arm at M candidates, its step a kind of its own (R grows with M)."""
    from lossaug.compare import candidates_arm, sweep_candidates

    arm = arm_named("proposed-m8")
    assert (arm.method, arm.step, dict(arm.options)) == ("proposed", "proposed-m8", {"num_candidates": 8})
    assert candidates_arm(8) == "proposed-m8" and sweep_candidates("proposed-m8") == 8
    assert arm.epochs(30, 0.5, {}) == 30 and arm.compute(30, 0.5, {"proposed-m8": 4.0}) == pytest.approx(2.5)
    for bad in ("proposed-m1", "proposed-m2.5", "proposed-m08", "proposed-m"):
        assert sweep_candidates(bad) is None
        with pytest.raises(ValueError, match=f"unknown arm '{bad}'"):
            arm_named(bad)
    config = CompareConfig(base=BASE, out="x", arms=("baseline", "proposed-m2", "proposed", "proposed-m8"),
                           budgets=(1, 2), seeds=(0,), branch_at=0.5)  # fmt: skip
    validate_compare(config)
    assert costs_module.needed_kinds(config) == ["proposed", "proposed-m2", "proposed-m8"]
    specs = plan(config, {"A": {"proposed": 2.0, "proposed-m2": 1.5, "proposed-m8": 4.0}})
    assert [s.arm for s in specs] == [None, "baseline", "baseline-x2", "proposed", "proposed-m2", "proposed-m8"]
    assert [s.config.num_candidates for s in specs[3:]] == [4, 2, 8]  # proposed (the base M), then the sweep by M
    declared = dataclasses.replace(config, cost_ratios={"proposed-m8": 3.9}, allow_out_of_range=True)  # x2 < 2.45
    validate_compare(declared)  # an M sweep's R may be declared like any step kind's
    with pytest.raises(ValueError, match="'proposed-m4' is the proposed arm"):
        validate_compare(dataclasses.replace(config, arms=("baseline", "proposed-m4")))
    odd = CompareConfig(base=BASE, out="x", arms=("gated-1e-05", "proposed"), budgets=(1, 1e-05, 2), seeds=(0,))
    assert [a.name for a in planned_arms(odd)] == [
        "baseline-x1e-05",
        "baseline",
        "baseline-x2",
        "proposed",
        "gated-1e-05",
    ]  # ordered by budget and Q, not by parsing names


def test_an_m_sweep_is_benched_at_its_own_ms_apart_from_the_cheap_modes(monkeypatch):
    config = CompareConfig(base=BASE, out="x", arms=("baseline", "proposed", "gated", "proposed-m2", "proposed-m8"))
    sweep = costs_module._bench_config(config, "A", ["proposed-m2", "proposed-m8"])
    assert (sweep.candidate_counts, sweep.score_fractions, sweep.weighted) == ((1, 2, 4, 8), (), False)
    benched = []

    class Result:
        def __init__(self, bench):
            self.bench = bench

        def timing(self, m):
            return type("T", (), {"ratio": {1: 1.0, 2: 1.5, 4: 2.2, 8: 4.1}[m]})

        def options(self):
            return [{"option": "score_fraction 0.25", "M": 4, "ratio": 1.35, "measured": True}]

        def to_json(self):
            return {"candidate_counts": list(self.bench.candidate_counts)}

    def run_bench(bench, log=None):
        benched.append(bench.candidate_counts)
        return Result(bench)

    monkeypatch.setattr("lossaug.bench.run_bench", run_bench)
    ratios = costs_module.measure_cost_ratios(config, "A", ["proposed", "gated", "proposed-m2", "proposed-m8"])
    assert benched == [(1, 4), (1, 2, 4, 8)]  # gating is timed at the arms' M = 4, not at the sweep's largest
    assert {kind: r["value"] for kind, r in ratios.items()} == {"proposed": 2.2, "gated": 1.35, "proposed-m2": 1.5,
                                                                 "proposed-m8": 4.1}  # fmt: skip
    assert ratios["proposed-m8"]["bench"] == {"candidate_counts": [1, 2, 4, 8]}
