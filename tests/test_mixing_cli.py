"""Setting C and label-mixing augmentations through the command line: train, show, report and compare on tiny
runs, bench with a spec, and the committed protocols of issue 24."""

import json
from pathlib import Path

import pytest
import tomllib
import torch

from lossaug.cli import load_config_file, main
from lossaug.compare import config_from_protocol, validate_compare
from lossaug.run.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--dataset", "mini", "--train-size", "64", "--model", "cnn", "--width", "2", "--epochs", "1",
        "--batch-size", "32", "--device", "cpu", "--method", "proposed", "--candidates", "2"]  # fmt: skip


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("LOSSAUG_CACHE", str(tmp_path / "cache"))


def test_train_show_and_report_with_mixup_and_setting_c(tmp_path, capsys):
    mixed, strong = tmp_path / "mixup", tmp_path / "setting-c"
    assert main(["train", *TINY, "--augment", "flip,crop,mixup:0.2", "--out", str(mixed)]) == 0
    assert main(["train", *TINY, "--setting", "C", "--out", str(strong)]) == 0
    assert json.loads((strong / "config.json").read_text())["resolved"]["augment"] == "flip,crop:4,trivial"
    for run in (mixed, strong):
        assert json.loads((run / "final.json").read_text())["test_error"] <= 1
    png = tmp_path / "grid.png"
    assert main(["show", str(mixed), "--out", str(png), "--images", "2", "--candidates", "3"]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert main(["report", str(mixed), str(strong), "--out", str(tmp_path / "report.png")]) == 0


def test_show_grid_of_a_mixing_run_names_both_classes_and_lambda(tmp_path):
    from lossaug.show import load_run, score_examples, tile_label

    out = tmp_path / "cutmix"
    assert main(["train", *TINY, "--augment", "flip,cutmix:1.0", "--out", str(out)]) == 0
    run = load_run(out)
    grid = score_examples(run, num_images=4, num_candidates=3, seed=1)
    assert grid.candidate_targets.shape == (4, 3, len(run.classes))
    labels = [tile_label(grid, run.classes, r, c) for r in range(4) for c in range(3)]
    assert all("lam" in label for label in labels) and any(" + " in label for label in labels)
    import lossaug

    expected = lossaug.score_candidates(run.model, grid.candidates, grid.candidate_targets)
    assert torch.allclose(grid.scores, expected)


def test_compare_runs_setting_c(tmp_path):
    protocol = tmp_path / "c.toml"
    protocol.write_text(
        f'[compare]\nout = "{tmp_path / "cmp"}"\narms = ["baseline", "proposed"]\nsettings = ["C"]\nseeds = [0]\n'
        'cost_ratio = 2.0\n[train]\ndataset = "mini"\ntrain_size = 64\nmodel = "cnn"\nwidth = 2\nepochs = 1\n'
        'batch_size = 32\ndevice = "cpu"\nnum_candidates = 2\n'
    )
    assert main(["compare", "--protocol", str(protocol)]) == 0
    assert (tmp_path / "cmp" / "setting-C" / "proposed" / "seed-0" / "final.json").exists()


def test_bench_times_a_mixing_spec_and_compare_passes_its_spec_to_bench():
    from lossaug.bench import BenchConfig, run_bench
    from lossaug.compare import CompareConfig
    from lossaug.compare.costs import _bench_config

    config = BenchConfig(model="cnn", width=2, batch_size=8, candidate_counts=(1, 2), repeats=1, warmup=0,
                         device="cpu", augment="flip,crop,mixup:0.2", score_fractions=(0.5,))  # fmt: skip
    result = run_bench(config)
    assert result.timing(2).ratio > 0 and result.to_json()["config"]["augment"] == "flip,crop,mixup:0.2"
    base = TrainConfig(dataset="mini", model="cnn", width=2, augment="flip,crop,cutmix", device="cpu")
    assert _bench_config(CompareConfig(base=base, out="x"), "A", ["proposed"]).augment == "flip,crop,cutmix"


@pytest.mark.parametrize("name,setting", [("frontier-transfer-C", "C"), ("frontier-transfer-mix", "A")])
def test_committed_protocols_of_issue_24(name, setting):
    path = ROOT / "experiments" / "protocols" / f"{name}.toml"
    train_table = load_config_file(path)
    frontier = tomllib.loads((ROOT / "experiments" / "protocols" / "frontier-transfer.toml").read_text())
    same = {k: v for k, v in frontier["train"].items() if k != "setting"}
    assert {k: train_table[k] for k in same} == same  # transfer-A's data, weights and recipe
    config = config_from_protocol(tomllib.loads(path.read_text())["compare"], TrainConfig(**train_table))
    assert config.settings == (setting,) and config.seeds == tuple(range(12))
    assert config.budgets == (1, 1.5, 2, 3, 4)  # x4 added by the pre-registered amendment rule (x3 beat x2)
    assert config.arms == tuple(frontier["compare"]["arms"]) and config.branch_at == 0.5
    if train_table.get("augment") != "PILOT":  # the mix protocol's augment is fixed by its pilot
        validate_compare(config)


def test_a_gated_cutmix_run_resumes_bit_for_bit(tmp_path, resume_after_crash):
    from lossaug.run.train import train

    tiny = dict(dataset="mini", train_size=64, model="cnn", width=2, epochs=2, batch_size=16, device="cpu",
                method="proposed", num_candidates=2, augment="flip,crop,cutmix", score_fraction=0.5)  # fmt: skip
    reference = train(TrainConfig(**tiny))
    resumed = resume_after_crash(TrainConfig(**tiny, checkpoint_every=3, out=str(tmp_path / "run")), at_step=5)
    for key, value in reference.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
