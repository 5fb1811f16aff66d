"""Issue 31, the training-loop items: the baseline identities on more than one configuration, resuming across
methods with a different number of images per step, the weighted mode's scoring options, enormous counts, the
mixing spec's alpha, and the warnings for runs that are not what they look like (nothing scored, one class)."""

import dataclasses
import wave

import numpy as np
import pytest
import torch
from PIL import Image

from lossaug.cli import main
from lossaug.errors import InputError
from lossaug.models import build_classifier
from lossaug.run.pipeline import prepare_data
from lossaug.run.train import TrainConfig, train


def gray_tree(root, classes: int = 3, train_count: int = 12, test_count: int = 5, side: int = 8):
    """``root/{train,test}/<class>/*.png``: noisy 8x8 grayscale patterns, one per class (as the 8x8 digits)."""
    rng = np.random.default_rng(0)
    protos = rng.integers(0, 17, (classes, side, side))
    for split, count in (("train", train_count), ("test", test_count)):
        for label in range(classes):
            (root / split / f"c{label}").mkdir(parents=True)
            for i in range(count):
                pixels = np.clip(protos[label] + rng.integers(-4, 5, (side, side)), 0, 16) * 255 // 16
                Image.fromarray(pixels.astype(np.uint8), "L").save(root / split / f"c{label}" / f"{i}.png")
    return root


def wav_tree(root, rate: int = 8000):
    """``root/{train,test}/{low,high}/*.wav``: short noisy tones."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 14), ("test", 4)):
        for label, freq in (("low", 300.0), ("high", 1800.0)):
            (root / split / label).mkdir(parents=True)
            for i in range(count):
                t = np.arange(int(rate * 0.1)) / rate
                clip = 0.4 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(len(t))
                with wave.open(str(root / split / label / f"{i}.wav"), "wb") as handle:
                    handle.setnchannels(1)
                    handle.setsampwidth(2)
                    handle.setframerate(rate)
                    handle.writeframes((clip * 32767).astype("<i2").tobytes())
    return root


def assert_same_run(result, baseline) -> None:
    """The same final weights (torch.equal) and the same final test loss (exact)."""
    a, b = result.model.state_dict(), baseline.model.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert result.test_loss == baseline.test_loss and result.test_error == baseline.test_error


# ---------------------------------------------------------------- item 6: the identities hold by construction


def _identity_configs(kind: str, tmp_path) -> dict:
    """A tiny baseline configuration of each kind; the cache makes the baseline decode and the others read it."""
    common = dict(epochs=2, lr=0.05, device="cpu", seed=3, cache_dir=str(tmp_path / "cache"))
    if kind == "gray":
        root = gray_tree(tmp_path / "digits")
        return dict(
            common, dataset="folder", data=str(root), model="cnn", width=8, augment="flip,crop:1", batch_size=10
        )
    if kind == "rgb":
        return dict(common, dataset="mini", train_size=64, model="cnn", width=4, batch_size=14)
    root = wav_tree(tmp_path / "clips")
    return dict(common, dataset="audio-folder", data=str(root), model="audio_cnn", width=2, batch_size=6)


@pytest.mark.parametrize("kind", ["gray", "rgb", "audio"])
def test_nothing_scored_and_weighted_one_candidate_equal_the_baseline_bit_for_bit(tmp_path, kind):
    """Batches of 10, 14 and 6 are not multiples of M = 4; the baseline runs first (decoding the data), the others
    read the decoded cache: the data's memory layout must not depend on where it came from."""
    config = _identity_configs(kind, tmp_path)
    baseline = train(TrainConfig(**config, method="baseline"))
    gated = TrainConfig(**config, method="proposed", score_fraction=0.01)  # round(0.01 * B) = 0 rows
    with pytest.warns(UserWarning, match="scores no image"):
        assert_same_run(train(gated), baseline)
    assert_same_run(train(TrainConfig(**config, method="weighted", num_candidates=1)), baseline)


