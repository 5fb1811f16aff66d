"""Tests of the command line: a tiny real run, config files, and one-line errors with exit status 2."""

import json
import subprocess
import sys

import pytest

from lossaug.cli import build_parser, config_from_args, main

TINY = [
    "--dataset",
    "mini",
    "--train-size",
    "128",
    "--model",
    "cnn",
    "--width",
    "4",
    "--epochs",
    "1",
    "--batch-size",
    "64",
    "--device",
    "cpu",
]


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("LOSSAUG_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("LOSSAUG_DEBUG", raising=False)


def test_train_command_runs_and_writes_the_run_directory(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--method", "proposed", "--candidates", "2", "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} >= {
        "config.json",
        "metrics.jsonl",
        "final.json",
        "checkpoint.pt",
        "curves.png",
    }
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["num_candidates"] == 2 and config["cache_dir"] == str(tmp_path / "cache")
    assert "test error" in capsys.readouterr().out


def test_config_file_and_precedence(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('method = "maxup"\ncandidates = 8\nbatch-size = 32\ntemperature = inf\n')
    args = build_parser().parse_args(["train", "--config", str(path), "--candidates", "3"])
    config = config_from_args(args)
    assert (config.method, config.num_candidates, config.batch_size, config.temperature) == (
        "maxup",
        3,
        32,
        float("inf"),
    )
    preset = config_from_args(build_parser().parse_args(["train", "--preset", "seed"]))
    assert (preset.epochs, preset.lr, preset.batch_size, preset.weight_decay) == (200, 0.1, 128, 5e-4)
    fast = config_from_args(build_parser().parse_args(["train", "--preset", "fast", "--epochs", "3"]))
    assert (fast.model, fast.batch_size, fast.lr, fast.label_smoothing, fast.warmup_epochs) == (
        "fast_resnet", 512, 0.4, 0.2, 2.0)  # fmt: skip
    assert fast.epochs == 3  # options override the preset


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["train", "--dataset", "imagenet"], "invalid choice: 'imagenet' (choose from 'cifar10', 'cifar100'"),
        (["train", "--model", "vit"], "unknown model 'vit'; choose from ['audio_cnn', 'cnn', 'fast_resnet', 'preact_"),
        (["train", "--frobnicate", "3"], "unrecognized arguments: --frobnicate 3"),
        (["train", "--epochs", "many"], "argument --epochs: invalid int value: 'many'"),
        (["train", "--dataset", "folder", "--data", "/no/such/dir", "--out", "OUT"], "/no/such/dir"),
        (["train", "--config", "/no/such.toml"], "config file /no/such.toml does not exist"),
        (["train", *TINY, "--candidates", "0", "--out", "OUT"], "num_candidates must be >= 1, got 0"),
    ],
)
def test_bad_input_is_one_line_and_exit_status_2(argv, needle, capsys, tmp_path):
    argv = [str(tmp_path / "out") if a == "OUT" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_a_value_error_from_a_bug_keeps_its_traceback_and_only_input_errors_are_one_line(tmp_path, capsys, monkeypatch):
    """A plain ValueError raised inside training is a bug: main lets it propagate (the interpreter prints its
    traceback) instead of reporting it as bad input. An InputError from the same place is one line, status 2;
    LOSSAUG_DEBUG=1 shows its traceback too."""
    import lossaug.run.step as step_module
    from lossaug.errors import InputError

    def fail_with(error):
        def loss(*args, **kwargs):
            raise error

        return loss

    monkeypatch.setattr(step_module, "training_loss", fail_with(ValueError("a bug deep in the step")))
    with pytest.raises(ValueError, match="a bug deep in the step") as caught:
        main(["train", *TINY, "--out", str(tmp_path / "bug")])
    assert not isinstance(caught.value, InputError)
    assert "lossaug: error" not in capsys.readouterr().err

    monkeypatch.setattr(step_module, "training_loss", fail_with(InputError("bad value the user gave")))
    assert main(["train", *TINY, "--out", str(tmp_path / "input")]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == "lossaug: error: bad value the user gave" and "Traceback" not in err

    monkeypatch.setenv("LOSSAUG_DEBUG", "1")
    with pytest.raises(InputError, match="bad value the user gave"):
        main(["train", *TINY, "--out", str(tmp_path / "debug")])


def test_unknown_key_in_config_file_names_file_and_key(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text("epochs = 3\nlearning_rate = 0.1\n")
    assert main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "unknown option 'learning_rate'" in err and str(path) in err


@pytest.mark.slow  # subprocess: python -m lossaug
def test_python_dash_m_help_lists_the_fixed_options():
    out = subprocess.run([sys.executable, "-m", "lossaug", "train", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for option in (
        "--dataset",
        "--data",
        "--image-size",
        "--model",
        "--width",
        "--method",
        "--setting",
        "--candidates",
        "--temperature",
        "--epochs",
        "--batch-size",
        "--lr",
        "--seed",
        "--config",
        "--out",
        "--device",
        "--score",
        "--bn",
        "--uniform-mix",
    ):
        assert option in out.stdout, option


@pytest.mark.slow  # ~10 s: two training runs
def test_demo_command_prints_the_table_and_writes_the_plot(tmp_path, capsys, monkeypatch):
    from lossaug import demo

    def no_calibration(config):
        raise AssertionError("--epochs skips the calibration")

    monkeypatch.setattr(demo, "calibrate", no_calibration)
    out = tmp_path / "demo"
    assert main(["demo", "--epochs", "1", "--width", "2", "--out", str(out), "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "baseline" in printed and "proposed" in printed and "time ratio" in printed and "step ratio" in printed
    assert "1 epoch per arm (as given)" in printed and "alternated epoch by epoch" in printed
    assert "cannot tell an effect" in printed
    assert "baseline: epoch 1/1" in captured.err and "proposed: epoch 1/1" in captured.err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["baseline"]["time_ratio"] == 1.0 and summary["proposed"]["time_ratio"] > 0
    assert summary["baseline"]["step_ratio"] == 1.0 and summary["proposed"]["step_ratio"] > 0
    assert summary["median_step_ratio"] == summary["proposed"]["step_ratio"]
    assert summary["baseline"]["steps"] == summary["proposed"]["steps"] == 5000 // 128
    assert summary["epochs"] == 1 and summary["epochs_from"] == "given" and summary["calibration"] is None
    assert (out / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    for arm in ("baseline", "proposed"):
        files = {p.name for p in (out / arm).iterdir()}
        assert {"config.json", "metrics.jsonl", "final.json", "checkpoint.pt"} <= files
    # a second demo into the same directory is refused before it calibrates or trains
    assert main(["demo", "--width", "2", "--out", str(out), "--device", "cpu"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_a_run_that_stops_early_maps_to_one_exit_status_for_train_and_compare(capsys):
    import signal
    from pathlib import Path

    from lossaug.cli.commands import stop_exit_code
    from lossaug.run.train import NonFiniteError, TrainingInterrupted

    assert stop_exit_code(NonFiniteError("non-finite loss at step 6"), "HINT") == 1
    assert capsys.readouterr().err == "lossaug: error: non-finite loss at step 6\n"
    assert stop_exit_code(TrainingInterrupted(signal.SIGTERM, Path("run/checkpoint.pt"), 5), "HINT") == 143
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("lossaug: SIGTERM received: stopped after step 5") and err[1] == "lossaug: HINT"
    assert stop_exit_code(TrainingInterrupted(signal.SIGINT, None, 2), "HINT") == 130
    assert "HINT" not in capsys.readouterr().err  # nothing saved, nothing to resume