def test_decoded_and_cached_grayscale_data_give_the_same_logits(tmp_path):
    """The cause of the identity failing on 8x8 grayscale digits: decoded, the (N,1,H,W) set had channels-last
    strides, read from the cache row-major ones, and a convolution rounds the two differently."""
    config = TrainConfig(**_identity_configs("gray", tmp_path))
    decoded, cached = (prepare_data(config, torch.device("cpu"), None) for _ in range(2))
    net = build_classifier("cnn", 3, 1, 8, (decoded.mean, decoded.std), device=torch.device("cpu"), init_seed=0)
    with torch.no_grad():
        for name in ("train_images", "test_images"):
            assert torch.equal(net.eval()(getattr(decoded, name)), net(getattr(cached, name))), name


# ---------------------------------------------------------------- item 17 (train part), item 25: warnings

TINY_DATA = ["--dataset", "mini", "--train-size", "64"]
TINY_MODEL = ["--model", "cnn", "--width", "4", "--epochs", "1", "--batch-size", "16", "--device", "cpu"]
TINY_CLI = ["train", *TINY_DATA, *TINY_MODEL]


def warning_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("lossaug: warning:")]


def test_a_gate_that_scores_no_image_warns_that_the_run_is_the_baseline(tmp_path, capsys):
    assert main([*TINY_CLI, "--score-fraction", "0.01", "--out", str(tmp_path / "none")]) == 0
    said = [line for line in warning_lines(capsys) if "--score-fraction" in line]
    assert len(said) == 1 and "scores no image at 16 images per step" in said[0] and "is the baseline" in said[0]
    assert main([*TINY_CLI, "--score-fraction", "0.1", "--out", str(tmp_path / "two")]) == 0  # round(1.6) = 2 rows
    assert not [line for line in warning_lines(capsys) if "--score-fraction" in line]


def test_one_class_data_warns_naming_the_class(tmp_path, capsys):
    root = gray_tree(tmp_path / "digits", classes=1)
    options = ["--model", "cnn", "--width", "4", "--epochs", "1", "--batch-size", "4", "--device", "cpu"]
    argv = ["train", "--dataset", "folder", "--data", str(root), *options, "--out", str(tmp_path / "run")]
    assert main(argv) == 0
    said = [line for line in warning_lines(capsys) if "one class" in line]
    assert len(said) == 1 and "'c0'" in said[0] and "0% by construction" in said[0], said


# ---------------------------------------------------------------- item 10: resuming across images per step

# 128 images: batch 32 is 4 steps per epoch, weighted (M = 4) 16 steps of 8 images.
RESUMABLE = dict(dataset="mini", train_size=128, model="cnn", width=4, epochs=2, batch_size=32, lr=0.05, device="cpu")


@pytest.mark.parametrize("first, then", [("weighted", "proposed"), ("proposed", "weighted"), ("weighted", "baseline")])
def test_resuming_with_other_images_per_step_is_refused_naming_both_methods(tmp_path, capsys, first, then):
    out = tmp_path / "run"
    train(TrainConfig(**{**RESUMABLE, "epochs": 1}, method=first, out=str(out)))
    argv = ["train", "--resume", str(out), "--epochs", "2", "--method", then]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    lines = [line for line in err if not line.startswith("lossaug: warning:")]  # a small-data warning may come first
    assert len(lines) == 1 and f"--method {first}" in lines[0] and f"--method {then}" in lines[0], lines
    assert "images per step" in lines[0]


def test_resuming_a_weighted_run_stopped_mid_epoch_as_proposed_is_refused(tmp_path):
    config = TrainConfig(**RESUMABLE, method="weighted", checkpoint_every=3, out=str(tmp_path / "run"))
    with pytest.raises(KeyboardInterrupt):
        train(config, on_step=lambda step, _selection: _crash_at(step, 7))  # checkpoint at step 6 of epoch 1
    with pytest.raises(InputError, match="images per step") as refused:
        train(dataclasses.replace(config, method="proposed"), resume=True)
    assert "--method weighted --candidates 4" in str(refused.value) and "--method proposed" in str(refused.value)
    assert len(train(config, resume=True).metrics) == 2  # as it was trained: resumes


def _crash_at(step: int, at: int) -> None:
    if step == at:
        raise KeyboardInterrupt


# ---------------------------------------------------------------- item 16: the weighted mode's scoring options


@pytest.mark.parametrize(
    "options, named",
    [
        (["--score", "error"], "--score error"),
        (["--bn", "batch"], "--bn batch"),
        (["--score-chunk", "8"], "--score-chunk 8"),
    ],
)
def test_weighted_refuses_the_scoring_options_it_cannot_honour(tmp_path, capsys, options, named):
    assert main([*TINY_CLI, "--method", "weighted", *options, "--out", str(tmp_path / "run")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and named in lines[0] and "method weighted" in lines[0], lines
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- item 22 (train part): enormous counts

HUGE = "100000000000000000000"  # 1e20


@pytest.mark.parametrize(
    "option, name",
    [
        ("--epochs", "epochs"),
        ("--width", "width"),
        ("--batch-size", "batch_size"),
        ("--candidates", "num_candidates"),
        ("--checkpoint-every", "checkpoint_every"),
        ("--eval-every", "eval_every"),
        ("--select-every", "select_every"),
        ("--max-nonfinite", "max_nonfinite"),
        ("--score-chunk", "score_chunk"),
    ],
)
def test_enormous_counts_are_refused_before_training(tmp_path, capsys, option, name):
    assert main([*TINY_CLI, option, HUGE, "--out", str(tmp_path / "run")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"lossaug: error: {name} must be at most"), lines
    assert HUGE in lines[0] and not (tmp_path / "run").exists()


def test_enormous_epochs_in_a_config_file_are_refused(tmp_path, capsys):
    (tmp_path / "run.toml").write_text(f"epochs = {HUGE}\n")
    argv = ["train", "--config", str(tmp_path / "run.toml"), *TINY_CLI[1:], "--out", str(tmp_path / "run")]
    argv.remove("--epochs")
    argv.remove("1")
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "epochs must be at most" in lines[0], lines


@pytest.mark.parametrize("epochs", [1e20, 2.0, True])
def test_a_count_that_is_not_an_integer_is_refused_by_the_library(epochs):
    with pytest.raises(InputError, match="epochs must be an integer"):
        train(TrainConfig(dataset="mini", train_size=64, model="cnn", width=4, epochs=epochs, device="cpu"))


# ---------------------------------------------------------------- item 25: a mixing alpha too small to sample


@pytest.mark.parametrize("spec", ["flip,mixup:1e-320", "cutmix:1e-320", "mixup:1e-300", "cutmix:1e-7"])
def test_a_too_small_mixing_alpha_is_refused_naming_the_spec(tmp_path, capsys, spec):
    assert main([*TINY_CLI, "--augment", spec, "--out", str(tmp_path / "run")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and repr(spec) in lines[0] and "alpha must be at least" in lines[0], lines
    assert "--lr" not in lines[0] and not (tmp_path / "run").exists()


def test_the_smallest_mixing_alpha_samples_finite_weights():
    from lossaug.augment.mix import MIN_ALPHA, beta_params

    lam = beta_params(4096, MIN_ALPHA, device=torch.device("cpu"), generator=torch.Generator().manual_seed(0))
    assert lam.isfinite().all() and (lam >= 0).all() and (lam <= 1).all()
    with pytest.raises(InputError, match="alpha must be at least"):
        beta_params(4, 1e-320, device=torch.device("cpu"))


def test_the_dropped_batch_warning_never_suggests_the_batch_size_given():
    from lossaug.run.guards import small_data_warnings

    dropped = [m for m in small_data_warnings(55, 8, "clips") if "drops its last partial batch" in m]
    assert dropped and "e.g. 8" not in dropped[0]  # 55 at 8 drops 7: the old text suggested 8 itself
    suggested = [m for m in small_data_warnings(300, 128, "images") if "drops its last partial batch" in m]
    assert suggested and "e.g. 16" in suggested[0]  # 300 at 16: 18 steps, 12 dropped (4%)
